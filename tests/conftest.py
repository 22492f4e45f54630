"""Fixtures shared by the test modules."""
import pytest

from .helpers import run_script


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
