"""Independent numpy implementations of the losses' equations, written from the papers, for tests.

Deliberately plain: explicit loops over anchors, the weights in the linear domain as the paper
writes them, float64 throughout.
"""
import numpy as np


def distances(emb, squared=False):
    """Pairwise Euclidean (or squared) distances, loop by loop; the 1e-8 matches the losses' eps."""
    emb = np.asarray(emb, np.float64)
    B = len(emb)
    d = np.zeros((B, B))
    for i in range(B):
        for j in range(B):
            d2 = float(np.sum((emb[i] - emb[j]) ** 2))
            d[i, j] = d2 if squared else np.sqrt(d2 + 1e-8)
    return d


def numeric_grad(f, x, eps=1e-3):
    """Central differences of the scalar function ``f`` at ``x`` (float64 perturbations)."""
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        g[idx] = (f(xp) - f(xm)) / (2 * eps)
    return g


def margin_sampling_weights(emb, labels, cutoff=0.5, nonzero_loss_cutoff=1.4):
    """Wu et al. 2017, eq. 3: the normalised probability of drawing each negative for each anchor.

    q(d) = d^(n-2) (1 - d^2/4)^((n-3)/2); weight = q(max(d, cutoff))^-1 over the different-label
    items closer than ``nonzero_loss_cutoff``; uniform over the different-label items when none is
    that close; an all-zero row when the anchor has no different-label item.
    """
    emb = np.asarray(emb, np.float64)
    n = emb.shape[1]
    B = len(labels)
    d = np.sqrt(((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1) + 1e-8)
    P = np.zeros((B, B))
    for i in range(B):
        neg = np.array([labels[j] != labels[i] for j in range(B)])
        if not neg.any():
            continue
        dc = np.maximum(d[i], cutoff)
        q = dc ** (n - 2) * np.maximum(1 - dc ** 2 / 4, 1e-8) ** ((n - 3) / 2)
        w = np.where(neg & (d[i] < nonzero_loss_cutoff), 1.0 / q, 0.0)
        if w.sum() == 0:
            w = neg.astype(float)
        P[i] = w / w.sum()
    return P, d


def margin_loss(emb, labels, neg_choice, beta, margin=0.2, nu=0.0, beta_per_class=False):
    """Wu et al. 2017, eq. 4-5, given the sampled negatives ``neg_choice`` (B, S).

    loss = [sum_{i, j positive} (alpha + D_ij - beta_i)_+ + sum_{i, s} (alpha - (D_i,neg(i,s) - beta_i))_+
            + nu * sum_{i, j positive} beta_i] / (number of non-zero terms)
    """
    emb = np.asarray(emb, np.float64)
    B = len(labels)
    d = np.sqrt(((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1) + 1e-8)
    beta = np.asarray(beta, np.float64)
    total, active = 0.0, 0
    for i in range(B):
        b = beta[labels[i]] if beta_per_class else beta[0]
        for j in range(B):
            if j != i and labels[j] == labels[i]:
                t = max(0.0, margin + d[i, j] - b)
                total += t + nu * b
                active += t > 0
        if any(labels[j] != labels[i] for j in range(B)):
            for k in neg_choice[i]:
                assert labels[k] != labels[i]
                t = max(0.0, margin - (d[i, k] - b))
                total += t
                active += t > 0
    return total / max(active, 1)


def gumbel_choice(P, u):
    """The Gumbel-max draw the loss makes from probabilities P (B, B) with uniforms u (B, S, B)."""
    with np.errstate(divide='ignore'):
        logits = np.where(P > 0, np.log(np.where(P > 0, P, 1)), -1e30)
    return np.argmax(logits[:, None, :] - np.log(-np.log(u)), axis=2)
