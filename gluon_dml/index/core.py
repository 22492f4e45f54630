"""The backend-independent part of :mod:`gluon_dml.index`: :class:`Hit`, the :class:`Index` base
class (validation of vectors, ids, metadata, ``k`` and filters; hits nearest first), the
catalogue folder (a pointer file swapped atomically over versioned sub-folders) and
:func:`create_index` / :func:`open_index`. See the package docstring for the whole API."""
import json
import os
import shutil
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, NamedTuple, Union

import numpy as np

from gluon_dml import FLOAT32_MAX   # vectors are stored as float32
from ..fileio import atomic_write_json, fsync_dir

__all__ = ['Hit', 'Index', 'UnknownIdError', 'create_index', 'open_index', 'is_catalog',
           'KINDS', 'METRICS', 'BACKENDS', 'AUTO_EXACT_MAX', 'AUTO_BINARY_EXACT_MAX',
           'AUTO_IVF_PQ_MIN']

KINDS = ('float', 'binary')
METRICS = {'float': ('ip', 'l2'), 'binary': ('hamming',)}
BACKENDS = ('faiss', 'milvus')

# index_type='auto': the choice made from the size of the first batch added (see the package
# docstring for the reasons).
AUTO_EXACT_MAX = 50_000            # float: exact search below this many vectors
AUTO_IVF_PQ_MIN = 10_000_000       # float: IVF-PQ (with OPQ) from this many on, IVF-Flat between
AUTO_BINARY_EXACT_MAX = 1_000_000  # binary: exhaustive Hamming search below this many codes

CATALOG_FILE = 'CATALOG.json'
MANIFEST_FILE = 'manifest.json'
FORMAT = 'gluon-dml-index'
FORMAT_VERSION = 1


