"""Images from the network's clients: decoded with limits, every failure one sentence.

:func:`decode_image` reads the header first and refuses an image of more than ``max_pixels``
pixels before decoding it (a decompression bomb: a few kilobytes of PNG that would decode to
gigabytes), then decodes it fully so that a truncated file fails here, not in the network.
"""
import base64
import binascii
import io
import re

from PIL import Image, UnidentifiedImageError

from ..data.transforms import refuse_truncated_images, to_8bit
from .errors import ServeError

__all__ = ['decode_image', 'decode_base64', 'image_extension', 'thumbnail_bytes', 'browser_media',
           'BROWSER_FORMATS', 'MIME']

# formats every browser shows as they are; the others are converted to PNG when served
BROWSER_FORMATS = {'PNG': 'image/png', 'JPEG': 'image/jpeg', 'MPO': 'image/jpeg',
                   'GIF': 'image/gif', 'WEBP': 'image/webp', 'BMP': 'image/bmp'}
MIME = BROWSER_FORMATS
# a JPEG browsers show right is grey or YCbCr (PIL: L, RGB); a CMYK or YCCK one (PIL: CMYK) they
# show in wrong colours or not at all
_BROWSER_JPEG_MODES = ('L', 'RGB')
_EXTENSIONS = {'JPEG': '.jpg', 'MPO': '.jpg', 'TIFF': '.tif', 'PPM': '.ppm', 'JPEG2000': '.jp2'}
_DATA_URL = re.compile(r'^data:[\w/+.-]*(;[\w=-]+)*;base64,', re.I)


def decode_image(data, max_pixels, what='The upload', draft=None):
    """``data`` (bytes) as a loaded PIL image (the first frame of an animation).

    :class:`ServeError` 400 for empty bytes, bytes that are not an image PIL can read, or a
    truncated or damaged image; 413 for an image of more than ``max_pixels`` pixels.
    ``draft=N``: a JPEG may be decoded at a reduced scale, no smaller than N x N (thumbnails)."""
    if not data:
        raise ServeError(400, '%s is empty (0 bytes).' % what)
    refuse_truncated_images()             # a truncated upload is refused, not half grey
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ServeError(413, '%s declares more pixels than this service decodes (at most %s, '
                              '--max-pixels).' % (what, '{:,}'.format(int(max_pixels)))) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise ServeError(400, '%s is not an image this service can read (PNG, JPEG, GIF, WebP, '
                              'BMP, TIFF, ...).' % what) from None
    try:
        img.seek(0)
        if draft and img.format in ('JPEG', 'MPO'):
            # decoded at a reduced scale, the pixels that count are those decoded: a 48-megapixel
            # photo of the catalogue's own makes its thumbnail from an eighth of its side
            img.draft(img.mode, (int(draft), int(draft)))
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ServeError(400, '%s is truncated or damaged (%s).'
                         % (what, str(err).rstrip('.') or type(err).__name__)) from None
    width, height = img.size
    if width * height > max_pixels:
        raise ServeError(413, '%s is %d x %d = %s pixels, more than this service decodes (%s, '
                              '--max-pixels).' % (what, width, height, '{:,}'.format(width * height),
                                                  '{:,}'.format(int(max_pixels))))
    if width < 1 or height < 1:
        raise ServeError(400, '%s has no pixels (%d x %d).' % (what, width, height))
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as err:
        raise ServeError(400, '%s is truncated or damaged (%s).'
                         % (what, str(err).rstrip('.') or type(err).__name__)) from None
    return img


def decode_base64(text, what='image'):
    """The bytes of a base64 string (a ``data:image/...;base64,`` prefix is allowed)."""
    if not isinstance(text, str):
        raise ServeError(400, 'JSON field %r must be a base64 string, got %s.'
                         % (what, type(text).__name__))
    text = _DATA_URL.sub('', text.strip(), count=1)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:                                              # URL-safe alphabet
            data = base64.urlsafe_b64decode(text.encode('ascii'))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise ServeError(400, 'JSON field %r is not valid base64.' % what) from None
    if not data:
        raise ServeError(400, 'JSON field %r is empty.' % what)
    return data


def image_extension(img):
    """The file extension of a decoded image's format (``.png``, ``.jpg``, ...)."""
    fmt = (img.format or 'PNG').upper()
    return _EXTENSIONS.get(fmt, '.' + fmt.lower())


def browser_media(fmt, mode):
    """The media type under which browsers show a file of PIL format ``fmt`` and mode ``mode``
    as it is; None when it must be converted (TIFF, ...; a CMYK or YCCK JPEG)."""
    if fmt in ('JPEG', 'MPO') and mode not in _BROWSER_JPEG_MODES:
        return None
    return BROWSER_FORMATS.get(fmt)


def _displayable(img):
    """``img`` in a mode browsers show: CMYK, YCbCr, ... as RGB; 16-bit and 32-bit grey scaled
    to 8 bits (PIL's own conversion clips them: a 16-bit picture turned white)."""
    img = to_8bit(img)
    if img.mode not in ('1', 'L', 'LA', 'P', 'RGB', 'RGBA'):
        return img.convert('RGBA' if 'A' in img.getbands() else 'RGB')
    return img


def thumbnail_bytes(img, size):
    """``(bytes, media type)``: ``img`` shrunk to fit ``size`` x ``size`` (never enlarged), or
    whole (``size`` None), in a mode browsers show: as JPEG for photographs without transparency
    (thumbnails, and whole JPEGs converted from CMYK), else as PNG."""
    photo = bool(size) or img.format in ('JPEG', 'MPO')
    shown = _displayable(img)
    if size:
        shown = shown.copy() if shown is img else shown
        shown.thumbnail((int(size), int(size)))
    img = shown
    out = io.BytesIO()
    if img.mode == 'RGB' and photo:
        img.save(out, 'JPEG', quality=85 if size else 95)
        return out.getvalue(), 'image/jpeg'
    img.save(out, 'PNG')
    return out.getvalue(), 'image/png'
