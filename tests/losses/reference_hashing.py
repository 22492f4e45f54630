"""Numpy implementations of the hashing losses, pair by pair, float64, written from the papers."""
import numpy as np


def _similar(labels, i, j):
    """Label sets intersect (class indices: equal)."""
    li, lj = np.asarray(labels[i]), np.asarray(labels[j])
    if li.ndim == 0:
        return float(li == lj)
    return float(np.dot(li, lj) > 0)


def _pairs(labels):
    B = len(labels)
    return [(i, j, _similar(labels, i, j)) for i in range(B) for j in range(B) if i != j]


def _weighted(terms):
    """HashNet eq. 3 with c_ij = 1: sum w_ij l_ij / |S|, w = |S|/|S1| or |S|/|S0|."""
    S = len(terms)
    S1 = sum(1 for s, _ in terms if s == 1)
    S0 = S - S1
    total = 0.0
    for s, l in terms:
        w = S / S1 if s == 1 else S / S0
        total += w * l
    return total / S


def hashnet_loss(h, labels, alpha_bits=10.0):
    """Cao et al. 2017, eq. 4: w_ij (log(1 + exp(alpha <h_i, h_j>)) - alpha s_ij <h_i, h_j>)."""
    h = np.asarray(h, np.float64)
    alpha = alpha_bits / h.shape[1]
    terms = []
    for i, j, s in _pairs(labels):
        x = alpha * float(h[i] @ h[j])
        terms.append((s, np.logaddexp(0.0, x) - s * x))
    return _weighted(terms)


def dsh_loss(h, labels, margin_scale=2.0, alpha=0.01):
    """Liu et al. 2016, eq. 5 averaged over the ordered pairs (s = 1: similar)."""
    h = np.asarray(h, np.float64)
    m = margin_scale * h.shape[1]
    vals = []
    for i, j, s in _pairs(labels):
        d2 = float(np.sum((h[i] - h[j]) ** 2))
        reg = np.abs(np.abs(h[i]) - 1).sum() + np.abs(np.abs(h[j]) - 1).sum()
        vals.append(0.5 * s * d2 + 0.5 * (1 - s) * max(m - d2, 0.0) + alpha * reg)
    return float(np.mean(vals))


def dch_loss(h, labels, gamma=20.0, lam=0.1):
    """Cao et al. 2018, eq. 8 (as the paper writes it) + eq. 9."""
    h = np.asarray(h, np.float64)
    K = h.shape[1]

    def d(a, b):
        return K / 2.0 * (1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    terms = []
    for i, j, s in _pairs(labels):
        dij = max(d(h[i], h[j]), 1e-6)
        terms.append((s, s * np.log(dij / gamma) + np.log(1 + gamma / dij)))
    quant = np.mean([np.log(1 + d(np.abs(v), np.ones(K)) / gamma) for v in h])
    return _weighted(terms) + lam * quant
