#!/usr/bin/env python
"""How long a command takes to start: ``gluon-dml COMMAND --help`` (the package, MXNet and the
command's modules imported, nothing computed), in fresh processes, alternating three settings:

- gluon-dml's start: MXNet imported without its optional imports, and its operator functions'
  code read from the cache folder (gluon_dml/startup.py);
- the same with the cache folder off (``GLUON_DML_CACHE=off``): MXNet compiles the code of its
  2,556 operator functions, as it does at every start;
- MXNet's own start (``GLUON_DML_MXNET_OPTIONAL=1``, ``GLUON_DML_CACHE=off``): ``mxnet/model.py``
  imports ``sklearn.base``, which pulls in scipy.stats and pandas, and ``mxnet/test_utils.py`` and
  ``mxnet/contrib/quantization.py`` import scipy.stats; the operators are compiled.

    python bench/bench_startup.py                      # search, 7 rounds
    python bench/bench_startup.py --command evaluate --rounds 11

Prints each setting's median and best wall time and the ratio of the medians, MXNet's own start
against gluon-dml's. The cache folder (``GLUON_DML_CACHE``, default ``~/.cache/gluon-dml``) is
filled by one untimed start first.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = (('gluon-dml (no scikit-learn, scipy.stats; operators cached)', {}),
            ('the same, operators compiled (GLUON_DML_CACHE=off)', {'GLUON_DML_CACHE': 'off'}),
            ("MXNet's own start (GLUON_DML_MXNET_OPTIONAL=1, GLUON_DML_CACHE=off)",
             {'GLUON_DML_MXNET_OPTIONAL': '1', 'GLUON_DML_CACHE': 'off'}))


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
    start_time(a.command, {})                           # the page cache and the cache folder
    for _ in range(a.rounds):                           # A B C A B C
        for name, env in SETTINGS:
            times[name].append(start_time(a.command, env))
    medians = {}
    for name, _ in SETTINGS:
        medians[name] = statistics.median(times[name])
        print('%-70s median %.3f s, best %.3f s (%d processes)'
              % (name, medians[name], min(times[name]), a.rounds))
    ours, ref = medians[SETTINGS[0][0]], medians[SETTINGS[-1][0]]
    print('gluon-dml %s --help starts %.2fx as fast (%.3f s less)' % (a.command, ref / ours, ref - ours))


if __name__ == '__main__':
    main()
