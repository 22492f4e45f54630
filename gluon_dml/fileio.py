"""Files that are either whole or absent: every write of a run folder, a checkpoint or a
catalogue goes through here (a temporary file, fsync, ``os.replace``, fsync of the folder).
:func:`hold_lock` keeps a second writer out of a run folder or a catalogue.

A temporary file is named ``PATH.tmp-DIGITS`` (the process id, then the thread id when another
thread writes): :func:`gluon_dml.engine.checkpoint.remove_stale_temporaries` removes what a kill
left behind."""
import errno
import fcntl
import hashlib
import json
import os
import threading

__all__ = ['fsync_dir', 'atomic_save', 'atomic_savez', 'atomic_write_text', 'atomic_write_json',
           'hold_lock', 'release_lock', 'lock_holder', 'missing_folders', 'existing_ancestor',
           'file_in_the_way', 'give_back_folder', 'read_json', 'params_digest', 'cache_dir',
           'LockBusy']


class LockBusy(OSError):
    """Another process holds the lock; ``pid`` is the one it wrote (a string, '?' if unknown)."""

    def __init__(self, path, pid):
        super().__init__(errno.EAGAIN, 'locked by pid %s' % pid, path)
        self.pid = pid


def hold_lock(path):
    """Take the exclusive lock file ``path`` (created if missing) without waiting, and write this
    process's id in it. Returns the descriptor to give :func:`release_lock`, or None on a file
    system without locks (then nothing is kept out). Raises :class:`LockBusy` when another
    process holds it, OSError when the file cannot be created. The lock goes with the process,
    even on ``kill -9``."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if not _held_elsewhere(err):
            os.close(fd)
            return None
        other = _written_pid(fd)
        os.close(fd)
        raise LockBusy(path, other) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode('ascii'), 0)
    return fd


def lock_holder(path):
    """The process id (a string, '?' if unknown) written in the lock file ``path`` when a
    process holds it (:func:`hold_lock`; this process too, through another descriptor), else
    None. Nothing is written."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        return _written_pid(fd) if _held_elsewhere(err) else None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _held_elsewhere(err):
    """Whether ``flock``'s error says another descriptor holds the lock (else: a file system
    without locks)."""
    return err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


def _written_pid(fd):
    """The process id :func:`hold_lock` wrote in the lock file ``fd`` (a string, '?' if
    unknown)."""
    try:
        return os.pread(fd, 32, 0).decode('ascii', 'replace').strip() or '?'
    except OSError:
        return '?'


def release_lock(fd):
    """Give back a lock taken by :func:`hold_lock` (None: nothing to do)."""
    if fd is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    except OSError:
        pass


def missing_folders(path):
    """The folders that creating ``path`` would make: ``path`` and its missing parents, deepest
    first (empty when ``path`` exists)."""
    missing, path = [], os.path.abspath(path)
    while not os.path.exists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def existing_ancestor(path):
    """``path`` when it exists, else the nearest of its parents that does (a file, perhaps: then
    ``path`` cannot be made)."""
    missing = missing_folders(path)
    return os.path.dirname(missing[-1]) if missing else os.path.abspath(path)


def file_in_the_way(path):
    """The file that keeps ``path`` from being a folder: ``path`` itself when it is a file, or the
    nearest of its parents that exists when that is a file; None when ``path`` is a folder or
    can be made one."""
    base = existing_ancestor(path)
    return None if os.path.isdir(base) else base


def give_back_folder(folder, made=(), empty_subfolders=()):
    """Undo a refused or failed start in ``folder``: remove its ``.lock`` file, the listed
    subfolders if they are empty, then the folders this process made for it (``made``, from
    :func:`missing_folders` before it started: ``folder`` and new parents) while they are empty.
    Release the lock first. Anything else stays."""
    steps = [lambda: os.unlink(os.path.join(folder, '.lock'))]
    steps += [lambda sub=sub: os.rmdir(os.path.join(folder, sub)) for sub in empty_subfolders]
    for step in steps:
        try:
            step()
        except OSError:
            pass
    for path in made:                                    # deepest first, each only when empty
        try:
            os.rmdir(path)
        except OSError:
            break


def cache_dir():
    """The folder of gluon-dml's on-disk caches (decoded images, MXNet's compiled operator code):
    ``GLUON_DML_CACHE``, default ``~/.cache/gluon-dml``; None when it is ``off`` (or 0, false,
    no, empty)."""
    where = os.environ.get('GLUON_DML_CACHE')
    if where is not None and where.strip().lower() in ('', '0', 'off', 'false', 'no'):
        return None
    return os.path.expanduser(where or os.path.join('~', '.cache', 'gluon-dml'))


def fsync_dir(path):
    """Make a rename inside folder ``path`` durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_name(path):
    suffix = '' if threading.current_thread() is threading.main_thread() else \
        '%d' % threading.get_ident()
    return '%s.tmp-%d%s' % (path, os.getpid(), suffix)


def atomic_save(path, save_fn):
    """Call ``save_fn(tmp_path)`` then rename the result to ``path`` (never a half-written file;
    the temporary file is removed whatever happens)."""
    tmp = _tmp_name(path)
    try:
        save_fn(tmp)
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:         # a failed write names no file, or the temporary: name path
        if getattr(err, 'filename', None) in (None, tmp) and err.errno is not None:
            raise OSError(err.errno, err.strerror, path) from None
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def atomic_write_text(path, text):
    def write(tmp):
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
    atomic_save(path, write)


def atomic_savez(path, **arrays):
    """``np.savez(path, **arrays)`` that never leaves a cut file at ``path`` (a full disk or an
    interrupt mid-write left one, in place of the file that was there): the archive is written
    to a temporary beside it, streamed (no copy of the arrays in memory: a catalogue's embeddings
    can be gigabytes), and renamed; a failed write's OSError names ``path``. The archive is
    closed on the way out even when a write fails (``np.savez`` left that to its ``ZipFile``'s
    ``__del__``, which printed a traceback after the error). Returns the path written (``.npz``
    added when missing, as ``np.savez`` does); ``np.load`` reads it as ``np.savez``'s."""
    import zipfile
    import numpy as np
    path = str(path)
    if not path.endswith('.npz'):
        path += '.npz'

    def write(tmp):
        with zipfile.ZipFile(tmp, mode='w', compression=zipfile.ZIP_STORED,
                             allowZip64=True) as archive:
            for name, value in arrays.items():
                with archive.open(name + '.npy', 'w', force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value))
    atomic_save(path, write)
    return path


def atomic_write_json(path, obj, **dump_kwargs):
    """``obj`` as JSON (``indent=1, sort_keys=True`` unless told otherwise), atomically."""
    dump_kwargs = dict(dict(indent=1, sort_keys=True), **dump_kwargs)
    atomic_write_text(path, json.dumps(obj, **dump_kwargs))


def params_digest(path):
    """SHA-256 of a parameter file: a catalogue's ``run.json`` records the one of the network that
    embedded the catalogue, and a codes file (``save_codes``) the one that wrote the codes, so a
    run trained further afterwards (or another run) is noticed."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def read_json(path, missing):
    """The JSON value of the file ``path`` of a run folder. ``missing``: the message of the
    ``FileNotFoundError`` raised when there is no such file; a file that is not JSON, or cannot be
    read, is a ``ValueError`` naming it and saying the run folder is damaged."""
    if not os.path.exists(path):
        raise FileNotFoundError(missing)
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError('%s is not valid JSON (%s); the run folder is damaged.' % (path, err)) from None
    except OSError as err:
        raise ValueError('Cannot read %s (%s).' % (path, err.strerror or err)) from None
