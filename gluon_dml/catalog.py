"""A catalogue: the items of a collection embedded by a trained run, in an index, searchable.

A catalogue folder holds the index (:mod:`gluon_dml.index`: faiss files, or a Milvus Lite
``.db``, or the address of a Milvus server) and ``run.json``, which names the run that
embedded it (its folder, its method, which parameters, the embedding kind and size). Opening a
catalogue reopens both: queries are embedded by the same network with the same preprocessing.

    cat = build_catalog('runs/faces', 'photos/', 'catalog/')          # embed, index, save
    cat = open_catalog('catalog/')
    cat.search_images(['query.jpg'], k=10)        # [[Hit(id, score, distance, metadata)]]
    cat.search_text(['a red bag on the left'])    # a VSE run's catalogue
    cat.add_images(['new.jpg'], [{'sku': 'A-17'}]); cat.remove([12]); cat.save()

Each item's metadata is its ``path`` (absolute), its ``label`` when known (the list file's label
column, or the name of the class folder the image sits in) and any user fields.

Embedding is resumable: the vectors are written in parts under ``catalog/.embedding/`` as they
are made, and a new ``build_catalog`` over the same images takes the parts already written;
the parts are removed once the index is saved. Images that cannot be read are skipped and
counted.

Ids are never reused. The index's manifest records the next id when it is saved; a catalogue on
disk also records it in ``next_id.json`` (atomically, fsynced) each time it hands ids out, before
they reach the caller, so ids handed out and then lost before a save (a service with
``--save-delay`` killed) are not handed out again, by the service or by ``gluon-dml index --add``.
"""
import glob
import json
import os
import shutil
import time

import numpy as np

from .data.sources import list_images
from .engine import get_contexts
from .engine.faults import fault_point
from .fileio import (LockBusy, atomic_savez, atomic_write_json, give_back_folder, hold_lock,
                     lock_holder, missing_folders, params_digest, release_lock)
from .errors import UserError
from .index import check_index, create_index, open_index
from .index.core import CATALOG_FILE as POINTER_FILE, read_catalog
from .methods import open_run

__all__ = ['Catalog', 'build_catalog', 'open_catalog', 'lock_catalog', 'release_lock', 'hit_record',
           'RECORD_FILE', 'NEXT_ID_FILE', 'IndexingInterrupted', 'record_file']

RECORD_FILE = 'run.json'
# The record's name until 2026-12: beside the index's pointer file CATALOG.json it was the same
# name on a case-insensitive file system (macOS, Windows), where saving one replaced the other.
# Catalogues that hold it are still read, and a save moves it to RECORD_FILE.
LEGACY_RECORD_FILE = 'catalog.json'
NEXT_ID_FILE = 'next_id.json'
_PENDING = '.embedding'


class IndexingInterrupted(KeyboardInterrupt):
    """SIGINT / SIGTERM (``signame``) stopped :func:`build_catalog`; the message says how many
    images were embedded and kept under ``OUT/.embedding/`` and that the same command continues."""

    def __init__(self, message, signame='SIGINT'):
        super().__init__(message)
        self.signame = signame


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def record_file(path):
    """The run record of the catalogue folder ``path``: ``run.json``, or the ``catalog.json`` of
    a catalogue saved before it was renamed, unless that name is the index's ``CATALOG.json``
    seen through a case-insensitive file system; None when there is none."""
    path = str(path)
    new = os.path.join(path, RECORD_FILE)
    if os.path.isfile(new):
        return new
    old = os.path.join(path, LEGACY_RECORD_FILE)
    if os.path.isfile(old) and not _same_file(old, os.path.join(path, POINTER_FILE)):
        return old
    return None


def read_record(path):
    """``(pointer, manifest)`` of the catalogue folder ``path`` (``index.core.read_catalog``), or
    ``(None, None)`` when there is none or it cannot be read: for the checks made before a
    catalogue is opened, which leave saying what is wrong with it to :func:`open_index`."""
    try:
        return read_catalog(path)[:2]
    except (ValueError, OSError):
        return None, None


