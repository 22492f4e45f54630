"""The research datasets of deep metric learning, read from their official layouts, and the
user's own image folders and list files.

===================  ===========================================  =============================
``--data``           layout under ``--data-path`` (as the archive  split
                     unpacks)
===================  ===========================================  =============================
CUB_200_2011 (CUB)   ``CUB_200_2011/images.txt``,                  first half of the classes
                     ``image_class_labels.txt``, ``classes.txt``,  train (1-100), second half
                     ``images/``; ``bounding_boxes.txt``           test (101-200)
                     optional (``--crop-boxes``)
Cars196 (cars)       ``cars_annos.mat``, ``car_ims/``             classes 1-98 train, 99-196
                                                                  test; ``--crop-boxes``
SOP, EbayCrossClass, ``Stanford_Online_Products/Ebay_train.txt``,  the two files: 59,551 /
EbayInClass          ``Ebay_test.txt`` and the image folders       11,318 train, 60,502 /
                                                                  11,316 test
InShop               ``list_eval_partition.txt`` (in the root or   train; query searched in
                     ``Eval/``), ``img/`` (in the root or          gallery (14,218 / 12,612
                     ``Img/``)                                     images, 3,985 items)
LFW                  ``lfw/PERSON/PERSON_0001.jpg``                people with >= 2 images;
                                                                  first half train, rest test
folder               ``CLASS/*.jpg`` (or ``train/CLASS``,          ``--split-classes``, or the
                     ``test/CLASS``, ``query/``, ``gallery/``)     sub-folders
list                 a text file: ``path label [split]`` per line  the split column, or
                     (relative paths from the file's folder)      ``--split-classes``
===================  ===========================================  =============================

Every loader is ``fn(root, split, **options)`` returning an :class:`ImageFileDataset`; the
options (:data:`IMAGE_OPTIONS`) are the transform's (``image_size``, ``resize``,
``color_jitter``, ``augment``), ``crop_boxes``, ``skip_bad_images``, ``split_classes`` and
``seed``. A dataset that is not there raises ``FileNotFoundError`` with one sentence: where to
download it, which layout is expected, and the download command for users with internet
(``gluon-dml download NAME --root DIR``).
"""
import math
import os
import re
import stat
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..progress import progress_bar
from .images import ImageFileDataset, RGBTransform, check_image_file

__all__ = ['load_cub', 'load_cars196', 'load_sop', 'load_inshop', 'load_lfw', 'load_folder',
           'load_list', 'IMAGE_OPTIONS', 'IMAGE_DATASETS', 'QUERY_GALLERY_DATASETS',
           'DOWNLOADS', 'image_extensions']

IMAGE_OPTIONS = ('image_size', 'resize', 'color_jitter', 'augment', 'crop_boxes',
                 'skip_bad_images', 'split_classes', 'seed')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm',
                    '.pgm')


def image_extensions():
    return IMAGE_EXTENSIONS


# Where each dataset comes from. ``files``: (url, archive name) pairs the download command
# fetches; ``page``: where to get it by hand.
DOWNLOADS = {
    'CUB_200_2011': dict(
        page='https://www.vision.caltech.edu/datasets/cub_200_2011/',
        files=[('https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1',
                'CUB_200_2011.tgz')]),
    'Cars196': dict(
        page='https://ai.stanford.edu/~jkrause/cars/car_dataset.html',
        files=[('http://ai.stanford.edu/~jkrause/car196/car_ims.tgz', 'car_ims.tgz'),
               ('http://ai.stanford.edu/~jkrause/car196/cars_annos.mat', 'cars_annos.mat')]),
    'SOP': dict(
        page='https://cvgl.stanford.edu/projects/lifted_struct/',
        files=[('ftp://cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip',
                'Stanford_Online_Products.zip')]),
    'InShop': dict(
        page='https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html',
        files=[]),   # behind a Google Drive form: by hand only
    'LFW': dict(
        page='http://vis-www.cs.umass.edu/lfw/',
        files=[('https://ndownloader.figshare.com/files/5976018', 'lfw.tgz')]),
}


def _missing(name, root, what, layout, markers=()):
    info = DOWNLOADS.get(name)
    how = ''
    found = _found_nearby(root, markers)
    if found is not None:
        # the dataset is there, one folder up or down: a second download would be the wrong advice
        how = ' It is in %s: pass --data-path %s.' % (found, found)
    elif info is not None:
        if info['files']:
            how = (' Run gluon-dml download %s --root %s (it downloads and unpacks it), or '
                   'download it from %s and unpack it there.' % (name, root, info['page']))
        else:
            how = ' Download it from %s and unpack it there.' % info['page']
    if os.path.isfile(root):
        what = '--data-path %s is a file, not the folder the archive unpacks into' % root
    else:
        what = '%s is missing' % what
    return FileNotFoundError('%s not found: %s; expected %s.%s' % (name, what, layout, how))