class UnknownIdError(KeyError, ValueError):
    """An id that the index does not hold (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self):          # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ''


class Hit(NamedTuple):
    """One search result.

    ``id``: the int64 id given to (or assigned by) :meth:`Index.add`. ``score``: higher is
    nearer (IP: the inner product; L2: minus the squared distance; Hamming: the fraction of
    equal bits, ``1 - distance / bits``). ``distance``: the backend's raw value (IP: the inner
    product, a similarity; L2: the squared Euclidean distance; Hamming: the number of differing
    bits, an int). ``metadata``: the dict stored with the id (``{}`` when none was given)."""
    id: int
    score: float
    distance: float
    metadata: Dict[str, Any]


Filter = Union[None, Dict[str, Any], Callable[[Dict[str, Any]], bool]]


def is_catalog(path):
    """True when ``path`` is a folder holding a gluon-dml index catalogue."""
    return path is not None and os.path.isfile(os.path.join(str(path), CATALOG_FILE))


def read_catalog(path):
    """``(pointer, manifest, version_dir)`` of the catalogue folder ``path``."""
    path = str(path)
    pointer_file = os.path.join(path, CATALOG_FILE)
    if not os.path.isdir(path):
        raise ValueError('%s is not an index catalogue: no such folder.' % path)
    if not os.path.isfile(pointer_file):
        raise ValueError('%s is not an index catalogue: it has no %s (create one with '
                         'create_index(..., path=...) and save()).' % (path, CATALOG_FILE))
    try:
        with open(pointer_file, encoding='utf-8') as f:
            pointer = json.load(f)
        if pointer.get('format') != FORMAT:
            raise ValueError
    except ValueError:
        raise ValueError('%s is not an index catalogue: %s is not a gluon-dml catalogue file.'
                         % (path, CATALOG_FILE)) from None
    if pointer.get('format_version', 0) > FORMAT_VERSION:
        raise ValueError('%s was written by a newer gluon-dml (catalogue format %s; this one reads '
                         'up to %d).' % (path, pointer.get('format_version'), FORMAT_VERSION))
    version_dir = os.path.join(path, str(pointer.get('current')))
    manifest_file = os.path.join(version_dir, MANIFEST_FILE)
    try:
        with open(manifest_file, encoding='utf-8') as f:
            manifest = json.load(f)
        if not isinstance(manifest, dict):
            raise ValueError('not a JSON object')
    except FileNotFoundError:
        raise ValueError('%s is incomplete: %s names the version %s, which has no %s.'
                         % (path, CATALOG_FILE, pointer.get('current'), MANIFEST_FILE)) from None
    except (ValueError, OSError) as err:
        raise ValueError('The catalogue file %s is damaged (%s).' % (manifest_file, err)) from None
    return pointer, manifest, version_dir


def commit_version(path, write_files, manifest):
    """Save one version of a catalogue atomically.

    ``write_files(folder)`` writes the backend's files into a new temporary folder inside
    ``path``; the manifest goes in last; the folder is fsynced and renamed ``v-NNNNNN``, and only
    then the pointer file ``CATALOG.json`` is replaced (``os.replace``, atomic) to name it. A crash
    at any moment leaves the pointer on the previous complete version (or, for a new catalogue,
    no pointer at all); leftovers of an interrupted save are removed by the next one."""
    path = str(path)
    os.makedirs(path, exist_ok=True)
    tmp = os.path.join(path, '.tmp-%s' % uuid.uuid4().hex[:12])
    os.makedirs(tmp)
    write_files(tmp)
    atomic_write_json(os.path.join(tmp, MANIFEST_FILE), manifest)
    for name in os.listdir(tmp):
        with open(os.path.join(tmp, name), 'rb+') as f:
            os.fsync(f.fileno())
    fsync_dir(tmp)
    numbers = [int(n[2:]) for n in os.listdir(path) if n.startswith('v-') and n[2:].isdigit()]
    version = 'v-%06d' % (max(numbers, default=0) + 1)
    os.rename(tmp, os.path.join(path, version))
    fsync_dir(path)
    atomic_write_json(os.path.join(path, CATALOG_FILE),
                      {'format': FORMAT, 'format_version': FORMAT_VERSION, 'current': version,
                       'saved': time.strftime('%Y-%m-%dT%H:%M:%S%z')})
    # The new version is live: drop older versions and leftovers of interrupted saves.
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if name == version:
            continue
        if (name.startswith('v-') and name[2:].isdigit()) or name.startswith('.tmp-'):
            shutil.rmtree(full, ignore_errors=True)
        elif name.startswith(CATALOG_FILE + '.tmp-'):
            os.remove(full)
    return os.path.join(path, version)


def _check_json(meta, i):
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ValueError('metadata[%d] is a %s; each entry must be a dict (or None).'
                         % (i, type(meta).__name__))
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise ValueError('metadata[%d] cannot be stored as JSON (%s).' % (i, e)) from None
    for key in meta:
        if not isinstance(key, str):
            raise ValueError('metadata[%d] has the key %r; keys must be strings.' % (i, key))
    return dict(meta)


def check_filter(filter):
    """Validate a filter: ``None``, a callable ``metadata -> bool`` or a dict ``field -> value``
    (``value`` a str, int, float or bool for equality, or a list / tuple / set of them for
    membership)."""
    if filter is None or callable(filter):
        return filter
    if not isinstance(filter, dict):
        raise ValueError('filter must be a dict of field -> value or a callable taking the '
                         'metadata dict; got a %s.' % type(filter).__name__)
    for key, value in filter.items():
        if not isinstance(key, str):
            raise ValueError('filter field %r is not a string.' % (key,))
        values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
        if isinstance(value, (list, tuple, set, frozenset)) and not value:
            raise ValueError('filter field %r lists no values.' % key)
        for v in values:
            if not isinstance(v, (str, int, float, bool, np.integer, np.floating)):
                raise ValueError('filter value %r of field %r is a %s; use a str, int, float or '
                                 'bool (or a list of them).' % (v, key, type(v).__name__))
    return filter


def _plain(v):
    return v.item() if isinstance(v, (np.integer, np.floating)) else v


def matches(filter, meta):
    """Whether the metadata dict ``meta`` passes ``filter`` (see :func:`check_filter`)."""
    if filter is None:
        return True
    if callable(filter):
        return bool(filter(meta))
    for key, value in filter.items():
        if key not in meta:
            return False
        have = meta[key]
        if isinstance(value, (list, tuple, set, frozenset)):
            if not any(_same(have, _plain(v)) for v in value):
                return False
        elif not _same(have, _plain(value)):
            return False
    return True


def _same(a, b):
    # bools compare only with bools (True == 1 in Python; not in a JSON filter expression)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


class Index:
    """One searchable catalogue of vectors with int64 ids and metadata dicts.

    Made by :func:`create_index` or :func:`open_index`; the backends subclass it. Methods are
    serialised by a lock, so one object may be shared by the threads of a server. Attributes:
    ``backend``, ``kind``, ``dim`` (floats, or bits for binary codes), ``metric``,
    ``index_type`` (the resolved type, ``'auto'`` until the first add), ``path``."""

    backend = None

    def __init__(self, kind, dim, metric, index_type, path=None, normalize=False, params=None):
        if kind not in KINDS:
            raise ValueError('kind must be one of %s; got %r.' % (', '.join(KINDS), kind))
        if metric is None:
            metric = 'hamming' if kind == 'binary' else 'ip'
        metric = str(metric).lower()
        if metric not in METRICS[kind]:
            raise ValueError('A %s index supports the metric %s; got %r.'
                             % (kind, ' or '.join(METRICS[kind]), metric))
        try:
            dim = int(dim)
        except (TypeError, ValueError):
            raise ValueError('dim must be a positive integer; got %r.' % (dim,)) from None
        if dim < 1:
            raise ValueError('dim must be a positive integer; got %d.' % dim)
        if kind == 'binary' and dim % 8:
            raise ValueError('A binary index needs a number of bits that is a multiple of 8; '
                             'got dim=%d.' % dim)
        if normalize and kind == 'binary':
            raise ValueError('normalize applies to float vectors only.')
        self.kind, self.dim, self.metric = kind, dim, metric
        self.index_type = index_type
        self.path = None if path is None else os.path.abspath(str(path))
        self.normalize = bool(normalize)
        self.params = dict(params or {})
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- input checks
    def _vectors(self, x, what='vectors'):
        """``x`` as a C-contiguous float32 (n, dim) array, or packed uint8 (n, dim / 8) codes."""
        if isinstance(x, (list, tuple)) and len(x) and isinstance(x[0], (bytes, bytearray)):
            x = np.stack([np.frombuffer(b, np.uint8) for b in x])
        x = np.asarray(x)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise ValueError('%s must be a (n, dim) array; got shape %s.' % (what, x.shape))
        if self.kind == 'binary':
            nbytes = self.dim // 8
            if x.dtype == np.uint8 and x.shape[1] == nbytes:
                return np.ascontiguousarray(x)
            if x.shape[1] != self.dim:
                raise ValueError('%s have %d columns but the index holds %d-bit codes (give %d '
                                 'columns of +-1 / 0-1 / real codes, or %d packed uint8 bytes).'
                                 % (what, x.shape[1], self.dim, self.dim, nbytes))
            if x.dtype.kind not in 'biuf':
                raise ValueError('%s must be numeric codes; got dtype %s.' % (what, x.dtype))
            return np.ascontiguousarray(np.packbits(x > 0, axis=1))
        if x.dtype.kind not in 'biuf':
            raise ValueError('%s must be numeric; got dtype %s.' % (what, x.dtype))
        if x.shape[1] != self.dim:
            raise ValueError('%s have dimension %d but the index holds %d-dimensional vectors.'
                             % (what, x.shape[1], self.dim))
        if len(x) and not np.isfinite(x).all():
            raise ValueError('%s hold NaN or infinite values.' % what)
        if len(x) and x.dtype.itemsize > 4 and np.abs(x).max() > FLOAT32_MAX:
            raise ValueError('%s hold values beyond the float32 range the index stores '
                             '(|x| <= %.4g).' % (what, FLOAT32_MAX))
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.normalize and len(x):
            # the squares summed in float64: a float32 sum of values above 1.8e19 overflows
            norms = np.sqrt(np.einsum('ij,ij->i', x, x, dtype=np.float64))[:, None]
            x = np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)
        return x

    @staticmethod
    def _id_array(ids, what='ids'):
        if np.isscalar(ids) or (isinstance(ids, np.ndarray) and ids.ndim == 0):
            ids = [ids]
        arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
        if arr.size == 0:
            return np.zeros(0, np.int64)
        if arr.dtype.kind not in 'iu' and not (arr.dtype.kind == 'f' and np.all(arr == np.round(arr))):
            raise ValueError('%s must be integers; got dtype %s.' % (what, arr.dtype))
        if arr.dtype.kind == 'u' and arr.max() > np.iinfo(np.int64).max:
            raise ValueError('%s must fit in int64.' % what)
        return arr.astype(np.int64).ravel()

    def _check_new_ids(self, ids, n):
        ids = self._id_array(ids)
        if len(ids) != n:
            raise ValueError('Got %d ids for %d vectors.' % (len(ids), n))
        if n and ids.min() < 0:
            raise ValueError('ids must be >= 0 (faiss uses -1 for "no result"); got %d.'
                             % ids.min())
        uniq, counts = np.unique(ids, return_counts=True)
        if len(uniq) != n:
            raise ValueError('ids repeat within the batch (for example %d).' % uniq[counts > 1][0])
        return ids

    @staticmethod
    def _check_metadata(metadata, n):
        if metadata is None:
            return [{}] * n
        if isinstance(metadata, dict):
            metadata = [metadata]
        metadata = list(metadata)
        if len(metadata) != n:
            raise ValueError('Got %d metadata entries for %d vectors.' % (len(metadata), n))
        return [_check_json(m, i) for i, m in enumerate(metadata)]

    @staticmethod
    def _check_k(k):
        try:
            k = int(k)
        except (TypeError, ValueError):
            raise ValueError('k must be an integer >= 1; got %r.' % (k,)) from None
        if k < 1:
            raise ValueError('k must be >= 1; got %d.' % k)
        return k

    # ----------------------------------------------------------------- scores
    def _hits(self, dist_row, id_row, metas):
        """Hits for one query, nearest first and ties by id; ``metas`` maps id -> dict."""
        out = []
        for d, i in zip(dist_row, id_row):
            i = int(i)
            if i < 0:
                continue
            if self.metric == 'ip':
                d = float(d)
                s = d
            elif self.metric == 'l2':
                d = float(d)
                s = -d
            else:
                d = int(round(float(d)))
                s = 1.0 - d / self.dim
            out.append(Hit(i, s, d, dict(metas.get(i) or {})))
        out.sort(key=lambda h: (-h.score, h.id))
        return out

    # ----------------------------------------------------------------- public API
    def add(self, vectors, ids=None, metadata=None):
        """Add ``vectors`` (n, dim) floats, or binary codes (n, bits) of +-1 / 0-1 / real values
        (sign) or packed uint8 (n, bits / 8); a 1-D array is one vector.

        ``ids``: int64 ids >= 0, unique in the batch and new to the index (``ValueError``
        otherwise); ``None`` assigns ``next_id, next_id + 1, ...`` where ``next_id`` is above every
        id ever added. ``metadata``: one JSON-serialisable dict per vector (``path``, ``label``,
        any user fields) or ``None``. An untrained index (IVF, IVF-PQ, binary IVF; ``'auto'``)
        trains on the first batch, so give it a large first batch or call :meth:`train`.
        Returns the ids (int64 array)."""
        with self._lock:
            x = self._vectors(vectors)
            n = len(x)
            meta = self._check_metadata(metadata, n)
            if ids is not None:
                ids = self._check_new_ids(ids, n)
            if n == 0:
                return np.zeros(0, np.int64)
            return self._add(x, ids, meta)

    def train(self, vectors):
        """Train an IVF / PQ index on a sample (a seeded subsample of at most ``train_size``
        vectors is used); resolves ``'auto'`` from the sample's size. Does nothing for an index
        that needs no training."""
        with self._lock:
            self._train(self._vectors(vectors))
            return self

    def remove(self, ids):
        """Remove the given ids; returns how many were in the index and are now gone. Ids the
        index does not hold are ignored (the count tells); use :meth:`__contains__` to check."""
        with self._lock:
            ids = np.unique(self._id_array(ids))
            if len(ids) == 0:
                return 0
            return int(self._remove(ids))

    def search(self, queries, k=10, filter: Filter = None) -> List[List[Hit]]:
        """The ``k`` nearest neighbours of each query: a list (one per query row; a 1-D query is
        one row) of lists of :class:`Hit`, nearest first, equal scores ordered by id.

        ``k`` >= 1 (``ValueError`` otherwise), silently capped at ``len(index)``; approximate
        indexes may return fewer. ``filter``: ``None``; a dict ``{field: value}`` keeping the
        entries whose metadata has every field equal to its value (a list / tuple / set value:
        equal to any of them); or a callable taking the metadata dict and returning a bool.
        Filtering happens during the search (faiss float indexes: an id selector; Milvus: a
        filter expression) or by over-fetching and filtering (faiss binary indexes, callables
        on Milvus), so ``k`` hits are found whenever ``k`` entries pass and the index reaches
        them."""
        with self._lock:
            q = self._vectors(queries, 'queries')
            k = self._check_k(k)
            filter = check_filter(filter)
            if len(q) == 0:
                return []
            return self._search(q, k, filter)

    def search_by_id(self, id, k=10, filter: Filter = None, exclude_self=True) -> List[Hit]:
        """The ``k`` neighbours of the stored vector of ``id`` (itself left out unless
        ``exclude_self=False``): one list of hits."""
        with self._lock:
            v = self.vector(id)
            k = self._check_k(k)
            hits = self.search(v, k + 1 if exclude_self else k, filter)[0]
            if exclude_self:
                hits = [h for h in hits if h.id != int(id)][:k]
            return hits

    def get(self, id) -> Dict[str, Any]:
        """The metadata dict of ``id`` (``UnknownIdError``, a ``ValueError``, when unknown)."""
        with self._lock:
            return self._get(self._one_id(id))

    def vector(self, id) -> np.ndarray:
        """The stored vector of ``id``: float32 (dim,) (IVF-PQ: the decoded approximation;
        ``normalize=True``: the normalised vector), or packed uint8 (bits / 8,) codes."""
        with self._lock:
            return self._vector(self._one_id(id))

    def _one_id(self, id):
        try:
            i = int(id)
            if i != id:
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError('An id must be an integer; got %r.' % (id,)) from None
        if not self._contains(i):
            raise UnknownIdError('The index holds no id %d.' % i)
        return i

    def __contains__(self, id):
        with self._lock:
            try:
                return self._contains(int(id))
            except (TypeError, ValueError):
                return False

    def ids(self) -> np.ndarray:
        """Every id in the index, sorted (int64)."""
        with self._lock:
            return self._all_ids()

    def all_metadata(self) -> Dict[int, Dict[str, Any]]:
        """Every id's metadata dict, ``{id: metadata}``, read in bulk (Milvus: one query
        iterator, not a query per id as :meth:`get` in a loop would make)."""
        with self._lock:
            return self._all_metadata()

    def __len__(self):
        with self._lock:
            return int(self._len())

    def save(self, path=None):
        """Write the index to its catalogue folder (``path`` given here or to
        :func:`create_index`), atomically: see the package docstring. Returns the folder."""
        with self._lock:
            if path is not None:
                self.path = os.path.abspath(str(path))
            if self.path is None:
                raise ValueError('This index has no catalogue folder: pass save(path=...).')
            self._save()
            return self.path

    def info(self) -> Dict[str, Any]:
        """A dict: ``backend``, ``kind``, ``dim``, ``metric``, ``index_type``, ``count``,
        ``memory_bytes`` (faiss: the serialised index, near what it takes in memory; Milvus:
        an estimate, the raw vectors), ``params``, ``normalize``, ``path`` and backend extras."""
        with self._lock:
            out = {'backend': self.backend, 'kind': self.kind, 'dim': self.dim,
                   'metric': self.metric, 'index_type': self.index_type, 'count': self._len(),
                   'params': dict(self.params), 'normalize': self.normalize, 'path': self.path}
            out.update(self._info())
            return out

    def set_search_params(self, **params):
        """Change search-time parameters (``nprobe`` for IVF types, ``ef_search`` for HNSW,
        ``nflip`` for the binary hash index); kept by :meth:`save`."""
        with self._lock:
            self._set_search_params(params)
            return self

    def close(self):
        """Release backend resources (a Milvus client). Does not save."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return '<%s backend=%s kind=%s dim=%d metric=%s index_type=%s count=%d path=%s>' % (
            type(self).__name__, self.backend, self.kind, self.dim, self.metric, self.index_type,
            len(self), self.path)

    # Backend hooks ------------------------------------------------------------------
    def _add(self, x, ids, meta):
        raise NotImplementedError

    def _train(self, x):
        raise NotImplementedError

    def _remove(self, ids):
        raise NotImplementedError

    def _search(self, q, k, filter):
        raise NotImplementedError

    def _get(self, id):
        raise NotImplementedError

    def _vector(self, id):
        raise NotImplementedError

    def _contains(self, id):
        raise NotImplementedError

    def _all_ids(self):
        raise NotImplementedError

    def _all_metadata(self):
        return {int(i): self._get(int(i)) for i in self._all_ids()}

    def _len(self):
        raise NotImplementedError

    def _save(self):
        raise NotImplementedError

    def _info(self):
        return {}

    def _set_search_params(self, params):
        raise NotImplementedError


