"""User data read as the user meant it, or refused in one sentence: list-file labels are
integers (as numbers) or names (as text), never both; the open-set split never puts one label on
both sides; class-folder links that loop or leave the dataset are refused; empty class folders
are skipped and counted; a bad image is left out, never replaced by another."""
import os

import numpy as np
import pytest

from gluon_dml.data import get_dataset
from gluon_dml.data.transforms import BadImageError

from ..data import fixtures as F
from .harness import gluon_dml, log_rows

error = pytest.mark.fault('error')
handled = pytest.mark.fault('handled')

SMALL = dict(image_size=24, resize=24)


def _images(root, classes=4, per_class=3):
    F.write_folder(str(root), num_classes=classes, per_class=per_class)
    return sorted('%s/img%d.png' % (c, i) for c in sorted(os.listdir(str(root)))
                  for i in range(per_class))


def _list(tmp_path, rows, name='list.txt'):
    path = tmp_path / name
    path.write_text('\n'.join(rows) + '\n')
    return str(path)


def _break_data(path):
    """Keep a PNG's header and IEND marker, garble what is between (a bad disk, a bad copy)."""
    data = bytearray(open(path, 'rb').read())
    for i in range(60, len(data) - 40):
        data[i] = (data[i] * 7 + 13) % 256
    open(path, 'wb').write(data)


@handled
def test_integer_labels_are_numbers_so_1_and_01_are_one_class(tmp_path):
    _images(tmp_path / 'img')
    rows = ['img/class_a/img0.png 1', 'img/class_a/img1.png 01', 'img/class_a/img2.png +1',
            'img/class_b/img0.png 2', 'img/class_b/img1.png 002', 'img/class_b/img2.png 2',
            'img/class_c/img0.png 10', 'img/class_c/img1.png 10', 'img/class_d/img0.png 9',
            'img/class_d/img1.png 09']
    path = _list(tmp_path, rows)
    train = get_dataset('list', path, 'train', **SMALL)
    test = get_dataset('list', path, 'test', **SMALL)
    assert train.class_names == ['1', '2'] and test.class_names == ['9', '10']   # numeric order
    assert np.bincount(train.labels).tolist() == [3, 3] and len(test) == 4
    assert not set(train.class_names) & set(test.class_names)


@handled
def test_name_labels_are_text(tmp_path):
    _images(tmp_path / 'img')
    rows = ['img/class_%s/img%d.png %s' % (c, i, n) for c, n in zip('abcd', ['cat', 'Cat', 'dog', 'émeu'])
            for i in range(2)]
    path = _list(tmp_path, rows)
    train = get_dataset('list', path, 'train', **SMALL)
    assert train.class_names == ['Cat', 'cat']                   # text, case kept


@error
@pytest.mark.parametrize('a,b', [('2', '2.0'), ('7', 'cat'), ('1', '1e0'), ('3', 'three')])
def test_a_list_mixing_integers_and_names_is_refused(tmp_path, a, b):
    """The issue: 2 and 2.0 became different classes without a word."""
    _images(tmp_path / 'img')
    path = _list(tmp_path, ['img/class_a/img0.png %s' % a, 'img/class_a/img1.png %s' % a,
                            'img/class_b/img0.png %s' % b, 'img/class_b/img1.png %s' % b])
    with pytest.raises(ValueError) as e:
        get_dataset('list', path, 'train', **SMALL)
    assert str(e.value).startswith('%s mixes integer labels (%r, line 1) and names (%r, line 3)'
                                   % (path, a, b))


@error
@pytest.mark.parametrize('other', ['test', 'query', 'gallery'])
def test_a_label_on_both_sides_of_the_split_column_is_refused(tmp_path, other):
    _images(tmp_path / 'img')
    rows = ['img/class_a/img0.png 5 train', 'img/class_a/img1.png 5 train',
            'img/class_b/img0.png 6 %s' % other, 'img/class_b/img1.png 05 %s' % other]
    path = _list(tmp_path, rows)
    with pytest.raises(ValueError) as e:
        get_dataset('list', path, 'train', **SMALL)
    assert str(e.value).startswith('%s: label 5 is in the train split (line 1) and in the %s split '
                                   '(line 4); an open-set split keeps each class on one side'
                                   % (path, other))


