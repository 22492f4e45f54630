"""Vector indexes: one :class:`Index` interface over faiss and Milvus, and faiss binary indexes
for Hamming search over packed codes.

The Index interface
-------------------
::

    from gluon_dml.index import create_index, open_index, Hit
    idx = create_index(backend='faiss', kind='float', dim=128, metric='ip',
                       index_type='auto', path='catalog/', **params)
    ids = idx.add(vectors, ids=None, metadata=[{'path': 'a.jpg', 'label': 3}, ...])
    hits = idx.search(queries, k=10, filter={'label': 3})   # [[Hit(id, score, distance, metadata)]]
    idx.remove(ids[:5])                # -> 5 (ids the index does not hold are ignored)
    idx.get(ids[5]), idx.vector(ids[5]), idx.search_by_id(ids[5], k=10)
    idx.save(); idx = open_index('catalog/'); len(idx); idx.info(); idx.close()

* ``create_index(backend='faiss'|'milvus', kind='float'|'binary', dim, metric=None,
  index_type='auto', path=None, normalize=False, overwrite=False, **params) -> Index``.
  ``dim``: floats per vector, or bits per binary code (a multiple of 8). ``metric``: ``'ip'``
  (inner product: the default; for L2-normalised embeddings it is the cosine similarity),
  ``'l2'``, or ``'hamming'`` (binary, the default there). ``normalize=True`` L2-normalises
  every added vector and query. ``path``: the catalogue folder (optional for faiss until
  :meth:`Index.save`; required for Milvus); an existing catalogue is refused unless
  ``overwrite=True``.
* ``check_index(...)``, the arguments of ``create_index``: raise the ``ValueError`` creating
  that index would raise (backend, index type, parameters; a Milvus server's address is
  reached; faiss: a type that trains on more vectors than ``expected_size``), creating nothing.
* ``open_index(path, **options) -> Index``: reopen a saved catalogue (Milvus: ``uri=``,
  ``token=``, ``db_name=``, ``timeout=`` override the saved connection).
* :class:`Index` methods: ``add(vectors, ids=None, metadata=None) -> ids``; ``train(vectors)``;
  ``remove(ids) -> int``; ``search(queries, k=10, filter=None) -> list[list[Hit]]``;
  ``search_by_id(id, k=10, filter=None, exclude_self=True) -> list[Hit]``; ``get(id) -> dict``;
  ``vector(id) -> ndarray``; ``ids() -> ndarray``; ``all_metadata() -> {id: dict}`` (one bulk
  read; on Milvus one query iterator, not a query per id); ``id in idx``; ``len(idx)``;
  ``save(path=None) -> path``; ``info() -> dict``; ``set_search_params(nprobe=, ef_search=,
  nflip=)``; ``close()`` (also a context manager). Methods hold a lock: one object can serve
  many threads (writes and searches are serialised).

Vectors: float arrays (n, dim) (float32 inside; NaN / inf refused), or binary codes (n, bits)
of +-1, 0/1 or real values (bit = value > 0), or packed uint8 (n, bits / 8) as
:func:`save_codes` writes them (a hashing run's catalogue). A 1-D array is one vector; a 1-D
query gives a list of one hit list.

Ids: int64 >= 0. ``add(ids=None)`` assigns ids above every id ever added (removed ids are not
reused). A duplicate id, in the batch or already in the index, is a ``ValueError``;
:meth:`Index.remove` counts what it removed and ignores ids it does not hold; ``get``,
``vector`` and ``search_by_id`` of an unknown id raise :class:`UnknownIdError`, which is both a
``KeyError`` and a ``ValueError``.

Metadata: one JSON-serialisable dict per vector (``path``, ``label``, any user fields), ``{}``
when none. faiss keeps it in a sidecar saved with the index; Milvus in a JSON field.

Hits and scores: each query gives its hits nearest first, equal scores ordered by id.
``Hit.distance`` is the backend's raw value, ``Hit.score`` is "higher is nearer":

=========  ==========================================  ===============================
metric     distance                                    score
=========  ==========================================  ===============================
ip         the inner product (a similarity)            the inner product
l2         the squared Euclidean distance              minus the squared distance
hamming    differing bits (int)                        1 - distance / bits, in [0, 1]
=========  ==========================================  ===============================

``k``: an integer >= 1 (``ValueError`` below), silently capped at ``len(index)`` (and at
16,384, Milvus's limit); approximate indexes may return fewer hits than ``k``.

Filters: ``None``; a dict ``{field: value}`` (every field equal to its value; a list / tuple /
set value: equal to one of them; values str, int, float or bool; booleans match only booleans);
or a callable ``metadata -> bool``. faiss: the passing ids are found by scanning the metadata;
when at most ``filter_exact_max`` (20,000) of them pass, their stored vectors are searched
exactly (IVF-PQ: the decoded vectors), otherwise float indexes search with a faiss id
selector and binary indexes over-fetch (4x more each round) and keep the passing hits. Milvus:
dict filters become filter expressions on the JSON field; callables over-fetch within
Milvus's 16,384 cap.

Index types (``index_type``)
----------------------------
faiss float: ``'flat'`` (exact: ``IndexFlatIP`` / ``IndexFlatL2`` in an ``IndexIDMap2``),
``'ivf_flat'`` (``IndexIVFFlat``), ``'ivf_pq'`` (OPQ rotation + ``IndexIVFPQ``), ``'hnsw'``
(``IndexHNSWFlat`` in an ``IndexIDMap2``), ``'factory:SPEC'`` (any ``faiss.index_factory``
string for experts, e.g. ``'factory:OPQ16,IVF1024,PQ16'``; wrapped in ``IndexIDMap2`` unless it
is an IVF index, which takes ids itself; its search parameters are faiss's defaults, e.g.
``nprobe`` 1, unless ``nprobe`` is given). faiss binary: ``'flat'`` (``IndexBinaryFlat``),
``'ivf'`` (``IndexBinaryIVF``), ``'hash'`` (``IndexBinaryHash``). Milvus: ``'flat'``,
``'ivf_flat'``, and on a server ``'hnsw'``, ``'ivf_pq'``, binary ``'ivf'`` (Milvus Lite has
only FLAT, IVF_FLAT and BIN_FLAT and the others are refused with a ``ValueError``).

``'auto'`` picks the type from the catalogue size: ``params['expected_size']`` when given, else
the size of the first batch added (or given to :meth:`Index.train`); the choice then stays:

* float, below ``AUTO_EXACT_MAX`` = 50,000 vectors: exact search. Brute force over 50,000
  vectors of 128 floats is a few milliseconds a query on one core, recall is 1, there is
  nothing to train and removal is exact.
* float, 50,000 to ``AUTO_IVF_PQ_MIN`` = 10,000,000: IVF-Flat (Milvus server: HNSW). It trains
  in seconds to a minute, keeps the raw vectors (so distances are exact and removal is real),
  and with ``nlist`` = 4 sqrt(N) lists and ``nprobe`` = max(16, nlist / 64) it reads a few
  percent of the catalogue per query. HNSW is faster to query but slower to build, needs
  ~(M * 8) more bytes a vector and cannot remove in faiss; ask for it by name.
* float, 10,000,000 and more: IVF-PQ with OPQ (``m`` = dim / 4 bytes a vector): the raw
  vectors (512 bytes each at d = 128) would no longer fit a machine's memory.
* binary, below ``AUTO_BINARY_EXACT_MAX`` = 1,000,000 codes: exhaustive Hamming search (a
  popcount a byte: a million 64-bit codes scan in milliseconds); above: binary IVF.

Training: IVF, IVF-PQ and binary IVF train on the first batch added (or on :meth:`Index.train`)
using a seeded sample (``seed``, ``train_size``: by default 50 vectors a list, at least 64 x
256 for PQ codebooks, at most 262,144). Fewer training vectors than ``nlist`` (or than 2^nbits
for PQ) is a ``ValueError`` that says so: there is no silent fall back to exact search.

faiss parameters (``**params``): ``nlist``, ``nprobe``, ``m``, ``nbits``, ``hnsw_m`` (32),
``ef_construction`` (80), ``ef_search`` (96), ``hash_bits`` (min(bits, 16)), ``nflip`` (2),
``train_size``, ``seed`` (0), ``expected_size``, ``filter_exact_max`` (20,000). Milvus:
``uri``, ``token``, ``db_name``, ``collection`` ('gluon_dml'), ``nlist``, ``nprobe``, ``m``,
``nbits``, ``hnsw_m``, ``ef_construction``, ``ef_search``, ``expected_size``, ``timeout`` (30 s),
``consistency_level`` ('Strong').

Removal: exact ``remove_ids`` for flat, IVF and IVF-PQ indexes; HNSW keeps tombstones that
searches exclude (rebuilt from the live vectors once they pass a quarter of the stored ones);
the binary hash index is rebuilt from an exact copy of the codes. Milvus deletes.

Catalogue folder and atomic save
--------------------------------
``CATALOG.json`` names the current version folder ``v-NNNNNN`` holding ``manifest.json`` and,
for faiss, the index (``index.faiss``), the codes copy of a hash index (``codes.faiss``) and
the sidecar (``ids.npy``, ``tombstones.npy``, ``metadata.json``). :meth:`Index.save` writes a
complete new version into a temporary folder, fsyncs it, renames it into place and only then
replaces ``CATALOG.json`` (``os.replace``, atomic), so a crash at any point leaves the previous
version, index and metadata together, as the one that opens; leftovers are removed by the next
save. Milvus catalogues hold the manifest (connection, collection, type, next id) and, by
default, the Milvus Lite file ``milvus.db`` (outside the versions: Milvus persists its own
writes; save() flushes). One writer at a time per catalogue.

Milvus: see ``MILVUS.md`` beside this file for versions, Milvus Lite's limits and how to start
a Milvus server with Milvus's docker compose file. The backend needs the ``milvus`` extra:
``pip install -e ".[milvus]"``.

Binary codes on disk and faiss binary indexes (the lower-level functions)
-------------------------------------------------------------------------
* :func:`save_codes` / :func:`load_codes`: codes packed with ``np.packbits`` (8 bits a byte)
  with their ids and labels, in one ``.npz``: ``query_codes``, ``query_labels``, ``query_ids``,
  ``db_codes``, ``db_labels``, ``db_ids`` (codes packed uint8) and ``bits``.
* :func:`build_binary_index`: a faiss ``IndexBinaryFlat`` (exhaustive), ``IndexBinaryIVF``
  (inverted lists over a binary k-means of the codes) or ``IndexBinaryHash`` (multi-index
  hashing on code prefixes) over packed codes; :func:`search` queries it.
"""
import numpy as np

