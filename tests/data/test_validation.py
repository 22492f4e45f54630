"""--val-classes: training classes held out for choosing settings without the test split."""
import json

import numpy as np
import pytest

from gluon_dml.data import get_dataset, split_validation, subset_classes, validation_classes
from gluon_dml.data.images import ImageFileDataset, RGBTransform

from ..helpers import run_script

OMNIGLOT = '../shared/data/omniglot'


def test_names_hold_out_whole_prefixes_and_exact_names():
    names = ['Greek/character01', 'Greek/character02', 'Korean/character01', 'Korean/character02',
             'Latin/character01', 'Latin']
    assert validation_classes(names, 'Korean').tolist() == [2, 3]
    assert validation_classes(names, 'Korean, Latin').tolist() == [2, 3, 4, 5]
    assert validation_classes(names, 'Greek/character02,Latin/character01').tolist() == [1, 4]
    # a prefix matches only at a "/" boundary
    with pytest.raises(ValueError, match="no training class is named 'Kor'"):
        validation_classes(names, 'Kor')


def test_fraction_is_fixed_and_sized():
    names = ['c%d' % i for i in range(100)]
    a = validation_classes(names, '0.3')
    assert a.size == 30 and len(set(a.tolist())) == 30 and np.all(np.diff(a) > 0)
    assert np.array_equal(a, validation_classes(names, 0.3))       # same classes every call
    assert not np.array_equal(a, np.arange(30))                      # drawn, not the first ones
    for bad in ('0', '1', '1.5', '-0.2'):
        with pytest.raises(ValueError, match='strictly between 0 and 1'):
            validation_classes(names, bad)
    with pytest.raises(ValueError, match='at least 4'):
        validation_classes(['a', 'b', 'c'], '0.5')
    with pytest.raises(ValueError, match='each side needs at least 2'):
        validation_classes(['a/1', 'a/2', 'b/1'], 'a')


def test_split_of_an_array_dataset_is_disjoint_and_renumbered():
    train = get_dataset('digits', split='train')            # digits 0-4
    rest, val = split_validation(train, '3,4')
    assert val.class_names == ['3', '4'] and rest.class_names == ['0', '1', '2']
    assert val.split == 'val' and rest.split == 'train'
    assert len(rest) + len(val) == len(train)
    assert sorted(np.unique(val.labels).tolist()) == [0, 1]
    assert sorted(np.unique(rest.labels).tolist()) == [0, 1, 2]
    # every image keeps its class: compare with the items of the full split
    three = train.images[train.labels == train.class_names.index('3')]
    np.testing.assert_array_equal(val.images[val.labels == 0], three)


def test_split_of_image_files_keeps_paths_boxes_and_the_eval_transform(tmp_path):
    from PIL import Image
    paths, labels = [], []
    for c in range(4):
        for i in range(3):
            p = tmp_path / ('%d_%d.png' % (c, i))
            Image.new('RGB', (20, 20), (60 * c, 10 * i, 0)).save(p)
            paths.append(str(p))
            labels.append(c)
    boxes = np.array([[i % 3, 0, 20, 20] for i in range(len(paths))], dtype=np.float64)
    names = ['k/a', 'k/b', 'm/a', 'm/b']
    aug = ImageFileDataset(paths, labels, names, RGBTransform(16, augment=True), boxes=boxes)
    plain = ImageFileDataset(paths, labels, names, RGBTransform(16, augment=False), boxes=boxes)
    rest, val = split_validation(aug, 'm', eval_source=plain)
    assert val.paths == paths[6:] and rest.paths == paths[:6]
    assert val.transform is plain.transform and rest.transform is aug.transform
    np.testing.assert_array_equal(val.boxes, boxes[6:])
    assert val.labels.tolist() == [0, 0, 0, 1, 1, 1] and val.class_names == ['m/a', 'm/b']
    assert val[4][0].shape == (3, 16, 16)
    assert len(aug) == 12                                      # the source is left untouched
    sub = subset_classes(plain, [3, 0], 'x')                   # order given = new numbering
    assert sub.class_names == ['m/b', 'k/a'] and sub.labels.tolist() == [1, 1, 1, 0, 0, 0]


@pytest.mark.slow
def test_train_margin_with_validation_alphabets_never_reads_the_test_split(tmp_path):
    run = tmp_path / 'run'
    proc = run_script('train_margin.py', '--data', 'omniglot', '--data-path', OMNIGLOT,
                      '--val-classes', 'Korean,Early_Aramaic', '--epochs', '1',
                      '--batches-per-epoch', '3', '--no-progress', '--save-dir', run, check=True)
    assert '2420 training images in 121 classes, 1240 val images in 62 unseen classes' in proc.stdout
    first = json.loads((run / 'log.jsonl').read_text().splitlines()[0])
    assert first['num_queries'] == 1240
    assert json.loads((run / 'args.json').read_text())['val_classes'] == 'Korean,Early_Aramaic'
    # eval/evaluate.py rebuilds the same held-out classes: the last epoch's numbers again
    last = json.loads((run / 'log.jsonl').read_text().splitlines()[-1])
    run_script('eval/evaluate.py', run, '--split', 'val', '--checkpoint', 'last', check=True)
    ev = json.loads((run / 'eval-val-last.json').read_text())   # not the reported (best) network's file
    assert ev['num_images'] == 1240 and ev['num_classes'] == 62
    assert ev['recall@1'] == pytest.approx(last['recall@1'], abs=1e-6)
    assert ev['map@r'] == pytest.approx(last['map@r'], abs=1e-6)
    # the t-SNE map of the same held-out classes (it was refused: 'Unknown split val')
    proc = run_script('eval/tsne.py', run, '--split', 'val', '--points', '200', check=True)
    assert ' val images of %s (62 classes)' % run in proc.stdout
    assert (run / 'plots' / 'tsne_val.png').stat().st_size > 1000


def test_bad_val_classes_is_one_sentence(tmp_path):
    proc = run_script('train_margin.py', '--data', 'digits', '--val-classes', 'seven',
                      '--epochs', '1', '--no-progress', '--save-dir', tmp_path)
    assert proc.returncode == 2
    assert "no training class is named 'seven'" in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_evaluate_split_val_needs_a_validation_run(tmp_path):
    (tmp_path / 'args.json').write_text(json.dumps({'data': 'digits', 'model': 'smallconv',
                                                     'embed_dim': 8, 'method': 'margin'}))
    proc = run_script('eval/evaluate.py', tmp_path, '--split', 'val')
    assert proc.returncode == 2
    assert 'was not trained with --val-classes, so it has no val split' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_engine_holds_out_image_classes_with_the_test_transform(tmp_path):
    from PIL import Image
    from gluon_dml.methods.embedding import validation_split
    paths = []
    for c in range(4):
        p = tmp_path / ('%d.png' % c)
        Image.new('RGB', (30, 20), (50 * c, 0, 0)).save(p)
        paths += [str(p)] * 2
    aug = RGBTransform(16, resize=18, augment=True, color_jitter=0.3)
    train = ImageFileDataset(paths, [0, 0, 1, 1, 2, 2, 3, 3], ['a/1', 'a/2', 'b/1', 'b/2'], aug)
    rest, val = validation_split('b', train)
    assert rest.transform is aug and val.transform is not aug
    t = val.transform
    assert (t.augment, t.image_size, t.resize) == (False, 16, 18)
    np.testing.assert_array_equal(val[0][0], RGBTransform(16, resize=18)(Image.open(paths[4]).convert('RGB')))
    assert train.transform is aug and len(train) == 8          # the training split is left as it was
