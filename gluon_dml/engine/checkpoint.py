"""Atomic checkpoints of a run.

A checkpoint is a folder ``checkpoints/e{epoch:04d}-b{batch:05d}`` holding the network's and the
loss's parameters, the optimizers' states and ``meta.json``. It is written under a temporary name
and renamed into place, then the pointer file ``checkpoints/latest`` is replaced atomically, so a
kill at any moment leaves the previous checkpoint whole and pointed to.
"""
import json
import os
import shutil

__all__ = ['atomic_write_text', 'atomic_save', 'CheckpointManager']


def _fsync_dir(path):
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


def atomic_save(path, save_fn):
    """Call ``save_fn(tmp_path)`` then rename the result to ``path`` (never a half-written file)."""
    tmp = '%s.tmp-%d' % (path, os.getpid())
    try:
        save_fn(tmp)
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def atomic_write_text(path, text):
    def write(tmp):
        with open(tmp, 'w') as f:
            f.write(text)
    atomic_save(path, write)


class CheckpointManager:
    """Writes and finds checkpoints in ``run_dir/checkpoints``; keeps the newest ``keep``."""

    def __init__(self, run_dir, keep=2):
        self.dir = os.path.join(run_dir, 'checkpoints')
        self.keep = keep
        os.makedirs(self.dir, exist_ok=True)

    def save(self, epoch, batch, writers, meta):
        """``writers``: {file name: fn(path)}; ``meta``: JSON-able dict. Returns the folder."""
        name = 'e%04d-b%05d' % (epoch, batch)
        final = os.path.join(self.dir, name)
        tmp = os.path.join(self.dir, '.tmp-%s-%d' % (name, os.getpid()))
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for fname, fn in writers.items():
            fn(os.path.join(tmp, fname))
        with open(os.path.join(tmp, 'meta.json'), 'w') as f:
            json.dump(dict(meta, epoch=epoch, batch=batch), f, indent=1)
        for fname in os.listdir(tmp):
            with open(os.path.join(tmp, fname), 'rb') as f:
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        if os.path.exists(final):
            old = final + '.old-%d' % os.getpid()
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        atomic_write_text(os.path.join(self.dir, 'latest'), name + '\n')
        self._prune(keep_name=name)
        return final

    def _prune(self, keep_name):
        names = sorted(n for n in os.listdir(self.dir) if n.startswith('e') and '-b' in n
                       and os.path.isdir(os.path.join(self.dir, n)))
        for n in names[:-self.keep]:
            if n != keep_name:
                shutil.rmtree(os.path.join(self.dir, n), ignore_errors=True)
        for n in os.listdir(self.dir):           # leftovers of a kill mid-write
            if n.startswith('.tmp-'):
                shutil.rmtree(os.path.join(self.dir, n), ignore_errors=True)

    def latest(self):
        """The newest complete checkpoint folder, or None."""
        pointer = os.path.join(self.dir, 'latest')
        if not os.path.exists(pointer):
            return None
        with open(pointer) as f:
            name = f.read().strip()
        path = os.path.join(self.dir, name)
        if not os.path.exists(os.path.join(path, 'meta.json')):
            return None
        return path

    @staticmethod
    def meta(path):
        with open(os.path.join(path, 'meta.json')) as f:
            return json.load(f)
