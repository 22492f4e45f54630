"""Running the toolkit as a user would, in this process (fast) or in a child (for signals and
kill -9), and reading what a run left on disk."""
import contextlib
import io
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

from ..helpers import REPO, script_env

# A run small enough for a test: digits, a few batches per epoch.
TINY = ['--data', 'digits', '--batches-per-epoch', '3', '--no-progress', '--nmi-runs', '1']


class Result(object):
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    @property
    def error_lines(self):
        return [ln for ln in self.err.splitlines() if ln.startswith('error:')]

    def __repr__(self):
        return 'Result(code=%r, err=%r)' % (self.code, self.err[-2000:])


def gluon_dml(*argv, env=None):
    """``gluon-dml ARGV`` in this process: (exit code, stdout, stderr). Warnings are shown every
    time; run-folder locks are released afterwards; ``env`` sets environment variables for the
    call (the fault plan of :mod:`gluon_dml.engine.faults`, for instance)."""
    from gluon_dml.commands import main
    from gluon_dml.engine import faults, rundir
    argv = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_env = sys.argv, dict(os.environ)
    sys.argv = [argv[0].replace('train-', 'train_') + '.py' if argv[0].startswith('train-')
                else 'gluon-dml'] + argv[1:]
    os.environ.update(env or {})
    faults.reset()
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings():
            warnings.simplefilter('always')
            warnings.simplefilter('ignore', DeprecationWarning)
            try:
                code = main(argv) or 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        faults.reset()
        rundir.release_locks()
    return Result(code, out.getvalue(), err.getvalue())


def train(run_dir, *argv, method='margin', env=None):
    return gluon_dml('train-%s' % method, *TINY, '--save-dir', run_dir, *argv, env=env)


def child(*argv, env=None):
    """``python -m gluon_dml ARGV`` as a child process (Popen), output captured. (Its BLAS
    kernels are this process's: loading faiss leaves no OPENBLAS_CORETYPE behind, tested in
    tests/metrics/test_clustering.py.)"""
    e = script_env(**(env or {}))
    e.setdefault('OMP_NUM_THREADS', '1')
    return subprocess.Popen([sys.executable, '-m', 'gluon_dml'] + [str(a) for a in argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e,
                            cwd=REPO)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    return Result(proc.returncode, out, err)


def wait_for(predicate, proc=None, timeout=120, interval=0.01):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(interval)
    return False


def trace_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [ln.split() for ln in f if ln.strip()]


# -- what a run left ------------------------------------------------------------------------------

def checkpoints(run_dir):
    d = os.path.join(str(run_dir), 'checkpoints')
    return sorted(n for n in os.listdir(d) if n.startswith('e')) if os.path.isdir(d) else []


def final_params(run_dir):
    """{name: array} of the newest whole checkpoint's network and loss parameters."""
    from gluon_dml.engine.checkpoint import checkpoint_arrays
    return checkpoint_arrays(str(run_dir))


def assert_same_params(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert np.array_equal(a[k], b[k]), 'parameter %s differs' % k


def log_rows(run_dir):
    path = os.path.join(str(run_dir), 'log.jsonl')
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def record(run_dir):
    with open(os.path.join(str(run_dir), 'args.json')) as f:
        return json.load(f)


DETERMINISTIC = ('loss', 'lr', 'recall@1', 'recall@2', 'recall@4', 'recall@8', 'r_precision',
                 'map@r', 'nmi', 'loss_beta', 'num_queries')


def same_rows(a, b):
    """The rows of two logs agree on every value that does not measure time."""
    assert [r['epoch'] for r in a] == [r['epoch'] for r in b]
    for ra, rb in zip(a, b):
        for k in DETERMINISTIC:
            assert ra.get(k) == rb.get(k), (ra['epoch'], k, ra.get(k), rb.get(k))
