"""Image preprocessing, all of it: the grey small-image datasets, photographs, caption images.

* :class:`ImageTransform` (grey, small: digits, Fashion-MNIST, Omniglot) and the registry
  ``get_transform(name)`` of each dataset's test-time preprocessing (below);
* :class:`RGBTransform` (photographs: random resized crop / flip / jitter in training, resize
  and centre crop at test time, ImageNet normalisation), :class:`PhotoTransform` (its test-time
  form for any path or PIL image), :func:`open_image` / :func:`to_rgb` (decoding);
* the caption datasets' :class:`GreyTransform` (fashion3) and :class:`ImageNetTransform`
  (Flickr30K / COCO: VSE++'s random crop and flip in training).

Test-time preprocessing of each dataset, applicable to any image file:

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
import math
import os
import re

import numpy as np
from PIL import Image, ImageEnhance, ImageFile, ImageOps

from .base import normalize_name

__all__ = ['ImageTransform', 'get_transform', 'list_transforms', 'register_transform',
           'load_image', 'IMAGENET_MEAN', 'IMAGENET_STD', 'BadImageError', 'to_rgb', 'open_image',
           'RGBTransform', 'PhotoTransform', 'GreyTransform', 'ImageNetTransform']

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

_BILINEAR = getattr(getattr(Image, 'Resampling', Image), 'BILINEAR')
_FLIP = getattr(getattr(Image, 'Transpose', Image), 'FLIP_LEFT_RIGHT')

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
            raise BadImageError('Cannot read the image file %s (%s); check that it is a valid '
                                'image, or remove it from the folder.' % (image, err),
                                err, image) from None
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


# ---------------------------------------------------------------------------------------------
# photographs
# ---------------------------------------------------------------------------------------------

def _decoder_words(err, path):
    """PIL's message without the file object it names (``<_io.BufferedReader name=...>``)."""
    return re.sub(r"<_io\.\w+ name=('[^']*'|\"[^\"]*\")>", repr(str(path)), str(err))


class BadImageError(ValueError):
    """An image file that cannot be decoded (corrupt, truncated, not an image). ``reason``: the
    decoder's words alone (``cause``, the decoder's error, naming ``path``), for a list of the
    images left out (the message also advises); None when not given. ``path``: the file."""

    def __init__(self, message, cause=None, path=None):
        super().__init__(message)
        self.path = path
        self.reason = None if cause is None else 'cannot decode: %s' % _decoder_words(cause, path)


def refuse_truncated_images():
    """Turn PIL's ``LOAD_TRUNCATED_IMAGES`` off again before a decode: GluonCV's data package
    turns it on for the whole process when it is imported (building a GluonCV backbone imports
    it), and a truncated file would then decode as a half-grey picture."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False


def to_8bit(img):
    """A 16-bit or 32-bit grey image (PIL modes I;16, I, F) as 8-bit grey, scaled by its largest
    value (by 255 when that is at most 255): PIL's own conversion clips, which turned a 16-bit
    picture white. Other images are returned as they are."""
    if img.mode not in ('I;16', 'I;16B', 'I;16L', 'I', 'F'):
        return img
    arr = np.asarray(img, dtype=np.float64)
    top = arr.max() if arr.size and arr.max() > 255 else 255.0
    return Image.fromarray(np.clip(arr / top * 255.0, 0, 255).astype(np.uint8), 'L')


def to_rgb(img):
    """``img`` as an 8-bit RGB image: grey, palette, CMYK, 16-bit and float images are converted;
    transparent areas are composited onto white."""
    if img.mode in ('RGBA', 'LA', 'PA') or (img.mode == 'P' and 'transparency' in img.info):
        rgba = img.convert('RGBA')
        background = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert('RGB')
    img = to_8bit(img)
    if img.mode != 'RGB':
        img = img.convert('RGB')
    return img


def open_image(path, min_size=None):
    """Decode ``path`` to an RGB PIL image. ``min_size=(w, h)`` lets a JPEG decode at a reduced
    scale that still covers that size (much faster on large photographs). Returns
    ``(image, scale)``, ``scale`` being decoded size / file size (for bounding boxes).

    Raises :class:`BadImageError` naming the file when it cannot be decoded."""
    refuse_truncated_images()
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
                            '--skip-bad-images to leave unreadable images out.'
                            % (path, _decoder_words(err, path)),
                            err, path) from None
    scale = (img.size[0] / float(full[0]), img.size[1] / float(full[1]))
    return to_rgb(img), scale


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


# ---------------------------------------------------------------------------------------------
# caption datasets' images
# ---------------------------------------------------------------------------------------------

class GreyTransform(object):
    """Image file -> float32 (1, H, W) in [0, 1] (the fashion3 pictures, unresized). ``shape``
    (H, W): the one size the network takes; an image of another size is refused by name (a
    ValueError, which --skip-bad-images leaves out) rather than failing in the network."""

    def __init__(self, shape=None):
        self.shape = None if shape is None else tuple(shape)

    def __call__(self, path, train=False, rng=None):
        with Image.open(path) as img:
            arr = np.asarray(img.convert('L'), dtype=np.float32)[None] / np.float32(255.0)
        if self.shape is not None and arr.shape[1:] != self.shape:
            err = ValueError('%s is %d x %d pixels; this network takes %d x %d grey pictures '
                             '(width x height), unresized.' % (path, arr.shape[2], arr.shape[1],
                                                               self.shape[1], self.shape[0]))
            err.reason = 'is %d x %d pixels, not %d x %d' % (arr.shape[2], arr.shape[1],
                                                             self.shape[1], self.shape[0])
            raise err
        return arr


class ImageNetTransform(RGBTransform):
    """Image file -> float32 (3, size, size), ImageNet-normalised (what GluonCV's pretrained
    backbones expect). Evaluation: :class:`RGBTransform`'s resize of the shorter side to 256 and
    centre crop 224; training (``train=True``): VSE++'s random crop of the resized image and a
    horizontal flip, drawn from ``rng`` (a ``numpy.random.RandomState``)."""

    def __init__(self, size=224, resize=256):
        super().__init__(image_size=size, resize=resize, augment=False)
        self.size = self.image_size

    def __call__(self, path, train=False, rng=None):
        img = to_rgb(load_image(path))
        if not train:
            return RGBTransform.__call__(self, img)
        w, h = img.size
        s = self.resize / float(min(w, h))
        img = img.resize((max(self.size, int(round(w * s))), max(self.size, int(round(h * s)))),
                         _BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
        rng = rng or np.random
        top, left = rng.randint(arr.shape[0] - self.size + 1), rng.randint(arr.shape[1] - self.size + 1)
        arr = arr[top:top + self.size, left:left + self.size]
        if rng.rand() < 0.5:
            arr = arr[:, ::-1]
        arr = (arr - IMAGENET_MEAN) / IMAGENET_STD
        return np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32)
