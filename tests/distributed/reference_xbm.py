"""Plain numpy, loop-by-loop references of the memory terms (a batch anchor, a memory item)."""
import numpy as np


def _dist(x, m):
    return np.sqrt(((x[:, None, :] - m[None, :, :]) ** 2).sum(-1) + 1e-8)


def _unit(a):
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _lse1(values):
    """log(1 + sum exp(v)) of a list (0 for an empty one)."""
    return float(np.log1p(np.sum(np.exp(np.asarray(values, np.float64))))) if len(values) else 0.0


def contrastive(x, y, m, my, pos_margin=0.0, neg_margin=0.5):
    d = _dist(x, m)
    total, count = 0.0, 0
    for i in range(len(x)):
        for j in range(len(m)):
            t = max(d[i, j] - pos_margin, 0) if y[i] == my[j] else max(neg_margin - d[i, j], 0)
            total += t
            count += t > 0
    return total / max(count, 1)


def multi_similarity(x, y, m, my, alpha=2.0, beta=50.0, lam=0.5, eps=0.1):
    s = _unit(x) @ _unit(m).T
    out = []
    for i in range(len(x)):
        P = [j for j in range(len(m)) if my[j] == y[i]]
        N = [j for j in range(len(m)) if my[j] != y[i]]
        keep_n = [k for k in N if P and s[i, k] > min(s[i, j] for j in P) - eps]
        keep_p = [j for j in P if N and s[i, j] < max(s[i, k] for k in N) + eps]
        out.append(_lse1([-alpha * (s[i, j] - lam) for j in keep_p]) / alpha
                   + _lse1([beta * (s[i, k] - lam) for k in keep_n]) / beta)
    return float(np.mean(out))


def binomial(x, y, m, my, alpha=2.0, beta=0.5, neg_cost=25.0):
    s = _unit(x) @ _unit(m).T
    pos, neg = [], []
    for i in range(len(x)):
        for j in range(len(m)):
            if y[i] == my[j]:
                pos.append(np.log1p(np.exp(-alpha * (s[i, j] - beta))))
            else:
                neg.append(np.log1p(np.exp(alpha * neg_cost * (s[i, j] - beta))))
    return (np.mean(pos) if pos else 0.0) + (np.mean(neg) if neg else 0.0)


def triplet_batch_hard(x, y, m, my, margin=0.1):
    d = _dist(x, m)
    terms = []
    for i in range(len(x)):
        P = [d[i, j] for j in range(len(m)) if my[j] == y[i]]
        N = [d[i, j] for j in range(len(m)) if my[j] != y[i]]
        if P and N:
            terms.append(max(max(P) - min(N) + margin, 0))
    return float(np.mean(terms)) if terms else 0.0


def lifted_modified(x, y, m, my, pos_margin=0.0, neg_margin=1.0):
    d = _dist(x, m)
    terms = []
    for i in range(len(x)):
        P = [d[i, j] - pos_margin for j in range(len(m)) if my[j] == y[i]]
        N = [neg_margin - d[i, j] for j in range(len(m)) if my[j] != y[i]]
        if P and N:
            terms.append(max(np.log(np.sum(np.exp(P))) + np.log(np.sum(np.exp(N))), 0))
    return float(np.mean(terms)) if terms else 0.0


def lifted_smooth(x, y, m, my, margin=1.0):
    d = _dist(x, m)
    total, pairs = 0.0, 0
    for i in range(len(x)):
        for j in range(len(m)):
            if my[j] != y[i]:
                continue
            pairs += 1
            e = [np.exp(margin - d[i, k]) for k in range(len(m)) if my[k] != y[i]]
            e += [np.exp(margin - d[l, j]) for l in range(len(x)) if y[l] != my[j]]
            if not e:
                continue
            J = np.log(np.sum(e)) + d[i, j]
            total += max(J, 0) ** 2
    return 0.5 * total / max(pairs, 1)