from ..fileio import atomic_savez
from .core import (AUTO_BINARY_EXACT_MAX, AUTO_EXACT_MAX, AUTO_IVF_PQ_MIN, BACKENDS, FLOAT32_MAX,
                   KINDS, METRICS, Hit, Index, UnknownIdError, check_index, create_index, is_catalog, open_index)

__all__ = ['save_codes', 'load_codes', 'build_binary_index', 'search', 'INDEX_KINDS', 'index_bytes',
           'Hit', 'Index', 'UnknownIdError', 'create_index', 'check_index', 'open_index', 'is_catalog',
           'BACKENDS', 'KINDS', 'METRICS', 'FLOAT32_MAX', 'AUTO_EXACT_MAX', 'AUTO_IVF_PQ_MIN', 'AUTO_BINARY_EXACT_MAX']

INDEX_KINDS = ('flat', 'ivf', 'hash')


def _packed(codes):
    from ..metrics.hashing import pack_codes
    codes = np.asarray(codes)
    if codes.dtype == np.uint8:
        return codes
    return pack_codes(codes)


def save_codes(path, query_codes, query_labels, db_codes, db_labels, query_ids=None, db_ids=None,
               run=None, params_sha256=None):
    """Write query and database codes ({-1, +1} or real: sign; or already packed uint8) packed.

    ``run`` (the run folder's name) and ``params_sha256`` (:func:`gluon_dml.fileio.params_digest`
    of the parameter file that encoded them) record which network wrote the codes, so that
    ``gluon-dml search-codes`` refuses them for another run; files written without them (or
    before them) carry no record."""
    q = np.asarray(query_codes)
    bits = q.shape[1] if q.dtype != np.uint8 else q.shape[1] * 8
    record = {}
    if run is not None:
        record['run'] = np.str_(run)
    if params_sha256 is not None:
        record['params_sha256'] = np.str_(params_sha256)
    atomic_savez(path, query_codes=_packed(query_codes), query_labels=np.asarray(query_labels),
             query_ids=np.arange(len(q)) if query_ids is None else np.asarray(query_ids),
             db_codes=_packed(db_codes), db_labels=np.asarray(db_labels),
             db_ids=np.arange(len(db_codes)) if db_ids is None else np.asarray(db_ids),
             bits=np.int64(bits), **record)
    return path


