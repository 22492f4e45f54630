#!/usr/bin/env python
"""pytorch-metric-learning's triplet loss, timed as bench/bench_losses.py --triplet times ours.

Runs in an environment with torch and pytorch-metric-learning (not gluon-dml's); prints one JSON
line: the median and minimum milliseconds of forward + backward and the peak RSS growth over the RSS before the
first call.

    python bench/pml_triplet.py all 512 512 --repeat 10
    python bench/pml_triplet.py semihard 512 512

'all': ``TripletMarginLoss`` without a miner (every valid triplet, mean over the non-zero terms,
as our 'all'); 'semihard': ``TripletMarginMiner(type_of_triplets='semihard')`` then the loss (it
keeps every semi-hard triplet, not the nearest one per pair as ours and FaceNet do). Margin 0.1,
Euclidean distances of L2-normalised embeddings, labels P x 4, threads: OMP_NUM_THREADS (2 unless set).
"""
import argparse
import json
import os
import time


def status_kb(field):
    """A field of /proc/self/status in kB (VmRSS, VmHWM); 0 when absent. bench_losses.py uses it
    too."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('mining', choices=('all', 'semihard'))
    p.add_argument('batch', type=int)
    p.add_argument('dim', type=int)
    p.add_argument('--repeat', type=int, default=10)
    p.add_argument('--margin', type=float, default=0.1)
    a = p.parse_args()
    import numpy as np
    import torch
    from pytorch_metric_learning import losses, miners
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '2')))
    rng = np.random.RandomState(0)
    x = rng.randn(a.batch, a.dim).astype(np.float32)
    x = torch.tensor(x / np.linalg.norm(x, axis=1, keepdims=True), requires_grad=True)
    y = torch.tensor(np.repeat(np.arange(a.batch // 4), 4))
    loss_fn = losses.TripletMarginLoss(margin=a.margin)
    miner = miners.TripletMarginMiner(margin=a.margin, type_of_triplets='semihard')

    def step():
        x.grad = None
        if a.mining == 'all':
            out = loss_fn(x, y)
        else:
            out = loss_fn(x, y, miner(x, y))
        out.backward()

    rss0 = status_kb('VmRSS')
    for _ in range(3):
        step()
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(json.dumps(dict(median_ms=1000 * float(np.median(times)), min_ms=1000 * min(times),
                          peak_mb=(status_kb('VmHWM') - rss0) / 1024.0, threads=torch.get_num_threads())))


if __name__ == '__main__':
    main()
