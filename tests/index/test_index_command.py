"""gluon-dml index as a user runs it: what an interrupted build says, settings refused before the
embedding, list files with and without labels, and a Milvus Lite catalogue held by another
process (real run folders, real image files, real faiss and Milvus Lite, real signals)."""
import os

import pytest

from gluon_dml.catalog import build_catalog

from ..helpers import run_command, script_env


@pytest.fixture(scope='module')
def image_folder(tmp_path_factory):
    """120 scikit-learn digits as PNG files in class folders."""
    from PIL import Image
    from sklearn.datasets import load_digits
    root = tmp_path_factory.mktemp('images') / 'digits'
    d = load_digits()
    for i in range(120):
        folder = root / str(d.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        img = (255 - d.images[i] * 16).clip(0, 255).astype('uint8')
        Image.fromarray(img).resize((32, 32)).save(folder / ('%03d.png' % i))
    return root


@pytest.mark.parametrize('signame', ['SIGINT', 'SIGTERM'])
def test_an_interrupted_index_says_what_it_kept_and_the_same_command_continues(
        tiny_digits_run, image_folder, tmp_path, signame):
    """A signal during the embedding (the process sends it to itself once the second part of 30
    images is saved): not the training run's "nothing was saved ... --resume" but how many images
    are kept in OUT/.embedding and that the same command continues; the same command then
    reuses both parts and builds the catalogue."""
    out = tmp_path / 'cat'
    argv = ('index', tiny_digits_run, '--images', image_folder, '--out', out, '--chunk', '30',
            '--batch-size', '8', '--no-progress')
    env = script_env(GLUON_DML_FAULTS='index-part@2:%s' % ('int' if signame == 'SIGINT' else 'term'))
    proc = run_command(*argv, env=env)
    assert proc.returncode == (130 if signame == 'SIGINT' else 143), (proc.stdout, proc.stderr)
    assert 'nothing was saved' not in proc.stderr and '--resume' not in proc.stderr, proc.stderr
    said = 'Interrupted (Ctrl-C)' if signame == 'SIGINT' else 'Stopped (SIGTERM)'
    assert ('%s; the catalogue was not written, but the 60 image(s) embedded so far are kept in '
            '%s: run the same command again to continue from there.'
            % (said, out / '.embedding')) in proc.stderr, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert sorted(os.listdir(out / '.embedding')) == ['part-000000.npz', 'part-000001.npz']
    assert not (out / '.lock').exists() and not (out / 'catalog.json').exists()
    again = run_command(*argv, check=True)
    assert again.stdout.count('was done before, reused') == 2
    assert '120 items (120 added' in again.stdout and not (out / '.embedding').exists()


def test_an_index_interrupted_before_any_part_leaves_nothing(tiny_digits_run, image_folder, tmp_path):
    """Interrupted before any part is saved (here while the run loads): it says nothing was
    kept, and the folders the build made are given back."""
    from gluon_dml import catalog
    out = tmp_path / 'new' / 'cat'
    real = catalog.open_run

    def interrupted(*a, **kw):
        raise KeyboardInterrupt
    catalog.open_run = interrupted
    try:
        with pytest.raises(catalog.IndexingInterrupted, match='before any image was embedded; '
                                                              'nothing was kept'):
            build_catalog(str(tiny_digits_run), str(image_folder), str(out))
    finally:
        catalog.open_run = real
    assert not (tmp_path / 'new').exists()