def _saved_version(out):
    """The version ``out``'s pointer names (None: no catalogue there yet, or none readable)."""
    pointer = read_record(out)[0]
    return None if pointer is None else pointer.get('current')


def _interrupted(out, signame, version_before=None):
    """The :class:`IndexingInterrupted` of a build of ``out`` stopped by ``signame``: what the
    parts saved so far under ``out/.embedding/`` hold, or, when the build had already saved a
    new version (``version_before``: the one before it), that the catalogue is whole."""
    what = 'Interrupted (Ctrl-C)' if signame == 'SIGINT' else 'Stopped (%s)' % signame
    now = _saved_version(out)
    if now is not None and now != version_before:
        # only the clean-up was left: it said "the catalogue was not written"
        shutil.rmtree(os.path.join(out, _PENDING), ignore_errors=True)
        return IndexingInterrupted('%s after the catalogue was saved: %s is whole (version %s); '
                                   'only the summary was not printed.' % (what, out, now), signame)
    embedded = unreadable = 0
    for part in _pending_parts(out):
        try:
            with np.load(part, allow_pickle=False) as z:
                embedded += len(z['kept'])
                unreadable += len(z['bad_paths'])
        except (OSError, ValueError, KeyError):
            continue
    if not embedded and not unreadable:
        try:
            os.rmdir(os.path.join(out, _PENDING))      # only when empty
        except OSError:
            pass
        return IndexingInterrupted('%s before any image was embedded; nothing was kept.'
                                   % what, signame)
    return IndexingInterrupted(
        '%s; the catalogue was not written, but the %d image(s) embedded so far%s are kept in %s: '
        'run the same command again to continue from there.'
        % (what, embedded, ' (and %d unreadable, skipped)' % unreadable if unreadable else '',
           os.path.join(out, _PENDING)), signame)


def hit_record(hit):
    """A hit as JSON: ``{'id', 'path', 'score', 'distance', 'label', 'metadata'}``."""
    meta = dict(hit.metadata or {})
    return {'id': int(hit.id), 'path': meta.get('path'), 'score': float(hit.score),
            'distance': float(hit.distance), 'label': meta.get('label'), 'metadata': meta}


def _label_of(path, root):
    """The class-folder name of an image under a folder ``root``: ``root/CLASS/x.jpg`` -> CLASS."""
    rel = os.path.relpath(path, root)
    parts = rel.split(os.sep)
    return parts[-2] if len(parts) >= 2 else None


def _unit_rows(v):
    """The rows of ``v`` at unit length: the catalogue compares directions (inner product of
    unit vectors, cosine), and a longer vector added by a client would otherwise outscore every
    item. Rows already at unit length up to rounding (the network's own embeddings) are kept as
    they are, bit for bit; a row of zeros has no direction and is refused."""
    v = np.asarray(v, dtype=np.float32)
    norms = np.sqrt(np.einsum('ij,ij->i', v.astype(np.float64), v.astype(np.float64)))
    if (norms == 0).any():
        raise ValueError('A vector of zeros has no direction; this catalogue compares unit-length '
                         'vectors (cosine similarity).')
    off = np.abs(norms - 1) > 1e-4
    if off.any():
        v = v.copy()
        v[off] /= norms[off, None].astype(np.float32)
    return v


