#!/usr/bin/env python
"""Training speed before and after one large numpy -> NDArray copy, with MXNet's parallel host
copy (MXNET_CPU_PARALLEL_SIZE=200000, MXNet's default) and with the serial copy gluon-dml sets.

    python bench/bench_host_copy.py              # both settings, 3 processes each, alternating

MXNet copies a numpy array of more than MXNET_CPU_PARALLEL_SIZE values into an NDArray with an
OpenMP loop in the calling thread. One such copy (here 256 images of 28 x 28, the size of an
evaluation batch) gives the process a second OpenMP team beside the engine's, and the training
steps after it were measured slower. Each measurement is a fresh process: the small conv net, batch
128 (32 x 4), margin loss with one beta per class, Adam; 5 warm-up steps and 30 timed, before the
copy and after it (a new network, so nothing but the copy differs).
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def bench_parser(doc):
    """The parser of these A/B scripts: --rounds (processes per setting) and the hidden
    --worker that runs one measurement."""
    p = argparse.ArgumentParser(description=doc.split('\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    return p


def conditions(rounds, what='processes each'):
    """The last line of a result: the rounds, the threads and the load average now."""
    return ('medians of %d %s; OMP_NUM_THREADS=%s; load average %s'
            % (rounds, what, os.environ.get('OMP_NUM_THREADS', '(every core, set by gluon_dml)'),
               ' '.join('%.2f' % v for v in os.getloadavg())))


def small_net_step():
    """One training step of the small conv net on a fixed batch of 128 (32 x 4) images of
    28 x 28, margin loss with one beta per class, Adam (``step()`` returns when the loss is read,
    as in training; the rest of the step may still run). Imports gluon_dml, then MXNet."""
    sys.path.insert(0, REPO)
    import gluon_dml  # noqa: F401  (sets the threads; the parent set the variable measured)
    import mxnet as mx
    import numpy as np
    from mxnet import autograd, gluon
    from gluon_dml.losses import MarginLoss
    from gluon_dml.models import get_model
    rng = np.random.RandomState(0)
    x = mx.nd.array(rng.rand(128, 1, 28, 28).astype(np.float32))
    y = mx.nd.array(np.repeat(np.arange(32), 4))
    net = get_model('smallconv', 64, ctx=[mx.cpu()])
    net.hybridize(static_alloc=True)
    loss = MarginLoss(negatives_per_anchor=3, num_classes=183)
    loss.initialize()
    loss.hybridize(static_alloc=True)
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-3})
    beta_trainer = gluon.Trainer(loss.collect_params(), 'adam', {'learning_rate': 1e-2},
                                 kvstore=None)

    def step():
        with autograd.record():
            out = loss(net(x), y)
        out.backward()
        float(out.mean().asscalar())
        trainer.step(1)
        beta_trainer.step(1)
    return step


def worker():
    def ms_per_step():
        step = small_net_step()            # a new network each time: only the copy differs
        import mxnet as mx
        for _ in range(5):
            step()
        mx.nd.waitall()
        t0 = time.perf_counter()
        for _ in range(30):
            step()
        mx.nd.waitall()
        return 1000 * (time.perf_counter() - t0) / 30

    before = ms_per_step()
    import mxnet as mx
    import numpy as np
    rng = np.random.RandomState(0)
    mx.nd.array(rng.rand(256, 1, 28, 28).astype(np.float32)).wait_to_read()   # one big copy
    after = ms_per_step()
    print('%.2f %.2f' % (before, after))


def main():
    a = bench_parser(__doc__).parse_args()
    if a.worker:
        return worker()
    settings = (('MXNet default (parallel copy, 200000)', '200000'),
                ('gluon-dml default (serial copy)', str(2 ** 31 - 1)))
    results = {name: [] for name, _ in settings}
    for r in range(a.rounds):
        for name, size in settings:
            env = dict(os.environ, MXNET_CPU_PARALLEL_SIZE=size)
            out = subprocess.run([sys.executable, __file__, '--worker'], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            results[name].append(tuple(float(v) for v in out))
            print('round %d  %-40s before the copy %.1f ms/step, after %.1f ms/step'
                  % (r + 1, name, *results[name][-1]), flush=True)
    print('\n| MXNET_CPU_PARALLEL_SIZE | ms/step before one 256-image copy | after | after / before |')
    print('| --- | --- | --- | --- |')
    for name, _ in settings:
        before = sorted(b for b, _ in results[name])[len(results[name]) // 2]
        after = sorted(v for _, v in results[name])[len(results[name]) // 2]
        print('| %s | %.1f | %.1f | %.2f |' % (name, before, after, after / before))
    print(conditions(a.rounds))


if __name__ == '__main__':
    main()
