"""Datasets with open-set splits, and the registry that names them.

``get_dataset(name, root=None, split='train')`` returns an :class:`ArrayDataset`.  Every
protocol splits the *classes*: the test split holds classes never seen in training, and
the labels of each split are renumbered from 0.

=============  =====================================  =====================================
name           train split                            test split
=============  =====================================  =====================================
digits         scikit-learn ``load_digits``, digits    digits 5-9 (labels 0-4), 8x8, /16
               0-4 (labels 0-4), 8x8, /16
fashion-mnist  the TRAIN file's classes 0-4            the TEST (t10k) file's classes 5-9
               (T-shirt/top .. Coat): 30,000 images    (Sandal .. Ankle boot): 5,000 images
               28x28, /255                             28x28, /255
omniglot       every character of Balinese,           Sanskrit and Tagalog: 59 classes,
               Early_Aramaic, Greek, Korean, Latin,   1,180 images
               Japanese_(katakana): 183 classes,
               3,660 images; 105x105 -> 28x28,
               strokes bright
=============  =====================================  =====================================

Adding a dataset is one function ``fn(root=None, split='train') -> ArrayDataset`` and one
line ``register_dataset('name', fn)``.
"""
import gzip
import hashlib
import io
import os
import struct
import warnings
import zipfile
import zlib

import numpy as np

from ..fileio import cache_dir as _cache_dir
from .base import ArrayDataset, data_home, normalize_name
from .registry import get_dataset, list_datasets, register_dataset
from .transforms import get_transform

__all__ = ['get_dataset', 'list_datasets', 'register_dataset', 'is_image_dataset',
           'dataset_sampling', 'has_query_split', 'load_digits',
           'load_fashion_mnist', 'load_omniglot', 'read_idx', 'SPLITS',
           'FASHION_MNIST_CLASSES', 'OMNIGLOT_TRAIN_ALPHABETS', 'OMNIGLOT_TEST_ALPHABETS']

SPLITS = ('train', 'test')


def _check_split(split):
    if split not in SPLITS:
        raise ValueError('Unknown split %r; valid splits: %s.' % (split, ', '.join(SPLITS)))


# ----------------------------------------------------------------------------------------
# digits (scikit-learn)
# ----------------------------------------------------------------------------------------

def load_digits(root=None, split='train'):
    """scikit-learn's 8x8 handwritten digits; train = digits 0-4, test = digits 5-9.

    ``root`` is ignored (the data ship with scikit-learn).  Pixel values 0..16 are divided
    by 16; labels are ``digit`` (train) or ``digit - 5`` (test)."""
    _check_split(split)
    from sklearn.datasets import load_digits as sklearn_digits
    bunch = sklearn_digits()
    images = bunch.images.astype(np.float32) / np.float32(16.0)
    target = bunch.target.astype(np.int64)
    first = 0 if split == 'train' else 5
    keep = (target >= first) & (target < first + 5)
    return ArrayDataset(images[keep][:, None, :, :], target[keep] - first,
                        [str(d) for d in range(first, first + 5)], name='digits',
                        split=split)


# ----------------------------------------------------------------------------------------
# Fashion-MNIST (IDX files)
# ----------------------------------------------------------------------------------------

FASHION_MNIST_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                         'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')
FASHION_MNIST_DEBIAN_ROOT = '/usr/share/datasets/fashion-mnist'
_FASHION_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


def read_idx(path):
    """Read an unsigned-byte IDX file (MNIST format), gzip-compressed or not.

    Returns a uint8 array: ``(N,)`` for a label file (magic 2049), ``(N, rows, cols)`` for an
    image file (magic 2051).  A wrong magic number, a truncated file or trailing bytes
    raise ``ValueError`` naming the file."""
    try:
        with open(path, 'rb') as handle:
            raw = handle.read()
        if raw[:2] == b'\x1f\x8b':
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError('Cannot read %s (%s): the file is corrupt or truncated; download it '
                         'again.' % (path, err)) from None
    if len(raw) < 8:
        raise ValueError('%s is truncated: %d bytes, shorter than an IDX header; download it '
                         'again.' % (path, len(raw)))
    magic, count = struct.unpack('>II', raw[:8])
    if magic == _IDX_LABELS_MAGIC:
        header, shape = 8, (count,)
    elif magic == _IDX_IMAGES_MAGIC:
        if len(raw) < 16:
            raise ValueError('%s is truncated: %d bytes, shorter than an IDX image header; '
                             'download it again.' % (path, len(raw)))
        rows, cols = struct.unpack('>II', raw[8:16])
        header, shape = 16, (count, rows, cols)
    else:
        raise ValueError('%s is not an IDX label or image file: magic number %d, expected '
                         '2049 (labels) or 2051 (images).' % (path, magic))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise ValueError('%s has %d bytes but its header announces %s items (%d bytes): the '
                         'file is %s; download it again.'
                         % (path, len(raw), 'x'.join(str(s) for s in shape), expected,
                            'truncated' if len(raw) < expected else 'corrupt'))
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_file(folder, base):
    """``folder/base`` or ``folder/base.gz``, whichever exists (plain file first)."""
    for candidate in (base, base + '.gz'):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _find_pair(folder, split):
    paths = [_find_file(folder, base) for base in _FASHION_FILES[split]]
    return paths if all(paths) else None


