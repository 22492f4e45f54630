"""Independent numpy implementation of the HDC cascade loss (Yuan et al., ICCV 2017), for tests.

Unordered pairs (i < j) in Python lists, float64. Level 1: every pair. Level k: of the previous
level's positive pairs, the ceil(keep * n) with the largest previous-level distance (n pairs);
of its negative pairs, those with the smallest; pairs tied with the last one kept are kept too.
Each level: Hadsell et al.'s contrastive loss averaged over its pairs (or over non-zero terms).
"""
import math

import numpy as np


def _dist(z):
    z = np.asarray(z, np.float64)
    B = len(z)
    return np.array([[math.sqrt(float(np.sum((z[i] - z[j]) ** 2)) + 1e-8) for j in range(B)]
                     for i in range(B)])


def _hardest(pairs, dist, frac, largest):
    if frac >= 1.0 or not pairs:
        return list(pairs)
    n_keep = max(int(math.ceil(len(pairs) * frac - 1e-3)), 1)
    ordered = sorted(pairs, key=lambda p: dist[p], reverse=largest)
    cut = dist[ordered[n_keep - 1]]
    return [p for p in pairs if (dist[p] >= cut if largest else dist[p] <= cut)]


def cascade_pairs(levels, labels, keep):
    """[(positives, negatives)] per level, each a list of (i, j), i < j."""
    B = len(labels)
    pos = [(i, j) for i in range(B) for j in range(i + 1, B) if labels[i] == labels[j]]
    neg = [(i, j) for i in range(B) for j in range(i + 1, B) if labels[i] != labels[j]]
    out = [(pos, neg)]
    for k in range(1, len(levels)):
        d = _dist(levels[k - 1])
        dd = {(i, j): d[i, j] for i in range(B) for j in range(B)}
        pos = _hardest(pos, dd, keep[k - 1], largest=True)
        neg = _hardest(neg, dd, keep[k - 1], largest=False)
        out.append((pos, neg))
    return out


def contrastive(z, pos, neg, pos_margin=0.0, neg_margin=0.5, squared=True, reduction='all'):
    d = _dist(z)
    terms = []
    for (i, j) in pos:
        h = max(0.0, d[i, j] - pos_margin)
        terms.append(0.5 * h * h if squared else h)
    for (i, j) in neg:
        h = max(0.0, neg_margin - d[i, j])
        terms.append(0.5 * h * h if squared else h)
    n = len(terms) if reduction == 'all' else sum(t > 0 for t in terms)
    return sum(terms) / n if n else 0.0


def hdc_loss(emb, labels, dims, keep=0.5, weights=None, **kw):
    """(total, [per-level losses]) of the cascade on the concatenated level embeddings ``emb``."""
    emb = np.asarray(emb, np.float64)
    levels, start = [], 0
    for d in dims:
        levels.append(emb[:, start:start + d])
        start += d
    keep = [keep] * (len(dims) - 1) if np.isscalar(keep) else list(keep)
    weights = weights or [1.0] * len(dims)
    per = [contrastive(z, p, n, **kw) for z, (p, n) in zip(levels, cascade_pairs(levels, labels, keep))]
    return sum(w * l for w, l in zip(weights, per)), per