def load_codes(path):
    """The arrays of :func:`save_codes` as a dict (``bits`` an int; ``run`` and
    ``params_sha256``, str, only in files that record them)."""
    with open(path, 'rb') as fh, np.load(fh) as f:    # the file is closed even when numpy refuses it
        out = {k: f[k] for k in f.files}
    for key in ('query_codes', 'db_codes'):
        if key not in out:
            raise ValueError('%s holds no %s: it is not a codes file written by save_codes / '
                             'eval/evaluate.py --save-codes.' % (path, key))
    out['bits'] = int(out['bits']) if 'bits' in out else out['db_codes'].shape[1] * 8
    for key in ('run', 'params_sha256'):
        if key in out:
            out[key] = str(out[key])
    return out


def build_binary_index(db_codes, kind='flat', bits=None, nlist=None, nprobe=8, hash_bits=None,
                       ids=None, train_size=100000, seed=0):
    """A faiss binary index over ``db_codes`` (packed uint8 rows, or {-1, +1} codes).

    ``kind='flat'``: ``IndexBinaryFlat``, exact. ``'ivf'``: ``IndexBinaryIVF`` with ``nlist``
    lists (default ~ 4 sqrt(N)) trained on the codes, searching ``nprobe`` of them.
    ``'hash'``: ``IndexBinaryHash`` on the first ``hash_bits`` bits (default min(bits, 16)),
    searching the buckets within ``nprobe`` bit flips of the query's key. The IVF's binary
    k-means is trained on at most ``train_size`` codes (a random sample). With ``ids`` the index
    returns them instead of row numbers."""
    from ..metrics.neighbors import faiss    # OpenBLAS's kernels chosen first
    packed = np.ascontiguousarray(_packed(db_codes))
    d = packed.shape[1] * 8
    if bits is not None and bits != d:
        raise ValueError('faiss binary indexes need a multiple of 8 bits; got %d bits.' % bits)
    if kind == 'flat':
        index = faiss.IndexBinaryFlat(d)
    elif kind == 'ivf':
        nlist = nlist or max(1, min(len(packed) // 39, int(4 * np.sqrt(len(packed)))))
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(d), d, int(nlist))
        sample = packed
        if len(packed) > train_size:
            sample = packed[np.sort(np.random.RandomState(seed).choice(len(packed), train_size, replace=False))]
        index.train(sample)
        index.nprobe = int(min(nprobe, nlist))
    elif kind == 'hash':
        index = faiss.IndexBinaryHash(d, int(hash_bits or min(d, 16)))
        index.nflip = int(nprobe)
    else:
        raise ValueError('Unknown index %r; choose one of: %s.' % (kind, ', '.join(INDEX_KINDS)))
    if ids is not None:
        index = faiss.IndexBinaryIDMap(index)
        index.add_with_ids(packed, np.asarray(ids, dtype=np.int64))
    else:
        index.add(packed)
    return index


def search(index, query_codes, k=10):
    """``(distances, ids)`` (Q, k) int32 / int64 of the k nearest codes; -1 where the index found
    fewer than k (IVF and hash indexes look at part of the database)."""
    q = np.ascontiguousarray(_packed(query_codes))
    return index.search(q, int(k))


def index_bytes(index):
    """Bytes of a faiss index when serialised (what it takes in memory, near enough)."""
    from ..metrics.neighbors import faiss    # OpenBLAS's kernels chosen first
    if hasattr(faiss, 'serialize_index_binary') and isinstance(index, faiss.IndexBinary):
        return int(faiss.serialize_index_binary(index).nbytes)
    return int(faiss.serialize_index(index).nbytes)
