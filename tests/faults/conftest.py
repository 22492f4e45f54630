"""The fault and bad-input suite: shared runs, and the table of outcomes.

Every case is marked ``@pytest.mark.fault('error')`` (the user gets one sentence naming the flag
or file, exit code 2, nothing written that should not be) or ``@pytest.mark.fault('handled')``
(the run recovers, goes on with a warning, or refuses nothing it should accept; its result is
checked: the parameters equal to an uninterrupted run's, the log exact). A case that ends in a
traceback or goes through silently fails its assertions. The terminal summary prints the table
that docs/faults.md records.
"""
import os
import shutil

import pytest

from .harness import train

STD = ['--epochs', '3']          # the reference run: 3 epochs of 3 batches on digits


def pytest_configure(config):
    config.addinivalue_line('markers', 'fault(kind): a case of the fault suite, kind "error" or '
                                       '"handled"')


_OUTCOMES = {}


def pytest_runtest_logreport(report):
    if report.when != 'call' and not (report.when == 'setup' and report.failed):
        return
    kind = _KINDS.get(report.nodeid)
    if kind is not None:
        _OUTCOMES[report.nodeid] = (kind, report.outcome)


_KINDS = {}


def pytest_collection_modifyitems(items):
    for item in items:
        m = item.get_closest_marker('fault')
        if m is not None:
            _KINDS[item.nodeid] = m.args[0]


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


def _run_once(factory, name, *argv):
    path = str(factory.mktemp(name) / 'run')
    r = train(path, *argv)
    assert r.code == 0, r
    return path


@pytest.fixture(scope='session')
def reference(tmp_path_factory):
    """An uninterrupted run: the parameters and the log every recovered run must equal."""
    return _run_once(tmp_path_factory, 'reference', *STD)


@pytest.fixture(scope='session')
def two_epochs(tmp_path_factory):
    """The same run stopped after 2 of its 3 epochs (checkpoints e0002, e0003); tests copy it."""
    return _run_once(tmp_path_factory, 'two', '--epochs', '2')


@pytest.fixture
def partial(two_epochs, tmp_path):
    """A private copy of :func:`two_epochs` to damage."""
    dest = str(tmp_path / 'run')
    shutil.copytree(two_epochs, dest, ignore=shutil.ignore_patterns('.lock'))
    return dest


@pytest.fixture
def copy_of(tmp_path):
    def copy(src, name='copy'):
        dest = str(tmp_path / name)
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns('.lock'))
        return dest
    return copy


def files_of(path):
    """Every file under ``path`` with its bytes (to show a refused command wrote nothing)."""
    out = {}
    for folder, _, names in os.walk(path):
        for n in names:
            if n == '.lock':
                continue
            p = os.path.join(folder, n)
            with open(p, 'rb') as f:
                out[os.path.relpath(p, path)] = f.read()
    return out
