"""Exact k-nearest-neighbour search with faiss, shared by the metrics.

Everything here works on numpy arrays (no MXNet).  The full query x gallery
distance matrix is never materialised: faiss is queried one block of queries at
a time, so the memory used is O(block_size * k) on top of the index itself.
Distances are squared Euclidean (``faiss.IndexFlatL2``, exact search).
"""
import numbers
import os
import sys

import numpy as np

__all__ = ["knn"]

DEFAULT_BLOCK_SIZE = 4096

# The BLAS linked into the faiss-cpu wheels runs single-threaded, so a large
# gallery is split into one exact flat index per OpenMP thread, searched in
# parallel threads (faiss.IndexShards; results are merged exactly).  Set this to
# False with a faiss build whose BLAS is itself multi-threaded (e.g. MKL), where
# the extra threads would only oversubscribe the cores.
PARALLEL_SHARDS = True
# ... but only with at least this many gallery rows per shard.
_MIN_ROWS_PER_SHARD = 4096


def _hint_openblas_coretype():
    """Pick OpenBLAS kernels for faiss on CPUs its detection does not recognise; returns the
    value it set in ``OPENBLAS_CORETYPE`` (None when it set nothing).

    The faiss-cpu wheels link OpenBLAS statically.  On some virtual machines its
    CPU detection fails and it falls back to SSE kernels ("Prescott"), making
    every exact search and k-means step about 3x slower.  OpenBLAS reads
    OPENBLAS_CORETYPE when the library is loaded, so when the user has not set
    it and faiss is not loaded yet, choose the kernels from the instruction
    sets the Linux kernel reports as usable in /proc/cpuinfo.  Set
    OPENBLAS_CORETYPE yourself (any value) to disable this.
    """
    if "faiss" in sys.modules or os.environ.get("OPENBLAS_CORETYPE"):
        return None
    try:
        with open("/proc/cpuinfo") as f:
            flags = set()
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        return None
    if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    elif {"avx2", "fma"} <= flags:
        os.environ["OPENBLAS_CORETYPE"] = "Haswell"
    return os.environ.get("OPENBLAS_CORETYPE")


def _import_faiss():
    """faiss, loaded with the kernel hint above, which is then taken back out of the
    environment: faiss's OpenBLAS has read it, and left there it would reach every BLAS loaded
    later in this process (MXNet's, when MXNet loads after faiss) and every process started
    from it, whose floats would then differ in the last bits from those of a process started
    from a shell."""
    hinted = _hint_openblas_coretype()
    try:
        import faiss as module
    finally:
        if hinted is not None and os.environ.get("OPENBLAS_CORETYPE") == hinted:
            del os.environ["OPENBLAS_CORETYPE"]
    return module


faiss = _import_faiss()


# ---------------------------------------------------------------------------
# input checking (private, shared by retrieval.py and clustering.py)
# ---------------------------------------------------------------------------
def _as_embeddings(x, name="embeddings"):
    """Return ``x`` as a C-contiguous float32 (N, D) array, or raise ValueError."""
    if x is None:
        raise ValueError("%s must be given (got None)." % name)
    if hasattr(x, "asnumpy"):  # tolerate an MXNet NDArray without importing MXNet
        x = x.asnumpy()
    try:
        x = np.ascontiguousarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError("%s must be a numeric array of shape (N, D)." % name)
    if x.ndim != 2:
        raise ValueError("%s must be a 2-D array of shape (N, D), got shape %s."
                         % (name, x.shape))
    if x.shape[0] == 0:
        raise ValueError("%s is empty (0 rows)." % name)
    if x.shape[1] == 0:
        raise ValueError("%s has dimension 0." % name)
    if not np.isfinite(x).all():
        raise ValueError("%s contain NaN or infinite values." % name)
    return x


def _as_labels(y, n, name="labels", embeddings_name="embeddings"):
    """Return ``y`` as an int64 (n,) array, or raise ValueError."""
    if y is None:
        raise ValueError("%s must be given (got None)." % name)
    if hasattr(y, "asnumpy"):
        y = y.asnumpy()
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError("%s must be a 1-D array of shape (N,), got shape %s."
                         % (name, y.shape))
    if y.shape[0] != n:
        raise ValueError("%s has length %d but %s has %d rows; they must match."
                         % (name, y.shape[0], embeddings_name, n))
    if y.dtype.kind in "iub":
        return y.astype(np.int64, copy=False)
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            raise ValueError("%s must be integers (got non-integral float values)." % name)
        return y.astype(np.int64)
    raise ValueError("%s must be integers, got dtype %s." % (name, y.dtype))


