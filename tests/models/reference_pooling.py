"""Independent numpy implementations of the pooling heads, written from the papers, for tests.

Plain loops over channels, positions, regions and clusters; float64 throughout.
"""
from fractions import Fraction

import numpy as np

from ..losses.reference import numeric_grad  # noqa: F401  (the one finite-difference helper)


def _unit(v):
    return v / np.sqrt(np.sum(v * v) + 1e-12)


def avg_pool(x):
    x = np.asarray(x, np.float64)
    N, C = x.shape[:2]
    out = np.zeros((N, C))
    for n in range(N):
        for c in range(C):
            out[n, c] = x[n, c].sum() / x[n, c].size
    return out


def gem_pool(x, p=3.0, eps=1e-6):
    """Radenovic et al. 2018, eq. 2: (mean over positions of max(x, eps)^p)^(1/p), per channel."""
    x = np.asarray(x, np.float64)
    N, C = x.shape[:2]
    out = np.zeros((N, C))
    for n in range(N):
        for c in range(C):
            vals = [max(v, eps) ** p for v in x[n, c].ravel()]
            out[n, c] = (sum(vals) / len(vals)) ** (1.0 / p)
    return out


def rmac_grid(H, W, L=3):
    """Tolias et al. 2016, Sec. 3, written out: a list of (top, left, side) square regions.

    Largest scale: side = min(H, W); the number of regions m along the longer side D is the one of
    2..7 whose consecutive-region overlap (side - step) / side, step = (D - side) / (m - 1), is the
    closest to 0.4 (m = 1 for a square map). Scale l: side floor(2 min(H, W) / (l + 1)); l regions
    along the shorter side and l + m - 1 along the longer one, evenly spread from edge to edge.
    """
    short, longer = min(H, W), max(H, W)
    if short == longer:
        m = 1
    else:
        best = None
        for cand in range(2, 8):       # exact arithmetic; a tie keeps the smaller m
            step = Fraction(longer - short, cand - 1)
            err = abs((short - step) / short - Fraction(2, 5))
            if best is None or err < best[0]:
                best = (err, cand)
        m = best[1]
    regions = []
    for l in range(1, L + 1):
        side = max(int(np.floor(2.0 * short / (l + 1))), 1)
        n_short, n_long = l, l + m - 1

        def starts(length, count):
            if count == 1:
                return [0]
            return [int(np.floor(j * (length - side) / (count - 1) + 1e-9)) for j in range(count)]
        if H <= W:
            tops, lefts = starts(H, n_short), starts(W, n_long)
        else:
            tops, lefts = starts(H, n_long), starts(W, n_short)
        for t in tops:
            for le in lefts:
                regions.append((t, le, side))
    return regions


def rmac_pool(x, L=3, whiten=None):
    """Max-pool each region, L2-normalise, (whiten: ``(mean, P)`` -> L2n(P (v - mean))), sum,
    L2-normalise."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    grid = rmac_grid(H, W, L)
    out = []
    for n in range(N):
        total = 0.0
        for (t, le, s) in grid:
            v = np.array([x[n, c, t:t + s, le:le + s].max() for c in range(C)])
            v = _unit(v)
            if whiten is not None:
                mean, P = whiten
                v = _unit(np.asarray(P, np.float64).dot(v - mean))
            total = total + v
        out.append(_unit(total))
    return np.array(out)


def netvlad_pool(x, weight, bias, centers, normalize_input=True, proj=None):
    """Arandjelovic et al. 2016, Sec. 3.1: soft-assign each descriptor with softmax_k(w_k.x + b_k),
    V(k, :) = sum_i a_k(x_i) (x_i - c_k), intra-normalise each V(k, :), flatten, L2-normalise;
    ``proj`` = (W, b): then L2n(W v + b)."""
    x = np.asarray(x, np.float64)
    N, C, H, W = x.shape
    K = len(centers)
    out = []
    for n in range(N):
        V = np.zeros((K, C))
        for i in range(H):
            for j in range(W):
                d = x[n, :, i, j]
                if normalize_input:
                    d = _unit(d)
                logits = np.array([np.dot(weight[k], d) + bias[k] for k in range(K)])
                a = np.exp(logits - logits.max())
                a /= a.sum()
                for k in range(K):
                    V[k] += a[k] * (d - centers[k])
        V = np.array([_unit(V[k]) for k in range(K)])
        v = _unit(V.ravel())
        if proj is not None:
            v = _unit(np.asarray(proj[0], np.float64).dot(v) + proj[1])
        out.append(v)
    return np.array(out)