def _found_nearby(root, markers, limit=1000):
    """The folder next to ``root`` that holds one of ``markers`` (files of the dataset's layout,
    relative to the folder --data-path should name): ``root``'s parent or grandparent (the path
    of a file or sub-folder of the dataset was given) or one of its sub-folders (the folder above
    it was given); None when there is none or ``root`` does not exist."""
    if not markers or not os.path.exists(root):
        return None
    parent = os.path.dirname(os.path.abspath(root))
    candidates = [parent, os.path.dirname(parent)]
    if os.path.isdir(root):
        try:
            with os.scandir(root) as entries:
                subs = sorted(e.path for e in entries if e.is_dir() and not e.name.startswith('.'))
        except OSError:
            subs = []
        candidates = subs[:limit] + candidates
    for folder in candidates:
        if any(os.path.isfile(os.path.join(folder, m)) for m in markers):
            return folder
    return None


def default_root(name):
    """Where a photo dataset is looked for without --data-path: ``$MXNET_HOME/datasets/NAME``
    (``~/.mxnet/datasets/NAME``), where MXNet and GluonCV keep their datasets."""
    home = os.environ.get('MXNET_HOME', os.path.join(os.path.expanduser('~'), '.mxnet'))
    return os.path.join(home, 'datasets', name)


def _root_or_error(root, name, layout):
    if root is None:
        root = default_root(name)
        if not os.path.exists(root):
            raise FileNotFoundError('--data %s needs --data-path: the folder that holds %s (without '
                                    'it, %s is read, which does not exist).' % (name, layout, root))
    root = os.path.expanduser(str(root))
    if not os.path.exists(root):
        raise _missing(name, root, root, layout)
    return root


def _find(root, candidates):
    """The first of ``root/c`` for c in candidates that exists, else None."""
    for c in candidates:
        path = os.path.join(root, c)
        if os.path.exists(path):
            return path
    return None


def read_text_lines(path):
    """The lines of a UTF-8 text file; a file in another encoding is one sentence naming the
    file and the first line that is not UTF-8."""
    with open(path, 'rb') as f:
        raw = f.read()
    lines = raw.split(b'\n')
    out = []
    for lineno, line in enumerate(lines, 1):
        try:
            out.append(line.decode('utf-8').rstrip('\r'))
        except UnicodeDecodeError as err:
            raise ValueError('%s, line %d is not UTF-8 text (byte 0x%02x at column %d): save the file '
                             'as UTF-8 (e.g. iconv -f latin1 -t utf-8).'
                             % (path, lineno, line[err.start], err.start + 1)) from None
    if out and out[0].startswith('\ufeff'):
        out[0] = out[0][1:]                 # a byte-order mark (Windows Notepad's UTF-8)
    if out and out[-1] == '':
        out.pop()
    return out


def _read_rows(path, min_fields, skip_lines=0, numbers=(), header=False, unique=None):
    """The whitespace-separated fields of each non-empty line (from line ``skip_lines + 1``;
    ``header``: from line 2 when the first line's first field is not a number); the fields at the
    indices ``numbers`` must be numbers (an int where the text is one, else a float) and are
    converted, a bad one named with its file and line. ``unique``: ``{index: what}`` of fields
    that no two lines may share (an image id or path listed twice is refused with both lines:
    one of the two was dropped without a word, or the image counted twice and found itself as
    its own neighbour)."""
    rows = []
    seen = {i: {} for i in (unique or {})}
    lines = read_text_lines(path)
    if header and lines and lines[0].split() and not lines[0].split()[0].isdigit():
        skip_lines = max(skip_lines, 1)
    for lineno, line in enumerate(lines, 1):
        if lineno <= skip_lines:
            continue
        parts = line.split()
        if not parts:
            continue
        if len(parts) < min_fields:
            raise ValueError('%s, line %d: expected %d fields, got %r.'
                             % (path, lineno, min_fields, line.strip()))
        for i in numbers:
            try:
                parts[i] = int(parts[i]) if parts[i].lstrip('-').isdigit() else float(parts[i])
            except ValueError:
                raise ValueError('%s, line %d: field %d must be a number, got %r.'
                                 % (path, lineno, i + 1, parts[i])) from None
            if not math.isfinite(parts[i]):      # nan, inf: a crop box of them stopped the run
                raise ValueError('%s, line %d: field %d must be a finite number, got %r.'
                                 % (path, lineno, i + 1, line.split()[i]))
        for i, what in (unique or {}).items():
            first = seen[i].setdefault(parts[i], lineno)
            if first != lineno:
                raise ValueError('%s lists %s %s twice (lines %d and %d): each once, or one of them '
                                 'is dropped or the image counts twice and finds itself as its '
                                 'neighbour; the file is not the official one.'
                                 % (path, what, parts[i], first, lineno))
        rows.append(parts)
    return rows


def _listed(path, rows):
    """``rows``, refused when there are none: an annotation file that lists no image was cut
    short (it said '<dataset> train has no images', naming no file)."""
    if not rows:
        raise ValueError('%s lists no images (it is empty, or holds only its header lines): the '
                         'file was cut short; unpack the archive again.' % path)
    return rows


def _split_fraction(split_classes):
    if split_classes is None or split_classes == '':
        return 0.5
    value = float(split_classes)
    if value <= 0:
        raise ValueError('--split-classes must be a fraction in (0, 1) or a number of training '
                         'classes, got %s.' % split_classes)
    return value


