"""Photographs on disk: decoding, the standard ImageNet-style transforms, and the dataset class.

The research datasets (CUB-200-2011, Cars196, Stanford Online Products, In-Shop, LFW) and a
user's own folders are read lazily, one file per item, by :class:`ImageFileDataset`; each item
is decoded, converted to RGB, optionally cropped to its bounding box, and transformed:

* training (``augment=True``): random resized crop to ``image_size`` (area 16-100 % of the
  image, aspect 3/4-4/3), horizontal flip, optional colour jitter;
* testing: resize the shorter side to ``resize`` (default ``image_size * 8 / 7``: 256 for 224),
  centre crop ``image_size``;
* then scale to [0, 1] and normalise with the ImageNet mean and standard deviation, which the
  GluonCV backbones expect.

The random draws of an item depend only on ``(seed, epoch, index)``: the same on every run, in
any DataLoader worker, and after ``--resume``.
"""
import math
import os
import warnings

import numpy as np
from PIL import Image, ImageEnhance
from mxnet.gluon.data import Dataset

__all__ = ['IMAGENET_MEAN', 'IMAGENET_STD', 'BadImageError', 'to_rgb', 'open_image',
           'check_image_file', 'RGBTransform', 'ImageFileDataset', 'PhotoTransform']

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

_BILINEAR = getattr(getattr(Image, 'Resampling', Image), 'BILINEAR')
_FLIP = getattr(getattr(Image, 'Transpose', Image), 'FLIP_LEFT_RIGHT')


class BadImageError(ValueError):
    """An image file that cannot be decoded (corrupt, truncated, not an image)."""


def to_rgb(img):
    """``img`` as an 8-bit RGB image: grey, palette, CMYK, 16-bit and float images are converted;
    transparent areas are composited onto white."""
    if img.mode in ('RGBA', 'LA', 'PA') or (img.mode == 'P' and 'transparency' in img.info):
        rgba = img.convert('RGBA')
        background = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert('RGB')
    if img.mode in ('I;16', 'I;16B', 'I;16L', 'I', 'F'):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() if arr.size and arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8), 'L')
    if img.mode != 'RGB':
        img = img.convert('RGB')
    return img


def open_image(path, min_size=None):
    """Decode ``path`` to an RGB PIL image. ``min_size=(w, h)`` lets a JPEG decode at a reduced
    scale that still covers that size (much faster on large photographs). Returns
    ``(image, scale)``, ``scale`` being decoded size / file size (for bounding boxes).

    Raises :class:`BadImageError` naming the file when it cannot be decoded."""
    try:
        with open(path, 'rb') as handle:
            img = Image.open(handle)
            full = img.size
            if min_size is not None and img.format == 'JPEG':
                need = min_size(*full) if callable(min_size) else min_size
                img.draft('RGB', (int(need[0]), int(need[1])))
            img.load()
    except FileNotFoundError:
        raise FileNotFoundError('The image file %s does not exist; the dataset\'s annotation files '
                                'list it, so the image folder is incomplete.' % path) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise BadImageError('Cannot decode the image %s (%s); replace or delete the file, or pass '
                            '--skip-bad-images to leave unreadable images out.' % (path, err)) from None
    scale = (img.size[0] / float(full[0]), img.size[1] / float(full[1]))
    return to_rgb(img), scale


def check_image_file(path):
    """A fast validity check without a full decode: the file exists, its header is an image, and a
    JPEG / PNG is not truncated (ends with its end marker). Returns None when the file looks
    good, else the reason in a few words."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return 'missing'
    if size == 0:
        return 'empty file'
    try:
        with open(path, 'rb') as handle:
            img = Image.open(handle)
            fmt = img.format
            handle.seek(max(0, size - 64))
            tail = handle.read()
    except (OSError, SyntaxError, ValueError) as err:
        return 'not an image (%s)' % err
    if fmt == 'JPEG' and b'\xff\xd9' not in tail.rstrip(b'\x00\r\n \t')[-32:]:
        return 'truncated JPEG (no end-of-image marker)'
    if fmt == 'PNG' and b'IEND' not in tail:
        return 'truncated PNG (no IEND chunk)'
    if fmt not in ('JPEG', 'PNG'):
        try:
            with open(path, 'rb') as handle:
                Image.open(handle).load()
        except (OSError, SyntaxError, ValueError) as err:
            return 'cannot decode (%s)' % err
    return None


def _random_resized_box(width, height, rng, scale, ratio):
    """A crop box covering ``scale`` of the area with aspect ratio in ``ratio`` (10 tries, then
    the largest centred box with a valid ratio), as (left, top, right, bottom)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    in_ratio = width / float(height)
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