class Catalog(object):
    """An opened catalogue: ``index`` (an :class:`gluon_dml.index.Index`), ``source`` (the
    content of ``run.json``) and, loaded on first use, the run's ``encoders``."""

    def __init__(self, path, index, source, ctx=None, fuse=True):
        self.path, self.index, self.source, self._ctx = path, index, source, ctx
        self._encoders, self._fuse = None, fuse
        self._recorded_next_id = _read_next_id(path)

    # -- the run ------------------------------------------------------------------------------
    @property
    def encoders(self):
        if self._encoders is None:
            run_dir = self.source['run_dir']
            if not os.path.isdir(run_dir):
                raise UserError('The run folder %s that embedded the catalogue %s is gone; queries '
                                'by image or text need it (search by vector or id still works).'
                                % (run_dir, self.path))
            # queries are embedded as the catalogue was: INT8 (the same calibration, reused from
            # the run folder) when it was built with int8
            trained = open_run(run_dir, self._ctx or get_contexts(''), self.source.get('which'),
                               fuse=self._fuse, int8=self.source.get('int8'))
            want = self.source.get('params_sha256')      # catalogues made before it: unchecked
            changed = want is not None and params_digest(trained.params) != want
            damage = _params_damage(self.source.get('params')) if changed else None
            if damage is not None:
                raise UserError(
                    'The network that embedded the catalogue %s, %s, is damaged (%s), so queries '
                    'by image or text cannot be embedded as its vectors were (search by vector or '
                    'id still works); resuming the run with --resume trains it again from its '
                    'previous checkpoint.' % (self.path, self.source.get('params'), damage))
            if changed:
                raise UserError(
                    'The run %s has changed since the catalogue %s was built (trained further, '
                    'or trained again): its vectors came from %s, and %s now holds other '
                    'parameters, which would place queries by image or text elsewhere. Search by '
                    'vector or id still works; to search by image, build the catalogue again '
                    '(gluon-dml index %s --images %s --out NEW_FOLDER).'
                    % (run_dir, self.path, self.source.get('params'), trained.params, run_dir,
                       self.source.get('images', 'IMAGES')))
            self._encoders = trained.encoders()
        return self._encoders

    @property
    def kind(self):
        return self.source['kind']

    @property
    def dim(self):
        return int(self.source['dim'])

    # -- embedding ----------------------------------------------------------------------------
    def embed_images(self, images, batch_size=64):
        """Vectors of images given as paths, PIL images or decoded arrays (C, H, W)."""
        enc = self.encoders
        arrays = [img if isinstance(img, np.ndarray) else enc.preprocess(img) for img in images]
        out = [enc.image(np.stack(arrays[s:s + batch_size])) for s in range(0, len(arrays), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def embed_text(self, texts):
        enc = self.encoders
        if enc.text is None:
            raise UserError('Search by text needs a catalogue embedded by a train-vse run; this '
                            'one was embedded by a %s run.' % self.source.get('method'))
        return enc.text(list(texts))

    # -- search -------------------------------------------------------------------------------
    def check_vectors(self, vectors):
        v = np.asarray(vectors)
        if v.ndim == 1:
            v = v[None]
        width = self.dim if self.kind == 'float' or v.dtype != np.uint8 else self.dim // 8
        if v.ndim != 2 or v.shape[1] != width:
            raise ValueError('A query vector of this catalogue has %d values (%s); got shape %s.'
                             % (width, 'float' if self.kind == 'float' else 'bits', v.shape))
        # before the scaling to unit length: text there was "could not convert string to float",
        # an infinite value a RuntimeWarning, a complex one lost its imaginary part in silence;
        # NaN in codes became 0 bits
        if v.dtype.kind not in 'biuf':
            raise ValueError('A query vector must hold numbers; got dtype %s.' % v.dtype)
        if v.dtype.kind == 'f' and len(v) and not np.isfinite(v).all():
            raise ValueError('A query vector holds NaN or infinite values.')
        if self.kind == 'float' and self.source.get('normalized'):
            v = _unit_rows(v)
        return v

    def search_vectors(self, vectors, k=10, filter=None):
        return self.index.search(self.check_vectors(vectors), k=k, filter=filter)

    def search_images(self, images, k=10, filter=None):
        return self.search_vectors(self.embed_images(images), k, filter)

    def search_text(self, texts, k=10, filter=None):
        return self.search_vectors(self.embed_text(texts), k, filter)

    def search_id(self, id, k=10, filter=None):
        return self.index.search_by_id(int(id), k=k, filter=filter)

    # -- changes ------------------------------------------------------------------------------
    @property
    def next_id(self):
        """The id the next item added gets: above every id this catalogue ever handed out, saved
        in the index or only recorded in ``next_id.json`` (lost by a crash before a save)."""
        return max(int(self.index.next_id), self._recorded_next_id)

    def add_vectors(self, vectors, metadata, ids=None):
        """Add vectors with their metadata; returns their ids (``ids=None``: from
        :attr:`next_id` on). The next id is recorded durably before the index takes them."""
        v = self.check_vectors(vectors)
        if ids is None and len(v):
            start = self.next_id
            self._record_next_id(start + len(v))
            # the index numbers from its next_id, which may lag behind the record
            self.index.next_id = start
        ids = self.index.add(v, ids=ids, metadata=metadata)
        if len(ids):          # the caller's own ids (or an index that went further)
            self._record_next_id(int(ids.max()) + 1)
        return ids

    def _record_next_id(self, next_id):
        """Write ``next_id.json`` (atomically, fsynced) when ``next_id`` is beyond what it holds:
        ids handed out before the next save stay taken if the process dies first. A catalogue
        not yet saved (being built) has handed out no id anyone holds and writes nothing."""
        if next_id <= self._recorded_next_id:
            return
        if record_file(self.path) is not None:
            atomic_write_json(os.path.join(self.path, NEXT_ID_FILE), {'next_id': int(next_id)})
        self._recorded_next_id = int(next_id)

    def add_images(self, images, metadata=None, ids=None):
        """Embed and add images (paths, or arrays with their metadata); returns their ids."""
        metadata = metadata or [{'path': os.path.abspath(p)} if isinstance(p, str) else {}
                                for p in images]
        return self.add_vectors(self.embed_images(images), metadata, ids)

    def remove(self, ids):
        return self.index.remove(ids)

    def save(self):
        self.index.save()
        self.source['count'] = len(self.index)
        self.source['updated'] = time.strftime('%Y-%m-%d %H:%M:%S')
        atomic_write_json(os.path.join(self.path, RECORD_FILE), self.source)
        old = os.path.join(self.path, LEGACY_RECORD_FILE)
        if os.path.isfile(old) and not any(_same_file(old, os.path.join(self.path, name))
                                           for name in (RECORD_FILE, POINTER_FILE)):
            os.remove(old)                 # the record before its rename, now in RECORD_FILE
        return self.path

    def info(self):
        """The catalogue's description: the run, the method, the dimension, the index."""
        idx = self.index.info()
        return {'catalog': os.path.abspath(self.path), 'run_dir': self.source['run_dir'],
                'method': self.source.get('method'), 'data': self.source.get('data'),
                'network': self.source.get('network'), 'kind': self.kind, 'dim': self.dim,
                'metric': idx.get('metric'), 'backend': idx.get('backend'),
                'index_type': idx.get('index_type'), 'count': len(self.index),
                'memory_bytes': idx.get('memory_bytes'), 'text_queries': self.source.get('method') == 'vse'}

    def close(self):
        self.index.close()


def open_catalog(path, ctx=None, uri=None, fuse=True):
    """Open a catalogue folder written by :func:`build_catalog` (``fuse``: MKLDNN operator
    fusion when queries are embedded, see :func:`gluon_dml.methods.open_run`)."""
    cat_file = _check_is_catalog(path)
    try:
        with open(cat_file) as f:
            source = json.load(f)
    except ValueError as err:
        raise UserError('%s is damaged (%s).' % (cat_file, err)) from None
    # a record without these (emptied to {}, a list) answered a query by image with "unexpected
    # KeyError: missing 'run_dir'"
    if not isinstance(source, dict):
        raise UserError('%s is damaged (not a JSON object).' % cat_file)
    missing = [key for key in ('run_dir', 'kind', 'dim') if key not in source]
    if missing:
        raise UserError('%s is damaged (it records no %s).' % (cat_file, ', '.join(missing)))
    if uri:
        _check_uri_applies(str(path), uri)
    _check_not_served(str(path), uri)
    index = open_index(str(path), **({'uri': uri} if uri else {}))
    return Catalog(str(path), index, source, ctx, fuse)


def _check_uri_applies(path, uri):
    """A Milvus address given for a faiss catalogue: one sentence naming ``--uri`` (it was the
    index layer's "open_index takes no options for a faiss catalogue; got uri")."""
    manifest = read_record(path)[1]
    if manifest is None:
        return                                  # open_index says what is wrong
    backend = manifest.get('backend')
    if backend != 'milvus':
        raise UserError('--uri %s reaches a Milvus collection, but %s is a %s catalogue (its index '
                        'is in the folder): leave --uri out.' % (uri, path, backend))


def _check_not_served(path, uri):
    """A Milvus Lite catalogue whose ``.lock`` another process holds (``gluon-dml serve``, an
    ``index --add``) cannot be opened: Milvus Lite lets one process at a time open its ``.db``
    file. Refused here with the holder's pid, before Milvus Lite is asked (a failed attempt of
    milvus-lite 2.5.1 removes the holder's own lock file, and the next attempt would open the
    file beside it). faiss catalogues are read while another process holds them."""
    from .index.milvus_backend import _is_lite
    manifest = read_record(path)[1]
    if manifest is None:
        return                                  # open_index says what is wrong
    target = uri or (manifest.get('params') or {}).get('uri')
    if manifest.get('backend') != 'milvus' or (target and not _is_lite(target)):
        return
    pid = lock_holder(os.path.join(path, '.lock'))
    if pid is None or pid == str(os.getpid()):
        return
    raise UserError('The catalogue %s is being served by process %s (a gluon-dml serve, or an '
                    'index --add), which holds its Milvus Lite file: Milvus Lite lets one process '
                    'at a time open it. While that process runs, send queries to the service '
                    '(POST /search); or stop it first.' % (path, pid))


def _params_damage(path):
    """What is wrong with the parameters file ``path`` that embedded a catalogue, in a few words
    (empty, or its checkpoint no longer matches its meta.json), or None."""
    from .engine import CheckpointManager
    if not path or not os.path.isfile(path):
        return None
    folder = os.path.dirname(path)
    if os.path.basename(os.path.dirname(folder)) == 'checkpoints':
        return CheckpointManager.verify(folder)
    return '%s is empty, 0 bytes' % os.path.basename(path) if os.path.getsize(path) == 0 else None


def _read_next_id(path):
    """The next id recorded in the catalogue folder ``path`` (0 when it has no record)."""
    if path is None:
        return 0
    record = os.path.join(str(path), NEXT_ID_FILE)
    try:
        with open(record) as f:
            return int(json.load(f)['next_id'])
    except FileNotFoundError:
        return 0
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError('%s is damaged (%s); it records the next id of the catalogue: delete it '
                        'only if no item was added since the catalogue was last saved.'
                        % (record, err)) from None


def _check_is_catalog(path):
    """The record file of the catalogue folder ``path`` (:func:`record_file`); a folder without
    one is refused in one sentence, saying why when a case-insensitive file system lost it."""
    found = record_file(path)
    if found is not None:
        return found
    old = os.path.join(str(path), LEGACY_RECORD_FILE)
    if os.path.isfile(old) and _same_file(old, os.path.join(str(path), POINTER_FILE)):
        # one file under both names: a case-insensitive file system, where a gluon-dml before
        # the rename saved the record and the index's pointer over each other
        raise UserError('%s was saved by an older gluon-dml on a case-insensitive file system, '
                        'where its catalog.json and CATALOG.json are one file and one of the two '
                        'records was lost: build it again (gluon-dml index RUN --images DIR --out '
                        'NEW_FOLDER).' % path)
    raise UserError('%s is not a catalogue: it has no %s (make one with gluon-dml index RUN '
                    '--images DIR --out %s).' % (path, RECORD_FILE, path))


def lock_catalog(path, new=False):
    """Take the writer lock of the catalogue folder ``path`` (``path/.lock``): one process at a
    time changes a catalogue (``gluon-dml serve``, ``gluon-dml index``), since each keeps the
    index in memory and saves it whole, and two would hand out the same ids and lose each
    other's items. Another writer is refused with one sentence; readers (``gluon-dml search``)
    take no lock (a Milvus Lite catalogue cannot be read meanwhile: its file opens in one
    process). Returns the lock for :func:`release_lock` (it also goes with the process).
    ``new``: the folder is being made (it need not hold a catalogue yet)."""
    path = str(path)
    if not new:
        _check_is_catalog(path)
    try:
        return hold_lock(os.path.join(path, '.lock'))
    except LockBusy as err:
        raise UserError('The catalogue %s is being changed by another process (pid %s, a gluon-dml '
                        'serve or index); stop it first, or add items through that service '
                        '(POST /items).' % (path, err.pid)) from None
    except OSError as err:
        raise UserError('The catalogue %s cannot be written: %s.' % (path, err.strerror or err)) from None


def _pending_parts(out):
    return sorted(glob.glob(os.path.join(out, _PENDING, 'part-*.npz')))


def _embed_resumable(enc, paths, out, batch_size, chunk, progress, log, made_by):
    """Embed ``paths`` in parts of ``chunk`` images, each saved as it is done; parts saved by an
    earlier, interrupted call over the same paths with the same network (``made_by``: a text
    naming its parameters and precision) are reused, the images they recorded as unreadable
    tried again (the user may have replaced them since). Returns (vectors, kept, bad)."""
    folder = os.path.join(out, _PENDING)
    os.makedirs(folder, exist_ok=True)
    vecs, kept, bad = [], [], []
    starts = list(range(0, len(paths), chunk))
    for n, s in enumerate(starts):
        part = os.path.join(folder, 'part-%06d.npz' % n)
        want = paths[s:s + chunk]
        reused = False
        if os.path.exists(part):
            with np.load(part, allow_pickle=False) as z:
                if list(z['asked']) == want:
                    if 'made_by' in z.files and str(z['made_by']) == made_by:
                        v, k = z['vectors'], z['kept'].tolist()
                        b = list(zip(z['bad_paths'].tolist(), z['bad_why'].tolist()))
                        reused = True
                    else:
                        log('embedding: part %d/%d was made by another network (the run was '
                            'trained further, another run, or another precision); embedding it '
                            'again' % (n + 1, len(starts)))
            if reused:
                again = ''
                if b:
                    v, k, b, read = _retry_unreadable(enc, want, v, k, b, batch_size, progress)
                    again = ('; %d of its %d unreadable image(s) read now, embedded'
                             % (read, read + len(b)))
                    if read:
                        _save_part(part, v, k, b, want, made_by)
                vecs.append(v)
                kept.extend(k)
                bad.extend(b)
                log('embedding: part %d/%d was done before, reused%s' % (n + 1, len(starts), again))
                continue
        v, k, b = enc.embed_paths(want, batch_size, progress=progress, skip_bad=True)
        _save_part(part, v, k, b, want, made_by)
        vecs.append(v)
        kept.extend(k)
        bad.extend(b)
        log('embedding: %d/%d images' % (min(s + chunk, len(paths)), len(paths)))
        fault_point('index-part', part=n + 1)
    vectors = np.concatenate(vecs) if vecs else np.zeros((0, enc.dim), np.float32)
    return vectors, kept, bad


def _retry_unreadable(enc, want, v, k, b, batch_size, progress):
    """A reused part's images recorded as unreadable embedded again; those that read now take
    their place among the part's vectors, in the order of ``want`` (as a fresh build has them).
    Returns (vectors, kept, still unreadable, how many read now)."""
    rv, rk, rb = enc.embed_paths([p for p, _ in b], batch_size, progress=progress, skip_bad=True)
    if not rk:
        return v, k, rb, 0
    rows, merged, i, j = [], [], 0, 0
    for p in want:                  # kept and the retried both follow want's order
        if i < len(k) and k[i] == p:
            rows.append(v[i])
            i += 1
        elif j < len(rk) and rk[j] == p:
            rows.append(rv[j])
            j += 1
        else:
            continue
        merged.append(p)
    return np.stack(rows).astype(v.dtype, copy=False), merged, rb, len(rk)


def _save_part(part, v, k, b, want, made_by):
    """Write a part of the embedding (atomically: an interrupt leaves the part whole or absent)."""
    atomic_savez(part, vectors=v, kept=np.array(k, dtype=str), asked=np.array(want, dtype=str),
                 made_by=np.array(made_by), bad_paths=np.array([p for p, _ in b], dtype=str),
                 bad_why=np.array([w for _, w in b], dtype=str))


def build_catalog(run_dir, images, out, backend='faiss', index_type='auto', uri=None, add=False,
                  batch_size=64, chunk=2048, which=None, ctx=None, progress=False, log=None,
                  fuse=True, int8=None, **index_params):
    """Embed the images of ``images`` (one image, a folder or a list file: see
    :func:`gluon_dml.data.sources.list_images`) with the run in ``run_dir`` and index them in the
    catalogue folder ``out`` (``add=True``: into the existing catalogue ``out``; images whose
    path it already holds are skipped). Returns ``(catalog, report)``; ``report`` has the counts,
    the times and the index's size. ``fuse``, ``int8``: how the run's network computes (see
    :func:`gluon_dml.methods.open_run`); ``run.json`` records ``int8``, and the catalogue's
    queries are embedded the same way; adding to a catalogue keeps its setting."""
    version_before = _saved_version(out) if add else None
    if add:
        lock = lock_catalog(out)
    else:
        if record_file(out) is not None:
            raise UserError('%s already holds a catalogue; add to it with --add, or choose another '
                            '--out.' % out)
        made = missing_folders(out)          # given back if the first build fails
        os.makedirs(out, exist_ok=True)
        lock = lock_catalog(out, new=True)
    try:
        return _build_catalog(run_dir, images, out, backend, index_type, uri, add, batch_size, chunk,
                              which, ctx, progress, log, fuse, int8, index_params)
    except KeyboardInterrupt as err:
        raise _interrupted(out, getattr(err, 'signame', 'SIGINT'), version_before) from None
    finally:
        release_lock(lock)
        if not add and record_file(out) is None:
            # a failed first build leaves no lock file, nor a folder it made and left empty
            give_back_folder(out, made)


def _once_each(paths, labels, images, log):
    """``paths`` (and their ``labels``) with each image once: a list file naming an image twice
    made two items of it, and both took the label of the last line (``label_of`` is keyed by
    path), so the first line's label was lost. A repeat with another label is refused: which
    one the item carries cannot be chosen."""
    first, keep = {}, []
    for i, p in enumerate(paths):
        if p not in first:
            first[p] = i
            keep.append(i)
        elif labels is not None and labels[i] != labels[first[p]]:
            raise UserError('%s lists %s twice with different labels (%s and %s); an image is one '
                            'item of the catalogue, with one label.'
                            % (images, p, labels[first[p]], labels[i]))
    if len(keep) == len(paths):
        return paths, labels
    log('note: %d line(s) of %s repeat an image listed before; each image is indexed once'
        % (len(paths) - len(keep), images))
    return [paths[i] for i in keep], [labels[i] for i in keep] if labels is not None else None


def _build_catalog(run_dir, images, out, backend, index_type, uri, add, batch_size, chunk, which,
                   ctx, progress, log, fuse, int8, index_params):
    log = log or (lambda msg: None)
    t0 = time.time()
    paths, labels = list_images(images)
    root = os.path.abspath(images) if os.path.isdir(images) else None
    paths = [os.path.abspath(p) for p in paths]
    paths, labels = _once_each(paths, labels, images, log)
    if add:
        cat = open_catalog(out, ctx, uri, fuse)
        if os.path.abspath(cat.source['run_dir']) != os.path.abspath(run_dir):
            raise UserError('%s was embedded by %s, not %s: a catalogue holds one run\'s vectors.'
                            % (out, cat.source['run_dir'], run_dir))
        if (int8 is not None) != (cat.source.get('int8') is not None):
            raise UserError('%s holds %s vectors; add to it %s --int8, as it was built.'
                            % (out, 'INT8' if cat.source.get('int8') else 'float32',
                               'with' if cat.source.get('int8') else 'without'))
        have = {m.get('path') for m in cat.index.all_metadata().values()}
        keep = [i for i, p in enumerate(paths) if p not in have]
        skipped_known = len(paths) - len(keep)
        paths = [paths[i] for i in keep]
        labels = [labels[i] for i in keep] if labels is not None else None
        trained_enc = cat.encoders
        digest = cat.source.get('params_sha256') or params_digest(cat.source['params'])
        precision = cat.source.get('int8')
    else:
        skipped_known = 0
        trained = open_run(run_dir, ctx or get_contexts(''), which, fuse=fuse, int8=int8)
        trained_enc = trained.encoders()
        digest = params_digest(trained.params)
        precision = int8
        kind = trained_enc.kind
        metric = 'hamming' if kind == 'binary' else ('ip' if trained_enc.normalized else 'l2')
        params = dict(index_params)
        if uri:
            params['uri'] = uri
        params.setdefault('expected_size', len(paths))
        # the backend, the index type and a server's address are checked before the embedding
        # (which may take hours), not after it
        check_index(backend=backend, kind=kind, dim=trained_enc.dim, metric=metric,
                    index_type=index_type, path=out, **params)
    # which network made a part of the embedding (a part of another is not reused)
    made_by = json.dumps({'params_sha256': digest, 'int8': precision}, sort_keys=True)
    vectors, kept, bad = _embed_resumable(trained_enc, paths, out, batch_size, chunk, progress, log,
                                          made_by)
    t_embed = time.time() - t0
    label_of = dict(zip(paths, labels)) if labels is not None else {}
    metadata = []
    for p in kept:
        meta = {'path': p}
        label = label_of.get(p) if labels is not None else (_label_of(p, root) if root else None)
        if label is not None:
            meta['label'] = label
        metadata.append(meta)
    t1 = time.time()
    if add:
        if len(kept):
            cat.add_vectors(vectors, metadata)
    else:
        if not len(kept):
            # nothing to resume: the parts would keep these images counted as unreadable
            shutil.rmtree(os.path.join(out, _PENDING), ignore_errors=True)
            raise UserError('None of the %d image(s) of %s could be read (first: %s, %s).'
                            % (len(paths), images, bad[0][0], bad[0][1]) if bad else
                            'None of the %d image(s) of %s could be read.' % (len(paths), images))
        if 'expected_size' not in index_params:
            params['expected_size'] = len(kept)
        index = create_index(backend=backend, kind=kind, dim=trained_enc.dim, metric=metric,
                             index_type=index_type, path=out, **params)
        args = trained.args
        source = {'run_dir': os.path.abspath(run_dir), 'method': args.get('method'),
                  'data': args.get('data'), 'loss': args.get('loss'), 'which': which,
                  'network': trained.params_label, 'params': os.path.abspath(trained.params),
                  'params_sha256': digest,
                  'kind': kind, 'dim': trained_enc.dim, 'normalized': trained_enc.normalized,
                  'int8': int8,
                  'images': os.path.abspath(images), 'created': time.strftime('%Y-%m-%d %H:%M:%S')}
        cat = Catalog(out, index, source, ctx)
        cat._encoders = trained_enc
        cat.add_vectors(vectors, metadata)
    if len(kept) or not add:          # --add with nothing new: no new version of the same items
        cat.save()
        fault_point('index-saved')
    shutil.rmtree(os.path.join(out, _PENDING), ignore_errors=True)
    t_index = time.time() - t1
    info = cat.info()
    report = {'added': len(kept), 'skipped_unreadable': len(bad), 'unreadable': bad[:10],
              'skipped_already_there': skipped_known, 'count': len(cat.index),
              'embed_seconds': t_embed, 'index_seconds': t_index, 'memory_bytes': info['memory_bytes'],
              'index_type': info['index_type'], 'backend': info['backend']}
    return cat, report
