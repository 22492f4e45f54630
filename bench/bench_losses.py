#!/usr/bin/env python
"""What mining costs: forward + backward time of every loss at batch 128 and 512, 64-d and 512-d.

    python bench/bench_losses.py                 # every loss, the four shapes
    python bench/bench_losses.py --losses margin,triplet --repeat 20

Hybridized, on random L2-normalised embeddings with P x K labels (K = 4), after warm-up.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from gluon_dml.losses.factory import build_loss, loss_flags  # noqa: E402
from gluon_dml.engine import get_contexts  # noqa: E402
from gluon_dml.losses import list_losses  # noqa: E402


def time_loss(name, batch, dim, ctx, repeat, extra=()):
    extra = list(extra)
    options, _ = loss_flags(name, dict(zip([e.lstrip('-').replace('-', '_') for e in extra[::2]],
                                           extra[1::2])))
    loss, _ = build_loss(name, options, num_classes=batch // 4, embed_dim=dim, batch_k=4)
    loss.initialize(ctx=ctx)
    loss.hybridize(static_alloc=True)
    rng = np.random.RandomState(0)
    x = rng.randn(batch, dim).astype(np.float32)
    x = mx.nd.array(x / np.linalg.norm(x, axis=1, keepdims=True), ctx=ctx)
    y = mx.nd.array(np.repeat(np.arange(batch // 4), 4), ctx=ctx)
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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--losses', default=None, help='comma-separated; default every registered loss')
    p.add_argument('--repeat', type=int, default=10)
    p.add_argument('--gpus', default='')
    a = p.parse_args()
    ctx = get_contexts(a.gpus)[0]
    variants = [(n, ()) for n in (a.losses.split(',') if a.losses else list_losses())]
    if not a.losses:
        variants += [('triplet', ('--mining', m)) for m in ('semihard', 'batch_hard')]
    shapes = [(128, 64), (128, 512), (512, 64), (512, 512)]
    print('forward + backward, ms per call, hybridized, %s, mxnet %s' % (ctx, mx.__version__))
    print('%-28s' % 'loss' + ''.join('%14s' % ('B=%d D=%d' % s) for s in shapes))
    for name, extra in variants:
        label = name + (' ' + ' '.join(extra) if extra else '')
        row = [time_loss(name, b, d, ctx, a.repeat, extra) for b, d in shapes]
        print('%-28s' % label + ''.join('%14.2f' % v for v in row), flush=True)


if __name__ == '__main__':
    main()
