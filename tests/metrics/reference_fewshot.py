"""A slow, straightforward few-shot evaluation for tests: one episode, one query at a time.

Written from Snell et al. 2017 (prototypes = mean of the support embeddings, nearest prototype by
Euclidean distance) and the plain 1-nearest-neighbour rule, in float64 Python loops.
"""
import math

import numpy as np


def _dist(a, b, metric):
    a = [float(v) for v in a]
    b = [float(v) for v in b]
    if metric == 'euclidean':
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
    na = math.sqrt(sum(x * x for x in a)) or 1e-12
    nb = math.sqrt(sum(y * y for y in b)) or 1e-12
    return -sum(x * y for x, y in zip(a, b)) / (na * nb)


def episode_accuracy(emb, labels, support, query, method, metric):
    """``support`` (way, shot) and ``query`` (way, queries) row indices of one episode; row c is
    the c-th class. Returns the fraction of queries whose predicted label is their own label."""
    emb = np.asarray(emb, np.float64)
    way = len(support)
    refs = []                                   # (label, vector)
    for c in range(way):
        lab = labels[support[c][0]]
        assert all(labels[i] == lab for i in support[c])
        if method == 'prototype':
            refs.append((lab, sum(emb[i] for i in support[c]) / len(support[c])))
        else:
            refs.extend((lab, emb[i]) for i in support[c])
    correct = total = 0
    for c in range(way):
        for i in query[c]:
            best = min(range(len(refs)), key=lambda r: (_dist(emb[i], refs[r][1], metric), r))
            correct += refs[best][0] == labels[i]
            total += 1
    return correct / total


def few_shot(emb, labels, support, query, method='prototype', metric='euclidean'):
    accs = [episode_accuracy(emb, labels, s, q, method, metric) for s, q in zip(support, query)]
    mean = sum(accs) / len(accs)
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / len(accs))
    return mean, 1.96 * std / math.sqrt(len(accs)), accs
