"""Training-set augmentation of the in-memory grey datasets (digits, Fashion-MNIST, Omniglot).

* :func:`rotated_classes` (``--rotations K``): every training class also seen turned by 90, 180
  and 270 degrees, each turn a class of its own (K = 4 makes four times the classes; Santoro et
  al. 2016 and Snell et al. 2017 on Omniglot). Only the training classes are turned; the
  evaluation classes (test or ``--val-classes``) stay as they are. K = 8 also mirrors every
  class left-right as a class of its own before turning: the eight symmetries of the square,
  eight times the classes.
* :class:`ShiftedArrayDataset` (``--shift S``): each training image moved by a random whole
  number of pixels in ``[-S, S]`` on each axis, the uncovered border filled with 0 (the
  background of these datasets). The shifts are drawn once per epoch from ``(seed, epoch)``, so
  a resumed run sees the very shifts the uninterrupted one saw.
* ``--tilt DEG`` and ``--zoom F`` (the same class): each training image also turned by a random
  angle in ``[-DEG, DEG]`` degrees and scaled by a random factor in ``[1 - F, 1 + F]`` about its
  centre (bilinear resampling, the border filled with 0), drawn per epoch like the shifts, the
  shift applied after. With both at 0 the whole-pixel moves are exact copies, as before.

The photo datasets have their own augmentation (random resized crops and flips,
:class:`gluon_dml.data.RGBTransform`).
"""
import numpy as np

from .base import ArrayDataset

__all__ = ['rotated_classes', 'ShiftedArrayDataset', 'ROTATIONS', 'augment_training_set', 'warp']

ROTATIONS = (1, 2, 4, 8)


