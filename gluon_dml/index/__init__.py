"""Binary codes on disk and faiss binary indexes for Hamming search.

* :func:`save_codes` / :func:`load_codes`: codes packed with ``np.packbits`` (8 bits a byte)
  with their ids and labels, in one ``.npz``: ``query_codes``, ``query_labels``, ``query_ids``,
  ``db_codes``, ``db_labels``, ``db_ids`` (codes packed uint8) and ``bits``.
* :func:`build_binary_index`: a faiss ``IndexBinaryFlat`` (exhaustive), ``IndexBinaryIVF``
  (inverted lists over a binary k-means of the codes) or ``IndexBinaryHash`` (multi-index
  hashing on code prefixes) over packed codes; :func:`search` queries it.
"""
import numpy as np

__all__ = ['save_codes', 'load_codes', 'build_binary_index', 'search', 'INDEX_KINDS', 'index_bytes']

INDEX_KINDS = ('flat', 'ivf', 'hash')


def _packed(codes):
    from ..metrics.hashing import pack_codes
    codes = np.asarray(codes)
    if codes.dtype == np.uint8:
        return codes
    return pack_codes(codes)


def save_codes(path, query_codes, query_labels, db_codes, db_labels, query_ids=None, db_ids=None):
    """Write query and database codes ({-1, +1} or real: sign; or already packed uint8) packed."""
    q = np.asarray(query_codes)
    bits = q.shape[1] if q.dtype != np.uint8 else q.shape[1] * 8
    np.savez(path, query_codes=_packed(query_codes), query_labels=np.asarray(query_labels),
             query_ids=np.arange(len(q)) if query_ids is None else np.asarray(query_ids),
             db_codes=_packed(db_codes), db_labels=np.asarray(db_labels),
             db_ids=np.arange(len(db_codes)) if db_ids is None else np.asarray(db_ids),
             bits=np.int64(bits))
    return path


def load_codes(path):
    """The arrays of :func:`save_codes` as a dict (``bits`` an int)."""
    with np.load(path) as f:
        out = {k: f[k] for k in f.files}
    for key in ('query_codes', 'db_codes'):
        if key not in out:
            raise ValueError('%s holds no %s: it is not a codes file written by save_codes / '
                             'eval/evaluate.py --save-codes.' % (path, key))
    out['bits'] = int(out['bits']) if 'bits' in out else out['db_codes'].shape[1] * 8
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
    import faiss
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
    import faiss
    if hasattr(faiss, 'serialize_index_binary') and isinstance(index, faiss.IndexBinary):
        return int(faiss.serialize_index_binary(index).nbytes)
    return int(faiss.serialize_index(index).nbytes)
