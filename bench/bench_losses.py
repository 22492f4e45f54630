#!/usr/bin/env python
"""What mining costs: forward + backward time of every loss at batch 128 and 512, 64-d and 512-d.

    python bench/bench_losses.py                 # every embedding loss, the four shapes
    python bench/bench_losses.py --losses hashnet,dsh,dch    # the hashing losses, on the same inputs
    python bench/bench_losses.py --losses margin,triplet --repeat 20

Hybridized, on random L2-normalised embeddings with P x K labels (K = 4), after warm-up.

Triplet mining, the current O(B^2) form against the former (B, B, B) cube form (kept in
tests/losses/reference_triplet_cube.py) and, given a Python with torch and pytorch-metric-learning,
against that library (bench/pml_triplet.py), each configuration in its own process (peak memory:
the RSS high-water mark's growth over the RSS before the first call), the implementations
interleaved round by round so that they share the machine's load; medians over all timed calls:

    OMP_NUM_THREADS=2 python bench/bench_losses.py --triplet --pml-python /path/to/torch-env/bin/python
    python bench/bench_losses.py --triplet --shapes 512x512 --rounds 5 --no-cube
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from gluon_dml.losses.factory import build_loss, loss_family, loss_flags  # noqa: E402
from gluon_dml.engine import get_contexts  # noqa: E402
from gluon_dml.losses import list_losses  # noqa: E402
from pml_triplet import status_kb  # noqa: E402  (bench/, the script's own folder)


def time_loss(name, batch, dim, ctx, repeat, extra=()):
    extra = list(extra)
    options, _ = loss_flags(name, dict(zip([e.lstrip('-').replace('-', '_') for e in extra[::2]],
                                           extra[1::2])))
    loss, _ = build_loss(name, options, num_classes=batch // 4, embed_dim=dim, batch_k=4,
                         family=loss_family(name))
    loss.initialize(ctx=ctx)
    loss.hybridize(static_alloc=True)
    rng = np.random.RandomState(0)
    x = rng.randn(batch, dim).astype(np.float32)
    x = mx.nd.array(x / np.linalg.norm(x, axis=1, keepdims=True), ctx=ctx)
    y = mx.nd.array(np.repeat(np.arange(batch // 4), 4), ctx=ctx)
    if loss_family(name) == 'hashing':      # class labels one-hot, as train_hash.py gives them
        y = mx.nd.one_hot(y, batch // 4)
    x.attach_grad()

    def step():
        with mx.autograd.record():
            out = loss(x, y)
        out.backward()

    for _ in range(3):
        step()
    mx.nd.waitall()
    t0 = time.perf_counter()
    for _ in range(repeat):
        step()
    mx.nd.waitall()
    return (time.perf_counter() - t0) / repeat * 1000


def triplet_worker(impl, mining, batch, dim, repeat):
    """One process, one configuration: prints a JSON line (median_ms, min_ms, peak_mb)."""
    from gluon_dml.losses.triplet import TripletLoss
    from tests.losses.reference_triplet_cube import CubeTripletLoss
    loss = (TripletLoss if impl == 'ours' else CubeTripletLoss)(margin=0.1, mining=mining)
    loss.hybridize(static_alloc=True)
    rng = np.random.RandomState(0)
    x = rng.randn(batch, dim).astype(np.float32)
    x = mx.nd.array(x / np.linalg.norm(x, axis=1, keepdims=True))
    y = mx.nd.array(np.repeat(np.arange(batch // 4), 4))
    x.attach_grad()

    def step():
        with mx.autograd.record():
            out = loss(x, y)
        out.backward()
        mx.nd.waitall()

    rss0 = status_kb('VmRSS')
    for _ in range(2):
        step()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(json.dumps(dict(median_ms=1000 * float(np.median(times)), min_ms=1000 * min(times),
                          peak_mb=(status_kb('VmHWM') - rss0) / 1024.0)))


def _loadavg():
    return '%.2f %.2f %.2f' % os.getloadavg()


def _shapes(text):
    try:
        shapes = [tuple(int(v) for v in s.split('x')) for s in text.split(',')]
    except ValueError:
        shapes = []
    if not shapes or any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise SystemExit('--shapes: expected BxD,... such as 128x64,512x512, got %r' % text)
    return shapes


def triplet_compare(a):
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ)
    env.setdefault('OMP_NUM_THREADS', '2')
    impls = ['ours'] + ([] if a.no_cube else ['cube']) + (['pml'] if a.pml_python else [])
    shapes = _shapes(a.shapes or '128x64,512x512')
    print('triplet mining, forward + backward, ms per call (median, min over %d rounds); peak MB over '
          'the RSS before the first call; OMP_NUM_THREADS=%s, %d CPUs' % (a.rounds, env['OMP_NUM_THREADS'],
                                                                           os.cpu_count()))
    print('load average at the start: %s' % _loadavg())
    for batch, dim in shapes:
        for mining in ('all', 'semihard'):
            res = {i: [] for i in impls}
            for _ in range(a.rounds):
                for impl in impls:
                    rep = a.cube_repeat if impl == 'cube' else a.repeat
                    if impl == 'pml':
                        cmd = [a.pml_python, os.path.join(here, 'pml_triplet.py'), mining, str(batch),
                               str(dim), '--repeat', str(rep)]
                    else:
                        cmd = [sys.executable, os.path.abspath(__file__), '--triplet-worker', impl, mining,
                               str(batch), str(dim), '--repeat', str(rep)]
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
                    res[impl].append(json.loads(out.strip().splitlines()[-1]))
            for impl in impls:
                r = res[impl]
                print('B=%-4d D=%-4d %-9s %-5s median %9.1f ms   min %9.1f ms   peak %7.0f MB   (load %s)'
                      % (batch, dim, mining, impl, np.median([v['median_ms'] for v in r]),
                         min(v['min_ms'] for v in r), max(v['peak_mb'] for v in r), _loadavg()),
                      flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--losses', default=None,
                   help='comma-separated; default every embedding loss (the hashing losses of '
                        'train_hash.py only when named)')
    p.add_argument('--repeat', type=int, default=10)
    p.add_argument('--gpus', default='')
    p.add_argument('--triplet', action='store_true',
                   help='triplet all / semihard: this form against the cube form (and PML)')
    p.add_argument('--shapes', default=None,
                   help='BxD,... (default 128x64,128x512,512x64,512x512; with --triplet 128x64,512x512)')
    p.add_argument('--rounds', type=int, default=3, help='with --triplet: interleaved rounds')
    p.add_argument('--cube-repeat', type=int, default=3, help='with --triplet: timed calls of the cube')
    p.add_argument('--no-cube', action='store_true', help='with --triplet: skip the cube form')
    p.add_argument('--pml-python', default=None,
                   help='with --triplet: a Python with torch and pytorch-metric-learning')
    p.add_argument('--triplet-worker', nargs=4, metavar=('IMPL', 'MINING', 'B', 'D'), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.triplet_worker:
        impl, mining, batch, dim = a.triplet_worker
        return triplet_worker(impl, mining, int(batch), int(dim), a.repeat)
    if a.triplet:
        return triplet_compare(a)
    ctx = get_contexts(a.gpus)[0]
    names = a.losses.split(',') if a.losses else [n for n in list_losses() if loss_family(n) == 'embedding']
    variants = [(n, ()) for n in names]
    if not a.losses:
        variants += [('triplet', ('--mining', m)) for m in ('semihard', 'batch_hard')]
    shapes = _shapes(a.shapes or '128x64,128x512,512x64,512x512')
    print('forward + backward, ms per call, hybridized, %s, mxnet %s' % (ctx, mx.__version__))
    print('%-28s' % 'loss' + ''.join('%14s' % ('B=%d D=%d' % s) for s in shapes))
    for name, extra in variants:
        label = name + (' ' + ' '.join(extra) if extra else '')
        row = [time_loss(name, b, d, ctx, a.repeat, extra) for b, d in shapes]
        print('%-28s' % label + ''.join('%14.2f' % v for v in row), flush=True)


if __name__ == '__main__':
    main()