def _fashion_cache_dir():
    return os.path.join(data_home(), 'datasets', 'fashion-mnist')


def _gluon_download_fashion(cache_dir, split):
    """Let Gluon download (and checksum) the official files into ``cache_dir``."""
    from mxnet.gluon.data.vision import FashionMNIST
    FashionMNIST(root=cache_dir, train=(split == 'train'))


def load_fashion_mnist(root=None, split='train'):
    """Fashion-MNIST from its four IDX files; train = TRAIN file classes 0-4 (30,000
    images), test = TEST file classes 5-9 (5,000 images), 28x28, /255.

    The files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``) are
    looked for in ``root`` (default ``/usr/share/datasets/fashion-mnist``, from
    ``apt-get install dataset-fashion-mnist``), then in MXNet's cache
    ``$MXNET_HOME/datasets/fashion-mnist`` (``~/.mxnet`` by default); if neither has them,
    Gluon downloads them into the cache.  Only the two files of ``split`` are read."""
    _check_split(split)
    first = root if root is not None else FASHION_MNIST_DEBIAN_ROOT
    first = os.path.expanduser(first)
    if root is not None and not os.path.isdir(first):
        # a path the user gave: not silently replaced by the cache or a download
        raise FileNotFoundError('Fashion-MNIST: --data-path %s is not a folder; give the folder '
                                'that holds the four IDX files, or leave --data-path out (then '
                                '%s, then %s, then a download).'
                                % (root, FASHION_MNIST_DEBIAN_ROOT, _fashion_cache_dir()))
    cache_dir = _fashion_cache_dir()
    tried = []
    pair = None
    for folder in (first, cache_dir):
        if folder in tried:
            continue
        tried.append(folder)
        pair = _find_pair(folder, split)
        if pair:
            break
    download_error = None
    if pair is None:
        try:
            # never point Gluon at the Debian folder: its files differ from Gluon's checksums
            _gluon_download_fashion(cache_dir, split)
            pair = _find_pair(cache_dir, split)
            if pair is None:
                download_error = 'the download left no files in %s' % cache_dir
        except Exception as err:  # pylint: disable=broad-except
            download_error = '%s: %s' % (type(err).__name__, err)
    if pair is None:
        names = ', '.join(_FASHION_FILES['train'] + _FASHION_FILES['test'])
        raise FileNotFoundError(
            'Fashion-MNIST %s files not found in %s, and the download failed (%s); install '
            'them with "apt-get install dataset-fashion-mnist" or place the four files %s '
            '(optionally .gz) in a folder and give it as --data-path (root= in Python).'
            % (split, ' or '.join(tried), download_error, names))
    images_path, labels_path = pair
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise ValueError('%s should be an IDX image file (magic 2051) but holds labels.'
                         % images_path)
    if labels.ndim != 1:
        raise ValueError('%s should be an IDX label file (magic 2049) but holds images.'
                         % labels_path)
    if images.shape[0] != labels.shape[0]:
        raise ValueError('%s holds %d images but %s holds %d labels; one of the files is '
                         'from another release, download both again.'
                         % (images_path, images.shape[0], labels_path, labels.shape[0]))
    if labels.size and labels.max() > 9:
        raise ValueError('%s holds label %d; Fashion-MNIST labels are 0..9.'
                         % (labels_path, labels.max()))
    first_class = 0 if split == 'train' else 5
    keep = (labels >= first_class) & (labels < first_class + 5)
    kept = images[keep]
    data = kept.astype(np.float32)[:, None, :, :]
    data /= np.float32(255.0)
    return ArrayDataset(data, labels[keep].astype(np.int64) - first_class,
                        list(FASHION_MNIST_CLASSES[first_class:first_class + 5]),
                        name='fashion-mnist', split=split)


