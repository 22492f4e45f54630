"""--amp: MXNet's automatic mixed precision (mxnet.contrib.amp). float16 needs a GPU and is
refused on the CPU before a run folder is made; bfloat16 runs on the CPU (oneDNN) and trains to
metrics close to float32's. The GPU path cannot run here: scripts/gpu_check.sh compares it on a
GPU machine."""
import json
import re

import pytest

from gluon_dml.amx import bfloat16_refusal
from gluon_dml.engine import read_log

from ..helpers import run_script, script_env

# MXNet 1.9.1 runs bfloat16 on CPUs with AVX-512 only; elsewhere --amp bfloat16 is refused
_REFUSAL = bfloat16_refusal()
needs_bfloat16 = pytest.mark.skipif(_REFUSAL is not None, reason=_REFUSAL or 'bfloat16 runs here')

SHORT = ['--data', 'digits', '--epochs', '2', '--batches-per-epoch', '6', '--seed', '1',
         '--no-progress']


def test_float16_is_refused_on_the_cpu_before_a_run_folder(tmp_path):
    run = tmp_path / 'r'
    proc = run_script('train_margin.py', *SHORT, '--amp', '--save-dir', run)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert '--amp float16 needs a GPU' in proc.stderr and '--amp bfloat16' in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr       # one line, no traceback
    assert not run.exists()


def test_bfloat16_is_refused_on_a_gpu(tmp_path):
    proc = run_script('train_margin.py', *SHORT, '--amp', 'bfloat16', '--gpus', '0',
                      '--save-dir', tmp_path / 'r')
    assert proc.returncode == 2 and '--amp bfloat16 is for the CPU' in proc.stderr, proc.stderr


_NET_UNDER_AMP = """
import mxnet as mx
from gluon_dml.engine import enable_amp
from gluon_dml.models import get_model
enable_amp('bfloat16', [mx.cpu()])
enable_amp('bfloat16', [mx.cpu()])          # a second call with the same dtype: nothing
net = get_model('smallconv', 16, ctx=[mx.cpu()])
net.hybridize(static_alloc=True)
e = net(mx.nd.random.uniform(shape=(4, 1, 28, 28)))
graph = net._cached_graph[1].tojson(remove_amp_cast=False)
print('casts', graph.count('"amp_cast"'), 'output', e.dtype.__name__)
try:
    enable_amp('float16', [mx.cpu()])
except Exception as err:
    print('refused:', err)
"""


