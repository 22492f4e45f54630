#!/usr/bin/env python
"""Training throughput: images per second in steady state, hybridized and imperative.

    python bench/bench_train.py                       # both cases below
    python bench/bench_train.py --cases smallconv     # only the small conv net
    python bench/bench_train.py --modes hybridized --amp bfloat16   # bfloat16 mixed precision

Cases: the small conv net at batch 128 on 28x28 grey images (the Omniglot / Fashion-MNIST
protocol), and ResNet-50 (GluonCV resnet50_v2 features) at batch 16 on 224x224 colour images (the
research-dataset recipe's input size). Each step is a full training step: forward, margin loss with
distance-weighted sampling, backward, Adam update. Warm-up steps are not timed.

``--amp bfloat16`` trains as ``--amp bfloat16`` does (``mxnet.contrib.amp``: bfloat16 convolutions,
the outputs cast to float32 before the loss, dynamic loss scaling); on a CPU with Intel AMX its
convolutions run on the tile units (gluon_dml/amx.py; ``DNNL_MAX_CPU_ISA=AVX512_CORE_BF16`` turns
that off, to compare).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from mxnet import autograd, gluon  # noqa: E402

from gluon_dml.amx import status as amx_status  # noqa: E402
from gluon_dml.engine import enable_amp, get_contexts  # noqa: E402
from gluon_dml.losses import MarginLoss  # noqa: E402
from gluon_dml.models import get_model  # noqa: E402

CASES = {
    'smallconv': dict(model='smallconv', batch=128, k=4, shape=(1, 28, 28), embed=64, warmup=5, steps=40),
    'resnet50': dict(model='resnet50_v2', batch=16, k=4, shape=(3, 224, 224), embed=128, warmup=2, steps=6),
    # Candidates for training the CUB subset from scratch on 2 cores (batch 60 = 12 x 5, 96x96):
    # python bench/bench_train.py --cases r18-96,r34-96,r50-96 --modes hybridized
    'r18-96': dict(model='resnet18_v1b', batch=60, k=5, shape=(3, 96, 96), embed=128, warmup=2, steps=4),
    'r34-96': dict(model='resnet34_v1b', batch=60, k=5, shape=(3, 96, 96), embed=128, warmup=2, steps=4),
    'r50-96': dict(model='resnet50_v1b', batch=60, k=5, shape=(3, 96, 96), embed=128, warmup=1, steps=3),
}


def bench(case, hybridize, ctx, amp=None):
    c = CASES[case]
    mx.random.seed(0)
    net = get_model(c['model'], c['embed'], ctx=ctx)
    loss = MarginLoss(negatives_per_anchor=c['k'] - 1)
    loss.initialize(ctx=ctx[0])
    if hybridize:
        net.hybridize(static_alloc=True)
        loss.hybridize(static_alloc=True)
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-4})
    if amp:
        from mxnet.contrib import amp as mx_amp
        mx_amp.init_trainer(trainer)
    beta_trainer = gluon.Trainer(loss.collect_params(), 'adam', {'learning_rate': 1e-3}, kvstore=None)
    rng = np.random.RandomState(0)
    x = mx.nd.array(rng.rand(c['batch'], *c['shape']).astype(np.float32), ctx=ctx[0])
    y = mx.nd.array(np.repeat(np.arange(c['batch'] // c['k']), c['k']), ctx=ctx[0])

    def step():
        with autograd.record():
            emb = net(x)
            out = loss(emb.astype('float32') if amp else emb, y)
            if amp:
                with mx_amp.scale_loss(out, trainer) as scaled:
                    autograd.backward(scaled)
        if not amp:
            out.backward()
        trainer.step(1)
        beta_trainer.step(1)
        return out

    for _ in range(c['warmup']):
        step()
    mx.nd.waitall()
    t0 = time.perf_counter()
    for _ in range(c['steps']):
        step()
    mx.nd.waitall()
    dt = time.perf_counter() - t0
    return c['batch'] * c['steps'] / dt, dt / c['steps']


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--cases', default='smallconv,resnet50')
    p.add_argument('--gpus', default='')
    p.add_argument('--modes', default='hybridized,imperative')
    p.add_argument('--amp', choices=['float16', 'bfloat16'], default=None,
                   help='mixed precision as the training scripts\' --amp (float16: GPU only)')
    a = p.parse_args()
    ctx = get_contexts(a.gpus)
    if a.amp:
        enable_amp(a.amp, ctx)
    print('device: %s, OMP_NUM_THREADS=%s, cpu count %d, mxnet %s, amp %s, AMX: %s'
          % (ctx[0], os.environ.get('OMP_NUM_THREADS', '(unset)'), os.cpu_count(), mx.__version__,
             a.amp or 'off', amx_status()['reason']))
    print('%-10s %6s %-10s %12s %12s' % ('model', 'batch', 'mode', 'images/s', 'ms/step'))
    for case in a.cases.split(','):
        for hybridize in [m == 'hybridized' for m in a.modes.split(',')]:
            ips, sec = bench(case, hybridize, ctx, a.amp)
            print('%-10s %6d %-10s %12.1f %12.1f' % (case, CASES[case]['batch'],
                                                     'hybridized' if hybridize else 'imperative',
                                                     ips, sec * 1000), flush=True)


if __name__ == '__main__':
    main()