@error
def test_a_list_file_that_is_not_utf8_names_the_line(tmp_path):
    _images(tmp_path / 'img')
    path = tmp_path / 'latin1.txt'
    path.write_bytes('img/class_a/img0.png caf\xe9\nimg/class_a/img1.png caf\xe9\n'.encode('latin-1'))
    with pytest.raises(ValueError) as e:
        get_dataset('list', str(path), 'train', **SMALL)
    assert str(e.value).startswith('%s, line 1 is not UTF-8 text (byte 0xe9 at column 25)' % path)


@error
def test_a_list_with_a_split_column_on_some_lines_only_is_refused(tmp_path):
    _images(tmp_path / 'img')
    path = _list(tmp_path, ['img/class_a/img0.png 1 train', 'img/class_b/img0.png 2'])
    with pytest.raises(ValueError, match='either every line has a split column or none does'):
        get_dataset('list', path, 'train', **SMALL)


@error
def test_mixed_labels_through_the_command_line_are_one_line(tmp_path):
    _images(tmp_path / 'img')
    path = _list(tmp_path, ['img/class_%s/img%d.png %s' % (c, i, l) for c, l in
                            zip('abcd', ['1', '2', '2.0', '3']) for i in range(3)])
    run = str(tmp_path / 'run')
    r = gluon_dml('train-margin', '--data', 'list', '--data-path', path, '--save-dir', run,
                  '--batch-size', '4', '--batch-k', '2', '--model', 'smallconv', '--image-size', '24')
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert r.error_lines[0].startswith('error: %s mixes integer labels' % path)
    assert not os.path.exists(run)               # the folder it made is gone: no run files


# -- folders ----------------------------------------------------------------------------------

@error
def test_a_class_folder_linking_to_the_root_is_refused(tmp_path):
    """The issue: a class folder that is a symlink to the root became one class holding every
    image."""
    root = tmp_path / 'data'
    _images(root)
    os.symlink(str(root), str(root / 'class_z'))
    with pytest.raises(ValueError) as e:
        get_dataset('folder', str(root), 'train', **SMALL)
    assert str(e.value).startswith('%s is a link to %s, which holds the dataset folder itself'
                                   % (root / 'class_z', os.path.realpath(str(root))))


@error
def test_a_class_folder_linking_outside_the_dataset_is_refused(tmp_path):
    root, elsewhere = tmp_path / 'data', tmp_path / 'elsewhere'
    _images(root)
    _images(elsewhere, classes=1)
    os.symlink(str(elsewhere / 'class_a'), str(root / 'class_z'))
    with pytest.raises(ValueError) as e:
        get_dataset('folder', str(root), 'train', **SMALL)
    assert 'outside the dataset folder %s' % os.path.realpath(str(root)) in str(e.value)


@error
def test_a_symlink_loop_inside_a_class_is_refused(tmp_path):
    root = tmp_path / 'data'
    _images(root)
    os.symlink(str(root / 'class_a'), str(root / 'class_a' / 'again'))
    with pytest.raises(ValueError) as e:
        get_dataset('folder', str(root), 'train', **SMALL)
    assert 'leads back to' in str(e.value) and 'symlink loop' in str(e.value)


@error
def test_two_class_folders_that_are_one_folder_are_refused(tmp_path):
    root = tmp_path / 'data'
    _images(root)
    os.symlink(str(root / 'class_a'), str(root / 'class_e'))
    with pytest.raises(ValueError) as e:
        get_dataset('folder', str(root), 'test', **SMALL)
    assert 'are the same folder' in str(e.value)