# ----------------------------------------------------------------------------------------
# Omniglot (official zip archives or their extracted folders)
# ----------------------------------------------------------------------------------------

OMNIGLOT_TRAIN_ALPHABETS = ('Balinese', 'Early_Aramaic', 'Greek', 'Japanese_(katakana)',
                            'Korean', 'Latin')
OMNIGLOT_TEST_ALPHABETS = ('Sanskrit', 'Tagalog')
OMNIGLOT_ARCHIVES = ('images_background_small1', 'images_background_small2',
                     'images_background', 'images_evaluation')
_OMNIGLOT_LAYOUT = ('a folder holding the official archives images_background_small1.zip '
                    'and images_background_small2.zip (or images_background.zip / '
                    'images_evaluation.zip), their extracted folders '
                    '(images_background_small1/<alphabet>/<characterNN>/*.png), or the '
                    'alphabet folders themselves')


OMNIGLOT_PACKAGED = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'omniglot')
"""The two small background archives (MIT licence, 2.9 MB) shipped inside the package."""


def _omniglot_default_root():
    """The packaged copy of the two small background archives."""
    return OMNIGLOT_PACKAGED


def _split_member(path):
    """``(alphabet, character, file)`` of an image path ending in
    ``alphabet/character/file.png``, else None."""
    parts = [p for p in path.replace('\\', '/').split('/') if p]
    if len(parts) < 3 or not parts[-1].lower().endswith('.png'):
        return None
    if '__MACOSX' in parts or parts[-1].startswith('._'):
        return None
    return parts[-3], parts[-2], parts[-1]


def _scan_zip(path):
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            key = _split_member(member)
            if key is not None:
                yield key, ('zip', path, member)


def _scan_alphabet(folder):
    """Images of one alphabet folder: ``folder/<character>/*.png``."""
    alphabet = os.path.basename(os.path.normpath(folder))
    for character in sorted(os.listdir(folder)):
        char_dir = os.path.join(folder, character)
        if not os.path.isdir(char_dir):
            continue
        for filename in sorted(os.listdir(char_dir)):
            if filename.lower().endswith('.png') and not filename.startswith('._'):
                yield (alphabet, character, filename), ('file', os.path.join(char_dir,
                                                                             filename), None)


def _alphabet_dirs(folder, skip=()):
    """Sub-folders of ``folder`` that look like alphabets (they hold sub-folders)."""
    found = []
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if entry in skip or entry == '__MACOSX' or not os.path.isdir(path):
            continue
        if any(os.path.isdir(os.path.join(path, sub)) for sub in os.listdir(path)):
            found.append(path)
    return found


def _omniglot_sources(root):
    """``('zip', path)`` and ``('alphabet', path)`` sources under ``root``, in a fixed
    order (archives first, then extracted folders, then loose alphabet folders)."""
    if os.path.isfile(root):
        if not zipfile.is_zipfile(root):
            raise ValueError('%s is not a valid zip archive (corrupt or truncated); download '
                             'it again.' % root)
        return [('zip', root)]
    sources = []
    for name in OMNIGLOT_ARCHIVES:
        archive = os.path.join(root, name + '.zip')
        if os.path.isfile(archive):
            if not zipfile.is_zipfile(archive):
                raise ValueError('%s is not a valid zip archive (corrupt or truncated); '
                                 'download it again.' % archive)
            sources.append(('zip', archive))
    for name in OMNIGLOT_ARCHIVES:
        folder = os.path.join(root, name)
        if os.path.isdir(folder):
            # an extracted archive, possibly with the zip's own top folder repeated inside
            nested = os.path.join(folder, name)
            folder = nested if os.path.isdir(nested) else folder
            sources.extend(('alphabet', path) for path in _alphabet_dirs(folder))
    # a folder of alphabets directly: root/<alphabet>/<characterNN>/*.png
    sources.extend(('alphabet', path) for path in _alphabet_dirs(root, OMNIGLOT_ARCHIVES))
    return sources