class RGBTransform(object):
    """PIL RGB image -> float32 array ``(3, image_size, image_size)``, ImageNet-normalised.

    Parameters
    ----------
    image_size : int
        Side of the output (224 in the papers).
    resize : int or None
        Test time: the shorter side is resized to this before the centre crop; default
        ``round(image_size * 8 / 7)`` (256 for 224).
    augment : bool
        Training transform (random resized crop, flip, jitter) instead of the test transform.
    scale, ratio : (float, float)
        Area fraction and aspect-ratio range of the random resized crop.
    color_jitter : float
        Brightness, contrast and saturation each scaled by a factor drawn in
        ``[1 - color_jitter, 1 + color_jitter]`` (training only; 0 = off).
    """

    def __init__(self, image_size=224, resize=None, augment=False, scale=(0.16, 1.0),
                 ratio=(3. / 4., 4. / 3.), color_jitter=0.0, flip=True):
        self.image_size = int(image_size)
        self.resize = int(resize) if resize else int(round(self.image_size * 8 / 7.))
        if self.image_size < 1 or self.resize < self.image_size:
            raise ValueError('--image-size must be positive and --resize (%s) at least --image-size '
                             '(%s).' % (self.resize, self.image_size))
        if not 0 <= color_jitter < 1:
            raise ValueError('--color-jitter must be in [0, 1), got %s.' % color_jitter)
        self.augment, self.scale, self.ratio = bool(augment), tuple(scale), tuple(ratio)
        self.color_jitter, self.flip = float(color_jitter), bool(flip)

    @property
    def output_shape(self):
        return (3, self.image_size, self.image_size)

    def for_testing(self):
        """The test-time counterpart of this transform (same size, no augmentation)."""
        return RGBTransform(self.image_size, self.resize, augment=False, scale=self.scale,
                            ratio=self.ratio, color_jitter=self.color_jitter, flip=self.flip)

    def decode_size(self, width, height):
        """The smallest decoded size (w, h) that loses no resolution for this transform."""
        short = float(min(width, height))
        need = self.resize if not self.augment else self.image_size / math.sqrt(self.scale[0])
        factor = min(1.0, need / short)
        return int(math.ceil(width * factor)), int(math.ceil(height * factor))

    def __call__(self, img, rng=None):
        size = self.image_size
        if self.augment:
            rng = rng if rng is not None else np.random.default_rng()
            box = _random_resized_box(img.size[0], img.size[1], rng, self.scale, self.ratio)
            img = img.resize((size, size), _BILINEAR, box=box)
            if self.flip and rng.random() < 0.5:
                img = img.transpose(_FLIP)
            if self.color_jitter > 0:
                j = self.color_jitter
                for which in rng.permutation(3):
                    enhancer = (ImageEnhance.Brightness, ImageEnhance.Contrast,
                                ImageEnhance.Color)[which]
                    img = enhancer(img).enhance(rng.uniform(1 - j, 1 + j))
        else:
            w, h = img.size
            factor = self.resize / float(min(w, h))
            nw, nh = max(size, int(round(w * factor))), max(size, int(round(h * factor)))
            if (nw, nh) != (w, h):
                img = img.resize((nw, nh), _BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            img = img.crop((left, top, left + size, top + size))
        arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
        arr = (arr - IMAGENET_MEAN) / IMAGENET_STD
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def __repr__(self):
        return ('RGBTransform(image_size=%d, resize=%d, augment=%s, scale=%s, color_jitter=%g)'
                % (self.image_size, self.resize, self.augment, self.scale, self.color_jitter))


class ImageFileDataset(Dataset):
    """One split of a dataset of image files, decoded on access.

    ``dataset[i]`` is ``(float32 array (3, S, S), int64 label)``. Attributes: ``labels``
    (int64 array), ``class_names``, ``num_classes``, ``paths``, ``boxes`` (``(N, 4)`` float
    boxes ``left, top, right, bottom`` in file pixels, or None), ``super_labels`` (SOP's
    super-classes, or None), ``skipped`` (``[(path, reason)]`` left out by
    ``skip_bad_images``).

    Labels must lie in ``0 .. len(class_names) - 1``; a split may leave some classes out only
    with ``all_classes=False`` (In-Shop's query and gallery share one numbering).
    """

    def __init__(self, paths, labels, class_names, transform, name='', split='', boxes=None,
                 super_labels=None, skip_bad_images=False, seed=0, all_classes=True,
                 skipped=None):
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.class_names = [str(c) for c in class_names]
        if self.labels.shape[0] != len(self.paths):
            raise ValueError('%d image paths but %d labels.' % (len(self.paths), self.labels.shape[0]))
        present = np.unique(self.labels)
        if present.size and (present[0] < 0 or present[-1] >= len(self.class_names)):
            raise ValueError('labels must lie in 0..%d.' % (len(self.class_names) - 1))
        if all_classes and present.size != len(self.class_names):
            raise ValueError('%d class names but only %d classes have images.'
                             % (len(self.class_names), present.size))
        self.transform = transform
        self.name, self.split = name, split
        self.boxes = None if boxes is None else np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.super_labels = None if super_labels is None else np.asarray(super_labels, np.int64)
        self.skip_bad_images, self.seed, self.epoch = bool(skip_bad_images), int(seed), 0
        self.skipped = list(skipped or [])

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def image_shape(self):
        return tuple(self.transform.output_shape)

    def set_epoch(self, epoch):
        """Select the random augmentation of ``epoch`` (the engine calls this every epoch)."""
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.paths)

    def load(self, idx):
        """The decoded RGB PIL image of item ``idx``, cropped to its box when it has one."""
        path = self.paths[idx]
        need = self.transform.decode_size if self.boxes is None else None
        img, (sx, sy) = open_image(path, min_size=need)
        if self.boxes is not None:
            left, top, right, bottom = self.boxes[idx]
            box = (max(0, int(round(left * sx))), max(0, int(round(top * sy))),
                   min(img.size[0], int(round(right * sx))), min(img.size[1], int(round(bottom * sy))))
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:   # a degenerate box: keep the image
                img = img.crop(box)
        return img

    def __getitem__(self, idx):
        idx = int(idx)
        try:
            img = self.load(idx)
        except (BadImageError, OSError, SyntaxError) as err:
            if not self.skip_bad_images:
                if isinstance(err, (BadImageError, FileNotFoundError)):
                    raise
                raise BadImageError('Cannot decode the image %s (%s); replace or delete the file, or '
                                    'pass --skip-bad-images.' % (self.paths[idx], err)) from None
            img = self._substitute(idx, err)
        rng = np.random.default_rng([self.seed, self.epoch, idx]) if self.transform.augment else None
        return self.transform(img, rng), self.labels[idx]

    def _substitute(self, idx, err):
        """With ``skip_bad_images``: an image that passed the quick check but fails to decode is
        replaced by another image of its class (reported once per file)."""
        warnings.warn('Skipping unreadable image %s (%s); another image of its class is used.'
                      % (self.paths[idx], err))
        same = np.flatnonzero(self.labels == self.labels[idx])
        for j in np.roll(same, -int(np.searchsorted(same, idx)) - 1):
            if j == idx:
                continue
            try:
                return self.load(int(j))
            except (BadImageError, OSError, SyntaxError):
                continue
        raise BadImageError('No readable image left in class %r (last failure: %s).'
                            % (self.class_names[self.labels[idx]], self.paths[idx]))

    def __repr__(self):
        return ('%s(name=%r, split=%r, images=%d, classes=%d, transform=%r)'
                % (type(self).__name__, self.name, self.split, len(self), self.num_classes,
                   self.transform))


class PhotoTransform(object):
    """Test-time preprocessing of a photo dataset for any image (a path or a PIL image): RGB,
    resize, centre crop, ImageNet normalisation — what ``eval/embed.py`` applies to a user's
    images with a run trained on CUB, Cars196, SOP, In-Shop, LFW or a folder."""

    def __init__(self, image_size=224, resize=None, name=None):
        self.transform = RGBTransform(image_size=image_size, resize=resize, augment=False)
        self.name = name

    def __call__(self, image):
        if isinstance(image, Image.Image):
            return self.transform(to_rgb(image))
        return self.transform(open_image(image, min_size=self.transform.decode_size)[0])

    def __repr__(self):
        return 'PhotoTransform(name=%r, %r)' % (self.name, self.transform)
