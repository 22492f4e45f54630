#!/usr/bin/env python
"""Throughput of distributed training on this machine: 1 process, then 1, 2 and 4 workers of a
job on the loopback (python -m gluon_dml.launch), the Omniglot protocol's network and loss.

    python bench/bench_distributed.py                    # 64 images per worker, 30 steps
    python bench/bench_distributed.py --per-worker 32 --workers 1,2 --steps 20

Each worker trains ``--per-worker`` images a step (the global batch grows with the workers:
weak scaling) with the all-gather of the embeddings. The training time of the epoch comes from
rank 0's log (``train_time``, the evaluations excluded); images per second are global (every
worker's). Each worker gets OMP_NUM_THREADS = cores // workers (at least 1): on a machine with
fewer cores than workers the processes share cores, and the numbers say so. Each setting runs
``--repeat`` times and the fastest is reported: on a shared machine the others are slowed by
whatever else runs.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_time(run_dir):
    with open(os.path.join(run_dir, 'log.jsonl')) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if r['epoch'] == 1][0]['train_time']


def run(workers, per_worker, steps, threads, kvstore, tmp):
    run_dir = tempfile.mkdtemp(prefix='%s-%d-' % (kvstore, workers), dir=tmp)
    flags = ['--data', 'omniglot', '--epochs', '1', '--batches-per-epoch', str(steps),
             '--no-progress', '--save-dir', run_dir]
    env = dict(os.environ, PYTHONPATH=REPO)
    if kvstore == 'none':                         # one plain process
        env['OMP_NUM_THREADS'] = str(threads)
        cmd = [sys.executable, 'train_margin.py', '--batch-size', str(per_worker)] + flags
    else:
        env.pop('OMP_NUM_THREADS', None)          # the launcher's --threads decides
        cmd = [sys.executable, '-m', 'gluon_dml.launch', '-n', str(workers), '--threads',
               str(threads), 'train_margin.py', '--kvstore', kvstore, '--batch-size',
               str(per_worker)] + flags
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit('%s failed:\n%s' % (' '.join(cmd), proc.stderr[-3000:]))
    seconds = _train_time(run_dir)
    return seconds, workers * per_worker * steps / seconds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--workers', default='1,2,4')
    p.add_argument('--per-worker', type=int, default=64)
    p.add_argument('--steps', type=int, default=30)
    p.add_argument('--repeat', type=int, default=3,
                   help='runs of each setting; the fastest is reported (a shared machine)')
    a = p.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    print('%d cores; %d images per worker per step, %d steps, Omniglot / smallconv / margin loss'
          % (cores, a.per_worker, a.steps))
    print('| setting | workers | threads each | global batch | train time (s) | images/s (global) |')
    print('| --- | --- | --- | --- | --- | --- |')
    with tempfile.TemporaryDirectory() as tmp:
        for label, workers, kv in [('one process', 1, 'none')] + [
                ('dist_sync job', int(n), 'dist_sync') for n in a.workers.split(',')]:
            threads = max(1, cores // workers)
            seconds, ips = min(run(workers, a.per_worker, a.steps, threads, kv, tmp)
                               for _ in range(a.repeat))
            print('| %s | %d | %d | %d | %.1f | %.0f |' % (label, workers, threads,
                                                            workers * a.per_worker, seconds, ips),
                  flush=True)


if __name__ == '__main__':
    main()