def create_index(backend='faiss', kind='float', dim=None, metric=None, index_type='auto',
                 path=None, normalize=False, overwrite=False, **params) -> Index:
    """A new, empty :class:`Index`; see the package docstring for every argument and ``params``.

    ``backend``: ``'faiss'`` or ``'milvus'``. ``kind``: ``'float'`` or ``'binary'``. ``dim``:
    the vector dimension, or the number of bits of binary codes (a multiple of 8). ``metric``:
    ``'ip'`` (default for floats) or ``'l2'``; ``'hamming'`` for binary codes. ``index_type``:
    ``'auto'`` or a type name. ``path``: the catalogue folder (required for Milvus, which keeps
    its Milvus Lite ``.db`` there); an existing catalogue is refused unless ``overwrite=True``.
    ``normalize=True`` L2-normalises vectors and queries (cosine similarity with ``'ip'``)."""
    if dim is None:
        raise ValueError('create_index needs dim (the vector dimension, or the number of bits).')
    if path is not None and is_catalog(path) and not overwrite:
        raise ValueError('%s already holds an index catalogue; open it with open_index() or '
                         'pass overwrite=True.' % path)
    return _backend_class(backend)(kind=kind, dim=dim, metric=metric, index_type=index_type,
                                   path=path, normalize=normalize, overwrite=overwrite, **params)


