"""Atomic checkpoints of a run, and how they are found again after any kill.

A checkpoint is a folder ``checkpoints/e{epoch:04d}-b{batch:05d}`` holding the network's and the
loss's parameters, the optimizers' states and ``meta.json``. It is written under a temporary name
(``.tmp-NAME-PID``), ``meta.json`` last with the size and CRC-32 of every other file, and renamed
into place; then the pointer file ``checkpoints/latest`` is replaced atomically.

The checkpoints themselves are the truth, not the pointer: :meth:`CheckpointManager.candidates`
scans the folders newest first and checks each against its ``meta.json``, so a garbled or stale
``latest``, a truncated file or a kill between two renames never makes a run start over or load
half a checkpoint. :meth:`CheckpointManager.recover` finishes or removes what a kill left behind
(``.tmp-*`` and ``.old-*`` folders).
"""
import json
import os
import re
import shutil
import zlib

import mxnet as mx

from ..errors import UserError
from ..fileio import atomic_save, atomic_write_text, fsync_dir as _fsync_dir
from .faults import fault_point

__all__ = ['atomic_write_text', 'atomic_save', 'CheckpointManager', 'CheckpointError',
           'remove_stale_temporaries', 'file_crc32', 'checkpoint_arrays', 'file_record',
           'file_problem', 'files_problem']

NAME_RE = re.compile(r'^e(\d{4,})-b(\d{5,})$')
_TMP_FILE_RE = re.compile(r'\.tmp-\d+$')


class CheckpointError(UserError):
    """A checkpoint (or the checkpoint folder) that cannot be read or written; one sentence."""


