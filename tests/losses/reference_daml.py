"""Independent numpy implementation of DAML's objectives (Duan et al., CVPR 2018), for tests.

Loops over anchors and negatives, float64; the generator is a plain numpy MLP given its weights.
Triplets: each anchor with a positive (index ``pos[a]``) and every negative of the batch.
"""
import math

import numpy as np


def mlp(weights, x, normalize):
    """The generator: ReLU layers then a linear one; ``weights`` = [(W, b), ...] with W (out, in)."""
    h = np.asarray(x, np.float64)
    for i, (W, b) in enumerate(weights):
        h = np.asarray(W, np.float64).dot(h) + b
        if i < len(weights) - 1:
            h = np.maximum(h, 0)
    if normalize:
        h = h / math.sqrt(float(np.sum(h * h)) + 1e-12)
    return h


def _sq(u, v):
    return float(np.sum((np.asarray(u, np.float64) - v) ** 2))


def triplets(labels, pos):
    """(a, p, n) for every anchor that has a positive (``pos[a]``) and every negative n."""
    B = len(labels)
    out = []
    for a in range(B):
        if not any(labels[j] == labels[a] and j != a for j in range(B)):
            continue
        assert pos[a] != a and labels[pos[a]] == labels[a]
        for n in range(B):
            if labels[n] != labels[a]:
                out.append((a, pos[a], n))
    return out


def synthetic(emb, labels, pos, weights, normalize):
    """{(a, n): G(x_a, x_p, x_n)} for the mined triplets."""
    emb = np.asarray(emb, np.float64)
    return {(a, n): mlp(weights, np.concatenate([emb[a], emb[p], emb[n]]), normalize)
            for a, p, n in triplets(labels, pos)}


def generator_terms(emb, labels, pos, syn, lambda_reg=1.0, lambda_adv=50.0, margin=1.0):
    """(J_gen, J_hard, J_reg, J_adv): means over the triplets of
    ||x~ - x_a||^2, ||x~ - x_n||^2 and [||x~ - x_a||^2 - ||x_p - x_a||^2 - margin]_+."""
    emb = np.asarray(emb, np.float64)
    trip = triplets(labels, pos)
    if not trip:
        return 0.0, 0.0, 0.0, 0.0
    hard = [_sq(syn[a, n], emb[a]) for a, p, n in trip]
    reg = [_sq(syn[a, n], emb[n]) for a, p, n in trip]
    adv = [max(0.0, _sq(syn[a, n], emb[a]) - _sq(emb[p], emb[a]) - margin) for a, p, n in trip]
    h, r, v = np.mean(hard), np.mean(reg), np.mean(adv)
    return h + lambda_reg * r + lambda_adv * v, h, r, v


def triplet_metric(emb, labels, pos, syn, margin=1.0):
    """DAML (triplet) J_m: mean over the triplets of [||x_p - x_a||^2 - ||x~ - x_a||^2 + margin]_+."""
    emb = np.asarray(emb, np.float64)
    trip = triplets(labels, pos)
    if not trip:
        return 0.0
    return float(np.mean([max(0.0, _sq(emb[p], emb[a]) - _sq(syn[a, n], emb[a]) + margin)
                          for a, p, n in trip]))


def npair_metric(emb, labels, pos, syn, l2_reg=0.002):
    """DAML (N-pair) J_m: mean over anchors with a positive of
    log(1 + sum_n exp(x_a . x~_an - x_a . x_p)), plus l2_reg * mean ||x_b||^2."""
    emb = np.asarray(emb, np.float64)
    B = len(labels)
    terms = []
    for a in range(B):
        if not any(labels[j] == labels[a] and j != a for j in range(B)):
            continue
        s_ap = float(emb[a].dot(emb[pos[a]]))
        negs = [n for n in range(B) if labels[n] != labels[a]]
        terms.append(math.log1p(sum(math.exp(float(emb[a].dot(syn[a, n])) - s_ap) for n in negs)))
    loss = float(np.mean(terms)) if terms else 0.0
    return loss + l2_reg * float(np.mean(np.sum(emb ** 2, axis=1)))


def real_negatives(emb, labels, pos):
    """{(a, n): x_n}: the real negatives in place of the synthetic ones (J_m of the warm-up)."""
    emb = np.asarray(emb, np.float64)
    return {(a, n): emb[n].copy() for a, p, n in triplets(labels, pos)}


def mixed_metric(metric, emb, labels, pos, syn, w, **kw):
    """(1 - w) J_m(real negatives) + w J_m(synthetic): the schedule's metric loss. ``metric`` is
    :func:`triplet_metric` or :func:`npair_metric` (whose L2 penalty is counted once)."""
    real = metric(emb, labels, pos, real_negatives(emb, labels, pos), **kw)
    fake = metric(emb, labels, pos, syn, **kw)
    if metric is npair_metric:
        l2 = kw.get('l2_reg', 0.002) * float(np.mean(np.sum(np.asarray(emb, np.float64) ** 2, 1)))
        return (1 - w) * (real - l2) + w * (fake - l2) + l2
    return (1 - w) * real + w * fake


def straight_through(emb, syn):
    """J_m's view of the synthetic negatives with ``synthetic_grad='negative'``: as a function of
    the embeddings ``v``, x~_an = v_n + (x~_an - x_n), the offset held fixed (a callable v -> syn)."""
    emb = np.asarray(emb, np.float64)
    offset = {(a, n): s - emb[n] for (a, n), s in syn.items()}
    return lambda v: {(a, n): np.asarray(v, np.float64)[n] + d for (a, n), d in offset.items()}
