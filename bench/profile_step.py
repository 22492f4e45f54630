#!/usr/bin/env python
"""Where a training step goes: the step of ``bench/compare_pml.py``'s throughput rows (forward,
margin loss with distance-weighted sampling, backward, Adam), timed, then broken down.

    python bench/profile_step.py --model smallconv             # MXNet's profiler, per operator
    python bench/profile_step.py --model resnet50 --onednn     # oneDNN's own timing, per primitive

``--onednn`` runs the steps again in a child process with ``DNNL_VERBOSE=1`` and sums oneDNN's
execution times per primitive kind, direction and implementation (convolutions also per shape,
with their GFLOP/s). Run it on an idle machine; the threads are ``OMP_NUM_THREADS`` (default every
core, as gluon-dml sets them).
"""
import argparse
import collections
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODELS = {'smallconv': (128, 28), 'resnet50': (16, 224)}     # default batch, image side
MARK = '-- timed steps --'


def build(model, batch):
    import gluon_dml  # first: it sets the threads before MXNet loads
    import mxnet as mx
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from compare_pml import throughput_step
    default_batch, size = MODELS[model]
    batch = batch or default_batch
    step, _ = throughput_step(model, 'train', batch, size)
    return mx, step, batch, gluon_dml.__version__


def run_steps(a, profile):
    mx, step, batch, version = build(a.model, a.batch)
    for _ in range(a.warmup):
        step()
    mx.nd.waitall()
    if a.child:
        print(MARK, flush=True)
    if profile:
        mx.profiler.set_config(profile_all=True, aggregate_stats=True,
                               filename=os.devnull if os.name != 'nt' else 'NUL')
        mx.profiler.set_state('run')
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    mx.nd.waitall()
    dt = time.perf_counter() - t0
    if profile:
        mx.profiler.set_state('stop')
    return mx, dt, batch, version


def _conv_gflop(shape):
    """FLOPs of a oneDNN convolution descriptor such as mb128_ic32oc64_ih14oh14kh3..._iw14ow14kw3..."""
    import re
    f = {k: int(v) for k, v in re.findall(r'([a-z]+)(\d+)', shape)}
    return 2.0 * f['mb'] * f['ic'] * f['oc'] * f['oh'] * f['ow'] * f['kh'] * f['kw'] / 1e9


def onednn_table(lines, steps):
    by_kind, by_conv, total = collections.defaultdict(float), collections.defaultdict(float), 0.0
    calls, conv_calls = collections.Counter(), collections.Counter()
    for line in lines:
        if not line.startswith('dnnl_verbose,exec'):
            continue
        p = line.split(',')
        ms = float(p[-1])
        key = (p[3], p[5], p[4])
        by_kind[key] += ms
        calls[key] += 1
        total += ms
        if p[3] == 'convolution':
            by_conv[(p[5], p[-2])] += ms
            conv_calls[(p[5], p[-2])] += 1
    print('oneDNN primitives, ms per step (%d steps): %.1f in all' % (steps, total / steps))
    for key, ms in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print('%9.2f  %4d calls  %s' % (ms / steps, calls[key] / steps, ' / '.join(key)))
    if by_conv:
        # a shape may run several times a step (ResNet-50's repeated blocks): its GFLOP/s are
        # every call's work over every call's time
        print('\nconvolutions by shape, ms per step, calls per step, GFLOP/s')
        for key, ms in sorted(by_conv.items(), key=lambda kv: -kv[1]):
            direction, shape = key
            print('%9.2f  %4d  %6.0f  %s %s' % (ms / steps, conv_calls[key] / steps,
                                                _conv_gflop(shape) * conv_calls[key] / (ms / 1000),
                                                direction, shape))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model', choices=sorted(MODELS), default='smallconv')
    p.add_argument('--batch', type=int, default=None, help='default 128 (smallconv), 16 (resnet50)')
    p.add_argument('--steps', type=int, default=None, help='timed steps (default 40 / 4)')
    p.add_argument('--warmup', type=int, default=None, help='untimed steps first (default 5 / 2)')
    p.add_argument('--onednn', action='store_true', help="oneDNN's per-primitive times instead")
    p.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    a = p.parse_args()
    small = a.model == 'smallconv'
    a.steps = a.steps or (40 if small else 4)
    a.warmup = a.warmup or (5 if small else 2)
    if a.steps < 1 or a.warmup < 1 or (a.batch is not None and (a.batch < 8 or a.batch % 4)):
        raise SystemExit('--steps and --warmup must be at least 1, --batch a multiple of 4 from 8.')
    if a.child:
        run_steps(a, profile=False)
        return
    mx, dt, batch, version = run_steps(a, profile=not a.onednn)
    print('gluon-dml %s, mxnet %s: %s, batch %d, OMP_NUM_THREADS=%s, %d cores: %.2f ms a step, %.1f img/s (load %.2f)'
          % (version, mx.__version__, a.model, batch, os.environ.get('OMP_NUM_THREADS'), os.cpu_count(), 1000 * dt / a.steps,
             batch * a.steps / dt, os.getloadavg()[0]), flush=True)
    if not a.onednn:
        dump = mx.profiler.dumps(sort_by='total', ascending=False)
        table = dump[dump.index('\noperator\n') + 1:] if '\noperator\n' in dump else dump
        ops = [ln.split() for ln in table.splitlines()]
        ops = [(int(r[-5]), float(r[-4])) for r in ops if len(r) >= 6 and r[-5].isdigit()]
        print('operators: %.1f calls and %.2f ms a step in all (MXNet profiler)\n'
              % (sum(c for c, _ in ops) / a.steps, sum(t for _, t in ops) / a.steps))
        print(table)
        return
    env = dict(os.environ, DNNL_VERBOSE='1')
    cmd = [sys.executable, os.path.abspath(__file__), '--child', '--model', a.model,
           '--steps', str(a.steps), '--warmup', str(a.warmup)] + (['--batch', str(a.batch)] if a.batch else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    onednn_table(out.split(MARK, 1)[1].splitlines(), a.steps)


if __name__ == '__main__':
    main()
