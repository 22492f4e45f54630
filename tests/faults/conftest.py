"""The fault and bad-input suite: shared runs, and the table of outcomes.

Every case is marked ``@pytest.mark.fault('error')`` (the user gets one sentence naming the flag
or file, exit code 2, nothing written that should not be) or ``@pytest.mark.fault('handled')``
(the run recovers, goes on with a warning, or refuses nothing it should accept; its result is
checked: the parameters equal to an uninterrupted run's, the log exact). A case that ends in a
traceback or goes through silently fails its assertions. The terminal summary prints the table
that docs/faults.md records (tests/conftest.py: under pytest-xdist only the controlling process,
which loads that file and not this one, sees every report).
"""
import os
import shutil

import pytest

from .harness import train

STD = ['--epochs', '3']          # the reference run: 3 epochs of 3 batches on digits


def pytest_configure(config):
    config.addinivalue_line('markers', 'fault(kind): a case of the fault suite, kind "error" or '
                                       '"handled"')


def pytest_collection_modifyitems(items):
    # the kind travels with the item's reports (user_properties), to tests/conftest.py's table
    for item in items:
        m = item.get_closest_marker('fault')
        if m is not None:
            item.user_properties.append(('fault_kind', m.args[0]))


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
