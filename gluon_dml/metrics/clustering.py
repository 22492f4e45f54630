"""Clustering quality (NMI) and the combined evaluation entry point.

Plain functions over numpy arrays (no MXNet).
"""
import math
import numbers

import numpy as np
import scipy.sparse
from scipy.linalg.blas import sgemm as _sgemm

from .neighbors import (DEFAULT_BLOCK_SIZE, _as_embeddings, _as_labels, _flat_index,
                        _positive_int)
from .neighbors import faiss  # imported there, after its OpenBLAS set-up
from .retrieval import _check_ks, _prepare, _retrieval_core

__all__ = ["nmi", "nmi_score", "kmeans_assign", "evaluate_embeddings", "default_nmi_runs"]


def kmeans_assign(embeddings, num_clusters, seed=0, niter=20):
    """Cluster ids (N,) int64 of a seeded k-means: faiss's ``Kmeans`` algorithm, run here.

    The algorithm and its random draws are those of ``faiss.Kmeans(d, k, niter=niter, seed=seed)``
    trained on every point (no subsampling) and followed by ``assign``: the initial centroids are
    the points ``faiss.rand_perm(N, seed + 1)[:k]``; each of the ``niter`` Lloyd iterations assigns
    every point to its nearest centroid (exact squared L2, the first on ties), moves each centroid
    to the mean of its points and re-seeds each empty cluster by splitting a large one exactly as
    faiss does (same rule, same Mersenne-Twister draws, same perturbation); the result is the
    nearest final centroid of each point.

    Only the assignment step is computed differently, with the same result:

    - distances are single-precision GEMMs through SciPy's BLAS (``||c||^2 - 2 x.c``, the norms
      folded into the product), blocks of points against the centroids, then an argmin;
    - after the first assignment, only what can have changed is recomputed. A centroid whose
      cluster kept the same points does not move, so each point is scored against the centroids
      that moved only; with its score for its own centroid and a lower bound on its second-best
      score (exact at its last full scoring, and the scores of unmoved centroids are unchanged),
      the nearest centroid is certain when the best of these beats the bound. The other points
      (and every point when more than half the centroids moved) are scored against all centroids.
      Late iterations move few centroids: at SOP's shape this is a few full passes' work
      instead of ``niter + 1``;
    - once no centroid moves, the iterations stop: the same points give the same centroids,
      so every later iteration would too (a trained network's embeddings of the Omniglot test
      split settled after 11 to 20 of the 20 iterations, 13 in the median of ten seeds).

    Rounding differs from faiss's in the last bits, so a point almost equidistant from two
    centroids can go the other way and the clusterings then drift apart slightly (the tests in
    tests/metrics/test_kmeans.py measure the agreement); :func:`_faiss_kmeans_assign` is the
    faiss run itself.
    """
    x, num_clusters, seed, niter = _check_kmeans_args(embeddings, num_clusters, seed, niter)
    n = x.shape[0]
    if num_clusters == 1:
        return np.zeros(n, np.int64)
    if num_clusters == n:            # faiss copies the points as centroids and does not iterate
        return _nearest_centroid(x, x.copy())
    perm = np.empty(n, np.int32)
    faiss.rand_perm(faiss.swig_ptr(perm), n, seed + 1)
    centroids = x[perm[:num_clusters]].copy()
    aug_x = _augment_points(x)
    assign, best, second = _score_all(aug_x, _augment_centroids(centroids))
    for _ in range(niter):
        new, counts = _centroids(x, assign, num_clusters)
        _split_empty_clusters(new, counts, n)
        if np.array_equal(new, centroids):
            break           # converged: the same points give the same centroids from here on
        _reassign(aug_x, centroids, new, assign, best, second)
        centroids = new
    return assign


def _check_kmeans_args(embeddings, num_clusters, seed, niter):
    x = _as_embeddings(embeddings, "embeddings")
    num_clusters = _positive_int(num_clusters, "num_clusters")
    niter = _positive_int(niter, "niter")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise ValueError("seed must be an integer, got %r." % (seed,))
    if num_clusters > x.shape[0]:
        raise ValueError("num_clusters (%d) cannot exceed the number of embeddings (%d)."
                         % (num_clusters, x.shape[0]))
    return x, num_clusters, int(seed) % (2 ** 31), niter


ASSIGN_BLOCK_SCORES = 1 << 22
"""Scores per GEMM in the assignment step (16 MB): ``max(256, this // m)`` points against m
centroids at a time; few large products for a small m, blocks that stay in cache for a large one."""


