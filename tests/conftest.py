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
