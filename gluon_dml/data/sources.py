"""Where a command's images come from: one image file, a folder, or a list file.

:func:`list_images` accepts every form a user has at hand:

* one image file (any format PIL reads: ``.png``, ``.jpg``, ``.pgm`` ...);
* a folder, searched recursively for image files (sorted paths);
* a list file, UTF-8 text, one image per line in either of the two formats of the toolkit:
  ``path`` (the path alone; it may contain spaces) or the training format
  ``path label [split]`` (whitespace-separated, as ``--data list`` reads it). ``#`` starts a
  comment; a relative path is taken from the list file's folder. When a line has a label, the
  labels are returned too: each line's own, None for a line without one.
"""
import os

from .research import IMAGE_EXTENSIONS

__all__ = ['list_images', 'IMAGE_EXTENSIONS']


def _is_image_file(path):
    if path.lower().endswith(IMAGE_EXTENSIONS):
        return True
    try:
        from PIL import Image
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:  # noqa: BLE001  (PIL raises many kinds for a non-image)
        return False


def _read_list(path):
    base = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, encoding='utf-8-sig') as f:     # a byte-order mark (Notepad's UTF-8) is no path
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise ValueError('%s is neither an image PIL can read nor a UTF-8 list file of image paths.'
                         % path) from None
    paths, labels = [], []
    for lineno, raw in enumerate(lines, 1):
        line = raw.split('#', 1)[0].strip()
        if not line:
            continue
        whole = line if os.path.isabs(line) else os.path.join(base, line)
        if os.path.isfile(whole):                      # the "path" format (spaces allowed)
            paths.append(whole)
            labels.append(None)
            continue
        parts = line.split()
        if len(parts) > 3 or (len(parts) == 3 and parts[2] not in ('train', 'test', 'query', 'gallery')):
            raise ValueError('%s, line %d: expected "path" or "path label [split]", got %r.'
                             % (path, lineno, raw.strip()))
        p = parts[0] if os.path.isabs(parts[0]) else os.path.join(base, parts[0])
        paths.append(p)
        labels.append(parts[1] if len(parts) >= 2 else None)
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError('%d image(s) listed in %s do not exist, first: %s.'
                                % (len(missing), path, missing[0]))
    return paths, (labels if any(lab is not None for lab in labels) else None)


def list_images(source):
    """``(paths, labels)`` of the images ``source`` names (see the module docstring); ``labels``
    is None unless ``source`` is a list file with a label on some line: then one per path, None
    where its line has none."""
    source = os.path.expanduser(str(source))
    if os.path.isdir(source):
        paths = []
        for root, dirs, files in os.walk(source):
            dirs.sort()
            paths.extend(os.path.join(root, f) for f in files
                         if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith('.'))
        paths.sort()
        labels = None
    elif os.path.isfile(source):
        if _is_image_file(source):
            paths, labels = [source], None
        else:
            paths, labels = _read_list(source)
    else:
        raise FileNotFoundError('%s does not exist: give an image, a folder of images or a list '
                                'file.' % source)
    if not paths:
        raise ValueError('No images found in %s (looked for %s).' % (source, ', '.join(IMAGE_EXTENSIONS)))
    return paths, labels
