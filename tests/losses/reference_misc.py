"""Independent numpy implementations of the triplet-center, quadruplet and ranked list losses.

Written from the papers' equations: explicit loops over anchors, pairs and centres, float64.
"""
import numpy as np

from .reference import distances




def triplet_center_loss(emb, labels, centers, margin=0.5):
    """He et al. 2018, eq. 2-3: mean_i (D(f_i, c_{y_i}) + m - min_{j != y_i} D(f_i, c_j))_+,
    D(f, c) = 1/2 ||f - c||^2."""
    emb = np.asarray(emb, np.float64)
    centers = np.asarray(centers, np.float64)
    total = 0.0
    for i in range(len(emb)):
        yi = int(labels[i])
        d_own = 0.5 * np.sum((emb[i] - centers[yi]) ** 2)
        d_other = min(0.5 * np.sum((emb[i] - centers[j]) ** 2)
                      for j in range(len(centers)) if j != yi)
        total += max(0.0, d_own + margin - d_other)
    return total / len(emb)


def quadruplet_loss(emb, labels, margin1=1.0, margin2=0.5, squared=True):
    """Chen et al. 2017, eq. 4 with batch-hard selection per anchor i:
    hardest positive D_ij, hardest negative D_ik, hardest pair D_lk with y_l != y_k, y_l != y_i,
    y_k != y_i; sum of (D_ij - D_ik + a1)_+ + (D_ij - D_lk + a2)_+ over the anchors with a positive
    and a negative, divided by their number (the second term 0 when no such pair exists)."""
    d = distances(emb, squared)
    B = len(labels)
    total, count = 0.0, 0
    for i in range(B):
        pos = [d[i, j] for j in range(B) if j != i and labels[j] == labels[i]]
        neg = [d[i, k] for k in range(B) if labels[k] != labels[i]]
        if not pos or not neg:
            continue
        count += 1
        d_ij, d_ik = max(pos), min(neg)
        total += max(0.0, d_ij - d_ik + margin1)
        pairs = [d[l, k] for l in range(B) for k in range(B)
                 if labels[l] != labels[k] and labels[l] != labels[i] and labels[k] != labels[i]]
        if pairs:
            total += max(0.0, d_ij - min(pairs) + margin2)
    return total / max(count, 1)


def ranked_list_loss(emb, labels, margin=0.4, alpha=1.2, t_neg=10.0, t_pos=0.0, lam=1.0,
                     frozen=None):
    """Wang et al. 2019, eq. 3-8, mean over all queries.

    P*_i = {j != i, same label, d_ij > alpha - m}: L_P = sum w+ (d_ij - (alpha - m)) / sum w+,
    w+ = exp(t_pos (d_ij - (alpha - m))) (t_pos = 0: plain mean, eq. 5).
    N*_i = {other label, d_ij < alpha}: L_N = sum w (alpha - d_ij) / sum w, w = exp(t_neg (alpha - d_ij)).
    L = mean_i (L_P + lam L_N).

    ``frozen``: embeddings at which the sets and the weights are evaluated (held constant); the
    hinges use ``emb``. Finite differences of this function give the gradient with constant weights.
    """
    d = distances(emb, squared=False)
    d0 = d if frozen is None else distances(frozen, squared=False)
    B = len(labels)
    inner = alpha - margin
    total = 0.0
    for i in range(B):
        num = den = 0.0
        for j in range(B):
            if j != i and labels[j] == labels[i] and d0[i, j] > inner:
                w = np.exp(t_pos * (d0[i, j] - inner))
                num += w * (d[i, j] - inner)
                den += w
        loss_p = num / den if den else 0.0
        num = den = 0.0
        for j in range(B):
            if labels[j] != labels[i] and d0[i, j] < alpha:
                w = np.exp(t_neg * (alpha - d0[i, j]))
                num += w * (alpha - d[i, j])
                den += w
        loss_n = num / den if den else 0.0
        total += loss_p + lam * loss_n
    return total / B
