"""Intel AMX for INT8 and bfloat16 (gluon_dml/amx.py).

Each case runs a fresh Python process (oneDNN fixes its ISA limit at a process's first primitive):
it imports gluon_dml and MXNet, quantizes the small conv net and embeds a batch with it, with
``DNNL_VERBOSE=1`` so that oneDNN names the kernel of every convolution it runs. The AMX cases
need a CPU with AMX and Linux >= 5.16 (this project's machines have both) and are skipped elsewhere.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gluon_dml.amx import cpu_has_amx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_amx = pytest.mark.skipif(not cpu_has_amx(), reason='the CPU has no AMX (amx_tile, amx_bf16, '
                                                         'amx_int8 in /proc/cpuinfo)')

CHILD = r'''
import json, os, subprocess, sys
if sys.argv[1] == 'mxnet-first':
    import mxnet
import gluon_dml
if sys.argv[1] == 'probe-first':           # a find_spec probe does not use up the import hook
    import importlib.util
    assert importlib.util.find_spec('mxnet') is not None
import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from gluon_dml.models import get_model
mx.random.seed(0)
net = get_model('smallconv', 16, ctx=[mx.cpu()])
x = mx.nd.array(np.random.RandomState(0).rand(32, 1, 28, 28).astype('float32'))
if sys.argv[2] == 'int8':
    from gluon_dml.engine.inference import quantize
    qnet = quantize(net, x.asnumpy(), min_cosine=0.5)
    qnet(x).wait_to_read()
else:                                   # a few float32 training steps; the weights to a file
    y = mx.nd.array(np.repeat(np.arange(8), 4))
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-2})
    for _ in range(3):
        with autograd.record():
            loss = (net(x) - y.reshape((-1, 1)) / 8).square().mean()
        loss.backward()
        trainer.step(1)
    np.savez(sys.argv[3], *[p.data().asnumpy() for p in net.collect_params().values()])
later = subprocess.run([sys.executable, '-c', 'import os; print(os.environ.get("DNNL_MAX_CPU_ISA"))'],
                       capture_output=True, text=True).stdout.strip()
print('RESULT ' + json.dumps({'status': gluon_dml.amx.status(), 'var': os.environ.get('DNNL_MAX_CPU_ISA'),
                              'child_var': later, 'active': gluon_dml.amx.active()}), flush=True)
'''


def run_child(tmp_path, mode='int8', order='gluon-dml-first', **env_vars):
    env = {k: v for k, v in os.environ.items() if k not in ('DNNL_MAX_CPU_ISA', 'ONEDNN_MAX_CPU_ISA')}
    env.update(env_vars, DNNL_VERBOSE='1', PYTHONPATH=ROOT)
    out = str(tmp_path / 'weights.npz')
    p = subprocess.run([sys.executable, '-c', CHILD, order, mode, out], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, 'the child died (%d): %s' % (p.returncode, p.stderr[-2000:])
    lines = p.stdout.splitlines()
    result = json.loads([ln for ln in lines if ln.startswith('RESULT ')][-1][len('RESULT '):])
    convs = [ln.split(',')[4] for ln in lines if ln.startswith('dnnl_verbose,exec,cpu,convolution')]
    assert convs, 'oneDNN reported no convolution'
    result['convs'] = convs
    result['weights'] = out if mode == 'train' else None
    return result


def test_cpu_has_amx_reads_the_flags_line(tmp_path):
    with_amx = tmp_path / 'with'
    with_amx.write_text('processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile amx_int8 avx512_bf16\n')
    bf16_only = tmp_path / 'without'
    bf16_only.write_text('processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n')
    assert cpu_has_amx(str(with_amx))
    assert not cpu_has_amx(str(bf16_only))
    assert not cpu_has_amx(str(tmp_path / 'missing'))


@needs_amx
@pytest.mark.parametrize('order', ['gluon-dml-first', 'mxnet-first', 'probe-first'])
def test_int8_runs_on_amx_by_default_and_no_later_process_inherits_the_limit(tmp_path, order):
    r = run_child(tmp_path, order=order)
    assert r['status']['permitted'] and r['status']['isa'] == 'ours', r['status']
    amx = [c for c in r['convs'] if 'amx_int8' in c]
    assert amx, 'no AMX int8 convolution among %s' % sorted(set(r['convs']))
    assert r['var'] is None and r['child_var'] == 'None'
    assert r['active']


@needs_amx
def test_the_users_limit_wins(tmp_path):
    r = run_child(tmp_path, DNNL_MAX_CPU_ISA='AVX512_CORE_BF16')
    assert r['status']['isa'] == 'user' and not r['active']
    assert not [c for c in r['convs'] if 'amx' in c], sorted(set(r['convs']))
    assert r['var'] == 'AVX512_CORE_BF16'


@needs_amx
def test_a_user_amx_limit_does_not_kill_the_process(tmp_path):
    # oneDNN 2.4.4 does not ask Linux for the tile state: before gluon_dml asked for it, this
    # process died of SIGILL at its first AMX instruction
    r = run_child(tmp_path, DNNL_MAX_CPU_ISA='AVX512_CORE_AMX')
    assert r['status']['permitted'] and r['status']['isa'] == 'user' and r['active']
    assert [c for c in r['convs'] if 'amx_int8' in c]


@needs_amx
def test_float32_training_is_bitwise_the_same_with_amx_on(tmp_path):
    (tmp_path / 'on').mkdir()
    (tmp_path / 'off').mkdir()
    on = run_child(tmp_path / 'on', mode='train')
    off = run_child(tmp_path / 'off', mode='train', DNNL_MAX_CPU_ISA='AVX512_CORE_BF16')
    assert on['status']['isa'] == 'ours' and off['status']['isa'] == 'user'
    assert not [c for c in on['convs'] if 'amx' in c]        # float32 has no AMX kernel
    a, b = np.load(on['weights']), np.load(off['weights'])
    assert len(a.files) == len(b.files) > 0
    for k in a.files:
        assert np.array_equal(a[k], b[k]), k