def rotated_classes(dataset, k):
    """``dataset`` with each class repeated at ``k`` turns of ``360 / k`` degrees (``k`` in 1, 2,
    4), turn ``r`` of class ``c`` labelled ``c + r * C`` and named ``'NAME@rot90'`` (``@rot180``,
    ``@rot270``). ``k = 8``: the classes and their left-right mirror images (class ``c + C``,
    ``'NAME@mirror'``), each at the four turns (labels ``c + r * 2C``). ``k = 1`` returns
    ``dataset`` itself."""
    k = int(k)
    if k not in ROTATIONS:
        raise ValueError('rotations must be 1, 2 or 4 (turns of 90 degrees), or 8 (the four '
                         'turns of the classes and of their mirror images), got %r.' % (k,))
    if k == 1:
        return dataset
    if not isinstance(dataset, ArrayDataset):
        raise TypeError('rotations apply to the in-memory datasets (digits, fashion-mnist, '
                        'omniglot), not to %s.' % type(dataset).__name__)
    h, w = dataset.image_shape[1:]
    if h != w:
        raise ValueError('rotations need square images, got %dx%d.' % (h, w))
    if k == 8:                          # mirror images as new classes, then the four turns
        mirrored = ArrayDataset(
            np.concatenate([dataset.images, dataset.images[:, :, :, ::-1]]),
            np.concatenate([dataset.labels, dataset.labels + dataset.num_classes]),
            list(dataset.class_names) + ['%s@mirror' % n for n in dataset.class_names],
            name=dataset.name, split=dataset.split)
        return rotated_classes(mirrored, 4)
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
    """An :class:`ArrayDataset` whose items are moved by up to ``max_shift`` pixels, and, with
    ``tilt`` (degrees) or ``zoom`` (a fraction), turned and scaled about their centre, a new
    draw every epoch (:meth:`set_epoch`, called by the training loop before each epoch)."""

    def __init__(self, dataset, max_shift, seed=0, tilt=0.0, zoom=0.0):
        max_shift = int(max_shift)
        h, w = dataset.image_shape[1:]
        if not 0 <= max_shift < min(h, w):
            raise ValueError('shift must lie in [0, %d) pixels for %dx%d images, got %r.'
                             % (min(h, w), h, w, max_shift))
        if not 0 <= tilt <= 180:
            raise ValueError('tilt must lie in [0, 180] degrees, got %r.' % (tilt,))
        if not 0 <= zoom < 1:
            raise ValueError('zoom must lie in [0, 1), got %r.' % (zoom,))
        # the arrays are shared, not copied (the checks of ArrayDataset ran on them already)
        self.images, self.labels = dataset.images, dataset.labels
        self.class_names, self.name, self.split = dataset.class_names, dataset.name, dataset.split
        self.max_shift, self.seed = max_shift, int(seed)
        self.tilt, self.zoom = float(tilt), float(zoom)
        self.set_epoch(0)

    def set_epoch(self, epoch):
        """Draw the moves of ``epoch``: ``shifts`` (N, 2) whole pixels (rows, columns), and with
        tilt or zoom on, ``angles`` (N,) in degrees and ``scales`` (N,)."""
        rng = np.random.RandomState([self.seed & 0x7fffffff, int(epoch), 0x5f1f7])
        s = self.max_shift
        self.shifts = rng.randint(-s, s + 1, size=(len(self.labels), 2))
        if self.tilt or self.zoom:      # drawn after the shifts: those stay as without them
            self.angles = rng.uniform(-self.tilt, self.tilt, size=len(self.labels))
            self.scales = rng.uniform(1 - self.zoom, 1 + self.zoom, size=len(self.labels))
        else:
            self.angles = self.scales = None

    def gather(self, indices):
        """The batch of ``indices``, each image moved (and turned, scaled) as this epoch drew."""
        items = [self[int(i)] for i in indices]
        return (np.stack([img for img, _ in items]).astype(np.float32, copy=False),
                np.asarray([label for _, label in items], dtype=np.int64))

    def __getitem__(self, idx):
        img = self.images[idx]
        dy, dx = self.shifts[idx]
        if self.angles is not None:
            return (warp(img, self.angles[idx], self.scales[idx], (dy, dx)).astype(img.dtype),
                    self.labels[idx])
        if dy == 0 and dx == 0:
            return img, self.labels[idx]
        out = np.zeros_like(img)
        h, w = img.shape[1:]
        out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            img[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
        return out, self.labels[idx]


def warp(img, angle, scale, shift=(0, 0)):
    """``img`` (C, H, W) turned by ``angle`` degrees (counter-clockwise as displayed, rows
    down), scaled by ``scale`` about its centre, then moved by ``shift`` (rows, columns) pixels;
    bilinear, 0 outside. Each output pixel o reads the input at ``M (o - c - shift) + c`` with
    ``M`` the inverse turn and scale and ``c`` the centre."""
    from scipy.ndimage import affine_transform
    h, w = img.shape[1:]
    t = np.deg2rad(angle)
    cos, sin = np.cos(t), np.sin(t)
    # (row, col) offsets from the centre: a counter-clockwise turn on screen (rows point down)
    # maps them by [[cos, -sin], [sin, cos]]; the inverse is its transpose, over the scale
    inv = np.array([[cos, sin], [-sin, cos]]) / scale
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    offset = centre - inv.dot(centre + np.asarray(shift, dtype=np.float64))
    out = np.empty(img.shape, dtype=np.float32)
    for ch in range(img.shape[0]):
        out[ch] = affine_transform(img[ch].astype(np.float32), inv, offset=offset, order=1,
                                   mode='grid-constant', cval=0.0)
    return out


def augment_training_set(dataset, rotations=1, shift=0, seed=0, tilt=0.0, zoom=0.0):
    """The training split as ``--rotations``, ``--shift``, ``--tilt`` and ``--zoom`` ask
    (each a no-op at 1, 0, 0 and 0)."""
    dataset = rotated_classes(dataset, rotations or 1)
    if shift or tilt or zoom:
        if not isinstance(dataset, ArrayDataset):
            raise TypeError('shift, tilt and zoom apply to the in-memory datasets (digits, '
                            'fashion-mnist, omniglot), not to %s.' % type(dataset).__name__)
        dataset = ShiftedArrayDataset(dataset, shift or 0, seed, tilt or 0.0, zoom or 0.0)
    return dataset
