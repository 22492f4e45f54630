"""Devices from the ``--gpus`` flag (MXNet style: "" = CPU, "0,1" = two GPUs, "cpu:2" = two CPU
contexts) and seeding."""
import random
import warnings

import mxnet as mx
import numpy as np

__all__ = ['get_contexts', 'seed_everything', 'batch_seed']


def get_contexts(gpus):
    """Contexts for ``gpus``; a GPU asked for where none is usable gives a loud warning and the CPU."""
    gpus = (gpus or '').strip()
    if gpus in ('', '-1', 'cpu'):
        return [mx.cpu()]
    if gpus.startswith('cpu:'):             # several CPU contexts: data-parallel on the CPU
        n = gpus[4:]
        if not n.isdigit() or int(n) < 1:
            raise ValueError('--gpus cpu:N takes a number of CPU contexts N >= 1, got %r.' % gpus)
        return [mx.cpu(i) for i in range(int(n))]
    try:
        ids = [int(g) for g in gpus.split(',') if g.strip() != '']
    except ValueError:
        ids = [-1]
    if not ids or min(ids) < 0 or len(set(ids)) < len(ids):   # -2, "0,-1", "0,0": no device list
        raise ValueError('--gpus takes comma-separated GPU ids such as "0" or "0,1", each once (or '
                         '"" for the CPU), got %r.' % gpus)
    try:
        available = mx.context.num_gpus()
    except Exception:  # CPU build of MXNet, or no CUDA driver
        available = 0
    missing = [i for i in ids if i >= available]
    if missing:
        warnings.warn('\n' + '!' * 78 + '\nGPU(s) %s asked for with --gpus=%s, but this MXNet sees %d GPU(s) '
                      '(a CPU build, or no CUDA driver): TRAINING ON THE CPU INSTEAD. Install mxnet-cu112 '
                      'on a machine with a GPU to use it.\n' % (missing, gpus, available) + '!' * 78,
                      RuntimeWarning, stacklevel=2)
        return [mx.cpu()]
    return [mx.gpu(i) for i in ids]


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    mx.random.seed(seed)


def batch_seed(seed, epoch, batch):
    """A seed for MXNet's generator at one training step, so that a run resumed mid-epoch draws the
    same random numbers as an uninterrupted one."""
    return (seed * 1000003 + epoch * 100003 + batch) % (2 ** 31 - 1)
