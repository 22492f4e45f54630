"""Fixtures shared by the test modules."""
import os

import pytest


def _share_the_cores():
    """pytest.ini runs the suite in one pytest-xdist worker per core: each worker, and every command
    its tests start, gets its share of the cores as OpenMP threads (at least 1) unless
    OMP_NUM_THREADS is set. Left to itself, each would take every core, and OpenMP threads that wait
    for a busy core spin: workers slowing each other down many times over."""
    workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT') or 1)
    if workers > 1 and 'OMP_NUM_THREADS' not in os.environ:
        try:                 # as gluon_dml/__init__.py counts them (importing it sets the threads)
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        os.environ['OMP_NUM_THREADS'] = str(max(1, cores // workers))


_share_the_cores()       # before any test module imports gluon_dml (which sets the threads)

from .helpers import run_script


@pytest.fixture
def two_faiss_threads():
    """faiss with at least two OpenMP threads for the test (a pytest-xdist worker of a 2-core
    machine has one), its own setting back afterwards."""
    import faiss
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(2, before))
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope='session')
def tiny_digits_run(tmp_path_factory):
    """A real margin run on digits, one short epoch: a run folder to evaluate, embed and index.
    Tests that change the folder work on a copy."""
    run = tmp_path_factory.mktemp('tiny-run') / 'r'
    run_script('train_margin.py', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '6',
               '--no-progress', '--save-dir', run, check=True)
    return run


def pytest_configure(config):
    """Decoded-image caches (GLUON_DML_CACHE) go to a folder of this session, not the user's
    ~/.cache: the tests start without one and leave nothing behind; the scripts they start
    inherit it."""
    import os
    import tempfile
    if 'GLUON_DML_CACHE' not in os.environ:
        os.environ['GLUON_DML_CACHE'] = config._gluon_dml_cache = tempfile.mkdtemp(
            prefix='gluon-dml-test-cache-')


def pytest_unconfigure(config):
    import shutil
    folder = getattr(config, '_gluon_dml_cache', None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


# The fault suite's table (tests/faults/conftest.py marks each case's kind on its reports)
_OUTCOMES = {}


def pytest_runtest_logreport(report):
    # under pytest-xdist this runs in the controlling process, which collects no items: the kind
    # travels with the report (an item's user_properties become its reports')
    if report.when != 'call' and not (report.when == 'setup' and report.failed):
        return
    kind = dict(report.user_properties).get('fault_kind')
    if kind is not None:
        _OUTCOMES[report.nodeid] = (kind, report.outcome)


def pytest_terminal_summary(terminalreporter):
    if not _OUTCOMES:
        return
    rows = list(_OUTCOMES.values())
    passed = [k for k, o in rows if o == 'passed']
    terminalreporter.write_sep('-', 'fault suite')
    by_file = {}
    for nodeid, (kind, outcome) in sorted(_OUTCOMES.items()):
        counts = by_file.setdefault(nodeid.split('::')[0], [0, 0, 0, 0])
        counts[0] += 1
        counts[{'error': 1, 'handled': 2}[kind] if outcome == 'passed' else 3] += 1
    for name, (n, errors, handled, failed) in by_file.items():
        terminalreporter.write_line('%-36s cases %3d | clear errors %3d | handled %3d | failed %d'
                                    % (name, n, errors, handled, failed))
    terminalreporter.write_line('cases tried %d | clear errors %d | handled %d | failed %d'
                                % (len(rows), passed.count('error'), passed.count('handled'),
                                   sum(1 for _, o in rows if o != 'passed')))
