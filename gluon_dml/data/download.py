"""Download and unpack a research dataset into the layout its reader expects (needs internet).

    python -m gluon_dml.data.download CUB_200_2011 --root ~/data
    python -m gluon_dml.data.download Cars196 --root ~/data/cars196
    python -m gluon_dml.data.download SOP --root ~/data
    python -m gluon_dml.data.download LFW --root ~/data

In-Shop sits behind a form on its project page: download it by hand (the reader's error names the
page). Archives are fetched to ``ROOT/NAME.part`` with a progress bar, renamed when complete
(an interrupted download never looks finished), then unpacked (tar and zip; members that would
land outside ROOT are refused).
"""
import argparse
import os
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib

from ..fileio import file_in_the_way
from ..progress import progress_bar
from .research import DOWNLOADS

__all__ = ['download_dataset', 'fetch', 'extract']


def _canonical(name):
    key = name.lower().replace('-', '').replace('_', '')
    for known in DOWNLOADS:
        if known.lower().replace('_', '') == key:
            return known
    aliases = {'cub': 'CUB_200_2011', 'cars': 'Cars196', 'stanfordonlineproducts': 'SOP',
               'ebayinclass': 'SOP', 'ebaycrossclass': 'SOP'}
    if key in aliases:
        return aliases[key]
    raise ValueError('No download for %r; known: %s.' % (name, ', '.join(sorted(DOWNLOADS))))


def fetch(url, dest, progress=True, timeout=60):
    """Download ``url`` to ``dest`` (via ``dest.part``); returns ``dest``. Raises ValueError with
    the URL and the reason when it cannot be fetched."""
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    part = dest + '.part'
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, 'wb') as out:
            total = response.headers.get('Content-Length')
            bar = None
            if progress:
                bar = progress_bar(total=int(total) if total else None, unit='B',
                                   unit_scale=True, desc=os.path.basename(dest), leave=False)
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
    except (urllib.error.URLError, OSError, ValueError) as err:
        if os.path.exists(part):
            os.remove(part)
        raise ValueError('Could not download %s (%s).' % (url, getattr(err, 'reason', err))) from None
    os.replace(part, dest)
    return dest


def _safe_target(root, member_name):
    target = os.path.realpath(os.path.join(root, member_name))
    if not (target == os.path.realpath(root) or target.startswith(os.path.realpath(root) + os.sep)):
        raise ValueError('The archive member %r would be written outside %s; refusing to unpack it.'
                         % (member_name, root))
    return target


ARCHIVE_SUFFIXES = ('.tgz', '.tar.gz', '.tar', '.zip')


def extract(archive, root):
    """Unpack a tar(.gz) or zip ``archive`` into ``root``; other files are left as they are. A
    damaged or cut archive is a ValueError naming it (tarfile's EOFError, zipfile's BadZipFile)."""
    try:
        return _extract(archive, root)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise ValueError('%s is a damaged or cut archive (%s); delete it and download it again.'
                         % (archive, err)) from None


def _extract(archive, root):
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                _safe_target(root, m.name)
                if m.issym() or m.islnk():
                    raise ValueError('The archive %s holds a link (%s); refusing to unpack it.'
                                     % (archive, m.name))
            tar.extractall(root, members)
        return True
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                _safe_target(root, name)
            zf.extractall(root)
        return True
    return False


def download_dataset(name, root, urls=None, progress=True, keep_archives=False):
    """Fetch and unpack dataset ``name`` into ``root``. ``urls`` overrides the known
    ``(url, file name)`` list (mirrors). Returns ``root``."""
    name = _canonical(name)
    info = DOWNLOADS[name]
    files = urls if urls is not None else info['files']
    if not files:
        raise ValueError('%s cannot be downloaded automatically; get it from %s and unpack it into %s.'
                         % (name, info['page'], root))
    blocker = file_in_the_way(root)
    if blocker is not None:
        raise ValueError('--root %s cannot be a folder: %s is a file. Give a folder to unpack %s '
                         'into.' % (root, blocker, name))
    os.makedirs(root, exist_ok=True)
    for url, fname in files:
        dest = os.path.join(root, fname)
        if not os.path.exists(dest):
            try:
                fetch(url, dest, progress=progress)
            except ValueError as err:
                raise ValueError('%s Download %s by hand from %s and unpack it into %s.'
                                 % (err, name, info['page'], root)) from None
        unpacked = extract(dest, root)
        if not unpacked and fname.lower().endswith(ARCHIVE_SUFFIXES):
            # a web page saved under the archive's name (a login or error page), or a cut zip
            # (its directory is at the end): the command said the dataset was there
            with open(dest, 'rb') as f:
                start = f.read(40)
            raise ValueError('%s is not a tar or zip archive (it begins %r): the server sent '
                             'something else, or it is cut. Delete it, then download %s by hand '
                             'from %s and unpack it into %s.' % (dest, start, name, info['page'], root))
        if unpacked and not keep_archives:
            os.remove(dest)
    return root


def main(argv=None):
    p = argparse.ArgumentParser(prog='gluon-dml download', description=__doc__.splitlines()[0])
    p.add_argument('name', help=', '.join(sorted(DOWNLOADS)))
    p.add_argument('--root', required=True, help='folder to unpack into (then --data-path ROOT)')
    p.add_argument('--keep-archives', action='store_true')
    a = p.parse_args(argv)
    if not a.root.strip():        # was os.makedirs's "[Errno 2] No such file or directory: ''"
        print('error: --root is empty; give the folder to unpack %s into.' % a.name, file=sys.stderr)
        return 2
    try:
        root = download_dataset(a.name, os.path.expanduser(a.root), keep_archives=a.keep_archives)
    except ValueError as err:
        print('error: %s' % err, file=sys.stderr)
        return 2
    print('%s is in %s; train with --data %s --data-path %s' % (a.name, root, a.name, root))
    return 0


if __name__ == '__main__':
    sys.exit(main())
