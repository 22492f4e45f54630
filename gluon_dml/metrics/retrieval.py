"""Retrieval metrics: Recall@K, R-precision and MAP@R.

Plain functions over numpy arrays (no MXNet).  Neighbours come from an exact
faiss L2 search done one block of queries at a time (see ``neighbors.py``), so
no N x N matrix is ever built.

Conventions
-----------
* Recall@K follows the deep-metric-learning usage (Song et al. 2016; Wu et al.
  2017): a query scores 1 if ANY of its K nearest neighbours (itself excluded)
  has its label; Recall@K is the mean over queries.
* R-precision and MAP@R follow Musgrave, Belongie & Lim, "A Metric Learning
  Reality Check" (ECCV 2020).  For a query with R other items of its class in
  the gallery, take its R nearest neighbours:
  R-precision = (#same-class among them) / R, and
  MAP@R = (1/R) * sum_{i=1..R} P(i) * rel(i), P(i) being the precision among the
  first i neighbours and rel(i) = 1 when the i-th neighbour is same-class.
* Queries with R = 0 (no other item of their class in the gallery) are left out
  of every metric and reported as ``num_skipped_queries``.
* Without a separate query set every item is a query against all the others
  (self excluded by index).  With ``query_embeddings``/``query_labels`` the
  queries are searched against the gallery ``(embeddings, labels)`` with no
  self-exclusion (In-Shop style).
* Distances are computed in float32 (by faiss for the nearest neighbours; by
  one BLAS product per query block for the rank of the nearest same-class item
  that Recall@K needs beyond the first search's depth); items at equal distance
  are ranked in no particular order.
"""
import numbers

import numpy as np

from .neighbors import (DEFAULT_BLOCK_SIZE, _as_embeddings, _as_labels, _build_index,
                        _positive_int, _search)

__all__ = ["recall_at_k", "r_precision", "map_at_r", "retrieval_metrics"]

# Upper bound on the number of (query, neighbour) entries handled at once, in
# units of block_size: a block holds at most block_size * _ELEMENTS_PER_ROW
# entries, so a query group that needs a large k (a big class) uses fewer rows.
_ELEMENTS_PER_ROW = 256
# Recall@K for K above this depth is first decided from this many neighbours; for the
# queries without a same-class item that deep it comes from the rank of their nearest
# same-class item (``_nearest_positive_ranks``), not from a max(ks)-deep search.
_SHALLOW_K = 16
# Distances held at once by ``_nearest_positive_ranks`` (float32: 16 MiB).
_RANK_ENTRIES = 1 << 22


def _check_ks(ks):
    """Return ks as a tuple of distinct positive ints (order kept), or raise ValueError."""
    if isinstance(ks, numbers.Integral) and not isinstance(ks, (bool, np.bool_)):
        ks = (ks,)
    try:
        ks = list(ks)
    except TypeError:
        raise ValueError("ks must be a positive integer or a sequence of positive integers, "
                         "got %r." % (ks,))
    if not ks:
        raise ValueError("ks must contain at least one positive integer.")
    out = []
    for k in ks:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError("ks must contain only positive integers, got %r." % (k,))
        if int(k) not in out:
            out.append(int(k))
    return tuple(out)


def _prepare(embeddings, labels, query_embeddings, query_labels):
    """Check the inputs; return (gallery, gallery_labels, queries, query_labels, self_search)."""
    gallery = _as_embeddings(embeddings, "embeddings")
    glabels = _as_labels(labels, gallery.shape[0], "labels", "embeddings")
    if (query_embeddings is None) != (query_labels is None):
        raise ValueError("query_embeddings and query_labels must be given together "
                         "(or both left as None).")
    if query_embeddings is None:
        return gallery, glabels, gallery, glabels, True
    queries = _as_embeddings(query_embeddings, "query_embeddings")
    qlabels = _as_labels(query_labels, queries.shape[0], "query_labels", "query_embeddings")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError("query_embeddings has dimension %d but embeddings has dimension %d; "
                         "they must match." % (queries.shape[1], gallery.shape[1]))
    return gallery, glabels, queries, qlabels, False


def _relevant_counts(glabels, qlabels, self_search):
    """R for every query: the number of OTHER gallery items sharing its label."""
    classes, counts = np.unique(glabels, return_counts=True)
    pos = np.searchsorted(classes, qlabels)
    pos = np.minimum(pos, classes.size - 1)
    present = classes[pos] == qlabels
    r = np.where(present, counts[pos], 0).astype(np.int64)
    if self_search:
        r -= 1
    return r