def _backend_class(backend):
    """The :class:`Index` class of ``backend`` ('faiss' or 'milvus', any case)."""
    backend = str(backend).lower()
    if backend == 'faiss':
        from .faiss_backend import FaissIndex
        return FaissIndex
    if backend == 'milvus':
        from .milvus_backend import MilvusIndex
        return MilvusIndex
    raise ValueError('Unknown backend %r; choose faiss or milvus.' % (backend,))


def check_index(backend='faiss', kind='float', dim=None, metric=None, index_type='auto',
                path=None, normalize=False, overwrite=False, **params):
    """Raise the ``ValueError`` that :func:`create_index` with these arguments would, creating
    nothing: the backend, the index type for this kind of vector and backend (Milvus Lite's
    limits, faiss factory strings), the parameters, and for a Milvus server that it answers. A
    caller that has work to do before it can create the index (``gluon-dml index`` embeds a
    collection first) checks here first."""
    if dim is None:
        raise ValueError('create_index needs dim (the vector dimension, or the number of bits).')
    _backend_class(backend).check(kind=kind, dim=dim, metric=metric, index_type=index_type,
                                  path=path, normalize=normalize, overwrite=overwrite, **params)


def open_index(path, **options) -> Index:
    """Open the catalogue folder ``path`` written by :meth:`Index.save` (``ValueError`` when it is
    not one). ``options`` (Milvus): ``uri=`` to reach the collection at another address."""
    _, manifest, version_dir = read_catalog(path)
    backend = manifest.get('backend')
    if backend == 'faiss':
        from .faiss_backend import FaissIndex
        return FaissIndex._open(os.path.abspath(str(path)), manifest, version_dir, **options)
    if backend == 'milvus':
        from .milvus_backend import MilvusIndex
        return MilvusIndex._open(os.path.abspath(str(path)), manifest, version_dir, **options)
    raise ValueError('%s is not an index catalogue: its manifest names no known backend (%r).'
                     % (path, backend))
