"""Clustering quality (NMI) and the combined evaluation entry point.

Plain functions over numpy arrays (no MXNet).
"""
import math
import numbers

import numpy as np

from .neighbors import (DEFAULT_BLOCK_SIZE, _as_embeddings, _as_labels, _flat_index,
                        _positive_int)
from .neighbors import faiss  # imported there, after its OpenBLAS set-up
from .retrieval import _check_ks, _prepare, _retrieval_core

__all__ = ["nmi", "kmeans_assign", "evaluate_embeddings"]


def kmeans_assign(embeddings, num_clusters, seed=0, niter=20):
    """Cluster ids (N,) int64 of a seeded faiss k-means (exact L2 assignment, all points used)."""
    x = _as_embeddings(embeddings, "embeddings")
    num_clusters = _positive_int(num_clusters, "num_clusters")
    niter = _positive_int(niter, "niter")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise ValueError("seed must be an integer, got %r." % (seed,))
    n = x.shape[0]
    if num_clusters > n:
        raise ValueError("num_clusters (%d) cannot exceed the number of embeddings (%d)."
                         % (num_clusters, n))
    if num_clusters == 1:
        return np.zeros(n, np.int64)
    kmeans = faiss.Kmeans(
        x.shape[1], num_clusters, niter=niter, seed=int(seed) % (2 ** 31), verbose=False,
        # train on every point (no subsampling) and do not warn about few points
        max_points_per_centroid=int(math.ceil(n / float(num_clusters))) + 1,
        min_points_per_centroid=1)
    # exact L2 assignment; split over the OpenMP threads when k is large
    kmeans.index = _flat_index(x.shape[1], num_clusters)
    kmeans.train(x)
    _, assign = kmeans.assign(x)  # nearest final centroid
    return assign.astype(np.int64)


def nmi(embeddings, labels, num_clusters=None, seed=0, niter=20):
    """Normalized mutual information between ``labels`` and a k-means clustering.

    k-means (faiss, exact, seeded, ``niter`` iterations) uses k = number of
    distinct labels unless ``num_clusters`` is given; the score is
    ``sklearn.metrics.normalized_mutual_info_score`` with its default
    (arithmetic) normalisation.  Returns a float in [0, 1].
    """
    from sklearn.metrics import normalized_mutual_info_score  # heavy import, only here

    x = _as_embeddings(embeddings, "embeddings")
    y = _as_labels(labels, x.shape[0], "labels", "embeddings")
    if num_clusters is None:
        num_clusters = int(np.unique(y).size)
    assign = kmeans_assign(x, num_clusters, seed=seed, niter=niter)
    return float(normalized_mutual_info_score(y, assign))


def evaluate_embeddings(embeddings, labels, ks=(1, 2, 4, 8), query_embeddings=None,
                        query_labels=None, nmi_seed=0, nmi_niter=20,
                        block_size=DEFAULT_BLOCK_SIZE):
    """:func:`retrieval_metrics` plus ``'nmi'``.

    NMI is computed over the gallery, or over query + gallery together when a
    separate query set is given, with k = number of distinct labels there.
    """
    ks = _check_ks(ks)
    block_size = _positive_int(block_size, "block_size")
    gallery, glabels, queries, qlabels, self_search = _prepare(
        embeddings, labels, query_embeddings, query_labels)
    out = _retrieval_core(gallery, glabels, queries, qlabels, self_search,
                          ks=ks, need_r=True, block_size=block_size)
    if self_search:
        x_all, y_all = gallery, glabels
    else:
        x_all = np.concatenate([queries, gallery], axis=0)
        y_all = np.concatenate([qlabels, glabels], axis=0)
    out["nmi"] = nmi(x_all, y_all, seed=nmi_seed, niter=nmi_niter)
    return out
