#!/usr/bin/env python
"""What seeding MXNet's generator before every batch costs: the training loop does it
(``mx.random.seed`` with a seed made of the run's seed, the epoch and the batch) so that a run
interrupted and resumed at any batch draws what the uninterrupted run draws.

    python bench/bench_seed.py                   # 3 processes, each timing both ways, alternating

Each process: the engine time of one ``mx.random.seed`` on an idle engine (the call returns at
once; the work is an engine operation), then the small conv net's training step (batch 128,
margin loss with distance-weighted sampling, Adam; bench_host_copy.py's step) with a seed before
every step and without, in alternating blocks of 20 steps. Printed: medians over the processes.
"""
import subprocess
import sys
import time

import bench_host_copy


def worker(blocks):
    step = bench_host_copy.small_net_step()
    import mxnet as mx
    import numpy as np
    seeds = []
    for i in range(20):
        mx.nd.waitall()
        t0 = time.perf_counter()
        mx.random.seed(1000 + i)
        mx.nd.waitall()
        seeds.append(1000 * (time.perf_counter() - t0))
    for _ in range(5):
        step()
    mx.nd.waitall()
    times = {True: [], False: []}
    for b in range(2 * blocks):
        seeded = b % 2 == 0
        t0 = time.perf_counter()
        for i in range(20):
            if seeded:
                mx.random.seed(7 + i)
            step()
        mx.nd.waitall()
        times[seeded].append(1000 * (time.perf_counter() - t0) / 20)
    print('%.3f %.2f %.2f' % (float(np.median(seeds)), float(np.median(times[True])),
                              float(np.median(times[False]))))


def main():
    p = bench_host_copy.bench_parser(__doc__)
    p.add_argument('--blocks', type=int, default=5, help='blocks of 20 steps each way (default 5)')
    a = p.parse_args()
    if a.worker:
        return worker(a.blocks)
    rows = []
    for r in range(a.rounds):
        out = subprocess.run([sys.executable, __file__, '--worker', '--blocks', str(a.blocks)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(tuple(float(v) for v in out.split()))
        print('round %d  one seed %.2f ms of engine time; step %.1f ms seeded, %.1f ms not'
              % (r + 1, *rows[-1]), flush=True)

    def median(i):
        values = sorted(row[i] for row in rows)
        return values[len(values) // 2]
    seed, seeded, plain = median(0), median(1), median(2)
    print('\n| one mx.random.seed (engine time) | step, seeded before each | step, not seeded | '
          'seeded / not |')
    print('| --- | --- | --- | --- |')
    print('| %.2f ms | %.1f ms | %.1f ms | %.3f |' % (seed, seeded, plain, seeded / plain))
    print(bench_host_copy.conditions(a.rounds, 'processes'))


if __name__ == '__main__':
    main()