def _augment_points(x):
    """``[x, 1]`` (N, D + 1) float32: with :func:`_augment_centroids`, one GEMM gives the scores."""
    aug = np.empty((x.shape[0], x.shape[1] + 1), np.float32)
    aug[:, :-1] = x
    aug[:, -1] = 1.0
    return aug


def _augment_centroids(c):
    """``[-2 c, ||c||^2]`` (k, D + 1) float32; ``[x, 1] . this^T = ||c||^2 - 2 x.c``, the squared
    distance less ``||x||^2`` (the same for all centroids of a point)."""
    c = np.asarray(c, np.float32)
    aug = np.empty((c.shape[0], c.shape[1] + 1), np.float32)
    np.multiply(c, -2.0, out=aug[:, :-1])
    aug[:, -1] = np.einsum("ij,ij->i", c, c, dtype=np.float64)
    return aug


def _block_rows(m, block_rows=None):
    return block_rows or max(256, ASSIGN_BLOCK_SCORES // m)


def _scores(aug_rows, aug_c, buf):
    """(b, m) scores of b augmented points against m augmented centroids (a C-order view of the
    Fortran-order GEMM output ``buf``; Fortran-order views of the inputs, no copies)."""
    out = buf[:, :aug_rows.shape[0]]
    return _sgemm(1.0, aug_c.T, aug_rows.T, trans_a=True, c=out, overwrite_c=True).T


def _score_all(aug_x, aug_c, rows=None, block_rows=None):
    """Nearest centroid of the points ``rows`` (default all) among all centroids: its index, its
    score, and the second-best score (over the other centroids)."""
    n = aug_x.shape[0] if rows is None else rows.size
    assign, best, second = np.empty(n, np.int64), np.empty(n, np.float32), np.empty(n, np.float32)
    step = min(_block_rows(aug_c.shape[0], block_rows), n)
    buf = np.empty((aug_c.shape[0], step), np.float32, order="F")
    for start in range(0, n, step):
        stop = min(start + step, n)
        pts = aug_x[start:stop] if rows is None else aug_x[rows[start:stop]]
        s = _scores(pts, aug_c, buf)
        r = np.arange(stop - start)
        np.argmin(s, axis=1, out=assign[start:stop])
        best[start:stop] = s[r, assign[start:stop]]
        s[r, assign[start:stop]] = np.inf
        np.min(s, axis=1, out=second[start:stop])
    return assign, best, second


def _nearest_centroid(x, centroids, block_rows=None):
    """Index (N,) int64 of the nearest centroid (squared L2, first on ties) of each row of ``x``."""
    return _score_all(_augment_points(x), _augment_centroids(centroids), block_rows=block_rows)[0]


def _reassign(aug_x, old, new, assign, best, second, block_rows=None):
    """Update ``assign`` / ``best`` / ``second`` (from :func:`_score_all` or an earlier call) in
    place from centroids ``old`` to ``new``: the result of :func:`_score_all` for ``new``, the
    second-best score being a lower bound where it was not recomputed."""
    k = new.shape[0]
    moved = np.flatnonzero((old != new).any(axis=1))
    if moved.size == 0:
        return
    aug_c = _augment_centroids(new)
    if 2 * moved.size > k:
        assign[:], best[:], second[:] = _score_all(aug_x, aug_c, block_rows=block_rows)
        return
    aug_m = aug_c[moved]
    is_moved = np.zeros(k, bool)
    is_moved[moved] = True
    n = aug_x.shape[0]
    step = min(_block_rows(moved.size, block_rows), n)
    buf = np.empty((moved.size, step), np.float32, order="F")
    unsure = []
    for start in range(0, n, step):
        stop = min(start + step, n)
        s = _scores(aug_x[start:stop], aug_m, buf)
        r = np.arange(stop - start)
        own = assign[start:stop]
        own_score = np.where(is_moved[own], np.float32(np.inf), best[start:stop])   # moved: in s
        col = np.argmin(s, axis=1)
        top = s[r, col]
        top_id = moved[col]
        take = (top < own_score) | ((top == own_score) & (top_id < own))
        s[r, col] = np.inf
        runner_up = np.where(take, np.minimum(s.min(axis=1), own_score), top)
        new_best = np.where(take, top, own_score)
        # Unmoved centroids other than the own one score as before: at least the old second best.
        bound = second[start:stop]
        sure = new_best < bound
        assign[start:stop] = np.where(sure, np.where(take, top_id, own), own)
        best[start:stop] = np.where(sure, new_best, best[start:stop])
        second[start:stop] = np.where(sure, np.minimum(runner_up, bound), bound)
        unsure.append(start + np.flatnonzero(~sure))
    rows = np.concatenate(unsure)
    if rows.size:
        assign[rows], best[rows], second[rows] = _score_all(aug_x, aug_c, rows, block_rows)


def _centroids(x, assign, k):
    """Mean of the points of each cluster (float32 (k, D); zero for an empty one) and the counts."""
    n = x.shape[0]
    counts = np.bincount(assign, minlength=k)
    # column j holds point j's one 1, in its cluster's row: each row sums its points in order
    member = scipy.sparse.csc_matrix((np.ones(n, np.float32), assign, np.arange(n + 1)),
                                     shape=(k, n))
    sums = np.asarray(member @ x, np.float32)                       # (k, D)
    full = counts > 0
    sums[full] *= (1.0 / counts[full].astype(np.float32))[:, None]
    return sums, counts.astype(np.float32)


_SPLIT_EPS = 1.0 / 1024


def _split_empty_clusters(centroids, hassign, n):
    """faiss's ``split_clusters`` (Clustering.cpp), in place: each empty cluster, in order, takes a
    copy of a cluster ``j`` drawn with probability ``(size_j - 1) / (n - k)`` by scanning
    ``j = 0, 1, ...`` (cyclically) with one uniform draw each from ``std::mt19937(1234)`` (reseeded
    at every call, as faiss does); the two centroids are pushed apart by +-1/1024 on alternate
    coordinates and share the size. Returns the number of splits.
    """
    empty = np.flatnonzero(hassign == 0)
    if empty.size == 0:
        return 0
    k = hassign.size
    draws = _Uniform32(1234)
    sign = np.where(np.arange(centroids.shape[1]) % 2 == 0, 1.0, -1.0)
    grow, shrink = 1.0 + _SPLIT_EPS * sign, 1.0 - _SPLIT_EPS * sign
    scale = np.float64(np.float32(n - k))
    for ci in empty:
        prob = ((hassign.astype(np.float64) - 1.0) / scale).astype(np.float32)
        cj = draws.first_below(prob)
        centroids[ci] = (centroids[cj].astype(np.float64) * grow).astype(np.float32)
        centroids[cj] = (centroids[cj].astype(np.float64) * shrink).astype(np.float32)
        hassign[ci] = np.float32(hassign[cj] / np.float32(2))
        hassign[cj] -= hassign[ci]
    return int(empty.size)


class _Uniform32(object):
    """faiss's ``RandomGenerator(seed).rand_float()`` stream: ``std::mt19937(seed)`` outputs over
    ``float(2^32 - 1)``, in float32 (numpy's legacy seeding of MT19937 is the same generator)."""

    def __init__(self, seed, chunk=1 << 16):
        self._rng = np.random.RandomState(seed)
        self._chunk = chunk
        self._buf = np.empty(0, np.float32)

    def _take(self, count):
        while self._buf.size < count:
            raw = self._rng.randint(0, 2 ** 32, size=self._chunk, dtype=np.uint32)
            self._buf = np.concatenate([self._buf, raw.astype(np.float32) / np.float32(2 ** 32 - 1)])
        return self._buf[:count]

    def first_below(self, prob):
        """Scan j = 0, 1, ... (mod k), one draw each, until draw < prob[j]; return that j."""
        k, t0 = prob.size, 0
        while True:
            r = self._take(t0 + self._chunk)[t0:]
            hit = r < prob[np.arange(t0, t0 + r.size) % k]
            if hit.any():
                t = t0 + int(np.argmax(hit))
                self._buf = self._buf[t + 1:]
                return t % k
            t0 += r.size


def _faiss_kmeans_assign(embeddings, num_clusters, seed=0, niter=20):
    """The same k-means run by faiss itself (``faiss.Kmeans``, exact index): the reference of
    :func:`kmeans_assign`, for tests and bench/bench_metrics.py."""
    x, num_clusters, seed, niter = _check_kmeans_args(embeddings, num_clusters, seed, niter)
    n = x.shape[0]
    if num_clusters == 1:
        return np.zeros(n, np.int64)
    kmeans = faiss.Kmeans(
        x.shape[1], num_clusters, niter=niter, seed=seed, verbose=False,
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


def nmi_score(labels_true, labels_pred):
    """Normalized mutual information of two labellings of the same items (1-D integer arrays):
    ``I(U; V) / ((H(U) + H(V)) / 2)``, natural logarithms, the arithmetic normalisation of
    ``sklearn.metrics.normalized_mutual_info_score`` (its default) with its limit cases: 1.0
    when neither labelling splits the items (one label each, or no items), 0.0 when only one
    does. A float in [0, 1].

    The same number as scikit-learn's to about 1e-15 (tests/metrics/test_clustering.py), in
    numpy, with the joint counts of the label pairs that occur (no dense contingency table: SOP's
    11,316 x 11,316 would be 1 GB); a training run's evaluation then never imports scikit-learn
    (0.3 s of its start) and scores ten k-means runs in a fraction of the time."""
    u = np.unique(np.asarray(labels_true).ravel(), return_inverse=True)[1].ravel()
    v = np.unique(np.asarray(labels_pred).ravel(), return_inverse=True)[1].ravel()
    if u.size != v.size:
        raise ValueError("labels_true and labels_pred have %d and %d items; they must label the "
                         "same items." % (u.size, v.size))
    n = u.size
    ku = int(u.max()) + 1 if n else 0
    kv = int(v.max()) + 1 if n else 0
    if ku == kv and ku <= 1:                      # neither labelling splits the items
        return 1.0
    if ku == 1 or kv == 1:                        # one does: no information shared
        return 0.0
    pair, n_uv = np.unique(u.astype(np.int64) * kv + v, return_counts=True)
    n_u = np.bincount(u, minlength=ku).astype(np.float64)
    n_v = np.bincount(v, minlength=kv).astype(np.float64)
    n_uv = n_uv.astype(np.float64)
    log_n = math.log(n)
    # sum over the occurring pairs of p(u, v) log(p(u, v) / (p(u) p(v))), each term as
    # p (log n_uv - log n) + p (log n + log n - log(n_u n_v)); terms below float64's epsilon are 0
    p = n_uv / n
    outer = n_u[pair // kv] * n_v[pair % kv]
    terms = p * (np.log(n_uv) - log_n) + p * (-np.log(outer) + log_n + log_n)
    terms[np.abs(terms) < np.finfo(np.float64).eps] = 0.0
    mi = max(float(terms.sum()), 0.0)
    if mi == 0.0:
        return 0.0
    h_u, h_v = _entropy(n_u), _entropy(n_v)
    return float(mi / ((h_u + h_v) / 2.0))


def _entropy(counts):
    """Entropy (nats) of the distribution of these positive counts."""
    total = counts.sum()
    return float(-np.sum((counts / total) * (np.log(counts) - math.log(total))))


def nmi(embeddings, labels, num_clusters=None, seed=0, niter=20, runs=None):
    """Normalized mutual information between ``labels`` and a k-means clustering.

    k-means (:func:`kmeans_assign`: faiss's algorithm, exact, seeded, ``niter``
    iterations) uses k = number of distinct labels unless ``num_clusters`` is given; the
    score is :func:`nmi_score` (scikit-learn's ``normalized_mutual_info_score`` with its default,
    arithmetic, normalisation).  Returns a float in [0, 1].

    The result is the mean over ``runs`` k-means runs with seeds ``seed``, ``seed + 1``, ...
    (default :func:`default_nmi_runs`: 10 for all but the largest sets).  One run is one draw
    of the initial centroids, and on a retrieval test set (e.g. 59 Omniglot classes of 20
    images) the NMI of one draw varies by about 0.01 from draw to draw for the same
    embeddings; the mean is the same quantity, the expected NMI of this k-means, with a tenth
    of the variance.  ``runs=1`` gives the single run of other libraries' evaluations.
    """
    x = _as_embeddings(embeddings, "embeddings")
    y = _as_labels(labels, x.shape[0], "labels", "embeddings")
    if num_clusters is None:
        num_clusters = int(np.unique(y).size)
    if runs is None:
        runs = default_nmi_runs(x.shape[0], num_clusters)
    runs = _positive_int(runs, "runs")
    scores = [nmi_score(y, kmeans_assign(x, num_clusters, seed=seed + r, niter=niter))
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
    if runs == 0:                        # NMI left out (--eval-nmi-runs 0 between epochs)
        out["num_nmi_runs"] = 0
        return out
    out["nmi"] = nmi(x_all, y_all, num_clusters=num_clusters, seed=nmi_seed, niter=nmi_niter,
                     runs=runs)
    out["num_nmi_runs"] = int(runs)
    return out
