"""Test-time preprocessing of each dataset, applicable to any image file.

``get_transform(name)`` returns a callable that maps a PIL image (or a path to an image
file) to a float32 array of shape ``(C, H, W)`` with values in [0, 1], preprocessed exactly
as the named dataset's images are.  It is what embeds a user's own folder of images with a
trained run, and the Omniglot loader uses the very same function on its PNGs, so training
and embedding share their preprocessing.

==============  =========  ===============================================================
name            output     steps
==============  =========  ===============================================================
digits          (1, 8, 8)  grey; invert (``invert=True``: for dark ink on light paper);
                           crop to the ink and pad to a square (``fit=True``); resize
                           with area averaging (like scikit-learn's 4x4 block counts);
                           stretch to the full [0, 1] range (``autocontrast=True``,
                           scikit-learn's digits nearly always reach 16/16)
fashion-mnist   (1,28,28)  grey; resize to 28x28 (Lanczos); /255. Fashion-MNIST shows
                           light articles on black: pass ``invert=True`` for photos of
                           dark articles on a white background
omniglot        (1,28,28)  grey; resize 105x105 -> 28x28 (Lanczos, antialiased); invert so
                           that strokes are bright on a dark background (``invert=True``);
                           /255
==============  =========  ===============================================================

Every option can be overridden: ``get_transform('digits', invert=False)`` for images that
already show bright strokes on a dark background.  Images with transparency are composited
onto white first.
"""
import os

import numpy as np
from PIL import Image, ImageOps

from .base import normalize_name

__all__ = ['ImageTransform', 'get_transform', 'list_transforms', 'register_transform',
           'load_image']

_RESAMPLE = {
    'lanczos': 'LANCZOS',
    'box': 'BOX',
    'bilinear': 'BILINEAR',
    'bicubic': 'BICUBIC',
    'nearest': 'NEAREST',
}


def _resample_filter(name):
    try:
        attr = _RESAMPLE[name]
    except KeyError:
        raise ValueError('Unknown resampling filter %r; valid ones: %s.'
                         % (name, ', '.join(sorted(_RESAMPLE))))
    holder = getattr(Image, 'Resampling', Image)  # Pillow >= 9.1 has Image.Resampling
    return getattr(holder, attr)


def load_image(image):
    """Return ``image`` as a PIL image; ``image`` may be a PIL image or a path to a file.

    A file that cannot be decoded raises ``ValueError`` naming the file."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (str, bytes, os.PathLike)):
        try:
            with open(image, 'rb') as handle:
                img = Image.open(handle)
                img.load()  # decode now, while the file is open
            return img
        except (OSError, SyntaxError, ValueError) as err:
            raise ValueError('Cannot read the image file %s (%s); check that it is a valid '
                             'image, or remove it from the folder.' % (image, err)) from None
    raise TypeError('Expected a PIL image or a path to an image file, got %s.'
                    % type(image).__name__)


def _to_grey(img):
    """Grey (mode 'L') version of ``img``; transparent areas become white."""
    if img.mode in ('RGBA', 'LA', 'PA') or (img.mode == 'P' and 'transparency' in img.info):
        rgba = img.convert('RGBA')
        background = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode == 'I;16' or img.mode == 'I' or img.mode == 'F':
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() if arr.size and arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8), 'L')
    return img.convert('L')


def _fit_to_content(img, threshold=0.25, margin=0.1):
    """Crop a bright-on-dark grey image to the box of its bright pixels and pad it to a
    square with a small dark margin (digit-style size normalisation)."""
    arr = np.asarray(img, dtype=np.float32)
    if arr.size == 0 or arr.max() <= arr.min():
        return img
    low = arr.min()
    mask = arr - low > threshold * (arr.max() - low)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    crop = arr[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    side = int(round(max(crop.shape) * (1 + 2 * margin)))
    canvas = np.full((side, side), low, dtype=np.float32)
    top = (side - crop.shape[0]) // 2
    left = (side - crop.shape[1]) // 2
    canvas[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
    return Image.fromarray(canvas.astype(np.uint8), 'L')


class ImageTransform(object):
    """PIL image (or image path) -> float32 array ``(1, H, W)`` in [0, 1].

    Parameters
    ----------
    size : (int, int)
        Output ``(height, width)``.
    invert : bool
        Invert the grey levels (dark strokes on light paper -> bright strokes on dark).
    resample : str
        PIL filter for the resize: ``'lanczos'`` or ``'box'`` (both antialias), ...
    fit : bool
        Crop to the bright content and pad it to a centred square before resizing.
    autocontrast : bool
        Stretch the result linearly so that its minimum is 0 and its maximum 1.
    name : str
        Name shown by ``repr``.

    Steps, in order: grey, invert, fit, resize, /255, autocontrast.  Instances are
    picklable, so they can go to DataLoader worker processes.
    """

    def __init__(self, size, invert=False, resample='lanczos', fit=False,
                 autocontrast=False, name=None):
        self.size = (int(size[0]), int(size[1]))
        self.invert = bool(invert)
        self.resample = resample
        _resample_filter(resample)  # validate now rather than on the first image
        self.fit = bool(fit)
        self.autocontrast = bool(autocontrast)
        self.name = name

    def __call__(self, image):
        img = _to_grey(load_image(image))
        if self.invert:
            img = ImageOps.invert(img)
        if self.fit:
            img = _fit_to_content(img)
        height, width = self.size
        if img.size != (width, height):
            img = img.resize((width, height), _resample_filter(self.resample))
        arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
        if self.autocontrast:
            low, high = arr.min(), arr.max()
            if high > low:
                arr = (arr - low) / (high - low)
        return arr[None, :, :]

    def __repr__(self):
        return ('ImageTransform(name=%r, size=%s, invert=%s, resample=%r, fit=%s, '
                'autocontrast=%s)' % (self.name, self.size, self.invert, self.resample,
                                      self.fit, self.autocontrast))


_TRANSFORMS = {}
_DISPLAY = {}


def register_transform(name, factory, overwrite=False):
    """Register ``factory(**kwargs) -> callable`` as the transform of dataset ``name``."""
    key = normalize_name(name)
    if key in _TRANSFORMS and not overwrite:
        raise ValueError('A transform named %r is already registered; pass overwrite=True '
                         'to replace it.' % name)
    _TRANSFORMS[key] = factory
    _DISPLAY[key] = name


def list_transforms():
    """Names of the registered transforms."""
    return sorted(_DISPLAY.values())


def get_transform(name, **kwargs):
    """Test-time preprocessing of dataset ``name`` (see the module docstring); keyword
    arguments override its options, e.g. ``get_transform('digits', invert=False)``."""
    key = normalize_name(name)
    if key not in _TRANSFORMS:
        raise ValueError('Unknown dataset %r for get_transform; valid names: %s.'
                         % (name, ', '.join(list_transforms())))
    return _TRANSFORMS[key](**kwargs)


def _factory(name, **defaults):
    def make(**kwargs):
        options = dict(defaults)
        options.update(kwargs)
        options.setdefault('name', name)
        return ImageTransform(**options)
    make.__name__ = 'make_%s_transform' % normalize_name(name)
    return make


register_transform('digits', _factory('digits', size=(8, 8), invert=True, resample='box',
                                      fit=True, autocontrast=True))
register_transform('fashion-mnist', _factory('fashion-mnist', size=(28, 28), invert=False,
                                             resample='lanczos'))
register_transform('omniglot', _factory('omniglot', size=(28, 28), invert=True,
                                        resample='lanczos'))