def load_omniglot(root=None, split='train'):
    """Omniglot characters; train = Balinese, Early_Aramaic, Greek, Japanese_(katakana),
    Korean, Latin (183 characters, 3,660 images), test = Sanskrit and Tagalog (59
    characters, 1,180 images).

    ``root`` (default: the copy of the two small background archives shipped inside the
    package, ``gluon_dml/data/omniglot``) holds the official archives
    (``images_background_small1.zip``, ``images_background_small2.zip``, or the full
    ``images_background.zip`` / ``images_evaluation.zip``; read in place, never extracted),
    their extracted folders, or the alphabet folders directly.  Images found several times
    (Greek and Latin are in both small archives) are counted once, by (alphabet, character,
    file name).  Each 105x105 PNG goes through ``get_transform('omniglot')`` (28x28,
    antialiased, inverted so strokes are bright).  Classes are ``'Alphabet/characterNN'``,
    sorted; images within a class are sorted by file name.  Alphabets of other splits or
    outside the protocol are ignored; a protocol alphabet that is missing is reported with
    a warning."""
    _check_split(split)
    root = os.path.expanduser(root if root is not None else _omniglot_default_root())
    if not os.path.exists(root):
        raise FileNotFoundError('Omniglot folder %s does not exist; --data-path (root= in Python) '
                                'takes %s (https://github.com/brendenlake/omniglot); leave it out '
                                'for the copy inside the package.' % (root, _OMNIGLOT_LAYOUT))
    sources = _omniglot_sources(root)
    wanted = OMNIGLOT_TRAIN_ALPHABETS if split == 'train' else OMNIGLOT_TEST_ALPHABETS
    found = {}          # (alphabet, character, file) -> location; first source wins
    alphabets = set()   # every alphabet seen, of any split
    for kind, path in sources:
        try:
            if kind == 'zip':
                items = list(_scan_zip(path))
            elif os.path.basename(path) in wanted:
                items = list(_scan_alphabet(path))
            else:
                alphabets.add(os.path.basename(path))
                items = []
        except (zipfile.BadZipFile, OSError) as err:
            raise ValueError('Cannot read Omniglot source %s (%s); it is corrupt or '
                             'unreadable, download it again.' % (path, err)) from None
        for key, loc in items:
            alphabets.add(key[0])
            if key[0] in wanted:
                found.setdefault(key, loc)
    if not alphabets:
        raise FileNotFoundError('No Omniglot images found in %s; it should be %s.'
                                % (root, _OMNIGLOT_LAYOUT))
    present = {key[0] for key in found}
    missing = [a for a in wanted if a not in present]
    if not present:
        raise FileNotFoundError(
            'The Omniglot %s split needs the alphabets %s, but %s holds only %s; add the '
            'archive that has them (images_background_small%d.zip, or images_background.zip).'
            % (split, ', '.join(wanted), root, ', '.join(sorted(alphabets)),
               1 if split == 'train' else 2))
    if missing:
        warnings.warn('Omniglot %s split: alphabets %s are missing from %s, so the split '
                      'is smaller than the protocol; add the archive that has them.'
                      % (split, ', '.join(missing), root), stacklevel=2)
    keys = sorted(found)
    class_names = sorted({'%s/%s' % (a, c) for a, c, _ in keys})
    class_index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([class_index['%s/%s' % key[:2]] for key in keys], dtype=np.int64)
    transform = get_transform('omniglot')
    cache = decode_cache_path('omniglot-' + split, repr(transform), keys, found)
    images = read_decode_cache(cache, (len(keys), 1) + transform.size)
    if images is None:
        images = _decode_omniglot(keys, found, transform)
        write_decode_cache(cache, images)
    return ArrayDataset(images, labels, class_names, name='omniglot', split=split)


# Decoded images are kept on disk (GLUON_DML_CACHE, default ~/.cache/gluon-dml; "off" disables),
# keyed by the transform and by every source file's path, size and modification time, so a
# changed archive or image is decoded again. Images that are whole multiples of 1/255 (an
# 8-bit PNG resized in 8 bits, then /255) are stored as uint8 and read back to the same floats.
_DECODE_CACHE_VERSION = 1


def decode_cache_path(name, transform, keys, found):
    """The cache file of the images decoded from ``found[key]`` (``(kind, path, member)``) for
    ``keys`` in order with ``transform`` (its repr), or None when the cache is off."""
    folder = _cache_dir()
    if folder is None:
        return None
    digest = hashlib.sha1(repr((_DECODE_CACHE_VERSION, name, transform)).encode())
    stats = {}
    for key in keys:
        kind, path, member = found[key]
        if path not in stats:
            st = os.stat(path)
            stats[path] = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
        digest.update(repr((key, kind, member, stats[path])).encode())
    return os.path.join(folder, '%s-%s.npy' % (name, digest.hexdigest()[:20]))


