"""train_margin.py end to end on fixture trees of every photo dataset's official layout, and the
evaluation / embedding entry points on the runs it leaves."""
import json
import os

import numpy as np
import pytest

from gluon_dml.engine.rundir import trained_params_path

from . import fixtures as F
from ..helpers import run_script

pytestmark = pytest.mark.slow

FAST = ['--model', 'smallconv', '--image-size', '24', '--embed-dim', '16', '--epochs', '1',
        '--batches-per-epoch', '2', '--batch-size', '6', '--batch-k', '2', '--lr', '1e-3',
        '--num-workers', '2', '--no-progress', '--eval-batch-size', '8']

WRITERS = {
    'CUB_200_2011': lambda root: F.write_cub(root, num_classes=6, per_class=4),
    'Cars196': lambda root: F.write_cars(root, num_classes=6, per_class=4),
    'EbayInClass': lambda root: F.write_sop(root, num_super=2, classes_per_super=8, per_class=2),
    'InShop': lambda root: F.write_inshop(root, train_items=6, test_items=4, per_item=(2, 2)),
    'LFW': lambda root: F.write_lfw(root, counts=(3, 2, 2, 4, 1, 2, 3, 2)),
}


def _train(tmp_path, data, root, *extra, check=True):
    run = str(tmp_path / ('run-' + data))
    proc = run_script('train_margin.py', '--data', data, '--data-path', root, '--save-dir', run,
                      *(FAST + list(extra)), check=check)
    return run, proc


def _log(run):
    with open(os.path.join(run, 'log.jsonl')) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize('data', sorted(WRITERS))
def test_train_margin_runs_on_each_official_layout(tmp_path, data):
    root = str(tmp_path / 'data')
    WRITERS[data](root)
    run, proc = _train(tmp_path, data, root)
    log = _log(run)
    assert [r['epoch'] for r in log] == [0, 1]
    assert all(np.isfinite(r['recall@1']) for r in log)
    # no validation classes: the run reports its final network, the newest checkpoint
    assert not os.path.exists(os.path.join(run, 'best.params'))
    params, label = trained_params_path(run)
    assert label == 'final network' and os.path.getsize(params) > 0
    assert os.path.exists(os.path.join(run, 'model-symbol.json'))
    with open(os.path.join(run, 'args.json')) as f:
        args = json.load(f)
    assert args['image_size'] == 24 and args['num_workers'] == 2
    if data == 'InShop':
        # query images searched among the gallery: 4 items x 2 query images
        assert log[1]['num_queries'] == 8 and 'searched by 8 query images' in proc.stdout + proc.stderr
        ev = run_script('eval/evaluate.py', run, '--save-embeddings', str(tmp_path / 'e.npz'), check=True)
        assert 'recall@1' in ev.stdout
        arrays = np.load(str(tmp_path / 'e.npz'))
        assert arrays['embeddings'].shape == (8, 16) and arrays['query_embeddings'].shape == (8, 16)
        with open(os.path.join(run, 'eval-test.json')) as f:
            assert json.load(f)['num_queries'] == 8


def test_folder_run_then_embed_own_images(tmp_path):
    root = str(tmp_path / 'photos')
    F.write_folder(root, num_classes=6, per_class=3, ext='.jpg')
    run, _ = _train(tmp_path, 'folder', root)
    out = str(tmp_path / 'emb.npz')
    run_script('eval/embed.py', run, '--images', os.path.join(root, 'class_a'), '--out', out, check=True)
    arrays = np.load(out)
    assert arrays['embeddings'].shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(arrays['embeddings'], axis=1), 1.0, atol=1e-4)
    # the same images through evaluate.py's pipeline give the same vectors (test transform)
    run_script('eval/evaluate.py', run, '--split', 'train', '--save-embeddings',
               str(tmp_path / 'tr.npz'), check=True)
    train_emb = np.load(str(tmp_path / 'tr.npz'))['embeddings']
    np.testing.assert_allclose(train_emb[:3], arrays['embeddings'], atol=1e-4)


def test_bad_images_stop_the_run_with_the_file_named_or_are_skipped(tmp_path):
    root = str(tmp_path / 'data')
    base = F.write_cub(root, num_classes=6, per_class=4)
    bad = os.path.join(base, 'images', '004.Bird_Species_4', 'Bird_Species_4_0002.jpg')
    F.truncate(bad, 0.3)
    run, proc = _train(tmp_path, 'CUB_200_2011', root, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'error:' in proc.stderr and bad in proc.stderr and '--skip-bad-images' in proc.stderr
    assert 'Traceback' not in proc.stderr
    run2 = str(tmp_path / 'run-skip')
    proc = run_script('train_margin.py', '--data', 'CUB_200_2011', '--data-path', root,
                      '--save-dir', run2, '--skip-bad-images', *FAST, check=True)
    said = [ln for ln in (proc.stdout + proc.stderr).splitlines() if 'left out' in ln]
    assert len(said) == 1 and 'left out 1 unreadable image(s) of CUB_200_2011 test' in said[0], said
    assert _log(run2)[-1]['num_queries'] == 11


def test_missing_dataset_is_one_sentence_with_the_download_hint(tmp_path):
    proc = run_script('train_margin.py', '--data', 'Cars196', '--data-path', str(tmp_path / 'none'),
                      '--save-dir', str(tmp_path / 'r'), *FAST)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith('error: Cars196 not found') and 'cars_annos.mat' in line
    assert 'Run gluon-dml download Cars196 --root ' in line


def test_tsne_maps_a_photo_run_with_thumbnails(tmp_path):
    """gluon-dml tsne on a run of a photo dataset (images decoded from files): it stopped with
    'unexpected AttributeError: ImageFileDataset object has no attribute images (a bug?)', with
    or without --thumbnails; now the map is drawn, the thumbnails decoded from the files."""
    from PIL import Image
    from ..helpers import run_command
    root = str(tmp_path / 'data')
    F.write_cub(root, num_classes=6, per_class=4)
    run, _ = _train(tmp_path, 'CUB_200_2011', root, check=True)
    for extra, name in (([], 'dots.png'), (['--thumbnails'], 'thumbs.png'),
                        (['--points', '6', '--thumbnails'], 'few.png')):
        out = str(tmp_path / name)
        proc = run_command('tsne', run, '--out', out, *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
        points = 6 if '--points' in extra else 12
        assert proc.stdout.strip() == 't-SNE of %d test images of %s (3 classes): %s' % (points, run, out)
        assert Image.open(out).size[0] > 400
