#!/usr/bin/env python
"""VSE++ costs: a full training step (both encoders, VSE++ loss, backward, clipping, Adam) and
the cross-modal evaluation of a COCO-sized test split (5,000 images, 25,000 captions).

    python bench/bench_vse.py                    # fashion3 recipe (embed 256) and the paper's 1024
    python bench/bench_vse.py --steps 5 --eval-images 1000

Training: batch 128 of 28 x 84 grey pictures through the small conv net and of 16-token captions
through the word embedding (300) + GRU, hybridized; warm-up steps are not timed. Evaluation:
random unit vectors, i2t + t2i ranks and COCO 1K folds + 5K (numpy, blocked).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from mxnet import autograd, gluon  # noqa: E402

from gluon_dml.losses.vse import VSELoss  # noqa: E402
from gluon_dml.metrics.crossmodal import coco_1k_5k  # noqa: E402
from gluon_dml.models.vse import get_vse_model  # noqa: E402


def bench_step(embed, batch, steps, warmup, tokens=16, vocab=40):
    net = get_vse_model('smallconv', vocab, embed_size=embed, word_dim=300, finetune=True)
    net.hybridize(static_alloc=True)
    loss_fn = VSELoss(0.2, max_violation=True)
    loss_fn.hybridize(static_alloc=True)
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-4})
    rng = np.random.RandomState(0)
    img = mx.nd.array(rng.rand(batch, 1, 28, 84))
    tok = mx.nd.array(rng.randint(4, vocab, (batch, tokens)), dtype='int32')
    lengths = mx.nd.array(rng.randint(tokens // 2, tokens + 1, batch))
    params = [p for p in net.collect_params().values() if p.grad_req != 'null']
    times = []
    for i in range(warmup + steps):
        t0 = time.time()
        with autograd.record():
            a, b = net(img, tok, lengths)
            loss = loss_fn(a, b)
        loss.backward()
        gluon.utils.clip_global_norm([p.grad() for p in params], 2.0, check_isfinite=False)
        trainer.step(1)
        mx.nd.waitall()
        if i >= warmup:
            times.append(time.time() - t0)
    return float(np.median(times))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--embeds', default='256,1024')
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--eval-images', type=int, default=5000)
    a = p.parse_args(argv)
    print('cpu(0), OMP_NUM_THREADS=%s, cpu count %d, mxnet %s'
          % (os.environ.get('OMP_NUM_THREADS', 'unset'), os.cpu_count(), mx.__version__))
    print('%-8s %6s %12s %10s' % ('embed', 'batch', 'ms/step', 'pairs/s'))
    for e in [int(x) for x in a.embeds.split(',')]:
        t = bench_step(e, a.batch, a.steps, a.warmup)
        print('%-8d %6d %12.1f %10.1f' % (e, a.batch, 1000 * t, a.batch / t))
    rng = np.random.RandomState(0)
    n = a.eval_images
    img = rng.randn(n, 1024).astype(np.float32)
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    cap = np.repeat(img, 5, 0) + rng.randn(5 * n, 1024).astype(np.float32)
    cap /= np.linalg.norm(cap, axis=1, keepdims=True)
    t0 = time.time()
    m = coco_1k_5k(img, cap) if n % 1000 == 0 and n > 1000 else None
    print('evaluation of %d images x %d captions (D=1024; 1K folds + 5K): %.1f s (rsum %.1f)'
          % (n, 5 * n, time.time() - t0, m['rsum'] if m else float('nan')))


if __name__ == '__main__':
    main()