def _split_class_list(classes, split, split_classes=None, what='classes'):
    """Open-set split of a sorted class list: the first part trains, the rest tests.
    ``split_classes`` < 1 is the training fraction, >= 1 the number of training classes."""
    classes = list(classes)
    value = _split_fraction(split_classes)
    n_train = int(round(len(classes) * value)) if value < 1 else int(value)
    if not 0 < n_train < len(classes):
        raise ValueError('--split-classes %s leaves no %s for one of the splits (%d %s in all).'
                         % (split_classes, 'test' if n_train >= len(classes) else 'training',
                            len(classes), what))
    return classes[:n_train] if split == 'train' else classes[n_train:]


def _transform(options, split):
    augment = options.get('augment')
    if augment is None:
        augment = split == 'train'
    return RGBTransform(image_size=options.get('image_size') or 224, resize=options.get('resize'),
                        augment=augment, color_jitter=options.get('color_jitter') or 0.0)


def _build(name, split, records, options, class_names=None, all_classes=True, labels_from=None):
    """An ImageFileDataset from ``records``: dicts with 'path', 'cls' (any sortable class key),
    optional 'box' and 'super'. Missing or (with ``skip_bad_images``) unreadable files are
    reported; classes are numbered 0.. in sorted key order (or by ``labels_from``, a sorted key
    list shared between splits)."""
    skip = bool(options.get('skip_bad_images'))
    skipped = []
    if skip:
        # Every file is decoded once here (a JPEG at a reduced scale, in threads: PIL releases
        # the GIL), so that a bad image is left out of the split, never replaced during the run.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            reasons = pool.map(lambda r: check_image_file(r['path'], decode=True), records)
            try:
                reasons = progress_bar(reasons, total=len(records), leave=False,
                                       disable=len(records) < 2000,
                                       desc='checking %s %s images' % (name, split))
            except ImportError:  # pragma: no cover
                pass
            reasons = list(reasons)
        kept = []
        for r, reason in zip(records, reasons):
            if reason is None:
                kept.append(r)
            else:
                skipped.append((r['path'], reason))
        if skipped:
            warnings.warn('--skip-bad-images: left out %d unreadable image(s) of %s %s, e.g. %s (%s).'
                          % (len(skipped), name, split, skipped[0][0], skipped[0][1]))
        records = kept
    else:
        sizes = [_file_size(r['path']) for r in records]      # one stat per image
        missing = [r['path'] for r, size in zip(records, sizes) if size is None]
        if missing and len(missing) == len(records):
            # not one image: the image archive is not unpacked there (leaving them out leaves none)
            raise FileNotFoundError('None of the %d image(s) listed for %s %s exists, first: %s; the '
                                    'images are not where the listing expects them (not unpacked '
                                    'yet, or unpacked elsewhere).'
                                    % (len(missing), name, split, missing[0]))
        if missing:
            raise FileNotFoundError('%d image(s) listed for %s %s are missing, first: %s; the image '
                                    'folder is incomplete (or pass --skip-bad-images to leave them out).'
                                    % (len(missing), name, split, missing[0]))
        # an empty file (a download or unpacking cut short) is found now, not by the batch that
        # holds it, perhaps hours into the run
        empty = [r['path'] for r, size in zip(records, sizes) if size == 0]
        if empty:
            raise ValueError('%d image file(s) listed for %s %s are empty (0 bytes), first: %s; '
                             'download or unpack them again (or pass --skip-bad-images to leave '
                             'them out).' % (len(empty), name, split, empty[0]))
    if not records and skipped:
        raise ValueError('--skip-bad-images left out all %d image(s) of %s %s, e.g. %s (%s); there is '
                         'nothing to %s.' % (len(skipped), name, split, skipped[0][0], skipped[0][1],
                                             'train on' if split == 'train' else 'evaluate'))
    if not records:
        raise ValueError('%s %s has no images.' % (name, split))
    keys = labels_from if labels_from is not None else sorted({r['cls'] for r in records})
    index = {k: i for i, k in enumerate(keys)}
    labels = np.array([index[r['cls']] for r in records], dtype=np.int64)
    names = [class_names.get(k, str(k)) if class_names else str(k) for k in keys]
    counts = np.bincount(labels, minlength=len(keys))
    single = np.flatnonzero(counts == 1)
    if single.size and split != 'query' and split != 'gallery':
        warnings.warn('%s %s: %d class(es) have a single image (e.g. %r); they are kept: training '
                      'repeats the image to fill the batch, evaluation leaves it out as a query and '
                      'counts it.' % (name, split, single.size, names[single[0]]))
    boxes = None
    if options.get('crop_boxes') and all('box' in r for r in records):
        boxes = np.array([r['box'] for r in records], dtype=np.float64)
    supers = None
    if all('super' in r for r in records):
        supers = np.array([r['super'] for r in records], dtype=np.int64)
    return ImageFileDataset([r['path'] for r in records], labels, names, _transform(options, split),
                            name=name, split=split, boxes=boxes, super_labels=supers,
                            skip_bad_images=skip, seed=options.get('seed') or 0,
                            all_classes=all_classes, skipped=skipped)


