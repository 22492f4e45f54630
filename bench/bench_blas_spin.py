#!/usr/bin/env python
"""The training step right after an evaluation's metrics, with OpenBLAS's own spin (its worker
threads stay awake for 2**28 cycles after a matrix product) and with the short one gluon-dml sets
(OPENBLAS_THREAD_TIMEOUT=20, 2**20 cycles).

    python bench/bench_blas_spin.py              # both settings, 3 processes each, alternating

Each process trains the small conv net (batch 128, margin loss, Adam; bench_host_copy.py's step)
and then, --evals times: computes the metrics of an Omniglot evaluation in numpy and SciPy
(Recall@K, MAP@R and NMI's ten k-means runs over 1,180 embeddings of 64 in 59 classes,
synthetic), and times the training step that follows it, as the first step of an epoch follows
the evaluation of the one before. Printed: the steady step (20 steps in a row), the first step
after the metrics, and the metrics' own time, as medians.
"""
import os
import subprocess
import sys
import time

import bench_host_copy

SETTINGS = (("OpenBLAS's default (2**28 cycles)", '28'),
            ("gluon-dml's default (2**20 cycles)", None))


def worker(evals):
    step = bench_host_copy.small_net_step()
    import mxnet as mx
    import numpy as np
    from gluon_dml.metrics.clustering import evaluate_embeddings
    rng = np.random.RandomState(1)
    labels = np.repeat(np.arange(59), 20)
    emb = rng.randn(59, 64)[labels] + 0.8 * rng.randn(len(labels), 64)
    emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        mx.nd.waitall()
        return 1000 * (time.perf_counter() - t0)
    for _ in range(5):
        step()
    mx.nd.waitall()
    steady = timed(lambda: [step() for _ in range(20)]) / 20
    after, metrics = [], []
    for _ in range(evals):
        metrics.append(timed(lambda: evaluate_embeddings(emb, labels, nmi_runs=10)))
        after.append(timed(step))
        for _ in range(3):                  # the rest of an epoch: OpenBLAS's threads long asleep
            step()
        mx.nd.waitall()
    print('%.2f %.2f %.2f' % (steady, float(np.median(after)), float(np.median(metrics))))


def main():
    p = bench_host_copy.bench_parser(__doc__)
    p.add_argument('--evals', type=int, default=10, help='evaluations per process (default 10)')
    a = p.parse_args()
    if a.worker:
        return worker(a.evals)
    if 'OPENBLAS_THREAD_TIMEOUT' in os.environ:
        print('OPENBLAS_THREAD_TIMEOUT=%s of the environment left out: each setting sets its own'
              % os.environ['OPENBLAS_THREAD_TIMEOUT'])
    results = {name: [] for name, _ in SETTINGS}
    for r in range(a.rounds):
        for name, value in SETTINGS:
            env = {k: v for k, v in os.environ.items() if k != 'OPENBLAS_THREAD_TIMEOUT'}
            if value is not None:         # None: left to gluon_dml
                env['OPENBLAS_THREAD_TIMEOUT'] = value
            out = subprocess.run([sys.executable, __file__, '--worker', '--evals', str(a.evals)],
                                 env=env, check=True, capture_output=True, text=True).stdout
            results[name].append(tuple(float(v) for v in out.split()))
            print('round %d  %-36s steady %.1f ms/step, after the metrics %.1f ms, metrics %.1f ms'
                  % (r + 1, name, *results[name][-1]), flush=True)

    def median(values):
        return sorted(values)[len(values) // 2]
    print('\n| OpenBLAS spin | steady step (ms) | first step after the metrics (ms) | after / steady '
          '| the metrics (ms) |')
    print('| --- | --- | --- | --- | --- |')
    for name, _ in SETTINGS:
        steady, after, metrics = (median([row[i] for row in results[name]]) for i in range(3))
        print('| %s | %.1f | %.1f | %.2f | %.1f |' % (name, steady, after, after / steady, metrics))
    print(bench_host_copy.conditions(a.rounds, 'processes each (%d evaluations a process)'
                                     % a.evals))


if __name__ == '__main__':
    main()
