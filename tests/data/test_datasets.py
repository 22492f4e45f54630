"""Datasets, their open-set splits, the registry and the test-time transforms.

Fixtures are written by the tests in each dataset's official layout (IDX files for
Fashion-MNIST, alphabet/characterNN/*.png trees and zips for Omniglot); the real data are
used where present (Fashion-MNIST from the Debian package, Omniglot from ../shared/data).
"""
import gzip
import os
import shutil
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from gluon_dml.data import (ArrayDataset, FASHION_MNIST_CLASSES, get_dataset,
                            get_transform, list_datasets, register_dataset, read_idx)
from gluon_dml.data import datasets as datasets_module

REPO = Path(__file__).resolve().parents[2]
OMNIGLOT_ROOT = REPO.parent / 'shared' / 'data' / 'omniglot'
FASHION_DEBIAN = Path('/usr/share/datasets/fashion-mnist')

needs_omniglot = pytest.mark.skipif(
    not (OMNIGLOT_ROOT / 'images_background_small1.zip').is_file(),
    reason='real Omniglot archives not found at %s' % OMNIGLOT_ROOT)
needs_fashion = pytest.mark.skipif(
    not FASHION_DEBIAN.is_dir(),
    reason='%s not installed (apt-get install dataset-fashion-mnist)' % FASHION_DEBIAN)


# ----------------------------------------------------------------------------- helpers

