"""Files that are either whole or absent: every write of a run folder, a checkpoint or a
catalogue goes through here (a temporary file, fsync, ``os.replace``, fsync of the folder).

A temporary file is named ``PATH.tmp-DIGITS`` (the process id, then the thread id when another
thread writes): :func:`gluon_dml.engine.checkpoint.remove_stale_temporaries` removes what a kill
left behind."""
import json
import os
import threading

__all__ = ['fsync_dir', 'atomic_save', 'atomic_write_text', 'atomic_write_json']


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
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def atomic_write_text(path, text):
    def write(tmp):
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
    atomic_save(path, write)


def atomic_write_json(path, obj, **dump_kwargs):
    """``obj`` as JSON (``indent=1, sort_keys=True`` unless told otherwise), atomically."""
    dump_kwargs = dict(dict(indent=1, sort_keys=True), **dump_kwargs)
    atomic_write_text(path, json.dumps(obj, **dump_kwargs))
