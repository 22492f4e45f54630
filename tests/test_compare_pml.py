"""bench/compare_pml.py prints issue 18's table: every row asked for, with a positive figure on our
side, and the reference side only when a torch environment is given (CI has none: the test of
both sides runs where GLUON_DML_TORCH_PYTHON names a Python with torch and
pytorch-metric-learning). Figures of a smoke run on shared cores are not checked for speed."""
import os
import re
import sys

import pytest

from .helpers import run_script

ALL = ['small-train', 'small-infer', 'r50-train', 'r50-infer', 'omniglot', 'triplet', 'nmi',
       'retrieval']
_FIGURE = re.compile(r'^([0-9][0-9,]*(?:\.[0-9]+)?) (img/s|s)\b')


def table(stdout):
    """{case: [work, gluon-dml, PML, ratio, target, met]} of the printed markdown table."""
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r'^\| (.*) \[([a-z0-9-]+)\] \| (.*) \|$', line)
        if m:
            rows[m.group(2)] = [m.group(1)] + m.group(3).split(' | ')
    return rows


def figure(cell):
    m = _FIGURE.match(cell)
    assert m, 'not a figure: %r' % cell
    return float(m.group(1).replace(',', ''))


def test_table_parser_reads_a_row_and_rejects_a_non_figure():
    out = '| ResNet-50, batch 4, 32 px, training [r50-train] | 1,234 img/s | - | - | >= 1.5x | - |\n'
    rows = table(out)
    assert list(rows) == ['r50-train'] and figure(rows['r50-train'][1]) == 1234.0
    with pytest.raises(AssertionError):
        figure(rows['r50-train'][2])


def test_quick_our_side_prints_the_rows_with_positive_figures():
    proc = run_script('bench/compare_pml.py', '--quick', '--rounds', '2',
                      '--cases', 'small-infer,retrieval', timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = table(proc.stdout)
    assert list(rows) == ['small-infer', 'retrieval'], proc.stdout
    for case, (work, ours, pml, ratio, target, met) in rows.items():
        assert figure(ours) > 0, (case, ours)
        assert (pml, ratio, met) == ('-', '-', '-'), 'no --torch-python, yet a reference figure'
        assert target.startswith(('>=', '<=')), target
    assert 'GiB' in rows['retrieval'][1]                     # the memory of the retrieval row
    assert len(re.findall(r'^  small-infer round \d', proc.stdout, re.M)) == 2   # --rounds 2
    assert 'our side only' in proc.stdout and 'threads' in proc.stdout
    assert 'command: python bench/compare_pml.py --quick' in proc.stdout


@pytest.mark.slow
def test_quick_our_side_has_every_row_of_the_issue():
    proc = run_script('bench/compare_pml.py', '--quick', '--rounds', '1', timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = table(proc.stdout)
    assert list(rows) == ALL, proc.stdout
    for case, cells in rows.items():
        assert figure(cells[1]) > 0, (case, cells)
    assert 'gluon-dml: Recall@1' in proc.stdout                # the Omniglot run's own metrics


def test_unknown_case_and_a_python_without_torch_are_refused():
    proc = run_script('bench/compare_pml.py', '--cases', 'small-train,warp-speed')
    assert proc.returncode == 2 and 'unknown case(s) warp-speed' in proc.stderr, proc.stderr
    try:
        import torch  # noqa: F401
        return                                                # this Python has torch after all
    except ImportError:
        pass
    proc = run_script('bench/compare_pml.py', '--quick', '--cases', 'nmi',
                      '--torch-python', sys.executable)
    assert proc.returncode != 0 and 'cannot import torch' in proc.stderr, proc.stderr[-2000:]


@pytest.mark.skipif(not os.environ.get('GLUON_DML_TORCH_PYTHON'),
                    reason='GLUON_DML_TORCH_PYTHON (a Python with torch and '
                           'pytorch-metric-learning) is not set')
def test_quick_both_sides_give_a_ratio():
    proc = run_script('bench/compare_pml.py', '--quick', '--rounds', '1', '--cases',
                      'small-infer,triplet,retrieval', '--torch-python',
                      os.environ['GLUON_DML_TORCH_PYTHON'], timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = table(proc.stdout)
    assert list(rows) == ['small-infer', 'triplet', 'retrieval'], proc.stdout
    for case, (work, ours, pml, ratio, target, met) in rows.items():
        o, p = figure(ours), figure(pml)
        assert o > 0 and p > 0
        want = o / p if ours.endswith('img/s') else p / o
        assert abs(float(ratio) - want) <= 0.05 * want + 0.02, (case, ours, pml, ratio)
        assert met in ('yes', 'no')
    assert 'pytorch-metric-learning 2.' in proc.stdout


def test_bench_host_copy_prints_both_settings_before_and_after_the_copy():
    proc = run_script('bench/bench_host_copy.py', '--rounds', '1', timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith('| ') and 'default' in line]
    assert len(rows) == 2 and 'parallel copy, 200000' in rows[0] and 'serial copy' in rows[1]
    for row in rows:
        before, after, ratio = (float(c) for c in row.strip('| ').split(' | ')[1:])
        assert before > 0 and after > 0 and ratio == pytest.approx(after / before, abs=0.01)


def test_bench_blas_spin_prints_the_step_after_the_metrics_for_both_spins():
    proc = run_script('bench/bench_blas_spin.py', '--rounds', '1', '--evals', '2', timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith('| ') and 'default' in line]
    assert len(rows) == 2 and "OpenBLAS's default" in rows[0] and "gluon-dml's default" in rows[1]
    for row in rows:
        steady, after, ratio, metrics = (float(c) for c in row.strip('| ').split(' | ')[1:])
        assert steady > 0 and after > 0 and metrics > 0
        assert ratio == pytest.approx(after / steady, abs=0.01)


def test_bench_seed_prints_the_seed_and_the_step_both_ways():
    proc = run_script('bench/bench_seed.py', '--rounds', '1', '--blocks', '1', timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = [line for line in proc.stdout.splitlines() if line.startswith('| ') and ' ms |' in line]
    assert len(row) == 1, proc.stdout
    seed, seeded, plain, ratio = (c.replace(' ms', '') for c in row[0].strip('| ').split(' | '))
    assert float(seed) > 0 and float(seeded) > 0 and float(plain) > 0
    assert float(ratio) == pytest.approx(float(seeded) / float(plain), abs=0.002)