def _blocks(k_need, block_size):
    """Split rows sorted by increasing k into (start, stop, k) blocks.

    A block has at most ``block_size`` rows and at most about
    ``block_size * _ELEMENTS_PER_ROW`` (row, neighbour) entries; its k is the
    largest k of its rows.
    """
    budget = block_size * _ELEMENTS_PER_ROW
    start = 0
    while start < k_need.size:
        stop = min(start + block_size, k_need.size)
        rows = max(1, min(stop - start, budget // max(int(k_need[stop - 1]), 1)))
        stop = start + rows
        yield start, stop, int(k_need[stop - 1])
        start = stop


def _nearest_positive_ranks(gallery, glabels, queries, qlabels, rows, self_search, block_size):
    """For each query in ``rows``: how many gallery items (the query itself excluded) are
    strictly nearer to it than its nearest same-class item; Recall@K is a hit iff this is < K.

    One float32 product with the whole gallery per block of queries, then a count: the cost of
    a 1-deep search, where a K-deep faiss search keeps a K-entry heap per query. Items are
    compared by ``|g|^2 - 2 q.g`` (the squared distance less ``|q|^2``, the same for every item
    of a query's row), the same float32 values on both sides of each comparison. Every query
    in ``rows`` must have a same-class item in the gallery (R > 0).
    """
    n = gallery.shape[0]
    g_sq = np.einsum("ij,ij->i", gallery, gallery)
    by_label = np.argsort(glabels, kind="stable")
    sorted_labels = glabels[by_label]
    step = max(1, min(block_size, _RANK_ENTRIES // n))
    ranks = np.empty(rows.size, np.int64)
    for start in range(0, rows.size, step):
        r = rows[start:start + step]
        b = r.size
        e = (queries[r] * np.float32(-2.0)) @ gallery.T   # (b, n): -2 q.g (scaling by 2 is exact)
        e += g_sq[None, :]
        if self_search:
            e[np.arange(b), r] = np.inf
        # the same-class items of each query: a run of ``by_label``
        lo = np.searchsorted(sorted_labels, qlabels[r], side="left")
        hi = np.searchsorted(sorted_labels, qlabels[r], side="right")
        counts = hi - lo
        row_of = np.repeat(np.arange(b), counts)
        run_start = np.cumsum(counts) - counts              # where each row's run begins in row_of
        item = by_label[np.repeat(lo - run_start, counts) + np.arange(counts.sum())]
        nearest = np.full(b, np.inf, np.float32)
        np.minimum.at(nearest, row_of, e[row_of, item])
        ranks[start:start + b] = np.count_nonzero(e < nearest[:, None], axis=1)
    return ranks


def _retrieval_core(gallery, glabels, queries, qlabels, self_search, ks, need_r, block_size):
    """Shared computation.  ``ks`` may be empty (R-based metrics only).

    Each query needs its R nearest neighbours (R-precision, MAP@R) and, for
    Recall@K, only whether a same-class item is among its K nearest.  So the
    search goes max(R, min(max(ks), _SHALLOW_K)) deep; for the queries with no
    same-class item that deep and a larger K left to decide, the number of items
    nearer than their nearest same-class item decides every larger K at once.
    The result is that of one max(max(ks), R)-deep search (up to the order of
    items at equal distance), without a max(ks)-entry heap per query.
    """
    r_all = _relevant_counts(glabels, qlabels, self_search)
    used = np.flatnonzero(r_all > 0)
    num_skipped = int(queries.shape[0] - used.size)
    if used.size == 0:
        raise ValueError("No query has another item of its class in the gallery, so the "
                         "retrieval metrics are undefined.")

    available = gallery.shape[0] - (1 if self_search else 0)
    max_k = max(ks) if ks else 0
    deep_k = min(max_k, available)
    k_need = np.full(used.size, min(max_k, _SHALLOW_K), np.int64)
    if need_r:
        np.maximum(k_need, r_all[used], out=k_need)
    np.minimum(k_need, available, out=k_need)
    # Process the queries by increasing k so each block searches only as deep
    # as its queries need, and cap rows * k so the block's arrays stay small.
    order = np.argsort(k_need, kind="stable")
    used, k_need = used[order], k_need[order]

    hits = dict((k, 0) for k in ks)
    r_precision_sum = 0.0
    map_sum = 0.0
    pending, pending_depth = [], []  # queries whose Recall@K for some K is still open
    index = _build_index(gallery)

    def neighbour_match(block, k):
        idx, _ = _search(index, queries[block], k, block if self_search else None)
        return glabels[idx] == qlabels[block][:, None]  # (rows, k) bool

    for start, stop, k in _blocks(k_need, block_size):
        block = used[start:stop]
        match = neighbour_match(block, k)
        found = match.any(axis=1)  # a same-class item among the k nearest
        for kk in ks:
            if kk <= k:
                hits[kk] += int(match[:, :kk].any(axis=1).sum())
            else:  # hits within k are hits within kk; the rest is decided below
                hits[kk] += int(found.sum())
        if k < deep_k and not found.all():
            pending.append(block[~found])
            pending_depth.append(np.full(int((~found).sum()), k, np.int64))
        if need_r:
            r = r_all[block]
            in_r = np.arange(k)[None, :] < r[:, None]
            rel = match & in_r
            r_precision_sum += float((rel.sum(axis=1) / r).sum())
            # precision at i among the first i neighbours (i = 1..k)
            prec = np.cumsum(match, axis=1, dtype=np.float64) / np.arange(1, k + 1)
            map_sum += float(((prec * rel).sum(axis=1) / r).sum())

    if pending:
        # no same-class item within `depth` neighbours: a hit for each K > depth with
        # fewer than K items nearer than the nearest same-class item
        pending = np.concatenate(pending)
        depth = np.concatenate(pending_depth)
        rank = _nearest_positive_ranks(gallery, glabels, queries, qlabels, pending,
                                       self_search, block_size)
        for kk in ks:
            hits[kk] += int(np.count_nonzero((rank < kk) & (depth < kk)))

    n = used.size
    out = {}
    for kk in ks:
        out["recall@%d" % kk] = hits[kk] / float(n)
    if need_r:
        out["r_precision"] = r_precision_sum / n
        out["map@r"] = map_sum / n
    out["num_queries"] = int(n)
    out["num_skipped_queries"] = num_skipped
    return out


def retrieval_metrics(embeddings, labels, ks=(1, 2, 4, 8), query_embeddings=None,
                      query_labels=None, block_size=DEFAULT_BLOCK_SIZE):
    """Recall@K, R-precision and MAP@R from a blocked exact kNN search.

    Each query is searched max(R, K) deep in effect (see ``_retrieval_core``:
    Recall@K beyond 16 neighbours comes from the rank of the nearest same-class
    item), one block of queries at a time, so no N x N matrix is built.

    Parameters
    ----------
    embeddings : array (N, D)
        Gallery embeddings (float32; other numeric types are converted).
    labels : int array (N,)
        Gallery class labels.
    ks : int or sequence of int
        The K values of Recall@K.
    query_embeddings, query_labels : arrays (Q, D) and (Q,), optional
        A separate query set searched against the gallery (no self-exclusion).
        When omitted every gallery item is a query against the others.
    block_size : int
        Maximum number of queries searched at once (fewer for queries whose R
        is large, so the (block, k) arrays stay small).

    Returns
    -------
    dict
        ``{'recall@1': .., ..., 'r_precision': .., 'map@r': .., 'num_queries': int,
        'num_skipped_queries': int}``; queries with no other item of their class
        in the gallery are skipped and counted in ``num_skipped_queries``.
    """
    ks = _check_ks(ks)
    block_size = _positive_int(block_size, "block_size")
    data = _prepare(embeddings, labels, query_embeddings, query_labels)
    return _retrieval_core(*data, ks=ks, need_r=True, block_size=block_size)


def recall_at_k(embeddings, labels, ks=(1, 2, 4, 8), query_embeddings=None, query_labels=None,
                block_size=DEFAULT_BLOCK_SIZE):
    """Recall@K (hit if any of the K nearest neighbours shares the query's label).

    Returns ``{K: recall}`` for each K in ``ks``.  See :func:`retrieval_metrics`
    for the arguments and the handling of queries without a same-class item.
    """
    ks = _check_ks(ks)
    block_size = _positive_int(block_size, "block_size")
    data = _prepare(embeddings, labels, query_embeddings, query_labels)
    res = _retrieval_core(*data, ks=ks, need_r=False, block_size=block_size)
    return dict((k, res["recall@%d" % k]) for k in ks)


def r_precision(embeddings, labels, query_embeddings=None, query_labels=None,
                block_size=DEFAULT_BLOCK_SIZE):
    """Mean R-precision (Musgrave et al. 2020) as a float.  See :func:`retrieval_metrics`."""
    block_size = _positive_int(block_size, "block_size")
    data = _prepare(embeddings, labels, query_embeddings, query_labels)
    return _retrieval_core(*data, ks=(), need_r=True, block_size=block_size)["r_precision"]


def map_at_r(embeddings, labels, query_embeddings=None, query_labels=None,
             block_size=DEFAULT_BLOCK_SIZE):
    """Mean MAP@R (Musgrave et al. 2020) as a float.  See :func:`retrieval_metrics`."""
    block_size = _positive_int(block_size, "block_size")
    data = _prepare(embeddings, labels, query_embeddings, query_labels)
    return _retrieval_core(*data, ks=(), need_r=True, block_size=block_size)["map@r"]
