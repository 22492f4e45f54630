"""Hashing metrics over binary codes in Hamming space (numpy; no MXNet import).

Codes are {-1, +1} (or {0, 1}) arrays (N, bits) or rows packed with ``np.packbits``; labels are
class indices (N,) or multi-hot (N, C). A database item is *relevant* to a query when they
share a class (label sets intersect, for multi-label data). Distances are computed for a block
of queries at a time, ``(block, N_db)`` int16, never the whole query x database matrix at once.

* :func:`hamming_map`: mean average precision over the whole ranking of the database
  (``topk=None``), or mAP@top-K (the convention of HashNet's and DeepHash's code: the average of
  precision at each relevant position within the top K, divided by the relevant items found in
  the top K; a query with none scores 0). The ranking is by Hamming distance; ties are broken by
  database order (a stable sort), so the result is deterministic.
* :func:`precision_within_radius`: the precision of the items within Hamming distance r
  (default 2) of each query, averaged over queries; a query with no item in the ball counts 0
  (the convention of the HashNet paper).
* :func:`pr_curve`: precision and recall of the Hamming ball of each radius 0 .. bits (one
  point per radius, averaged over queries), the curve of hashing papers.
"""
import numpy as np

__all__ = ['to_pm1', 'pack_codes', 'unpack_codes', 'hamming_distances', 'relevance',
           'hamming_map', 'precision_within_radius', 'pr_curve', 'bit_balance', 'hashing_metrics']


def to_pm1(codes, bits=None):
    """{-1, +1} int8 codes from {-1, +1} / {0, 1} / real-valued (sign) / packed uint8 codes.
    Packed codes (uint8 with fewer columns than ``bits``) need ``bits``."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError('codes must be a 2-d array (N, bits), got shape %s.' % (codes.shape,))
    if codes.dtype == np.uint8 and bits is not None and codes.shape[1] * 8 >= bits and codes.shape[1] != bits:
        return unpack_codes(codes, bits)
    if codes.dtype == np.uint8 or codes.dtype == np.bool_:
        return np.where(codes > 0, 1, -1).astype(np.int8)
    return np.where(codes >= 0, 1, -1).astype(np.int8)


def pack_codes(codes):
    """``np.packbits`` of the codes' bits (+1 -> 1), row by row: (N, ceil(bits / 8)) uint8."""
    return np.packbits(to_pm1(codes) > 0, axis=1)


def unpack_codes(packed, bits):
    """{-1, +1} int8 (N, bits) from packed rows."""
    raw = np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=1)[:, :bits]
    return np.where(raw > 0, 1, -1).astype(np.int8)


def hamming_distances(query, database):
    """Hamming distances (Q, N) int16 between {-1, +1} codes: ``(bits - <q, b>) / 2``."""
    q = np.asarray(query, dtype=np.float32)
    d = np.asarray(database, dtype=np.float32)
    ip = q @ d.T
    return np.rint((q.shape[1] - ip) / 2).astype(np.int16)


def _labels2d(labels):
    labels = np.asarray(labels)
    return labels if labels.ndim == 2 else None


def relevance(query_labels, db_labels):
    """(Q, N) bool: the items sharing a class with each query (multi-label: any shared label)."""
    ql, dl = np.asarray(query_labels), np.asarray(db_labels)
    if ql.ndim == 2:
        return (ql.astype(np.float32) @ dl.astype(np.float32).T) > 0
    return ql[:, None] == dl[None, :]


def _blocks(n, block):
    for s in range(0, n, block):
        yield slice(s, min(n, s + block))


def _prepare(query_codes, db_codes, query_labels, db_labels, bits):
    q = to_pm1(query_codes, bits)
    d = to_pm1(db_codes, bits)
    if q.shape[1] != d.shape[1]:
        raise ValueError('query codes have %d bits but database codes %d.' % (q.shape[1], d.shape[1]))
    if len(q) != len(query_labels) or len(d) != len(db_labels):
        raise ValueError('codes and labels differ in number: %d / %d queries, %d / %d database items.'
                         % (len(q), len(query_labels), len(d), len(db_labels)))
    return q, d