def write_idx(path, array, magic=None, gz=False):
    """Write ``array`` (uint8) as an IDX file in the official big-endian format."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 2049 if array.ndim == 1 else 2051
    header = struct.pack('>I', magic) + b''.join(struct.pack('>I', d) for d in array.shape)
    raw = header + array.tobytes()
    path = Path(str(path) + ('.gz' if gz else ''))
    if gz:
        with gzip.open(path, 'wb') as handle:
            handle.write(raw)
    else:
        path.write_bytes(raw)
    return path


def make_fashion_fixture(folder, gz, rows=28, cols=28, n_train=30, n_test=20, seed=0):
    """Four IDX files with random images and labels cycling through 0..9."""
    rng = np.random.RandomState(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for prefix, n in (('train', n_train), ('t10k', n_test)):
        images = rng.randint(0, 256, size=(n, rows, cols)).astype(np.uint8)
        labels = (np.arange(n) * 7 % 10).astype(np.uint8)
        write_idx(folder / ('%s-images-idx3-ubyte' % prefix), images, gz=gz)
        write_idx(folder / ('%s-labels-idx1-ubyte' % prefix), labels, gz=gz)
        data[prefix] = (images, labels)
    return data


def stroke_png(rng, size=35):
    """A 1-bit Omniglot-like drawing: dark strokes on a white background."""
    img = Image.new('L', (size, size), 255)
    draw = ImageDraw.Draw(img)
    for _ in range(3):
        points = [tuple(int(v) for v in rng.randint(2, size - 2, size=2)) for _ in range(3)]
        draw.line(points, fill=0, width=2)
    return img.convert('1')


def make_omniglot_tree(folder, archive, alphabets, seed=0, chars=2, drawings=3):
    """``folder/archive/<alphabet>/characterNN/NNNN_MM.png`` like the official zips.

    The drawings depend only on (alphabet, character, drawing), so an alphabet written into
    two archives has identical files, as Greek and Latin do in the real small archives."""
    for alphabet in alphabets:
        for c in range(1, chars + 1):
            char_dir = Path(folder) / archive / alphabet / ('character%02d' % c)
            char_dir.mkdir(parents=True, exist_ok=True)
            for d in range(1, drawings + 1):
                rng = np.random.RandomState([seed, len(alphabet), sum(map(ord, alphabet)),
                                             c, d])
                stroke_png(rng).save(char_dir / ('%04d_%02d.png' % (c * 10, d)))
    return Path(folder) / archive


def zip_tree(tree, zip_path):
    """Zip ``tree`` keeping its top folder name, as the official archives do."""
    tree = Path(tree)
    with zipfile.ZipFile(zip_path, 'w') as archive:
        for path in sorted(tree.rglob('*')):
            archive.write(path, str(path.relative_to(tree.parent)))
    return zip_path


def load_quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return get_dataset(*args, **kwargs)


# ----------------------------------------------------------------------------- registry

def test_registry_lists_and_normalises_names(tmp_path):
    assert {'digits', 'fashion-mnist', 'omniglot'} <= set(list_datasets())
    make_fashion_fixture(tmp_path, gz=False)
    reference = get_dataset('fashion-mnist', root=str(tmp_path), split='test')
    for alias in ('fashion_mnist', 'FashionMNIST', 'Fashion-MNIST', 'fashionmnist'):
        other = get_dataset(alias, root=str(tmp_path), split='test')
        np.testing.assert_array_equal(other.images, reference.images)
    assert get_dataset('DIGITS').name == 'digits'


def test_unknown_name_or_split_names_the_valid_ones():
    with pytest.raises(ValueError, match='digits.*fashion-mnist.*omniglot'):
        get_dataset('cifar-11')
    with pytest.raises(ValueError, match="train, test"):
        get_dataset('digits', split='validation')


def test_register_dataset_adds_one_line_datasets():
    def tiny(root=None, split='train'):
        return ArrayDataset(np.zeros((2, 1, 2, 2)), [0, 1], ['a', 'b'], 'tiny', split)
    register_dataset('tiny-set', tiny)
    try:
        assert 'tiny-set' in list_datasets()
        data = get_dataset('Tiny_Set', split='test')
        assert (len(data), data.split, data.num_classes) == (2, 'test', 2)
        with pytest.raises(ValueError, match='already registered'):
            register_dataset('tiny_set', tiny)
    finally:
        from gluon_dml.data import registry
        registry._DATASETS.pop(('open-set', 'tinyset'), None)
    assert 'tiny-set' not in list_datasets()


def test_array_dataset_contract_and_validation():
    images = np.random.RandomState(0).rand(4, 1, 3, 5)
    data = ArrayDataset(images, [1, 0, 1, 0], ['x', 'y'], name='toy', split='train')
    assert data.images.dtype == np.float32 and data.labels.dtype == np.int64
    assert data.image_shape == (1, 3, 5) and data.num_classes == 2 and len(data) == 4
    image, label = data[2]
    assert isinstance(image, np.ndarray) and image.shape == (1, 3, 5)
    assert label == 1 and isinstance(label, np.integer)
    with pytest.raises(ValueError, match='labels must be exactly 0..2'):
        ArrayDataset(images, [0, 2, 2, 0], ['a', 'b', 'c'])   # label 1 unused
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        ArrayDataset(images * 255, [0, 1, 0, 1], ['a', 'b'])
    with pytest.raises(ValueError, match='shape'):
        ArrayDataset(images[:, 0], [0, 1, 0, 1], ['a', 'b'])
    with pytest.raises(ValueError, match=r'channels last: pass images.transpose\(0, 3, 1, 2\)'):
        ArrayDataset(np.zeros((4, 12, 12, 1)), [0, 1, 0, 1], ['a', 'b'])
    assert ArrayDataset(np.zeros((4, 4, 12, 12)), [0, 1, 0, 1], ['a', 'b']).image_shape == (4, 12, 12)


# ----------------------------------------------------------------------------- digits

def test_digits_open_set_split():
    from sklearn.datasets import load_digits
    bunch = load_digits()
    train, test = get_dataset('digits', split='train'), get_dataset('digits', split='test')
    assert len(train) == int((bunch.target < 5).sum())
    assert len(test) == int((bunch.target >= 5).sum())
    assert len(train) + len(test) == len(bunch.target)
    assert train.class_names == ['0', '1', '2', '3', '4']
    assert test.class_names == ['5', '6', '7', '8', '9']
    assert not set(train.class_names) & set(test.class_names)
    for split, first in ((train, 0), (test, 5)):
        assert split.image_shape == (1, 8, 8)
        assert sorted(np.unique(split.labels)) == [0, 1, 2, 3, 4]
        assert split.images.min() == 0.0 and split.images.max() == 1.0
        keep = (bunch.target >= first) & (bunch.target < first + 5)
        np.testing.assert_allclose(split.images[:, 0], bunch.images[keep] / 16.0, atol=1e-7)
        np.testing.assert_array_equal(split.labels, bunch.target[keep] - first)


# ----------------------------------------------------------------------------- Fashion-MNIST

@needs_fashion
def test_fashion_mnist_real_protocol():
    train = get_dataset('fashion-mnist', split='train')
    test = get_dataset('fashion-mnist', split='test')
    assert (len(train), len(test)) == (30000, 5000)
    assert train.image_shape == test.image_shape == (1, 28, 28)
    np.testing.assert_array_equal(np.bincount(train.labels), [6000] * 5)
    np.testing.assert_array_equal(np.bincount(test.labels), [1000] * 5)
    assert train.class_names == list(FASHION_MNIST_CLASSES[:5])
    assert test.class_names == ['Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']
    assert 0.0 <= train.images.min() and train.images.max() == 1.0
    raw = read_idx(str(FASHION_DEBIAN / 't10k-images-idx3-ubyte.gz'))
    raw_labels = read_idx(str(FASHION_DEBIAN / 't10k-labels-idx1-ubyte.gz'))
    np.testing.assert_allclose(test.images[:, 0], raw[raw_labels >= 5] / 255.0, atol=1e-7)


@pytest.mark.parametrize('gz', [False, True])
def test_fashion_mnist_fixture_read_back_exactly(tmp_path, gz):
    expected = make_fashion_fixture(tmp_path, gz=gz, rows=4, cols=6)
    for split, prefix, first in (('train', 'train', 0), ('test', 't10k', 5)):
        data = get_dataset('fashion-mnist', root=str(tmp_path), split=split)
        images, labels = expected[prefix]
        keep = (labels >= first) & (labels < first + 5)
        assert data.image_shape == (1, 4, 6)
        np.testing.assert_allclose(data.images[:, 0], images[keep] / 255.0, atol=1e-7)
        np.testing.assert_array_equal(data.labels, labels[keep].astype(np.int64) - first)
        assert data.class_names == list(FASHION_MNIST_CLASSES[first:first + 5])


def test_read_idx_gzip_and_plain_agree(tmp_path):
    labels = np.arange(300, dtype=np.uint8) % 256
    plain = write_idx(tmp_path / 'a-labels-idx1-ubyte', labels)
    packed = write_idx(tmp_path / 'b-labels-idx1-ubyte', labels, gz=True)
    np.testing.assert_array_equal(read_idx(str(plain)), labels)
    np.testing.assert_array_equal(read_idx(str(packed)), labels)


def test_fashion_truncated_files_give_clear_error(tmp_path):
    make_fashion_fixture(tmp_path, gz=False)
    path = tmp_path / 't10k-images-idx3-ubyte'
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match='t10k-images-idx3-ubyte.*truncated'):
        get_dataset('fashion-mnist', root=str(tmp_path), split='test')
    # a gzip stream cut in the middle
    shutil.rmtree(tmp_path)
    make_fashion_fixture(tmp_path, gz=True)
    labels = np.random.RandomState(0).randint(0, 10, size=5000)
    path = write_idx(tmp_path / 'train-labels-idx1-ubyte', labels, gz=True)
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match='train-labels-idx1-ubyte.gz.*(corrupt|truncated)'):
        get_dataset('fashion-mnist', root=str(tmp_path), split='train')


def test_fashion_wrong_magic_gives_clear_error(tmp_path):
    make_fashion_fixture(tmp_path, gz=False)
    write_idx(tmp_path / 't10k-labels-idx1-ubyte', np.zeros(20, np.uint8), magic=1234)
    with pytest.raises(ValueError, match='t10k-labels-idx1-ubyte.*magic number 1234'):
        get_dataset('fashion-mnist', root=str(tmp_path), split='test')
    # an image file where the labels belong
    images = read_idx(str(tmp_path / 't10k-images-idx3-ubyte'))
    write_idx(tmp_path / 't10k-labels-idx1-ubyte', images)
    with pytest.raises(ValueError, match='t10k-labels-idx1-ubyte.*label file'):
        get_dataset('fashion-mnist', root=str(tmp_path), split='test')


def test_fashion_mismatched_counts(tmp_path):
    make_fashion_fixture(tmp_path, gz=False)
    write_idx(tmp_path / 't10k-labels-idx1-ubyte', np.zeros(7, np.uint8))
    with pytest.raises(ValueError, match='20 images.*7 labels'):
        get_dataset('fashion-mnist', root=str(tmp_path), split='test')


def test_fashion_falls_back_to_mxnet_cache(tmp_path, monkeypatch):
    home = tmp_path / 'mxhome'
    monkeypatch.setenv('MXNET_HOME', str(home))
    expected = make_fashion_fixture(home / 'datasets' / 'fashion-mnist', gz=True)
    empty = tmp_path / 'empty'
    empty.mkdir()
    data = get_dataset('fashion-mnist', root=str(empty), split='train')
    images, labels = expected['train']
    np.testing.assert_allclose(data.images[:, 0], images[labels < 5] / 255.0, atol=1e-7)


def test_fashion_data_path_that_is_no_folder_is_named(tmp_path, monkeypatch):
    """A --data-path the user gave is not silently replaced by the cache (or a download)."""
    home = tmp_path / 'mxhome'
    monkeypatch.setenv('MXNET_HOME', str(home))
    make_fashion_fixture(home / 'datasets' / 'fashion-mnist', gz=True)     # would be found
    with pytest.raises(FileNotFoundError) as info:
        get_dataset('fashion-mnist', root=str(tmp_path / 'typo'), split='train')
    assert str(info.value).startswith('Fashion-MNIST: --data-path %s is not a folder'
                                      % (tmp_path / 'typo'))


def test_fashion_nothing_found_names_tried_paths(tmp_path, monkeypatch):
    import mxnet.gluon.data.vision.datasets as gluon_datasets
    home = tmp_path / 'mxhome'
    monkeypatch.setenv('MXNET_HOME', str(home))
    calls = []

    def unreachable(url, path=None, **kwargs):
        calls.append(path)
        raise OSError('network unreachable')
    monkeypatch.setattr(gluon_datasets, 'download', unreachable)
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as info:
        get_dataset('fashion-mnist', root=str(empty), split='train')
    message = str(info.value)
    cache = str(home / 'datasets' / 'fashion-mnist')
    assert str(empty) in message and cache in message
    assert 'apt-get install dataset-fashion-mnist' in message
    assert 'train-images-idx3-ubyte' in message and 't10k-labels-idx1-ubyte' in message
    assert 'network unreachable' in message
    # Gluon was asked to download into the MXNet cache, never into the user's folder
    assert calls and all(os.path.abspath(p) == os.path.abspath(cache) for p in calls)


def test_fashion_gluon_download_path_is_read(tmp_path, monkeypatch):
    """With internet, Gluon downloads into the cache and our reader then reads the files;
    the network is replaced by a function that writes the official-format files."""
    import mxnet.gluon.data.vision.datasets as gluon_datasets
    home = tmp_path / 'mxhome'
    monkeypatch.setenv('MXNET_HOME', str(home))
    source = tmp_path / 'served'
    expected = make_fashion_fixture(source, gz=True)

    def serve(url, path=None, **kwargs):
        name = url.rsplit('/', 1)[-1]
        os.makedirs(path, exist_ok=True)
        shutil.copy(str(source / name), os.path.join(path, name))
        return os.path.join(path, name)
    monkeypatch.setattr(gluon_datasets, 'download', serve)
    empty = tmp_path / 'empty'
    empty.mkdir()
    data = get_dataset('fashion-mnist', root=str(empty), split='test')
    images, labels = expected['t10k']
    np.testing.assert_allclose(data.images[:, 0], images[labels >= 5] / 255.0, atol=1e-7)
    assert (home / 'datasets' / 'fashion-mnist' / 't10k-images-idx3-ubyte.gz').is_file()


# ----------------------------------------------------------------------------- Omniglot

@pytest.fixture(scope='module')
def omniglot_real():
    if not (OMNIGLOT_ROOT / 'images_background_small1.zip').is_file():
        pytest.skip('real Omniglot archives not found at %s' % OMNIGLOT_ROOT)
    return (get_dataset('omniglot', root=str(OMNIGLOT_ROOT), split='train'),
            get_dataset('omniglot', root=str(OMNIGLOT_ROOT), split='test'))


@needs_omniglot
def test_omniglot_real_protocol(omniglot_real):
    train, test = omniglot_real
    assert (train.num_classes, len(train)) == (183, 3660)
    assert (test.num_classes, len(test)) == (59, 1180)
    for split in (train, test):
        np.testing.assert_array_equal(np.bincount(split.labels), 20)
        assert split.image_shape == (1, 28, 28)
        assert split.images.min() == 0.0 and split.images.max() == 1.0
        assert split.images.mean() < 0.2          # strokes bright on a dark background
        assert split.class_names == sorted(split.class_names)
    alphabets = lambda d: sorted({name.split('/')[0] for name in d.class_names})
    assert alphabets(train) == ['Balinese', 'Early_Aramaic', 'Greek', 'Japanese_(katakana)',
                                'Korean', 'Latin']
    assert alphabets(test) == ['Sanskrit', 'Tagalog']
    assert not set(train.class_names) & set(test.class_names)
    # Greek (24) and Latin (26) are in both archives: counted once, 20 drawings each
    greek = [i for i, n in enumerate(train.class_names) if n.startswith('Greek/')]
    assert len(greek) == 24 and np.isin(train.labels, greek).sum() == 24 * 20


@needs_omniglot
def test_omniglot_uses_the_shared_transform(omniglot_real):
    train, _ = omniglot_real
    transform = get_transform('omniglot')
    with zipfile.ZipFile(str(OMNIGLOT_ROOT / 'images_background_small1.zip')) as archive:
        member = 'images_background_small1/Balinese/character01/'
        name = sorted(n for n in archive.namelist() if n.startswith(member)
                      and n.endswith('.png'))[0]
        with archive.open(name) as handle:
            expected = transform(Image.open(handle))
    assert train.class_names[0] == 'Balinese/character01'
    np.testing.assert_array_equal(train.images[0], expected)


TRAIN_FIX = ['Greek', 'Latin']        # in both fixture archives, as in the real ones
SMALL1_ONLY = ['Korean']
SMALL2_ONLY = ['Sanskrit']


@pytest.fixture
def omniglot_tree(tmp_path):
    extracted = tmp_path / 'extracted'
    make_omniglot_tree(extracted, 'images_background_small1', TRAIN_FIX + SMALL1_ONLY)
    make_omniglot_tree(extracted, 'images_background_small2', TRAIN_FIX + SMALL2_ONLY)
    zipped = tmp_path / 'zipped'
    zipped.mkdir()
    for name in ('images_background_small1', 'images_background_small2'):
        zip_tree(extracted / name, zipped / (name + '.zip'))
    return extracted, zipped


def test_omniglot_zip_and_folders_give_the_same_arrays(omniglot_tree, tmp_path):
    extracted, zipped = omniglot_tree
    flat = tmp_path / 'flat'          # a folder of alphabets directly
    for archive in ('images_background_small1', 'images_background_small2'):
        for alphabet in (extracted / archive).iterdir():
            shutil.copytree(str(alphabet), str(flat / alphabet.name), dirs_exist_ok=True)
    for split, expected_classes in (('train', 6), ('test', 2)):
        with pytest.warns(UserWarning, match='missing'):
            from_zip = get_dataset('omniglot', root=str(zipped), split=split)
        from_dir = load_quiet('omniglot', root=str(extracted), split=split)
        from_flat = load_quiet('omniglot', root=str(flat), split=split)
        assert from_zip.num_classes == expected_classes
        assert len(from_zip) == expected_classes * 3     # duplicates counted once
        for other in (from_dir, from_flat):
            assert other.class_names == from_zip.class_names
            np.testing.assert_array_equal(other.labels, from_zip.labels)
            np.testing.assert_array_equal(other.images, from_zip.images)
    train = load_quiet('omniglot', root=str(zipped), split='train')
    assert train.class_names == ['Greek/character01', 'Greek/character02',
                                 'Korean/character01', 'Korean/character02',
                                 'Latin/character01', 'Latin/character02']
    # every image is the shared transform of its PNG
    png = extracted / 'images_background_small1' / 'Greek' / 'character01' / '0010_01.png'
    np.testing.assert_array_equal(train.images[0], get_transform('omniglot')(str(png)))
    assert train.image_shape == (1, 28, 28) and train.images.mean() < 0.5


def test_omniglot_duplicates_across_archives_counted_once(omniglot_tree, tmp_path):
    _, zipped = omniglot_tree
    only_small1 = tmp_path / 'one'
    only_small1.mkdir()
    shutil.copy(str(zipped / 'images_background_small1.zip'), str(only_small1))
    one = load_quiet('omniglot', root=str(only_small1), split='train')
    both = load_quiet('omniglot', root=str(zipped), split='train')
    assert len(one) == len(both) == 6 * 3      # small2 adds nothing new to the train split
    np.testing.assert_array_equal(one.images, both.images)
    # a zip plus its own extracted folder in the same root: still counted once
    mixed = tmp_path / 'mixed'
    shutil.copytree(str(zipped), str(mixed))
    with zipfile.ZipFile(str(zipped / 'images_background_small2.zip')) as archive:
        archive.extractall(str(mixed))
    assert len(load_quiet('omniglot', root=str(mixed), split='test')) == 2 * 3


def test_omniglot_decoded_images_are_cached_and_decoded_again_when_a_source_changes(
        omniglot_tree, tmp_path, monkeypatch):
    extracted, _ = omniglot_tree
    cache = tmp_path / 'cache'
    monkeypatch.setenv('GLUON_DML_CACHE', str(cache))
    decodes = []
    real_decode = datasets_module._decode_omniglot
    monkeypatch.setattr(datasets_module, '_decode_omniglot',
                        lambda *a: decodes.append(1) or real_decode(*a))
    first = load_quiet('omniglot', root=str(extracted), split='train')
    files = sorted(os.listdir(str(cache)))
    assert len(decodes) == 1 and len(files) == 1 and files[0].startswith('omniglot-train-')
    assert np.load(str(cache / files[0])).dtype == np.uint8       # whole multiples of 1/255
    again = load_quiet('omniglot', root=str(extracted), split='train')
    assert len(decodes) == 1                                      # read from the cache
    np.testing.assert_array_equal(again.images, first.images)     # the very same floats
    assert again.images.dtype == np.float32 and again.class_names == first.class_names
    monkeypatch.setenv('GLUON_DML_CACHE', 'off')
    np.testing.assert_array_equal(load_quiet('omniglot', root=str(extracted), split='train').images,
                                  first.images)
    assert len(decodes) == 2 and len(os.listdir(str(cache))) == 1
    # one image redrawn: a different file, decoded again, and the new drawing is what comes back
    monkeypatch.setenv('GLUON_DML_CACHE', str(cache))
    png = extracted / 'images_background_small1' / 'Greek' / 'character01' / '0010_01.png'
    Image.new('L', (105, 105), 0).save(str(png))
    changed = load_quiet('omniglot', root=str(extracted), split='train')
    assert len(decodes) == 3 and len(os.listdir(str(cache))) == 2
    np.testing.assert_array_equal(changed.images[0], get_transform('omniglot')(str(png)))
    assert not np.array_equal(changed.images[0], first.images[0])
    # a damaged cache file is decoded again and replaced
    for name in os.listdir(str(cache)):
        (cache / name).write_bytes(b'not an array')
    np.testing.assert_array_equal(load_quiet('omniglot', root=str(extracted), split='train').images,
                                  changed.images)
    assert len(decodes) == 4


def test_omniglot_missing_root_or_layout_errors(tmp_path):
    missing = tmp_path / 'nowhere'
    with pytest.raises(FileNotFoundError, match='nowhere.*images_background_small1.zip'):
        get_dataset('omniglot', root=str(missing))
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match='No Omniglot images found in .*empty'):
        get_dataset('omniglot', root=str(empty))
    make_omniglot_tree(tmp_path / 'trainonly', 'images_background_small1', ['Korean'])
    with pytest.raises(FileNotFoundError, match='Sanskrit, Tagalog'):
        get_dataset('omniglot', root=str(tmp_path / 'trainonly'), split='test')
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'images_background_small1.zip').write_bytes(b'not a zip at all')
    with pytest.raises(ValueError, match='images_background_small1.zip is not a valid zip'):
        get_dataset('omniglot', root=str(bad))


# ----------------------------------------------------------------------------- transforms

def test_omniglot_transform_makes_strokes_bright():
    img = Image.new('L', (105, 105), 255)
    ImageDraw.Draw(img).line([(52, 5), (52, 100)], fill=0, width=8)
    out = get_transform('omniglot')(img.convert('1'))
    assert out.shape == (1, 28, 28) and out.dtype == np.float32
    assert out[0, :, 14].mean() > 0.9            # the stroke, bright
    assert out[0, :, :8].max() == 0.0            # the paper, dark
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_digits_transform_matches_sklearn_convention():
    from sklearn.datasets import load_digits
    bunch = load_digits()
    index = next(i for i, im in enumerate(bunch.images) if im.max() == 16 and im.min() == 0)
    digit = bunch.images[index]
    # as a user would have it: 32x32, dark ink on white paper
    paper = np.round(255 - digit / 16.0 * 255).astype(np.uint8)
    img = Image.fromarray(np.kron(paper, np.ones((4, 4), np.uint8)), 'L')
    out = get_transform('digits', fit=False)(img)
    assert out.shape == (1, 8, 8)
    np.testing.assert_allclose(out[0], digit / 16.0, atol=1.5 / 255)
    # bright-on-dark input: no inversion wanted
    bright = Image.fromarray(255 - np.asarray(img), 'L')
    np.testing.assert_allclose(get_transform('digits', fit=False, invert=False)(bright), out,
                               atol=1e-6)


def test_digits_transform_fits_a_small_digit_on_a_large_page():
    from sklearn.datasets import load_digits
    bunch = load_digits()
    img = Image.new('RGB', (200, 150), (255, 255, 255))
    ImageDraw.Draw(img).ellipse([40, 30, 85, 90], outline=(0, 0, 0), width=6)   # a "0"
    out = get_transform('digits')(img)[0]
    assert out.shape == (8, 8) and out.max() == 1.0 and out.min() == 0.0
    assert out[0].max() > 0.3 and out[-1].max() > 0.3       # it fills the box's height
    assert out[3:5, 3:5].max() == 0.0                       # its hole stays dark
    # it looks like scikit-learn's zeros more than like any other digit
    means = np.stack([bunch.images[bunch.target == d].mean(0) / 16 for d in range(10)])
    distances = ((means - out) ** 2).sum(axis=(1, 2))
    assert distances.argmin() == 0


def test_fashion_transform_is_identity_on_28x28_and_handles_files(tmp_path):
    raw = np.random.RandomState(1).randint(0, 256, size=(28, 28)).astype(np.uint8)
    out = get_transform('fashion-mnist')(Image.fromarray(raw, 'L'))
    np.testing.assert_allclose(out[0], raw / 255.0, atol=1e-7)
    path = tmp_path / 'shirt.png'
    Image.fromarray(np.stack([raw] * 3, -1), 'RGB').resize((56, 56)).save(path)
    assert get_transform('fashion_mnist')(str(path)).shape == (1, 28, 28)
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    with pytest.raises(ValueError, match='broken.png'):
        get_transform('omniglot')(str(broken))
    with pytest.raises(ValueError, match='digits.*omniglot'):
        get_transform('mnist-3d')


def test_transparent_background_counts_as_paper():
    img = Image.new('RGBA', (105, 105), (0, 0, 0, 0))      # transparent black
    ImageDraw.Draw(img).line([(10, 50), (95, 50)], fill=(0, 0, 0, 255), width=8)
    out = get_transform('omniglot')(img)[0]
    assert out[0:5].max() == 0.0 and out[13].max() > 0.9
