"""bench/profile_step.py breaks a training step down as docs/speed.md says: MXNet's operators
(their calls and times per step) and, with --onednn, oneDNN's primitives and each convolution's
GFLOP/s. Timings of a smoke run on shared cores are not checked."""
import re

from .helpers import run_script


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
    shapes = re.findall(r'^\s+[0-9.]+\s+([0-9]+)\s+(forward_training|backward_data|backward_weights) '
                        r'(mb16_ic\d+oc\d+\S+)$', proc.stdout, re.M)
    # three convolutions forward and for the weights; the first one gets no data gradient
    assert sorted(d for _, d, _ in shapes) == ['backward_data'] * 2 + ['backward_weights'] * 3 + \
        ['forward_training'] * 3, proc.stdout[-3000:]
    assert all(int(g) > 0 for g, _, _ in shapes)
    bad = run_script('bench/profile_step.py', '--batch', '6')
    assert bad.returncode != 0 and 'multiple of 4' in bad.stderr