def hamming_map(query_codes, db_codes, query_labels, db_labels, topk=None, bits=None, block=100):
    """mAP of the Hamming ranking of the database for each query (``topk``: mAP@top-K)."""
    q, d = _prepare(query_codes, db_codes, query_labels, db_labels, bits)
    ql, dl = np.asarray(query_labels), np.asarray(db_labels)
    n = len(d)
    k = n if topk is None else min(int(topk), n)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    aps = []
    for s in _blocks(len(q), block):
        dist = hamming_distances(q[s], d)
        rel = relevance(ql[s], dl)
        order = np.argsort(dist, axis=1, kind='stable')[:, :k]
        hits = np.take_along_axis(rel, order, axis=1)
        cum = np.cumsum(hits, axis=1)
        found = cum[:, -1]
        if topk is None:
            total = rel.sum(axis=1)
        else:
            total = found
        prec_sum = (hits * (cum / ranks)).sum(axis=1)
        aps.append(np.where(total > 0, prec_sum / np.maximum(total, 1), 0.0))
    return float(np.mean(np.concatenate(aps))) if aps else 0.0


def precision_within_radius(query_codes, db_codes, query_labels, db_labels, radius=2, bits=None,
                            block=100):
    """Mean over queries of the precision of the database items within Hamming distance
    ``radius``; a query with an empty ball counts 0."""
    q, d = _prepare(query_codes, db_codes, query_labels, db_labels, bits)
    ql, dl = np.asarray(query_labels), np.asarray(db_labels)
    precs = []
    for s in _blocks(len(q), block):
        ball = hamming_distances(q[s], d) <= radius
        rel = relevance(ql[s], dl)
        n_in = ball.sum(axis=1)
        n_rel = (ball & rel).sum(axis=1)
        precs.append(np.where(n_in > 0, n_rel / np.maximum(n_in, 1), 0.0))
    return float(np.mean(np.concatenate(precs))) if precs else 0.0


def pr_curve(query_codes, db_codes, query_labels, db_labels, bits=None, block=100):
    """Precision and recall of the Hamming ball of radius r = 0 .. bits, averaged over queries:
    ``(radii, precision, recall)``, each of length bits + 1. A query whose ball is empty
    contributes precision 0 at that radius (as in :func:`precision_within_radius`)."""
    q, d = _prepare(query_codes, db_codes, query_labels, db_labels, bits)
    ql, dl = np.asarray(query_labels), np.asarray(db_labels)
    nb = q.shape[1]
    prec = np.zeros(nb + 1)
    rec = np.zeros(nb + 1)
    for s in _blocks(len(q), block):
        dist = hamming_distances(q[s], d)
        rel = relevance(ql[s], dl)
        # histograms over distance 0..bits of all items and of relevant items, per query
        cells = (np.arange(dist.shape[0])[:, None] * (nb + 1) + dist).ravel()
        size = dist.shape[0] * (nb + 1)
        count = np.bincount(cells, minlength=size).reshape(-1, nb + 1)
        good = np.bincount(cells, weights=rel.ravel(), minlength=size).reshape(-1, nb + 1)
        c_count = np.cumsum(count, axis=1)
        c_good = np.cumsum(good, axis=1)
        prec += np.where(c_count > 0, c_good / np.maximum(c_count, 1), 0.0).sum(axis=0)
        n_rel = rel.sum(axis=1, keepdims=True)
        rec += np.where(n_rel > 0, c_good / np.maximum(n_rel, 1), 0.0).sum(axis=0)
    return np.arange(nb + 1), prec / len(q), rec / len(q)


def bit_balance(codes, bits=None):
    """How balanced the bits are: ``{'bit_balance': mean_b |mean_i code_ib|`` (0: every bit is
    +1 on half of the items, 1: constant bits), ``'bit_ones_min'`` / ``'bit_ones_max'``: the
    smallest and largest per-bit fraction of +1}`` and the per-bit fractions."""
    c = to_pm1(codes, bits).astype(np.float64)
    ones = (c > 0).mean(axis=0)
    return {'bit_balance': float(np.abs(c.mean(axis=0)).mean()),
            'bit_ones_min': float(ones.min()), 'bit_ones_max': float(ones.max())}, ones


def hashing_metrics(query_codes, db_codes, query_labels, db_labels, topk=(1000,), radius=2,
                    bits=None):
    """The metrics logged each epoch: ``map`` (whole database), ``map@K`` for each K,
    ``precision@r2`` (radius ``radius``), and the database codes' bit balance."""
    out = {'map': hamming_map(query_codes, db_codes, query_labels, db_labels, bits=bits)}
    for k in topk:
        out['map@%d' % k] = hamming_map(query_codes, db_codes, query_labels, db_labels, topk=k, bits=bits)
    out['precision@r%d' % radius] = precision_within_radius(query_codes, db_codes, query_labels,
                                                            db_labels, radius, bits=bits)
    out.update(bit_balance(db_codes, bits)[0])
    return out
