"""Independent numpy implementations of Proxy-NCA, Proxy Anchor, multi-similarity, ArcFace and
CosFace, written from the papers' equations for the tests.

Deliberately plain: explicit loops over anchors / proxies / pairs, sums of exponentials as the papers
write them (no log-sum-exp tricks, so keep the scales moderate), float64 throughout.
"""
import math

import numpy as np


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def proxy_nca_loss(emb, labels, proxies, scale=3.0):
    """Movshovitz-Attias et al. 2017: mean_i -log(exp(-D(x_i, p_yi)^2) / sum_{z != yi} exp(-D(x_i, p_z)^2)),
    with x and p L2-normalised and multiplied by ``scale``."""
    total = 0.0
    for i, x in enumerate(emb):
        xs = scale * _unit(x)
        d2 = [float(np.sum((xs - scale * _unit(p)) ** 2)) for p in proxies]
        y = int(labels[i])
        num = math.exp(-d2[y])
        den = sum(math.exp(-d2[z]) for z in range(len(proxies)) if z != y)
        total += -math.log(num / den)
    return total / len(emb)


def proxy_anchor_loss(emb, labels, proxies, alpha=32.0, delta=0.1):
    """Kim et al. 2020, eq. 4, cosine similarity s(x, p)."""
    C = len(proxies)
    pos_sum, n_with_pos, neg_sum = 0.0, 0, 0.0
    for c in range(C):
        p = _unit(proxies[c])
        pos = [float(np.dot(_unit(x), p)) for i, x in enumerate(emb) if int(labels[i]) == c]
        neg = [float(np.dot(_unit(x), p)) for i, x in enumerate(emb) if int(labels[i]) != c]
        if pos:
            n_with_pos += 1
            pos_sum += math.log(1 + sum(math.exp(-alpha * (s - delta)) for s in pos))
        neg_sum += math.log(1 + sum(math.exp(alpha * (s + delta)) for s in neg))
    return pos_sum / n_with_pos + neg_sum / C


def multi_similarity_loss(emb, labels, alpha=2.0, beta=50.0, lam=0.5, epsilon=0.1, mining=True):
    """Wang et al. 2019: pair mining (eq. 5-6) then eq. 8, averaged over the m anchors."""
    m = len(emb)
    S = [[float(np.dot(_unit(emb[i]), _unit(emb[j]))) for j in range(m)] for i in range(m)]
    total = 0.0
    for i in range(m):
        positives = [j for j in range(m) if j != i and labels[j] == labels[i]]
        negatives = [k for k in range(m) if labels[k] != labels[i]]
        if mining:
            kept_neg = [k for k in negatives if positives and S[i][k] > min(S[i][j] for j in positives) - epsilon]
            kept_pos = [j for j in positives if negatives and S[i][j] < max(S[i][k] for k in negatives) + epsilon]
        else:
            kept_neg, kept_pos = negatives, positives
        total += 1.0 / alpha * math.log(1 + sum(math.exp(-alpha * (S[i][j] - lam)) for j in kept_pos))
        total += 1.0 / beta * math.log(1 + sum(math.exp(beta * (S[i][k] - lam)) for k in kept_neg))
    return total / m


def _margin_softmax(emb, labels, weight, scale, target):
    total = 0.0
    for i, x in enumerate(emb):
        y = int(labels[i])
        cos = [float(np.dot(_unit(x), _unit(w))) for w in weight]
        logits = [scale * (target(c) if z == y else c) for z, c in enumerate(cos)]
        total += -math.log(math.exp(logits[y]) / sum(math.exp(v) for v in logits))
    return total / len(emb)


def arcface_loss(emb, labels, weight, scale=64.0, margin=0.5, easy_margin=False):
    """Deng et al. 2019: target logit s cos(theta + m), theta = arccos(cos); where theta + m > pi
    the target is cos(theta) - m sin(m) (easy_margin: cos(theta) where cos(theta) <= 0)."""
    def target(c):
        theta = math.acos(max(-1.0, min(1.0, c)))
        if easy_margin:
            return math.cos(theta + margin) if c > 0 else c
        return math.cos(theta + margin) if theta + margin <= math.pi else c - margin * math.sin(margin)
    return _margin_softmax(emb, labels, weight, scale, target)


def cosface_loss(emb, labels, weight, scale=64.0, margin=0.35):
    """Wang et al. 2018: target logit s (cos(theta) - m)."""
    return _margin_softmax(emb, labels, weight, scale, lambda c: c - margin)