@handled
def test_linked_image_files_and_linked_class_folders_inside_the_dataset_are_read(tmp_path):
    root = tmp_path / 'data'
    _images(root / '.store')                              # a hidden folder is no class
    for c in 'abcd':
        os.symlink(str(root / '.store' / ('class_' + c)), str(root / ('class_' + c)))
    os.symlink(str(root / '.store' / 'class_a' / 'img0.png'),
               str(root / '.store' / 'class_b' / 'extra.png'))
    ds = get_dataset('folder', str(root), 'train', **SMALL)
    assert ds.class_names == ['class_a', 'class_b'] and len(ds) == 3 + 4


@handled
def test_empty_class_folders_are_skipped_and_counted(tmp_path):
    """The issue: empty class folders counted in --split-classes."""
    root = tmp_path / 'data'
    _images(root, classes=4)
    for name in ('class_0', 'class_00', 'class_b0'):
        os.makedirs(str(root / name))
    with pytest.warns(UserWarning, match=r'3 empty class folder\(s\) in .* skipped .*class_0'):
        train = get_dataset('folder', str(root), 'train', **SMALL)
    test = get_dataset('folder', str(root), 'test', **SMALL)
    assert train.class_names == ['class_a', 'class_b'] and test.class_names == ['class_c', 'class_d']
    with pytest.warns(UserWarning, match='empty class folder'):
        three = get_dataset('folder', str(root), 'train', split_classes='3', **SMALL)
    assert three.class_names == ['class_a', 'class_b', 'class_c']



def test_a_folder_of_images_without_class_folders_is_named(tmp_path):
    """Images straight in the folder (no class sub-folders): the error says what layout is
    expected, not that a class split is empty."""
    from PIL import Image
    root = tmp_path / 'flat'
    root.mkdir()
    for i in range(4):
        Image.new('RGB', (24, 24), (i * 40, 0, 0)).save(str(root / ('%d.png' % i)))
    with pytest.raises(ValueError) as e:
        get_dataset('folder', str(root), 'train', **SMALL)
    assert str(e.value).startswith('%s has no class folders holding images; --data folder '
                                   'expects one sub-folder of images per class' % root)


# -- bad images -------------------------------------------------------------------------------

@handled
@pytest.mark.parametrize('split', ['train', 'test'])
def test_a_bad_image_is_left_out_never_replaced(tmp_path, split):
    """The issue: with --skip-bad-images an image whose data is broken was replaced by a copy of
    another image, which duplicated a query in the test split and inflated Recall@K."""
    root = tmp_path / 'data'
    _images(root, classes=4)
    bad = str(root / ('class_a' if split == 'train' else 'class_c') / 'img1.png')
    _break_data(bad)
    with pytest.warns(UserWarning, match='left out 1 unreadable'):
        ds = get_dataset('folder', str(root), split, skip_bad_images=True, **SMALL)
    assert len(ds) == 5 and bad not in ds.paths and ds.skipped[0][0] == bad
    assert 'cannot decode' in ds.skipped[0][1]
    arrays = [ds[i][0] for i in range(len(ds))]
    assert len({a.tobytes() for a in arrays}) == len(arrays)          # no image twice


@error
def test_without_skip_a_bad_image_is_named(tmp_path):
    root = tmp_path / 'data'
    _images(root)
    bad = str(root / 'class_a' / 'img1.png')
    _break_data(bad)
    ds = get_dataset('folder', str(root), 'train', **SMALL)
    with pytest.raises(BadImageError) as e:
        ds[ds.paths.index(bad)]
    assert bad in str(e.value) and '--skip-bad-images' in str(e.value)


@error
def test_a_truncated_photo_fails_even_after_gluoncv_allowed_truncated_images(tmp_path):
    """Importing GluonCV's data package (as building a GluonCV backbone does) sets PIL's
    LOAD_TRUNCATED_IMAGES for the whole process: a truncated JPEG then decoded as a half-grey
    picture, without a word."""
    from PIL import ImageFile
    root = tmp_path / 'data'
    F.write_folder(str(root), num_classes=4, per_class=3, ext='.jpg')
    bad = str(root / 'class_a' / 'img1.jpg')
    F.truncate(bad, 0.7)                             # the header whole, the data cut
    ds = get_dataset('folder', str(root), 'train', **SMALL)
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(BadImageError) as e:
            ds[ds.paths.index(bad)]
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved
    assert bad in str(e.value)