def read_decode_cache(path, shape):
    """The cached float32 images of ``shape`` at ``path``, or None (absent, unreadable or of
    another shape: then they are decoded again)."""
    if path is None or not os.path.isfile(path):
        return None
    try:
        stored = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if stored.shape != tuple(shape):
        return None
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) / np.float32(255.0)
    return stored.astype(np.float32, copy=False) if stored.dtype == np.float32 else None


def write_decode_cache(path, images):
    """Keep ``images`` at ``path`` (atomically); a cache that cannot be written is skipped."""
    if path is None:
        return
    as_bytes = np.rint(images * np.float32(255.0)).astype(np.uint8)
    exact = np.array_equal(as_bytes.astype(np.float32) / np.float32(255.0), images)
    tmp = '%s.%d.tmp' % (path, os.getpid())
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, 'wb') as f:
            np.save(f, as_bytes if exact else images.astype(np.float32))
        os.replace(tmp, path)
    except OSError:
        try:
            os.remove(tmp)
        except OSError:
            pass


def _decode_omniglot(keys, found, transform):
    images = np.empty((len(keys), 1) + transform.size, dtype=np.float32)
    archives = {}
    try:
        for i, key in enumerate(keys):
            kind, path, member = found[key]
            if kind == 'zip':
                if path not in archives:
                    archives[path] = zipfile.ZipFile(path)
                try:
                    data = archives[path].read(member)
                except (zipfile.BadZipFile, OSError, EOFError) as err:
                    raise ValueError('Cannot read %s from %s (%s); the archive is corrupt, '
                                     'download it again.' % (member, path, err)) from None
                images[i] = transform(_open_png(data, member, path))
            else:
                images[i] = transform(path)
    finally:
        for archive in archives.values():
            archive.close()
    return images


def _open_png(data, member, archive):
    from PIL import Image
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError('Cannot decode %s in %s (%s); the archive is corrupt, download it '
                         'again.' % (member, archive, err)) from None
    return img


# ----------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------

def is_image_dataset(name):
    """True for the datasets read from image files (they take the image options)."""
    return normalize_name(name) in _IMAGE_KEYS


def dataset_sampling(name):
    """The batch sampling a dataset's name asks for: ``'balanced'`` (P classes x K images) or
    ``'in-superclass'`` (EbayInClass: every batch from one SOP super-class)."""
    return _IMAGE_KEYS.get(normalize_name(name), 'balanced')


def has_query_split(name, root=None):
    """Whether ``name`` at ``root`` is evaluated query-against-gallery rather than all-vs-all:
    In-Shop always; a folder with ``query/`` and ``gallery/``; a list file with query lines."""
    key = normalize_name(name)
    if key == normalize_name('InShop'):
        return True
    if root is None:
        return False
    root = os.path.expanduser(str(root))
    if key == 'folder':
        return os.path.isdir(os.path.join(root, 'query')) and os.path.isdir(os.path.join(root, 'gallery'))
    if key == 'list' and os.path.isfile(root):
        with open(root, encoding='utf-8') as f:
            return any(len(ln.split('#', 1)[0].split()) == 3 and ln.split()[2] == 'query' for ln in f)
    return False


register_dataset('digits', load_digits)
register_dataset('fashion-mnist', load_fashion_mnist)
register_dataset('omniglot', load_omniglot)

_IMAGE_KEYS = {}


def _register_image_datasets():
    from .research import IMAGE_DATASETS, QUERY_GALLERY_DATASETS
    from .transforms import PhotoTransform, register_transform

    def factory(name):
        def make(image_size=224, resize=None, **_):
            return PhotoTransform(image_size=image_size, resize=resize, name=name)
        return make

    for name, (fn, sampling) in IMAGE_DATASETS.items():
        register_dataset(name, fn, splits=('train', 'test', 'query', 'gallery')
                         if name in QUERY_GALLERY_DATASETS or name in ('folder', 'list') else
                         ('train', 'test'))
        register_transform(name, factory(name))
        _IMAGE_KEYS[normalize_name(name)] = sampling


_register_image_datasets()