@needs_bfloat16
def test_enable_amp_casts_the_network_to_bfloat16_and_keeps_float32_embeddings():
    import subprocess
    import sys
    from ..helpers import REPO, script_env
    proc = subprocess.run([sys.executable, '-c', _NET_UNDER_AMP], capture_output=True, text=True,
                          env=script_env(), cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    casts = int(proc.stdout.split('casts ')[1].split()[0])
    assert casts >= 4, proc.stdout            # the inputs of the three convolutions and the Dense
    assert 'output float32' in proc.stdout    # L2 normalisation stays in float32 (AMP's list)
    assert 'refused: --amp float16 needs a GPU context' in proc.stdout


def test_amp_refuses_other_dtypes(tmp_path):
    proc = run_script('train_margin.py', *SHORT, '--amp', 'int8', '--save-dir', tmp_path / 'r')
    assert proc.returncode == 2 and "invalid choice: 'int8'" in proc.stderr, proc.stderr


@pytest.mark.slow
@needs_bfloat16
def test_bfloat16_trains_on_the_cpu_close_to_float32(tmp_path):
    runs = {}
    for name, extra in (('fp32', []), ('bf16', ['--amp', 'bfloat16'])):
        run = tmp_path / name
        run_script('train_margin.py', *SHORT, *extra, '--save-dir', run, check=True)
        runs[name] = run
    with open(runs['bf16'] / 'args.json') as f:
        record = json.load(f)
    record = record[0] if isinstance(record, list) else record
    assert record.get('amp') == 'bfloat16', record
    # the exported deployment graph is float32's (MXNet leaves AMP's casts out when saving)
    with open(runs['bf16'] / 'model-symbol.json') as f:
        assert 'amp_cast' not in f.read()
    fp32, bf16 = read_log(runs['fp32']), read_log(runs['bf16'])
    a, b = fp32[-1], bf16[-1]
    assert b['epoch'] == a['epoch'] == 2
    # same start (epoch 0: the same initial weights, evaluated with and without bfloat16)
    assert abs(fp32[0]['recall@1'] - bf16[0]['recall@1']) <= 0.02
    assert b['loss'] == pytest.approx(a['loss'], rel=0.05)
    assert b['loss'] != a['loss']              # bfloat16 rounding did change the computation
    for key, tol in (('recall@1', 0.03), ('map@r', 0.03), ('nmi', 0.05)):
        assert abs(a[key] - b[key]) <= tol, (key, a[key], b[key])


@pytest.mark.slow
@needs_bfloat16
def test_gpu_check_script_compares_amp_with_float32_over_seeds(tmp_path):
    """scripts/gpu_check.py's bfloat16 variant (its GPU variant cannot run here): two seeds,
    one short epoch each, the table and the verdict printed."""
    proc = run_script('scripts/gpu_check.py', '--dtype', 'bfloat16', '--data', 'digits',
                      '--epochs', '1', '--batches-per-epoch', '4', '--seeds', '1,2',
                      '--work', tmp_path)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for side in ('float32', 'AMP bfloat16'):
        rows = [ln for ln in out.splitlines() if re.match(re.escape(side) + r' +[12] +0\.\d{4} ', ln)]
        assert len(rows) == 2, out
    for key in ('recall@1', 'map@r', 'nmi'):
        assert any(ln.startswith(key) and 'seed spread' in ln for ln in out.splitlines()), out
    verdict = 'yes' if proc.returncode == 0 else 'NO'
    assert 'gives the same metrics as float32 within the seed spread: %s' % verdict in out
    with open(tmp_path / 'digits-bfloat16-s2' / 'args.json') as f:
        assert '"amp": "bfloat16"' in f.read()
    # finished runs are reused: a second call trains nothing
    again = run_script('scripts/gpu_check.py', '--dtype', 'bfloat16', '--data', 'digits',
                       '--epochs', '1', '--batches-per-epoch', '4', '--seeds', '1,2',
                       '--work', tmp_path)
    assert '$ ' not in again.stdout and again.returncode == proc.returncode


def test_bfloat16_is_refused_for_vse_before_a_run_folder(tmp_path):
    run = tmp_path / 'r'
    proc = run_script('train_vse.py', '--epochs', '1', '--amp', 'bfloat16', '--save-dir', run)
    assert proc.returncode == 2 and 'does not work with VSE++' in proc.stderr, proc.stderr[-2000:]
    assert not run.exists()


@pytest.mark.slow
@needs_bfloat16
def test_bfloat16_npair_trains(tmp_path):
    """N-pair's network has no L2 normalisation at its end: its bfloat16 embeddings are cast to
    float32 before the loss (MXNet's dot has no bfloat16 CPU kernel)."""
    run = tmp_path / 'r'
    run_script('train_npair.py', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '3',
               '--no-progress', '--amp', 'bfloat16', '--save-dir', run, check=True)
    rows = read_log(run)
    assert rows[-1]['epoch'] == 1 and 0 < rows[-1]['loss'] < 100 and rows[-1]['recall@1'] > 0.2


def test_bfloat16_is_refused_where_onednn_has_no_avx512_before_a_run_folder(tmp_path):
    """An AVX2-only CPU (AMD Zen 2) failed at the first bfloat16 convolution with "unexpected
    MXNetError: could not create a primitive descriptor iterator (a bug?...)"; oneDNN limited to
    AVX2 (DNNL_MAX_CPU_ISA) stands for such a CPU on any machine."""
    run = tmp_path / 'r'
    proc = run_script('train_margin.py', *SHORT, '--amp', 'bfloat16', '--save-dir', run,
                      env=script_env(DNNL_MAX_CPU_ISA='AVX2'))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == ('error: --amp bfloat16 needs oneDNN\'s AVX-512 kernels, and '
                                   'DNNL_MAX_CPU_ISA=AVX2 limits it below them: unset it, or leave '
                                   '--amp out (float32).'), proc.stderr
    assert not run.exists()
    gpu_check = run_script('scripts/gpu_check.py', '--dtype', 'bfloat16', '--data', 'digits',
                           '--work', tmp_path / 'check', env=script_env(DNNL_MAX_CPU_ISA='AVX2'))
    assert gpu_check.returncode == 1 and 'limits it below them' in gpu_check.stderr
    assert '$ ' not in gpu_check.stdout and not (tmp_path / 'check').exists()   # nothing trained


def _cpuinfo(tmp_path, flags):
    path = tmp_path / 'cpuinfo'
    path.write_text('processor\t: 0\n' + ('flags\t\t: %s\n' % flags if flags is not None else
                                          'Features\t: fp asimd\n'))
    return str(path)


def test_which_cpus_bfloat16_is_refused_on(tmp_path):
    zen2 = 'fpu sse sse2 avx fma avx2 bmi2'
    skylake = zen2 + ' avx512f avx512dq avx512cd avx512bw avx512vl'
    sapphire = skylake + ' avx512_bf16 amx_bf16 amx_tile amx_int8'
    refusal = bfloat16_refusal(_cpuinfo(tmp_path, zen2), environ={})
    assert refusal.startswith('--amp bfloat16 needs a CPU with AVX-512') and '(it has AVX2)' in refusal
    assert bfloat16_refusal(_cpuinfo(tmp_path, skylake), environ={}) is None
    assert bfloat16_refusal(_cpuinfo(tmp_path, sapphire), environ={}) is None
    assert bfloat16_refusal(_cpuinfo(tmp_path, None), environ={}) is None      # no x86 flags line
    assert bfloat16_refusal(str(tmp_path / 'missing'), environ={}) is None     # unreadable: try
    limited = bfloat16_refusal(_cpuinfo(tmp_path, sapphire), environ={'DNNL_MAX_CPU_ISA': 'avx2'})
    assert 'DNNL_MAX_CPU_ISA=AVX2 limits it below them' in limited
    assert bfloat16_refusal(_cpuinfo(tmp_path, sapphire),
                            environ={'DNNL_MAX_CPU_ISA': 'AVX512_CORE_BF16'}) is None
