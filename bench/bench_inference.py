#!/usr/bin/env python
"""Inference throughput on the CPU: float32 unfused, float32 with MKLDNN operator fusion, INT8.

    OMP_NUM_THREADS=2 python bench/bench_inference.py                 # both cases below
    OMP_NUM_THREADS=2 python bench/bench_inference.py --cases smallconv --modes unfused,fused
    OMP_NUM_THREADS=2 python bench/bench_inference.py --run runs/margin-omniglot --batch 256

Cases (random weights, random inputs): the small conv net at batch 256 on 28x28 grey images (the
Omniglot / Fashion-MNIST protocol), and ResNet-50 (GluonCV resnet50_v1 features) at batch 16 on
224x224 colour images. ``--run RUN`` times a trained run's network instead, at its input size,
the INT8 one calibrated on its training images as ``gluon-dml evaluate --int8`` does (and kept in
``RUN/int8/``). The INT8 network of a case is calibrated (naive) on ``--calib`` random images: its
speed, not its accuracy (for that, ``gluon-dml evaluate RUN --int8``).

Each mode: warm-up batches (not timed), then ``--repeats`` timings of ``--iters`` batches; images/s
is the median. The load of the machine (``os.getloadavg``) is printed before and after: the figures
only mean something next to it.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from gluon_dml.engine.inference import hybridize_for_inference, quantize  # noqa: E402
from gluon_dml.models import get_model  # noqa: E402

CASES = {
    'smallconv': dict(model='smallconv', batch=256, shape=(1, 28, 28), embed=64, iters=10),
    'resnet50': dict(model='resnet50_v1', batch=16, shape=(3, 224, 224), embed=128, iters=3),
}
MODES = ('unfused', 'fused', 'int8')


def load():
    return '%.2f %.2f %.2f' % os.getloadavg()


def time_net(net, x, iters, repeats, warmup=2):
    for _ in range(warmup):
        net(x).wait_to_read()
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(iters):
            net(x).wait_to_read()
        rates.append(iters * x.shape[0] / (time.perf_counter() - t))
    return float(np.median(rates))


def case_networks(name, modes, calib_count):
    """(input batch, {mode: network}) of a case with random weights."""
    c = CASES[name]
    mx.random.seed(0)
    rng = np.random.RandomState(0)
    x = mx.nd.array(rng.uniform(-1, 1, (c['batch'],) + c['shape']).astype(np.float32))
    nets = {}
    for mode in modes:
        mx.random.seed(0)
        net = get_model(c['model'], c['embed'])
        hybridize_for_inference(net, fuse=(mode == 'fused'))
        if mode == 'int8':
            calib = rng.uniform(-1, 1, (calib_count,) + c['shape']).astype(np.float32)
            net = quantize(net, calib, calib_mode='naive', batch_size=min(64, calib_count))
        nets[mode] = net
    return x, nets, c['iters']


def run_networks(run_dir, modes, batch, calib_count):
    """(input batch, {mode: network}) of a trained run: the test split's first ``batch`` images."""
    from gluon_dml import config
    from gluon_dml.data import get_dataset
    from gluon_dml.methods import open_run
    nets, trained = {}, None
    for mode in modes:
        trained = open_run(run_dir, fuse=(mode == 'fused'),
                           int8={'calib_images': calib_count, 'calib_mode': 'naive'}
                           if mode == 'int8' else None)
        nets[mode] = trained.net
    args = trained.args
    test = get_dataset(args['data'], args.get('data_path'), 'test',
                       **config.dataset_options(args, augment=False))
    idx = np.arange(batch) % len(test)
    x = mx.nd.array(np.stack([np.asarray(test[int(i)][0].asnumpy() if hasattr(test[int(i)][0], 'asnumpy')
                                         else test[int(i)][0], np.float32) for i in idx]))
    return x, nets, None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--cases', default='smallconv,resnet50', help='of: %s' % ', '.join(CASES))
    p.add_argument('--modes', default=','.join(MODES), help='of: %s' % ', '.join(MODES))
    p.add_argument('--run', default=None, help='time this run folder\'s network instead')
    p.add_argument('--batch', type=int, default=64, help='--run: images per batch (default 64)')
    p.add_argument('--iters', type=int, default=None, help='batches per timing (default by case)')
    p.add_argument('--repeats', type=int, default=3, help='timings per mode (median) (default 3)')
    p.add_argument('--calib', type=int, default=64,
                   help='INT8: calibration images (random for a case; a run: its training '
                        'images, default 64; use 256 as the commands do)')
    a = p.parse_args()
    modes = [m for m in a.modes.split(',') if m]
    print('MXNet %s, OMP_NUM_THREADS=%s, load average before: %s'
          % (mx.__version__, os.environ.get('OMP_NUM_THREADS', 'unset'), load()), flush=True)
    targets = [('run ' + a.run, None)] if a.run else [(c, c) for c in a.cases.split(',') if c]
    rows = []
    for label, case in targets:
        if case is None:
            x, nets, iters = run_networks(a.run, modes, a.batch, a.calib)
            iters = a.iters or 10
        else:
            x, nets, iters = case_networks(case, modes, a.calib)
            iters = a.iters or iters
        rates = {}
        for mode in modes:
            rates[mode] = time_net(nets[mode], x, iters, a.repeats)
            print('  %-28s %-8s batch %4d x %-12s %9.1f images/s   (load %s)'
                  % (label, mode, x.shape[0], 'x'.join(map(str, x.shape[1:])), rates[mode], load()),
                  flush=True)
        rows.append((label, x.shape, rates))
    print('\n| network | batch x input | ' + ' | '.join('%s img/s' % m for m in modes)
          + ''.join(' | %s / unfused' % m for m in modes if m != 'unfused' and 'unfused' in modes)
          + ' |')
    print('|' + ' --- |' * (2 + len(modes) + sum(m != 'unfused' for m in modes if 'unfused' in modes)))
    for label, shape, rates in rows:
        cells = ['%.1f' % rates[m] for m in modes]
        if 'unfused' in rates:
            cells += ['%.2fx' % (rates[m] / rates['unfused']) for m in modes if m != 'unfused']
        print('| %s | %d x %s | %s |' % (label, shape[0], 'x'.join(map(str, shape[1:])),
                                        ' | '.join(cells)))
    print('\nload average after: %s' % load())


if __name__ == '__main__':
    main()