def remove_stale_temporaries(folder):
    """Remove the ``*.tmp-PID`` files a killed :func:`atomic_save` left in ``folder``; returns
    their names."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for n in names:
        path = os.path.join(folder, n)
        if _TMP_FILE_RE.search(n) and os.path.isfile(path):
            try:
                os.remove(path)
                removed.append(n)
            except OSError:
                pass
    return removed


def _remove(path):
    """Remove the folder or file ``path`` if it is there (a checkpoint's place may hold a file)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.remove(path)
        except OSError:
            pass


def file_crc32(path, chunk=1 << 22):
    crc = 0
    with open(path, 'rb') as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            crc = zlib.crc32(block, crc)
    return crc & 0xffffffff


def _name(epoch, batch):
    return 'e%04d-b%05d' % (epoch, batch)


def parse_name(name):
    """``(epoch, batch)`` of a checkpoint folder name, or None."""
    m = NAME_RE.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


class CheckpointManager:
    """Writes and finds checkpoints in ``run_dir/checkpoints``; keeps the newest ``keep``."""

    REQUIRED = ('net.params', 'trainer.states')

    def __init__(self, run_dir, keep=2, create=True):
        self.dir = os.path.join(run_dir, 'checkpoints')
        self.keep = keep
        if create:
            os.makedirs(self.dir, exist_ok=True)

    # -- writing --------------------------------------------------------------------------------
    def save(self, epoch, batch, writers, meta):
        """``writers``: {file name: fn(path)}; ``meta``: JSON-able dict. Returns the folder."""
        name = _name(epoch, batch)
        final = os.path.join(self.dir, name)
        tmp = os.path.join(self.dir, '.tmp-%s-%d' % (name, os.getpid()))
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            os.makedirs(tmp)
            files = {}
            for i, (fname, fn) in enumerate(writers.items()):
                path = os.path.join(tmp, fname)
                fn(path)
                with open(path, 'rb') as f:
                    os.fsync(f.fileno())
                files[fname] = file_record(path)
                if i == 0:
                    fault_point('checkpoint-files')
            fault_point('checkpoint-meta')
            with open(os.path.join(tmp, 'meta.json'), 'w') as f:
                json.dump(dict(meta, epoch=epoch, batch=batch, files=files), f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            _fsync_dir(tmp)
            fault_point('checkpoint-rename')
            if os.path.exists(final):
                old = os.path.join(self.dir, '.old-%s-%d' % (name, os.getpid()))
                _remove(old)
                os.replace(final, old)
                fault_point('checkpoint-between-renames')
                os.replace(tmp, final)
                _remove(old)
            else:
                os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _fsync_dir(self.dir)
        fault_point('checkpoint-pointer')
        atomic_write_text(os.path.join(self.dir, 'latest'), name + '\n')
        self._prune(keep_name=name)
        return final

    def _prune(self, keep_name):
        found = self.scan()
        for epoch, batch, n in found[self.keep:]:
            if n != keep_name:
                _remove(os.path.join(self.dir, n))
        for n in os.listdir(self.dir):           # leftovers of a kill mid-write, set-aside damage
            if n.startswith(('.tmp-', '.old-')) or n.endswith('.damaged'):
                _remove(os.path.join(self.dir, n))
        remove_stale_temporaries(self.dir)

    # -- finding --------------------------------------------------------------------------------
    def scan(self):
        """``[(epoch, batch, name)]`` of the checkpoints, newest first (unchecked): every entry
        named as one, a file in a checkpoint's place too (a folder a copy or sync tool replaced by
        a file was skipped as if absent, and an older checkpoint resumed in silence; it is found
        and reported as damaged by :meth:`verify`)."""
        if not os.path.isdir(self.dir):
            return []
        out = []
        for n in os.listdir(self.dir):
            key = parse_name(n)
            if key is not None:
                out.append(key + (n,))
        return sorted(out, reverse=True)

    def pointer(self):
        """``(name, problem)``: what ``checkpoints/latest`` names, and what is wrong with it
        as a phrase: 'is missing', 'is garbled (...)', 'names X, which does not exist'; None when it
        names a checkpoint folder)."""
        path = os.path.join(self.dir, 'latest')
        if not os.path.exists(path):
            return None, 'is missing'
        try:
            with open(path, 'rb') as f:
                raw = f.read(200)
            name = raw.decode('utf-8').strip()
        except (OSError, UnicodeDecodeError):
            return None, 'is unreadable'
        if parse_name(name) is None:
            return name, 'is garbled (%r)' % raw[:40]
        if not os.path.isdir(os.path.join(self.dir, name)):
            return name, 'names %s, which %s' % (name, 'is a file, not a checkpoint folder' if
                                                 os.path.exists(os.path.join(self.dir, name))
                                                 else 'does not exist')
        return name, None

    @classmethod
    def verify(cls, path):
        """None when the checkpoint folder ``path`` is whole, else what is wrong, in a few words."""
        if not os.path.isdir(path):
            return 'it is a file of %d bytes, not a checkpoint folder' % os.path.getsize(path)
        meta_path = os.path.join(path, 'meta.json')
        if not os.path.isfile(meta_path):
            return 'no meta.json'
        try:
            with open(meta_path, encoding='utf-8') as f:
                meta = json.load(f)
        except (OSError, ValueError) as err:
            return 'meta.json is not valid JSON (%s)' % err
        if not isinstance(meta, dict):
            return 'meta.json is not a JSON object'
        key = parse_name(os.path.basename(os.path.normpath(path)))
        if key is not None and (meta.get('epoch'), meta.get('batch')) != key:
            return 'meta.json says epoch %s, batch %s' % (meta.get('epoch'), meta.get('batch'))
        files = meta.get('files')
        if files is None:                        # checkpoints of older versions: no checksums
            for f in cls.REQUIRED:
                p = os.path.join(path, f)
                if not os.path.isfile(p) or os.path.getsize(p) == 0:
                    return '%s is missing or empty' % f
            return None
        return files_problem(path, files)

    def candidates(self):
        """``(path, problem)`` newest first, lazily (each is checked only when reached): every
        checkpoint folder with what is wrong with it (None when whole)."""
        for _, _, n in self.scan():
            yield os.path.join(self.dir, n), self.verify(os.path.join(self.dir, n))

    def latest(self):
        """The newest whole checkpoint folder, or None (found by scanning; ``latest`` is only a
        hint)."""
        for path, problem in self.candidates():
            if problem is None:
                return path
        return None

    def set_aside(self, path):
        """Rename a damaged checkpoint ``NAME`` to ``NAME.damaged`` (no longer found; removed by
        the next save). Returns the new path."""
        dest = path.rstrip(os.sep) + '.damaged'
        _remove(dest)
        os.replace(path, dest)
        return dest

    def recover(self):
        """Finish or undo what a kill during :meth:`save` left behind; returns sentences saying
        what was done. A complete ``.tmp-NAME-PID`` whose ``NAME`` is missing (a kill between the
        two renames of a re-saved checkpoint, or before the first) becomes ``NAME``; else a
        complete ``.old-NAME-PID`` goes back; the rest is removed."""
        done = []
        if not os.path.isdir(self.dir):
            return done
        leftovers = sorted(n for n in os.listdir(self.dir) if n.startswith(('.tmp-', '.old-')))
        for prefix in ('.tmp-', '.old-'):
            for n in leftovers:
                if not n.startswith(prefix):
                    continue
                path = os.path.join(self.dir, n)
                name = n[len(prefix):].rsplit('-', 1)[0]
                final = os.path.join(self.dir, name)
                if (os.path.isdir(path) and parse_name(name) is not None
                        and not os.path.exists(final) and self.verify(path) is None):
                    os.replace(path, final)
                    done.append('completed the checkpoint %s from %s (a kill interrupted its '
                                'write)' % (name, n))
        for n in os.listdir(self.dir):
            if n.startswith(('.tmp-', '.old-')):
                _remove(os.path.join(self.dir, n))
                done.append('removed %s, the leftover of an interrupted write' % n)
        removed = remove_stale_temporaries(self.dir)
        done.extend('removed %s, the leftover of an interrupted write' % n for n in removed)
        return done

    @staticmethod
    def meta(path):
        meta_path = os.path.join(path, 'meta.json')
        try:
            with open(meta_path, encoding='utf-8') as f:
                return json.load(f)
        except ValueError as err:
            raise CheckpointError('%s is not valid JSON (%s); the checkpoint is damaged.'
                                  % (meta_path, err)) from None


def file_record(path):
    """What a record keeps of a written file to find it damaged later: ``{'size', 'crc32'}``
    (as a checkpoint's ``meta.json`` keeps of each of its files; ``best.json`` of
    ``best.params``)."""
    return {'size': os.path.getsize(path), 'crc32': file_crc32(path)}


def file_problem(path, record):
    """None when the file ``path`` is the one :func:`file_record` described (or ``record`` is
    None: written before records were kept), else what is wrong, in a few words: 'has N bytes,
    M were written', 'does not match its checksum'."""
    if not record:
        return None
    size = os.path.getsize(path)
    if size != record.get('size'):
        return 'has %d bytes, %s were written' % (size, record.get('size'))
    if record.get('crc32') is not None and file_crc32(path) != record['crc32']:
        return 'does not match its checksum'
    return None


def files_problem(folder, records):
    """None when every file ``{name: record}`` of ``folder`` is the one :func:`file_record`
    described, else what is wrong with the first that is not: 'NAME is missing', 'NAME has N
    bytes, M were written', 'NAME does not match its checksum'."""
    for name, record in records.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            return '%s is missing' % name
        problem = file_problem(path, record)
        if problem is not None:
            return '%s %s' % (name, problem)
    return None


def checkpoint_arrays(run_dir, files=('net.params', 'loss.params')):
    """``{'FILE:NAME': numpy array}`` of the parameter files of ``run_dir``'s newest whole
    checkpoint (to compare two runs parameter by parameter)."""
    latest = CheckpointManager(run_dir, create=False).latest()
    if latest is None:
        raise CheckpointError('%s holds no whole checkpoint.' % run_dir)
    out = {}
    for f in files:
        p = os.path.join(latest, f)
        if os.path.exists(p):
            out.update({'%s:%s' % (f, k): v.asnumpy() for k, v in mx.nd.load(p).items()})
    return out
