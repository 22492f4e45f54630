#!/usr/bin/env python
"""What the cross-batch memory costs: forward + backward time of a pair loss per step with a
full memory of M embeddings (M = 0: the loss alone), batch 128 (P x K, K = 4).

    python bench/bench_xbm.py
    python bench/bench_xbm.py --losses contrastive --sizes 0,4096 --dims 128 --repeat 20

Hybridized, on random L2-normalised embeddings; the memory is filled (M / 128 steps) before the
timing; each timed step also copies the memory for the graph and enqueues the batch, as in
training.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from gluon_dml.engine import get_contexts  # noqa: E402
from gluon_dml.losses import get_loss  # noqa: E402
from gluon_dml.losses.xbm import CrossBatchMemory  # noqa: E402

LOSSES = {'contrastive': {}, 'multi_similarity': {}, 'binomial': {},
          'triplet': {'mining': 'batch_hard'}, 'lifted': {}}


def time_step(name, size, dim, batch, ctx, repeat):
    loss = get_loss(name, **LOSSES[name])
    if size:
        loss = CrossBatchMemory(loss, size, embed_dim=dim)
    loss.initialize(ctx=ctx)
    loss.hybridize(static_alloc=True)
    rng = np.random.RandomState(0)
    y = mx.nd.array(np.repeat(rng.permutation(1000)[:batch // 4], 4), ctx=ctx)

    def batch_embeddings():
        x = rng.randn(batch, dim).astype(np.float32)
        x = mx.nd.array(x / np.linalg.norm(x, axis=1, keepdims=True), ctx=ctx)
        x.attach_grad()
        return x

    def step(x):
        with mx.autograd.record():
            out = loss(x, y)
        out.backward()

    for _ in range(size // batch + 3):        # fill the memory, warm up
        step(batch_embeddings())
    mx.nd.waitall()
    xs = [batch_embeddings() for _ in range(repeat)]
    mx.nd.waitall()
    t0 = time.perf_counter()
    for x in xs:
        step(x)
    mx.nd.waitall()
    return (time.perf_counter() - t0) / repeat * 1000


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--losses', default=','.join(LOSSES))
    p.add_argument('--sizes', default='0,1024,8192')
    p.add_argument('--dims', default='64,512')
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--repeat', type=int, default=10)
    p.add_argument('--gpus', default='')
    a = p.parse_args()
    ctx = get_contexts(a.gpus)[0]
    sizes = [int(s) for s in a.sizes.split(',')]
    dims = [int(d) for d in a.dims.split(',')]
    cols = [(m, d) for d in dims for m in sizes]
    print('forward + backward (+ enqueue), ms per step, batch %d, hybridized, %s, mxnet %s, '
          'OMP_NUM_THREADS=%s' % (a.batch, ctx, mx.__version__, os.environ.get('OMP_NUM_THREADS')))
    print('| loss | ' + ' | '.join('M=%d D=%d' % c for c in cols) + ' |')
    print('| --- ' * (len(cols) + 1) + '|')
    for name in a.losses.split(','):
        row = [time_step(name, m, d, a.batch, ctx, a.repeat) for m, d in cols]
        print('| %s | ' % name + ' | '.join('%.1f' % v for v in row) + ' |', flush=True)


if __name__ == '__main__':
    main()