def _positive_int(value, name):
    """Return ``value`` as a Python int if it is a positive integer, else raise ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < 1:
        raise ValueError("%s must be a positive integer, got %r." % (name, value))
    return int(value)


# ---------------------------------------------------------------------------
# search
# ---------------------------------------------------------------------------
def _flat_index(d, num_rows=0):
    """An empty exact L2 index for ``num_rows`` future rows.

    With several OpenMP threads and a large enough gallery it is a threaded
    ``faiss.IndexShards`` of ``IndexFlatL2`` (one shard per thread, results
    merged exactly, ids numbered as if one index); see ``PARALLEL_SHARDS``.
    Such an index accepts one ``add`` after each ``reset``, which is how both
    the searches here and faiss k-means use it.
    """
    nshards = min(faiss.omp_get_max_threads(), num_rows // _MIN_ROWS_PER_SHARD)
    if nshards < 2 or not PARALLEL_SHARDS:
        return faiss.IndexFlatL2(d)
    index = faiss.IndexShards(d, True, True)  # threaded, successive ids
    for _ in range(nshards):
        index.add_shard(faiss.IndexFlatL2(d))  # faiss keeps a reference
    return index


def _build_index(gallery):
    """Exact L2 index over a checked float32 (N, D) gallery."""
    index = _flat_index(gallery.shape[1], gallery.shape[0])
    index.add(gallery)
    return index


def _search(index, queries, k, self_ids=None):
    """Search one block of queries.

    Returns (indices int64 (Q, k), squared distances float32 (Q, k)), nearest first.
    ``self_ids`` (Q,) are the gallery row of each query; when given, that row is
    removed from the query's list (by index, so that duplicates of the query are
    kept).  ``k`` must already be clipped to the number of available items.
    """
    nq = queries.shape[0]
    if k == 0:
        return np.empty((nq, 0), np.int64), np.empty((nq, 0), np.float32)
    if self_ids is None:
        dist, idx = index.search(queries, k)
    else:
        dist, idx = index.search(queries, k + 1)
        drop = idx == self_ids[:, None]
        # Rows whose own index is not among the k + 1 results (several exact
        # duplicates at distance 0): drop the last entry instead.
        missing = ~drop.any(axis=1)
        drop[missing, -1] = True
        # Guard against a row listing itself twice (cannot happen with faiss,
        # but keep exactly one drop per row so the reshape below is valid).
        first = np.argmax(drop, axis=1)
        drop[:] = False
        drop[np.arange(nq), first] = True
        keep = ~drop
        idx = idx[keep].reshape(nq, k)
        dist = dist[keep].reshape(nq, k)
    if idx.size and idx.min() < 0:
        raise ValueError("faiss returned no neighbour for some queries; the embeddings are "
                         "probably too large in magnitude (squared distances overflow "
                         "float32), so rescale them.")
    np.maximum(dist, 0.0, out=dist)  # BLAS rounding can give tiny negative values
    return idx.astype(np.int64, copy=False), dist.astype(np.float32, copy=False)


def knn(query, k, gallery=None, exclude_self=True, block_size=DEFAULT_BLOCK_SIZE):
    """The k nearest gallery items of each query under Euclidean distance (exact, faiss).

    Parameters
    ----------
    query : array (Q, D)
        Query embeddings (converted to float32).
    k : int
        Number of neighbours.  Clipped to the number of items that exist: the
        gallery size, minus 1 when the query's own row is excluded.
    gallery : array (N, D) or None
        Items searched.  ``None`` means the query set itself (all-vs-all).
    exclude_self : bool
        Only used when ``gallery`` is None: remove each query's own row from its
        list.  Removal is by index, so an identical embedding of another item is
        kept even if faiss ranked it before the query itself.
    block_size : int
        Number of queries sent to faiss at a time.

    Returns
    -------
    indices : int64 array (Q, k')
        Gallery rows, nearest first (ties in any order), with k' the clipped k.
    distances : float32 array (Q, k')
        The matching squared L2 distances.
    """
    query = _as_embeddings(query, "query")
    k = _positive_int(k, "k")
    block_size = _positive_int(block_size, "block_size")
    if gallery is None:
        gallery = query
        self_search = bool(exclude_self)
    else:
        gallery = _as_embeddings(gallery, "gallery")
        if gallery.shape[1] != query.shape[1]:
            raise ValueError("query has dimension %d but gallery has dimension %d; they "
                             "must match." % (query.shape[1], gallery.shape[1]))
        self_search = False
    available = gallery.shape[0] - (1 if self_search else 0)
    k = min(k, available)

    index = _build_index(gallery)
    nq = query.shape[0]
    indices = np.empty((nq, k), np.int64)
    distances = np.empty((nq, k), np.float32)
    for start in range(0, nq, block_size):
        stop = min(start + block_size, nq)
        self_ids = np.arange(start, stop, dtype=np.int64) if self_search else None
        indices[start:stop], distances[start:stop] = _search(
            index, query[start:stop], k, self_ids)
    return indices, distances
