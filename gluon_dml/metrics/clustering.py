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

__all__ = ["nmi", "kmeans_assign", "evaluate_embeddings", "default_nmi_runs"]


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


NMI_RUNS = 10
"""k-means runs whose NMI is averaged by default, when clustering is cheap (see ``default_nmi_runs``)."""
NMI_RUNS_MAX_SIZE = 10 ** 7
"""Above this ``N * k`` (points times clusters) one run is the default: one k-means of the Stanford
Online Products test set (60,502 points, 11,316 classes) already takes minutes on a CPU."""


def default_nmi_runs(num_points, num_clusters):
    """How many k-means runs :func:`nmi` averages by default: ``NMI_RUNS`` (10) when
    ``num_points * num_clusters <= NMI_RUNS_MAX_SIZE`` (every dataset here but SOP and In-Shop),
    else 1."""
    return NMI_RUNS if num_points * num_clusters <= NMI_RUNS_MAX_SIZE else 1


def nmi(embeddings, labels, num_clusters=None, seed=0, niter=20, runs=None):
    """Normalized mutual information between ``labels`` and a k-means clustering.

    k-means (faiss, exact, seeded, ``niter`` iterations) uses k = number of
    distinct labels unless ``num_clusters`` is given; the score is
    ``sklearn.metrics.normalized_mutual_info_score`` with its default
    (arithmetic) normalisation.  Returns a float in [0, 1].

    The result is the mean over ``runs`` k-means runs with seeds ``seed``, ``seed + 1``, ...
    (default :func:`default_nmi_runs`: 10 for all but the largest sets).  One run is one draw
    of the initial centroids, and on a retrieval test set (e.g. 59 Omniglot classes of 20
    images) the NMI of one draw varies by about 0.01 from draw to draw for the same
    embeddings; the mean is the same quantity, the expected NMI of this k-means, with a tenth
    of the variance.  ``runs=1`` gives the single run of other libraries' evaluations.
    """
    from sklearn.metrics import normalized_mutual_info_score  # heavy import, only here

    x = _as_embeddings(embeddings, "embeddings")
    y = _as_labels(labels, x.shape[0], "labels", "embeddings")
    if num_clusters is None:
        num_clusters = int(np.unique(y).size)
    if runs is None:
        runs = default_nmi_runs(x.shape[0], num_clusters)
    runs = _positive_int(runs, "runs")
    scores = [normalized_mutual_info_score(y, kmeans_assign(x, num_clusters, seed=seed + r,
                                                            niter=niter))
              for r in range(runs)]
    return float(np.mean(scores))


def evaluate_embeddings(embeddings, labels, ks=(1, 2, 4, 8), query_embeddings=None,
                        query_labels=None, nmi_seed=0, nmi_niter=20, nmi_runs=None,
                        block_size=DEFAULT_BLOCK_SIZE):
    """:func:`retrieval_metrics` plus ``'nmi'`` and ``'num_nmi_runs'``.

    NMI is computed over the gallery, or over query + gallery together when a
    separate query set is given, with k = number of distinct labels there; it is the mean
    over ``nmi_runs`` k-means runs (default :func:`default_nmi_runs`), a count reported as
    ``num_nmi_runs``.
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
    num_clusters = int(np.unique(y_all).size)
    runs = default_nmi_runs(x_all.shape[0], num_clusters) if nmi_runs is None else nmi_runs
    out["nmi"] = nmi(x_all, y_all, num_clusters=num_clusters, seed=nmi_seed, niter=nmi_niter,
                     runs=runs)
    out["num_nmi_runs"] = int(runs)
    return out