def _file_size(path):
    """The size of the regular file ``path``, None when there is none (missing, a folder)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _check_split(split, valid):
    if split not in valid:
        raise ValueError('Unknown split %r; valid splits: %s.' % (split, ', '.join(valid)))


# ------------------------------------------------------------------------------------------------
# CUB-200-2011
# ------------------------------------------------------------------------------------------------

_CUB_LAYOUT = ('CUB_200_2011/ with images.txt, image_class_labels.txt, classes.txt and images/ '
               '(as CUB_200_2011.tgz unpacks; bounding_boxes.txt optional)')


def load_cub(root=None, split='train', **options):
    """CUB-200-2011 (Wah et al. 2011): the first half of the classes (by id) train, the second
    half test: 1-100 / 101-200, 5,864 / 5,924 images on the full set. ``crop_boxes`` crops each
    image to ``bounding_boxes.txt`` (``x y width height``) when that file is present."""
    _check_split(split, ('train', 'test'))
    root = _root_or_error(root, 'CUB_200_2011', _CUB_LAYOUT)
    base = root if os.path.exists(os.path.join(root, 'images.txt')) else os.path.join(root, 'CUB_200_2011')
    for f in ('images.txt', 'image_class_labels.txt', 'classes.txt'):
        if not os.path.isfile(os.path.join(base, f)):
            raise _missing('CUB_200_2011', root, os.path.join(base, f), _CUB_LAYOUT,
                           (f, os.path.join('CUB_200_2011', f)))
    images_txt = os.path.join(base, 'images.txt')
    images = {r[0]: r[1] for r in _listed(images_txt, _read_rows(images_txt, 2,
                                                                   unique={0: 'image id', 1: 'image'}))}
    labels = {r[0]: r[1] for r in _read_rows(os.path.join(base, 'image_class_labels.txt'), 2,
                                               numbers=(1,), unique={0: 'image id'})}
    classes = {r[0]: r[1] for r in _read_rows(os.path.join(base, 'classes.txt'), 2, numbers=(0,),
                                                unique={0: 'class id'})}
    boxes = {}
    box_file = os.path.join(base, 'bounding_boxes.txt')
    if options.get('crop_boxes'):
        if os.path.isfile(box_file):
            for r in _read_rows(box_file, 5, numbers=(1, 2, 3, 4), unique={0: 'image id'}):
                x, y, w, h = (float(v) for v in r[1:5])
                boxes[r[0]] = (x, y, x + w, y + h)
            # one image without a box turned the crop off for every image, without a word
            boxless = sorted((k for k in images if k not in boxes),
                             key=lambda s: int(s) if s.isdigit() else s)
            if boxless:
                raise ValueError('%s has no box for image id %s (%d image(s) of images.txt have none); '
                                 '--crop-boxes needs one per image: restore the file, or drop '
                                 '--crop-boxes.' % (box_file, boxless[0], len(boxless)))
        else:
            warnings.warn('--crop-boxes: %s is not there; using whole images.' % box_file)
    missing = sorted(set(images) - set(labels), key=lambda s: int(s) if s.isdigit() else s)
    if missing:
        raise ValueError('%s: image id %s has no class in image_class_labels.txt.'
                         % (base, missing[0]))
    unknown = sorted((k for k in images if labels[k] not in classes),
                     key=lambda s: int(s) if s.isdigit() else s)
    if unknown:
        raise ValueError('%s: image id %s has class %s in image_class_labels.txt, which '
                         'classes.txt does not list (%d image(s) so).'
                         % (base, unknown[0], labels[unknown[0]], len(unknown)))
    wanted = set(_split_class_list(sorted(classes), split))
    records = []
    for image_id, rel in sorted(images.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else kv[0]):
        c = labels[image_id]
        if c not in wanted:
            continue
        r = {'path': os.path.join(base, 'images', rel), 'cls': c}
        if image_id in boxes:
            r['box'] = boxes[image_id]
        records.append(r)
    return _build('CUB_200_2011', split, records, options, class_names=classes)


# ------------------------------------------------------------------------------------------------
# Cars196
# ------------------------------------------------------------------------------------------------

_CARS_LAYOUT = 'cars_annos.mat and car_ims/ (as car_ims.tgz and cars_annos.mat unpack)'


def _mat_scalar(v):
    return np.asarray(v).ravel()[0]


def _mat_str(v):
    v = np.asarray(v).ravel()
    return str(v[0]) if v.size else ''


def load_cars196(root=None, split='train', **options):
    """Cars196 (Krause et al. 2013), read from ``cars_annos.mat`` with scipy: classes 1-98 train,
    99-196 test (8,054 / 8,131 images), the official train/test flag ignored as in every DML
    paper. ``crop_boxes`` crops to ``bbox_x1 .. bbox_y2`` (1-based pixels)."""
    _check_split(split, ('train', 'test'))
    root = _root_or_error(root, 'Cars196', _CARS_LAYOUT)
    mat = _find(root, ['cars_annos.mat', os.path.join('cars196', 'cars_annos.mat')])
    if mat is None:
        raise _missing('Cars196', root, os.path.join(root, 'cars_annos.mat'), _CARS_LAYOUT,
                       ('cars_annos.mat', os.path.join('cars196', 'cars_annos.mat')))
    base = os.path.dirname(mat)
    from scipy.io import loadmat
    try:
        from scipy.io.matlab import MatReadError
    except ImportError:                    # older SciPy
        MatReadError = ValueError
    try:
        m = loadmat(mat, squeeze_me=True)
        annos = np.atleast_1d(m['annotations'])
        fields = annos.dtype.names or ()
        for f in ('relative_im_path', 'class'):
            if f not in fields:
                raise KeyError(f)
    except (KeyError, ValueError, TypeError, OSError, MatReadError) as err:
        raise ValueError('%s is not the Cars196 annotation file (it needs an annotations struct '
                         'with relative_im_path, bbox_x1..bbox_y2 and class: %s).' % (mat, err)) from None
    class_names = {}
    if 'class_names' in m:
        for i, n in enumerate(np.atleast_1d(m['class_names']), 1):
            class_names[i] = _mat_str(n)
    all_classes = sorted({int(_mat_scalar(a['class'])) for a in annos})
    wanted = set(_split_class_list(all_classes, split))
    has_box = all(f in fields for f in ('bbox_x1', 'bbox_y1', 'bbox_x2', 'bbox_y2'))
    records = []
    for a in annos:
        c = int(_mat_scalar(a['class']))
        if c not in wanted:
            continue
        r = {'path': os.path.join(base, _mat_str(a['relative_im_path'])), 'cls': c}
        if has_box:
            r['box'] = (float(_mat_scalar(a['bbox_x1'])) - 1, float(_mat_scalar(a['bbox_y1'])) - 1,
                        float(_mat_scalar(a['bbox_x2'])), float(_mat_scalar(a['bbox_y2'])))
        records.append(r)
    if options.get('crop_boxes') and not has_box:
        warnings.warn('--crop-boxes: %s has no bbox fields; using whole images.' % mat)
    return _build('Cars196', split, records, options, class_names=class_names)


# ------------------------------------------------------------------------------------------------
# Stanford Online Products
# ------------------------------------------------------------------------------------------------

_SOP_LAYOUT = ('Stanford_Online_Products/ with Ebay_train.txt and Ebay_test.txt (header '
               '"image_id class_id super_class_id path") and the image folders they list')


def load_sop(root=None, split='train', **options):
    """Stanford Online Products (Song et al. 2016): ``Ebay_train.txt`` (59,551 images, 11,318
    products) and ``Ebay_test.txt`` (60,502 images, 11,316 products); the 12 super-classes
    (bicycle, cabinet, ...) are kept as ``super_labels`` for the super-class sampler."""
    _check_split(split, ('train', 'test'))
    root = _root_or_error(root, 'SOP', _SOP_LAYOUT)
    fname = 'Ebay_train.txt' if split == 'train' else 'Ebay_test.txt'
    path = _find(root, [fname, os.path.join('Stanford_Online_Products', fname)])
    if path is None:
        raise _missing('SOP', root, os.path.join(root, 'Stanford_Online_Products', fname), _SOP_LAYOUT,
                       (fname, os.path.join('Stanford_Online_Products', fname)))
    base = os.path.dirname(path)
    rows = _listed(path, _sop_rows(path))
    if split == 'test':
        other = _find(root, ['Ebay_train.txt', os.path.join('Stanford_Online_Products', 'Ebay_train.txt')])
        if other is not None:
            both = {r[1] for r in rows} & {r[1] for r in _sop_rows(other)}
            if both:
                raise ValueError('%s and Ebay_train.txt share %d product id(s) (e.g. %s): SOP is an '
                                 'open-set benchmark, its test products are not trained on; the '
                                 'files are not the official ones.' % (path, len(both), min(both)))
    records = [{'path': os.path.join(base, r[3]), 'cls': r[1], 'super': r[2] - 1} for r in rows]
    return _build('SOP', split, records, options)


def _sop_rows(path):
    rows = _read_rows(path, 4, numbers=(1, 2), header=True, unique={3: 'image'})
    supers = {}
    for r in rows:
        if not isinstance(r[2], int) or r[2] < 1:
            raise ValueError('%s: image %s has super_class_id %s; the ids are whole numbers from 1 '
                             '(1-12 in the official files).' % (path, r[3], r[2]))
        first = supers.setdefault(r[1], r)
        if first[2] != r[2]:
            raise ValueError('%s: product %s is in super-class %d (image %s) and in super-class %d '
                             '(image %s); each product belongs to one.'
                             % (path, r[1], first[2], first[3], r[2], r[3]))
    return rows


# ------------------------------------------------------------------------------------------------
# In-Shop Clothes Retrieval (DeepFashion)
# ------------------------------------------------------------------------------------------------

_INSHOP_LAYOUT = ('list_eval_partition.txt (in the folder or its Eval/) and img/ (in the folder or '
                  'its Img/), as the In-shop Clothes Retrieval Benchmark unpacks')


def load_inshop(root=None, split='train', **options):
    """In-Shop Clothes Retrieval (Liu et al. 2016): ``list_eval_partition.txt`` (a count line, a
    header, then ``image_name item_id evaluation_status``). Splits ``train`` (25,882 images,
    3,997 items), ``query`` (14,218) and ``gallery`` (12,612; also ``test``): 3,985 items whose
    query images are searched among their gallery images, not all-vs-all. Query and gallery share
    one label numbering."""
    _check_split(split, ('train', 'test', 'query', 'gallery'))
    split = 'gallery' if split == 'test' else split
    root = _root_or_error(root, 'InShop', _INSHOP_LAYOUT)
    listing = _find(root, ['list_eval_partition.txt', os.path.join('Eval', 'list_eval_partition.txt')])
    if listing is None:
        raise _missing('InShop', root, os.path.join(root, 'Eval', 'list_eval_partition.txt'),
                       _INSHOP_LAYOUT, ('list_eval_partition.txt',
                                        os.path.join('Eval', 'list_eval_partition.txt')))
    lines = [ln.split() for ln in read_text_lines(listing)]
    # the count line and the header come first; a copy without them keeps its first rows
    head = 0
    while head < min(2, len(lines)) and not (len(lines[head]) >= 3 and
                                            lines[head][2] in ('train', 'query', 'gallery')):
        head += 1
    rows = _listed(listing, [ln for ln in lines[head:] if ln])
    bad = [r for r in rows if len(r) < 3 or r[2] not in ('train', 'query', 'gallery')]
    if bad:
        raise ValueError('%s: expected "image_name item_id evaluation_status" rows after the count '
                         'and header lines, got %r.' % (listing, ' '.join(bad[0])))
    both = {r[1] for r in rows if r[2] == 'train'} & {r[1] for r in rows if r[2] != 'train'}
    if both:
        raise ValueError('%s puts %d item(s) both in train and in query / gallery (e.g. %s): In-Shop '
                         'is an open-set benchmark, its test items are not trained on; the file is '
                         'not the official one.' % (listing, len(both), min(both)))
    image_base = _find(root, ['img', os.path.join('Img', 'img')])
    if image_base is None:
        raise _missing('InShop', root, os.path.join(root, 'img'), _INSHOP_LAYOUT)
    image_base = os.path.dirname(image_base)          # names in the listing start with img/
    records = [{'path': os.path.join(image_base, r[0]), 'cls': r[1]} for r in rows if r[2] == split]
    if split == 'train':
        return _build('InShop', split, records, options)
    items = sorted({r[1] for r in rows if r[2] in ('query', 'gallery')})
    return _build('InShop', split, records, options, all_classes=False, labels_from=items)


# ------------------------------------------------------------------------------------------------
# LFW
# ------------------------------------------------------------------------------------------------

_LFW_LAYOUT = 'lfw/PERSON_NAME/PERSON_NAME_0001.jpg (one folder per person, as lfw.tgz unpacks)'


def _inside(path, root):
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _class_folders(folder, root=None):
    """The sorted names of the class sub-folders of ``folder``. A sub-folder that is a link must
    lead inside the dataset folder ``root`` (default ``folder``), not to ``folder`` itself or
    above it (all its images would become one class), and not to a folder another class has."""
    root_real = os.path.realpath(root or folder)
    folder_real = os.path.realpath(folder)
    names, seen = [], {}
    for d in sorted(os.listdir(folder)):
        path = os.path.join(folder, d)
        if d.startswith('.') or not os.path.isdir(path):
            continue
        real = os.path.realpath(path)
        if _inside(folder_real, real):
            raise ValueError('%s is a link to %s, which holds the dataset folder itself: every image '
                             'would become one class; remove the link.' % (path, real))
        if not _inside(real, root_real):
            raise ValueError('%s is a link to %s, outside the dataset folder %s: a class folder must '
                             'lie inside it (copy the images in, or point --data-path higher).'
                             % (path, real, root_real))
        if real in seen:
            raise ValueError('%s and %s are the same folder (%s): its images would be two classes; '
                             'remove one of them.' % (seen[real], path, real))
        seen[real] = path
        names.append(d)
    return names


def _images_in(folder, root=None):
    """The image files under ``folder`` (searched recursively, links followed), sorted; a link
    that loops or leads outside the dataset folder ``root`` (default ``folder``) is refused."""
    root_real = os.path.realpath(root or folder)
    out, visited = [], {}
    for dirpath, dirnames, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:
            raise ValueError('%s leads back to %s (a symlink loop or a second link to one folder): '
                             'its images would be read twice; remove the link.'
                             % (dirpath, visited[real]))
        if not _inside(real, root_real):
            raise ValueError('%s is a link to %s, outside the dataset folder %s; copy the images in '
                             'or remove the link.' % (dirpath, real, root_real))
        visited[real] = dirpath
        dirnames.sort()
        out.extend(os.path.join(dirpath, f) for f in sorted(files)
                   if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith('.'))
    return out


def _non_empty_classes(folder, classes, root, name):
    """``{class: images}`` of the classes of ``folder`` that hold images; empty class folders are
    skipped with a warning that counts them."""
    images = {c: _images_in(os.path.join(folder, c), root) for c in classes}
    empty = [c for c in classes if not images[c]]
    if empty:
        warnings.warn('%s: %d empty class folder(s) in %s skipped (no image files), e.g. %r; they '
                      'count in no split.' % (name, len(empty), folder, empty[0]))
    return {c: imgs for c, imgs in images.items() if imgs}


def load_lfw(root=None, split='train', **options):
    """Labeled Faces in the Wild (Huang et al. 2007): one folder per person; the people with at
    least two images (1,680 of 5,749) are kept for retrieval, sorted by name, the first half
    (``--split-classes``) train and the rest test."""
    _check_split(split, ('train', 'test'))
    root = _root_or_error(root, 'LFW', _LFW_LAYOUT)
    base = root
    for sub in ('lfw', 'lfw-deepfunneled', 'lfw_funneled'):
        if os.path.isdir(os.path.join(root, sub)):
            base = os.path.join(root, sub)
            break
    people = {p: _images_in(os.path.join(base, p), root) for p in _class_folders(base, root)}
    if not people:
        raise _missing('LFW', root, 'a folder per person in %s' % base, _LFW_LAYOUT)
    kept = sorted(p for p, imgs in people.items() if len(imgs) >= 2)
    if not kept:
        raise ValueError('LFW in %s: no person has two images, so nothing can be retrieved.' % base)
    chosen = _split_class_list(kept, split, options.get('split_classes'), 'people')
    records = [{'path': path, 'cls': p} for p in chosen for path in people[p]]
    return _build('LFW', split, records, options)


# ------------------------------------------------------------------------------------------------
# the user's own data
# ------------------------------------------------------------------------------------------------

_FOLDER_LAYOUT = ('one sub-folder of images per class (or train/CLASS, test/CLASS and optionally '
                  'query/CLASS, gallery/CLASS)')


def load_folder(root=None, split='train', **options):
    """An image folder with one sub-folder per class (searched recursively). If it has ``train/``
    and ``test/`` (or ``query/`` and ``gallery/``) sub-folders those are the splits; otherwise
    the sorted classes are split open-set by ``--split-classes`` (default: first half train)."""
    _check_split(split, ('train', 'test', 'query', 'gallery'))
    root = _root_or_error(root, 'folder', _FOLDER_LAYOUT)
    if not os.path.isdir(root):
        raise ValueError('--data folder needs --data-path to be a folder, got the file %s (use '
                         '--data list for a list file).' % root)
    split_dirs = {s: os.path.join(root, s) for s in ('train', 'test', 'query', 'gallery')
                  if os.path.isdir(os.path.join(root, s))}
    if split_dirs and ('train' in split_dirs or 'query' in split_dirs):
        if split == 'test' and 'test' not in split_dirs and 'gallery' in split_dirs:
            split = 'gallery'
        if split not in split_dirs:
            raise FileNotFoundError('%s has no %s/ sub-folder (it has %s); expected %s.'
                                    % (root, split, ', '.join(sorted(split_dirs)), _FOLDER_LAYOUT))
        folder = split_dirs[split]
        images = _non_empty_classes(folder, _class_folders(folder, root), root, 'folder %s' % split)
        classes = sorted(images)
        labels_from = None
        if split in ('query', 'gallery'):
            other = 'gallery' if split == 'query' else 'query'
            labels_from = sorted(set(classes) | set(
                _class_folders(split_dirs[other], root) if other in split_dirs else set()))
        if split != 'train' and 'train' in split_dirs:
            both = sorted(set(_class_folders(split_dirs['train'], root)) & set(classes))
            if both:
                warnings.warn('folder: %d class name(s) of %s/ are also in train/ (e.g. %r); they '
                              'are different classes to the toolkit (an open-set test), so if they '
                              'are the same identities the test measures seen classes.'
                              % (len(both), os.path.basename(folder), both[0]))
    else:
        if split in ('query', 'gallery'):
            raise FileNotFoundError('%s has no query/ and gallery/ sub-folders.' % root)
        folder = root
        all_images = _non_empty_classes(root, _class_folders(root), root, 'folder')
        if not all_images:
            raise ValueError('%s has no class folders holding images; --data folder expects %s.'
                             % (root, _FOLDER_LAYOUT))
        classes = _split_class_list(sorted(all_images), split, options.get('split_classes'))
        images = {c: all_images[c] for c in classes}
        labels_from = None
    records = [{'path': p, 'cls': c} for c in classes for p in images.get(c, ())]
    if not records:
        raise ValueError('No images found under %s; expected %s.' % (folder, _FOLDER_LAYOUT))
    return _build('folder', split, records, options, all_classes=labels_from is None,
                  labels_from=labels_from)


_INT_LABEL = re.compile(r'^[+-]?\d+$')


def load_list(root=None, split='train', **options):
    """A list file: one image per line, ``path label`` or ``path label split`` (split = train,
    test, query or gallery), whitespace-separated, ``#`` comments, UTF-8; relative paths are
    taken from the file's folder. Without a split column the sorted labels are split open-set by
    ``--split-classes``.

    Labels are either all integers, compared as numbers (``1`` and ``01`` are one class), or all
    names, compared as text; a file that mixes the two (``2`` and ``2.0``, ``7`` and ``cat``) is
    refused, as is a label that the split column puts both in train and in test / query /
    gallery (an open-set split keeps every class on one side)."""
    _check_split(split, ('train', 'test', 'query', 'gallery'))
    if root is None:
        raise FileNotFoundError('--data list needs --data-path: a text file of "path label [split]" lines.')
    path = os.path.expanduser(str(root))
    if not os.path.isfile(path):
        raise FileNotFoundError('The list file %s does not exist; expected a text file of '
                                '"path label [split]" lines.' % path)
    base = os.path.dirname(os.path.abspath(path))
    rows, kinds = [], {}
    for lineno, line in enumerate(read_text_lines(path), 1):
        parts = line.split('#', 1)[0].split()
        if not parts:
            continue
        if len(parts) not in (2, 3):
            raise ValueError('%s, line %d: expected "path label [split]", got %r.'
                             % (path, lineno, line.strip()))
        if len(parts) == 3 and parts[2] not in ('train', 'test', 'query', 'gallery'):
            raise ValueError('%s, line %d: the split must be train, test, query or gallery, got %r.'
                             % (path, lineno, parts[2]))
        p = parts[0] if os.path.isabs(parts[0]) else os.path.join(base, parts[0])
        kinds.setdefault('integer' if _INT_LABEL.match(parts[1]) else 'name', (parts[1], lineno))
        rows.append((p, parts[1], parts[2] if len(parts) == 3 else None, lineno))
    if not rows:
        raise ValueError('The list file %s lists no images.' % path)
    seen = {}
    for p, _, sp, ln in rows:
        key = (os.path.normpath(p), sp)
        if key in seen:
            raise ValueError('%s lists %s twice (lines %d and %d%s): each image once, or it is '
                             'counted twice and finds itself as its neighbour.'
                             % (path, p, seen[key], ln, ', both %s' % sp if sp else ''))
        seen[key] = ln
    if len(kinds) == 2:
        (i_label, i_line), (n_label, n_line) = kinds['integer'], kinds['name']
        raise ValueError('%s mixes integer labels (%r, line %d) and names (%r, line %d): labels are '
                         'all integers (compared as numbers, so 1 and 01 are one class) or all names '
                         '(compared as text); write them all one way.'
                         % (path, i_label, i_line, n_label, n_line))
    if 'integer' in kinds:
        rows = [(p, int(label), sp, ln) for p, label, sp, ln in rows]
    with_split = [r for r in rows if r[2] is not None]
    if with_split and len(with_split) != len(rows):
        raise ValueError('%s: either every line has a split column or none does.' % path)
    labels_from = None
    if with_split:
        first = {}
        for p, label, sp, ln in rows:
            side = 'train' if sp == 'train' else 'test'
            other = first.get((label, 'test' if side == 'train' else 'train'))
            if other is not None:
                raise ValueError('%s: label %s is in the %s split (line %d) and in the %s split (line '
                                 '%d); an open-set split keeps each class on one side, so its '
                                 'images cannot be both trained on and searched for.'
                                 % (path, label, other[1], other[0], sp, ln))
            first.setdefault((label, side), (ln, sp))
        if split == 'test' and not any(r[2] == 'test' for r in rows) and any(r[2] == 'gallery' for r in rows):
            split = 'gallery'
        chosen = [r for r in rows if r[2] == split]
        if split in ('query', 'gallery'):
            labels_from = sorted({r[1] for r in rows if r[2] in ('query', 'gallery')})
    else:
        if split in ('query', 'gallery'):
            raise ValueError('%s has no split column, so it has no %s split.' % (path, split))
        wanted = set(_split_class_list(sorted({r[1] for r in rows}), split,
                                       options.get('split_classes')))
        chosen = [r for r in rows if r[1] in wanted]
    if not chosen:
        raise ValueError('The list file %s has no %s images.' % (path, split))
    records = [{'path': r[0], 'cls': r[1]} for r in chosen]
    if labels_from is None:
        labels_from = sorted({r['cls'] for r in records})
        return _build('list', split, records, options, labels_from=labels_from)
    return _build('list', split, records, options, all_classes=False, labels_from=labels_from)


# name -> (loader, default batch sampling); the names of the original scripts are kept.
IMAGE_DATASETS = {
    'CUB_200_2011': (load_cub, 'balanced'), 'CUB': (load_cub, 'balanced'),
    'Cars196': (load_cars196, 'balanced'), 'Cars': (load_cars196, 'balanced'),
    'SOP': (load_sop, 'balanced'), 'Stanford_Online_Products': (load_sop, 'balanced'),
    'EbayCrossClass': (load_sop, 'balanced'), 'EbayInClass': (load_sop, 'in-superclass'),
    'InShop': (load_inshop, 'balanced'), 'LFW': (load_lfw, 'balanced'),
    'folder': (load_folder, 'balanced'), 'list': (load_list, 'balanced'),
}
QUERY_GALLERY_DATASETS = ('InShop',)
# Second names of one dataset with one protocol (same loader, same sampling): a run records the
# first name, so --data CUB and --data CUB_200_2011 make the same run (folder name, --resume).
DATASET_ALIASES = {'CUB': 'CUB_200_2011', 'Cars': 'Cars196', 'Stanford_Online_Products': 'SOP',
                   'EbayCrossClass': 'SOP'}
