"""Training-set augmentation of the in-memory grey datasets (digits, Fashion-MNIST, Omniglot).

* :func:`rotated_classes` (``--rotations K``): every training class also seen turned by 90, 180
  and 270 degrees, each turn a class of its own (K = 4 makes four times the classes; Santoro et
  al. 2016 and Snell et al. 2017 on Omniglot). Only the training classes are turned; the
  evaluation classes (test or ``--val-classes``) stay as they are.
* :class:`ShiftedArrayDataset` (``--shift S``): each training image moved by a random whole
  number of pixels in ``[-S, S]`` on each axis, the uncovered border filled with 0 (the
  background of these datasets). The shifts are drawn once per epoch from ``(seed, epoch)``, so
  a resumed run sees the very shifts the uninterrupted one saw.

The photo datasets have their own augmentation (random resized crops and flips,
:class:`gluon_dml.data.RGBTransform`).
"""
import numpy as np

from .base import ArrayDataset

__all__ = ['rotated_classes', 'ShiftedArrayDataset', 'ROTATIONS', 'augment_training_set']

ROTATIONS = (1, 2, 4)


def rotated_classes(dataset, k):
    """``dataset`` with each class repeated at ``k`` turns of ``360 / k`` degrees (``k`` in 1, 2,
    4), turn ``r`` of class ``c`` labelled ``c + r * C`` and named ``'NAME@rot90'`` (``@rot180``,
    ``@rot270``). ``k = 1`` returns ``dataset`` itself."""
    k = int(k)
    if k not in ROTATIONS:
        raise ValueError('rotations must be 1, 2 or 4 (turns of 90 degrees), got %r.' % (k,))
    if k == 1:
        return dataset
    if not isinstance(dataset, ArrayDataset):
        raise TypeError('rotations apply to the in-memory datasets (digits, fashion-mnist, '
                        'omniglot), not to %s.' % type(dataset).__name__)
    h, w = dataset.image_shape[1:]
    if h != w:
        raise ValueError('rotations need square images, got %dx%d.' % (h, w))
    quarter = 4 // k                    # k = 2: half turns only
    images, labels, names = [], [], []
    for r in range(k):
        images.append(np.rot90(dataset.images, r * quarter, axes=(2, 3)))
        labels.append(dataset.labels + r * dataset.num_classes)
        names.extend(n if r == 0 else '%s@rot%d' % (n, 90 * r * quarter)
                     for n in dataset.class_names)
    return ArrayDataset(np.concatenate(images), np.concatenate(labels), names,
                        name=dataset.name, split=dataset.split)


class ShiftedArrayDataset(ArrayDataset):
    """An :class:`ArrayDataset` whose items are moved by up to ``max_shift`` pixels, a new draw
    every epoch (:meth:`set_epoch`, called by the training loop before each epoch)."""

    def __init__(self, dataset, max_shift, seed=0):
        max_shift = int(max_shift)
        h, w = dataset.image_shape[1:]
        if not 0 <= max_shift < min(h, w):
            raise ValueError('shift must lie in [0, %d) pixels for %dx%d images, got %r.'
                             % (min(h, w), h, w, max_shift))
        # the arrays are shared, not copied (the checks of ArrayDataset ran on them already)
        self.images, self.labels = dataset.images, dataset.labels
        self.class_names, self.name, self.split = dataset.class_names, dataset.name, dataset.split
        self.max_shift, self.seed = max_shift, int(seed)
        self.set_epoch(0)

    def set_epoch(self, epoch):
        """Draw the shifts of ``epoch``: (N, 2) whole pixels (rows, columns)."""
        rng = np.random.RandomState([self.seed & 0x7fffffff, int(epoch), 0x5f1f7])
        s = self.max_shift
        self.shifts = rng.randint(-s, s + 1, size=(len(self.labels), 2))

    def __getitem__(self, idx):
        img = self.images[idx]
        dy, dx = self.shifts[idx]
        if dy == 0 and dx == 0:
            return img, self.labels[idx]
        out = np.zeros_like(img)
        h, w = img.shape[1:]
        out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            img[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
        return out, self.labels[idx]


def augment_training_set(dataset, rotations=1, shift=0, seed=0):
    """The training split as ``--rotations`` and ``--shift`` ask (each a no-op at 1 and 0)."""
    dataset = rotated_classes(dataset, rotations or 1)
    if shift:
        if not isinstance(dataset, ArrayDataset):
            raise TypeError('shift applies to the in-memory datasets (digits, fashion-mnist, '
                            'omniglot), not to %s.' % type(dataset).__name__)
        dataset = ShiftedArrayDataset(dataset, shift, seed)
    return dataset
