"""bench/bench_losses.py runs as docs/benchmarks.md says: by default a row for every embedding loss
of the zoo (the hashing losses of train_hash.py only when named, with one-hot labels as that script
gives them), on the shapes asked for. Timings of a smoke run on shared cores are not checked."""
import re

from gluon_dml.losses import list_losses
from gluon_dml.losses.factory import loss_family

from ..helpers import run_script


def _rows(stdout):
    rows = {}
    for line in stdout.splitlines():
        m = re.match(r'^(\S+(?: --mining \S+)?)\s+((?:[0-9]+\.[0-9]+\s*)+)$', line)
        if m:
            rows[m.group(1)] = [float(v) for v in m.group(2).split()]
    return rows


def test_every_embedding_loss_gets_a_row_and_no_hashing_loss():
    proc = run_script('bench/bench_losses.py', '--shapes', '16x8,32x4', '--repeat', '1', check=True)
    assert 'B=16 D=8' in proc.stdout and 'B=32 D=4' in proc.stdout
    rows = _rows(proc.stdout)
    embedding = [n for n in list_losses() if loss_family(n) == 'embedding']
    assert set(rows) == set(embedding) | {'triplet --mining semihard', 'triplet --mining batch_hard'}
    assert all(len(v) == 2 and min(v) > 0 for v in rows.values())


def test_hashing_losses_when_named_and_bad_shapes_refused():
    hashing = [n for n in list_losses() if loss_family(n) == 'hashing']
    assert hashing
    proc = run_script('bench/bench_losses.py', '--losses', ','.join(hashing), '--shapes', '16x8',
                      '--repeat', '1', check=True)
    assert sorted(_rows(proc.stdout)) == sorted(hashing)
    bad = run_script('bench/bench_losses.py', '--shapes', '16', '--repeat', '1')
    assert bad.returncode != 0 and 'expected BxD' in bad.stderr
