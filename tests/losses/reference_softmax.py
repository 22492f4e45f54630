"""Independent numpy implementations of the softmax / log-sum-exp family, written from the papers.

Deliberately plain: explicit loops over anchors and pairs, sums of exponentials in the linear
domain as the papers write them, float64 throughout. Distances carry the same 1e-8 inside the
square root as the library (it changes nothing at the tested precision).
"""
import numpy as np


def _dist(emb):
    emb = np.asarray(emb, np.float64)
    return np.sqrt(((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1) + 1e-8)


def _l2n(emb):
    emb = np.asarray(emb, np.float64)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def lifted_loss(emb, labels, margin=1.0):
    """Song et al. 2016, eq. 4: 1/(2|P|) sum over unordered positive pairs {i, j} of
    max(0, log(sum_{k in N(i)} exp(m - D_ik) + sum_{l in N(j)} exp(m - D_jl)) + D_ij)^2."""
    d = _dist(emb)
    B = len(labels)
    total, n_pairs = 0.0, 0
    for i in range(B):
        for j in range(i + 1, B):
            if labels[i] != labels[j]:
                continue
            n_pairs += 1
            s = 0.0
            for k in range(B):
                if labels[k] != labels[i]:
                    s += np.exp(margin - d[i, k])
            for l in range(B):
                if labels[l] != labels[j]:
                    s += np.exp(margin - d[j, l])
            if s > 0:
                total += max(0.0, np.log(s) + d[i, j]) ** 2
    return total / (2 * n_pairs) if n_pairs else 0.0


def lifted_modified_loss(emb, labels, pos_margin=0.0, neg_margin=1.0):
    """Hermans et al. 2017's generalised lifted loss, mean over anchors with a positive and a negative:
    max(0, log sum_{j pos} exp(D_ij - m_p) + log sum_{k neg} exp(m_n - D_ik))."""
    d = _dist(emb)
    B = len(labels)
    terms = []
    for i in range(B):
        sp = sum(np.exp(d[i, j] - pos_margin) for j in range(B) if j != i and labels[j] == labels[i])
        sn = sum(np.exp(neg_margin - d[i, k]) for k in range(B) if labels[k] != labels[i])
        if sp > 0 and sn > 0:
            terms.append(max(0.0, np.log(sp) + np.log(sn)))
    return float(np.mean(terms)) if terms else 0.0


def npair_loss(emb, labels, l2_reg=0.002, normalize=False, pairs='all'):
    """Sohn 2016, eq. 3 plus l2_reg * mean ||f||^2.

    pairs='all': every ordered same-label pair (i, j), negatives every other-class item.
    pairs='paper': the first item of each class (batch order) is the anchor, the later ones its
    positives, the negatives the later (non-first) items of the other classes.
    """
    raw = np.asarray(emb, np.float64)
    f = _l2n(raw) if normalize else raw
    B = len(labels)
    first = [all(labels[j] != labels[i] for j in range(i)) for i in range(B)]
    terms = []
    for i in range(B):
        if pairs == 'paper' and not first[i]:
            continue
        for j in range(B):
            if j == i or labels[j] != labels[i]:
                continue
            s = 0.0
            for k in range(B):
                if labels[k] == labels[i] or (pairs == 'paper' and first[k]):
                    continue
                s += np.exp(f[i] @ f[k] - f[i] @ f[j])
            terms.append(np.log(1.0 + s))
    loss = float(np.mean(terms)) if terms else 0.0
    return loss + l2_reg * np.mean([raw[b] @ raw[b] for b in range(B)])


def binomial_loss(emb, labels, alpha=2.0, beta=0.5, neg_cost=25.0, mining=None, epsilon=0.1):
    """Yi et al. 2014: sum over pairs of W_ij log(1 + exp(-alpha (S_ij - beta) M_ij)), cosine S,
    M = 1 / -C, W = 1/n_pos / 1/n_neg; with mining='epsilon' the multi-similarity paper's selection
    (ordered pairs: the selection is per anchor)."""
    f = _l2n(emb)
    S = f @ f.T
    B = len(labels)
    pos_terms, neg_terms = [], []
    for i in range(B):
        pos_s = [S[i, j] for j in range(B) if j != i and labels[j] == labels[i]]
        neg_s = [S[i, k] for k in range(B) if labels[k] != labels[i]]
        for j in range(B):
            if j == i:
                continue
            if labels[j] == labels[i]:
                if mining == 'epsilon' and not (neg_s and S[i, j] < max(neg_s) + epsilon):
                    continue
                pos_terms.append(np.log(1 + np.exp(-alpha * (S[i, j] - beta))))
            else:
                if mining == 'epsilon' and not (pos_s and S[i, j] > min(pos_s) - epsilon):
                    continue
                neg_terms.append(np.log(1 + np.exp(-alpha * (S[i, j] - beta) * -neg_cost)))
    return sum(pos_terms) / max(len(pos_terms), 1) + sum(neg_terms) / max(len(neg_terms), 1)


def nca_loss(emb, labels, temperature=1.0):
    """Goldberger et al. 2005 in a batch: -mean over anchors with a positive of log sum_{j pos} p_ij,
    p_ij = exp(-D_ij^2 / T) / sum_{k != i} exp(-D_ik^2 / T)."""
    emb = np.asarray(emb, np.float64)
    B = len(labels)
    d2 = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    terms = []
    for i in range(B):
        if not any(j != i and labels[j] == labels[i] for j in range(B)):
            continue
        den = sum(np.exp(-d2[i, k] / temperature) for k in range(B) if k != i)
        num = sum(np.exp(-d2[i, j] / temperature) for j in range(B) if j != i and labels[j] == labels[i])
        terms.append(-np.log(num / den))
    return float(np.mean(terms)) if terms else 0.0
