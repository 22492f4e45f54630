#!/usr/bin/env python
"""How long a command takes to start: ``gluon-dml COMMAND --help`` (the package, MXNet and the
command's modules imported, nothing computed), in fresh processes, alternating gluon-dml's
start (MXNet imported without its optional imports) with MXNet's own
(``GLUON_DML_MXNET_OPTIONAL=1``: ``mxnet/model.py`` imports ``sklearn.base``, which pulls in
scipy.stats and pandas, and ``mxnet/test_utils.py`` and ``mxnet/contrib/quantization.py`` import
scipy.stats).

    python bench/bench_startup.py                      # search, 7 rounds
    python bench/bench_startup.py --command evaluate --rounds 11

Prints each setting's median and best wall time and the ratio of the medians.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = (('gluon-dml (MXNet without scikit-learn and scipy.stats)', {}),
            ("MXNet's own imports (GLUON_DML_MXNET_OPTIONAL=1)", {'GLUON_DML_MXNET_OPTIONAL': '1'}))


def start_time(command, extra_env):
    env = dict(os.environ, **extra_env)
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    t0 = time.perf_counter()
    subprocess.run([sys.executable, '-m', 'gluon_dml', command, '--help'], env=env, check=True,
                   stdout=subprocess.DEVNULL, cwd=REPO)
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--command', default='search', help='the command to start (default search)')
    p.add_argument('--rounds', type=int, default=7, help='processes per setting (default 7)')
    a = p.parse_args(argv)
    if a.rounds < 1:
        p.error('--rounds must be at least 1')
    times = {name: [] for name, _ in SETTINGS}
    start_time(a.command, {})                           # the page cache, once
    for _ in range(a.rounds):                           # A B A B
        for name, env in SETTINGS:
            times[name].append(start_time(a.command, env))
    medians = {}
    for name, _ in SETTINGS:
        medians[name] = statistics.median(times[name])
        print('%-48s median %.3f s, best %.3f s (%d processes)'
              % (name, medians[name], min(times[name]), a.rounds))
    ours, ref = (medians[name] for name, _ in SETTINGS)
    print('gluon-dml %s --help starts %.2fx as fast (%.3f s less)' % (a.command, ref / ours, ref - ours))


if __name__ == '__main__':
    main()
