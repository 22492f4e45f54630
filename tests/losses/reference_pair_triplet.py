"""Independent numpy implementations of the contrastive and triplet losses, written from the papers.

Plain loops over pairs and triplets, float64. Distances carry the same 1e-8 inside the square root
as the library (it only matters for identical points); squared distances carry none.
"""
import numpy as np

from .reference import distances




def contrastive_terms(emb, labels, pos_margin=0.0, neg_margin=0.5, squared=False):
    """Hadsell et al. 2006: one term per ordered pair i != j, as a list of (term, is_positive)."""
    d = distances(emb)
    terms = []
    for i in range(len(labels)):
        for j in range(len(labels)):
            if i == j:
                continue
            if labels[i] == labels[j]:
                h = max(0.0, d[i, j] - pos_margin)
            else:
                h = max(0.0, neg_margin - d[i, j])
            terms.append((0.5 * h * h if squared else h, labels[i] == labels[j]))
    return terms


def contrastive_loss(emb, labels, pos_margin=0.0, neg_margin=0.5, squared=False, reduction='nonzero'):
    """Sum of the pair terms / (number of non-zero terms | number of pairs); 0 if that is 0."""
    terms = [t for t, _ in contrastive_terms(emb, labels, pos_margin, neg_margin, squared)]
    n = sum(t > 0 for t in terms) if reduction == 'nonzero' else len(terms)
    return sum(terms) / n if n else 0.0


def triplet_all_terms(emb, labels, margin=0.1, squared=False):
    """FaceNet: (D_ap - D_an + margin)_+ for every (a, p, n), p != a same label, n other label."""
    d = distances(emb, squared)
    B = len(labels)
    terms = []
    for a in range(B):
        for p in range(B):
            if p == a or labels[p] != labels[a]:
                continue
            for n in range(B):
                if labels[n] != labels[a]:
                    terms.append(max(0.0, d[a, p] - d[a, n] + margin))
    return terms


def triplet_loss(emb, labels, margin=0.1, mining='all', squared=False):
    d = distances(emb, squared)
    B = len(labels)
    if mining == 'all':
        terms = [t for t in triplet_all_terms(emb, labels, margin, squared) if t > 0]
        return sum(terms) / len(terms) if terms else 0.0
    if mining == 'semihard':
        # For each anchor-positive pair, the closest negative among D_ap < D_an < D_ap + margin;
        # pairs without one are dropped.
        terms = []
        for a in range(B):
            for p in range(B):
                if p == a or labels[p] != labels[a]:
                    continue
                semi = [d[a, n] for n in range(B)
                        if labels[n] != labels[a] and d[a, p] < d[a, n] < d[a, p] + margin]
                if semi:
                    terms.append(d[a, p] - min(semi) + margin)
        return sum(terms) / len(terms) if terms else 0.0
    # Hermans et al. 2017: batch hard, hinge or soft margin, mean over anchors with both sets.
    terms = []
    for a in range(B):
        pos = [d[a, p] for p in range(B) if p != a and labels[p] == labels[a]]
        neg = [d[a, n] for n in range(B) if labels[n] != labels[a]]
        if not pos or not neg:
            continue
        x = max(pos) - min(neg)
        terms.append(np.log1p(np.exp(x)) if mining == 'batch_hard_soft' else max(0.0, x + margin))
    return sum(terms) / len(terms) if terms else 0.0
