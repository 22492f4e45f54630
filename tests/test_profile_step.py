"""bench/profile_step.py breaks a training step down as docs/speed.md says: MXNet's operators
(their calls and times per step) and, with --onednn, oneDNN's primitives and each convolution's
GFLOP/s. Timings of a smoke run on shared cores are not checked."""
import re

from .helpers import REPO, run_script


def test_operators_of_a_step():
    proc = run_script('bench/profile_step.py', '--model', 'smallconv', '--batch', '16', '--steps', '2',
                      '--warmup', '1', check=True)
    m = re.search(r'operators: ([0-9.]+) calls and ([0-9.]+) ms a step', proc.stdout)
    assert m and float(m.group(1)) > 50 and float(m.group(2)) > 0, proc.stdout[-2000:]
    assert re.search(r'^_backward_Convolution\s+6\s', proc.stdout, re.M), proc.stdout[-3000:]


def test_onednn_primitives_and_convolution_shapes():
    proc = run_script('bench/profile_step.py', '--model', 'smallconv', '--batch', '16', '--steps', '2',
                      '--warmup', '1', '--onednn', check=True)
    assert 'oneDNN primitives, ms per step (2 steps)' in proc.stdout
    shapes = re.findall(r'^\s+[0-9.]+\s+([0-9]+)\s+([0-9]+)\s+'
                        r'(forward_training|backward_data|backward_weights) (mb16_ic\d+oc\d+\S+)$',
                        proc.stdout, re.M)
    # three convolutions forward and for the weights; the first one gets no data gradient
    assert sorted(d for _, _, d, _ in shapes) == ['backward_data'] * 2 + ['backward_weights'] * 3 + \
        ['forward_training'] * 3, proc.stdout[-3000:]
    assert all(int(n) == 1 and int(g) > 0 for n, g, _, _ in shapes)
    bad = run_script('bench/profile_step.py', '--batch', '6')
    assert bad.returncode != 0 and 'multiple of 4' in bad.stderr


def test_a_shape_run_several_times_a_step_counts_every_call(capsys):
    """ResNet-50 runs the same convolution shape in several blocks of a step: its GFLOP/s are
    every call's work over every call's time (it once divided one call's work by all of it)."""
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location('profile_step',
                                                  os.path.join(REPO, 'bench', 'profile_step.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    shape = 'mb16_ic256oc256_ih14oh14kh3sh1dh0ph1_iw14ow14kw3sw1dw0pw1'
    gflop = 2.0 * 16 * 256 * 256 * 14 * 14 * 9 / 1e9      # 3.7 GFLOP a call
    line = 'dnnl_verbose,exec,cpu,convolution,jit:avx2,forward_training,src_f32,,alg:x,%s,20.0' % shape
    mod.onednn_table([line] * 10, steps=2)                 # 5 calls of 20 ms in each of 2 steps
    out = capsys.readouterr().out
    m = re.search(r'^\s+100\.00\s+5\s+([0-9]+)\s+forward_training ' + shape + '$', out, re.M)
    assert m, out
    assert abs(int(m.group(1)) - gflop * 5 / 0.1) <= 1, out