@error
def test_an_image_broken_during_the_run_is_an_error_not_a_copy(tmp_path):
    root = tmp_path / 'data'
    _images(root)
    ds = get_dataset('folder', str(root), 'train', skip_bad_images=True, **SMALL)
    path = ds.paths[1]
    _break_data(path)
    with pytest.raises(BadImageError) as e:
        ds[1]
    assert str(e.value).startswith('The image %s can no longer be decoded' % path)


@handled
def test_a_training_run_with_skipped_images_counts_each_query_once(tmp_path):
    root = tmp_path / 'data'
    _images(root, classes=4, per_class=4)
    _break_data(str(root / 'class_d' / 'img2.png'))
    run = str(tmp_path / 'run')
    with pytest.warns(UserWarning) as record:
        r = gluon_dml('train-margin', '--data', 'folder', '--data-path', str(root), '--save-dir', run,
                      '--skip-bad-images', '--batch-size', '4', '--batch-k', '2', '--model', 'smallconv',
                      '--embed-dim', '8', '--image-size', '24', '--epochs', '1', '--num-workers', '0',
                      '--no-progress', '--nmi-runs', '1')
    assert r.code == 0, r
    # said once, by the data layer (the method used to log it a second time)
    said = [str(w.message) for w in record if 'left out' in str(w.message)]
    assert len(said) == 1 and said[0].startswith(
        '--skip-bad-images: left out 1 unreadable image(s) of folder test, e.g. %s ('
        % (root / 'class_d' / 'img2.png')), said
    assert 'left out' not in r.out + r.err
    assert [row['num_queries'] for row in log_rows(run)] == [7, 7]        # 8 test images - 1


@error
def test_a_run_that_fails_at_its_first_evaluation_gives_its_folder_back(tmp_path):
    """An unreadable test image is found by the epoch-0 evaluation, after the run's record was
    written: the folder stayed, so the run the error advises (--skip-bad-images) was refused as
    'already holds a run', and with --resume as a change of settings."""
    root = tmp_path / 'data'
    _images(root, classes=4, per_class=4)
    bad = root / 'class_d' / 'img2.png'
    _break_data(str(bad))
    run = tmp_path / 'runs' / 'b1'
    argv = ('train-margin', '--data', 'folder', '--data-path', str(root), '--save-dir', str(run),
            '--batch-size', '4', '--batch-k', '2', '--model', 'smallconv', '--embed-dim', '8',
            '--image-size', '24', '--epochs', '1', '--num-workers', '0', '--no-progress',
            '--nmi-runs', '1')
    r = gluon_dml(*argv)
    assert r.code == 2 and str(bad) in r.err and '--skip-bad-images' in r.err, r
    assert not (tmp_path / 'runs').exists()          # the folders it made, given back
    with pytest.warns(UserWarning, match='left out 1 unreadable'):
        r = gluon_dml(*argv + ('--skip-bad-images',))
    assert r.code == 0, r
    assert [row['num_queries'] for row in log_rows(str(run))] == [7, 7]


@error
def test_a_research_annotation_file_that_is_not_utf8_is_named(tmp_path):
    base = F.write_cub(str(tmp_path), num_classes=2, per_class=2, boxes=False)
    path = os.path.join(base, 'classes.txt')
    with open(path, 'ab') as f:
        f.write('3 Gr\xfcnling\n'.encode('latin-1'))
    with pytest.raises(ValueError) as e:
        get_dataset('CUB_200_2011', str(tmp_path), 'train', **SMALL)
    assert str(e.value).startswith('%s, line 3 is not UTF-8 text' % path)
