"""Photographs on disk: the dataset class and the file checks (the decoding and the transforms
are in :mod:`gluon_dml.data.transforms`).

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
import os

import numpy as np
from PIL import Image
from mxnet.gluon.data import Dataset

from .transforms import (IMAGENET_MEAN, IMAGENET_STD, BadImageError, PhotoTransform,  # noqa: F401
                         RGBTransform, open_image, to_rgb)

__all__ = ['IMAGENET_MEAN', 'IMAGENET_STD', 'BadImageError', 'to_rgb', 'open_image',
           'check_image_file', 'RGBTransform', 'ImageFileDataset', 'PhotoTransform']

def check_image_file(path, decode=False):
    """A fast validity check without a full decode: the file exists, its header is an image, and a
    JPEG / PNG is not truncated (ends with its end marker). With ``decode`` the image is also
    decoded (a JPEG at a reduced scale), which finds broken data inside a file whose ends look
    right. Returns None when the file looks good, else the reason in a few words."""
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
    elif decode:
        try:
            open_image(path, min_size=(64, 64))
        except (BadImageError, OSError) as err:
            text = str(err)
            cause = text[text.find('(') + 1:text.rfind(')')] if '(' in text else text
            return 'cannot decode (%s)' % cause
    return None


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
            if isinstance(err, (BadImageError, FileNotFoundError)) and not self.skip_bad_images:
                raise
            if self.skip_bad_images:
                # the files were decoded when the dataset was read: this one changed since. A
                # bad image is left out, never replaced (a copy would count twice).
                raise BadImageError('The image %s can no longer be decoded (%s); it was readable when '
                                    'the dataset was read, so the file changed during the run: '
                                    'restore it, or restart the run.' % (self.paths[idx], err)) from None
            raise BadImageError('Cannot decode the image %s (%s); replace or delete the file, or '
                                'pass --skip-bad-images.' % (self.paths[idx], err)) from None
        rng = np.random.default_rng([self.seed, self.epoch, idx]) if self.transform.augment else None
        return self.transform(img, rng), self.labels[idx]

    def __repr__(self):
        return ('%s(name=%r, split=%r, images=%d, classes=%d, transform=%r)'
                % (type(self).__name__, self.name, self.split, len(self), self.num_classes,
                   self.transform))
