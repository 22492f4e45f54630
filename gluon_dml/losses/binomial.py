"""Binomial deviance loss, optionally with the multi-similarity paper's pair mining.

Yi, Lei, Liao, Li, "Deep Metric Learning for Person Re-Identification", ICPR 2014.
"""
from mxnet import gluon

from .base import label_masks, pairwise_similarity, safe_divide
from .npair import softplus
from .options import Option

__all__ = ['BinomialDevianceLoss']

_MINING = (None, 'none', 'epsilon')


class BinomialDevianceLoss(gluon.HybridBlock):
    r"""Binomial deviance loss (Yi et al. 2014) over all pairs of the batch.

    With cosine similarities ``S`` (computed on L2-normalised embeddings), ``M_ij = +1`` for a
    positive pair (same label) and ``-C`` for a negative pair:

    .. math::
        L = \sum_{i \ne j} W_{ij}\, \log\big(1 + e^{-\alpha (S_{ij} - \beta) M_{ij}}\big),\qquad
        W_{ij} = 1/n_{pos} \text{ (positive)},\ 1/n_{neg} \text{ (negative)}

    i.e. the mean over positive pairs plus the mean over negative pairs (an empty set gives 0).
    ``n_pos`` / ``n_neg`` count ordered pairs; the value equals the unordered-pair form since
    ``S`` is symmetric. Defaults ``alpha`` 2, ``beta`` 0.5, ``neg_cost`` (C) 25, the values used
    for Yi et al.'s loss by Ustinova & Lempitsky, "Learning Deep Embeddings with Histogram Loss",
    NeurIPS 2016.

    ``mining='epsilon'``: the pair mining of Wang, Han, Huang, Dong, Scott, "Multi-Similarity Loss
    with General Pair Weighting for Deep Metric Learning", CVPR 2019, eq. 5-6, applied here to the
    binomial deviance (Yi et al. use every pair). Per anchor ``i``, a negative ``k`` is kept when
    ``S_ik > min_{j positive} S_ij - epsilon`` and a positive ``j`` when
    ``S_ij < max_{k negative} S_ik + epsilon`` (``epsilon`` 0.1, the MS paper's value); an anchor with
    no positive keeps no negative and one with no negative keeps no positive. ``n_pos`` / ``n_neg``
    then count the kept pairs. The selection carries no gradient.

    Inputs: ``embeddings`` (B, D), ``labels`` (B,). Output: scalar loss, shape (1,).
    """

    # what a batch must hold for this loss (checked against --batch-size / --batch-k):
    # positives (two images of a class) and negatives (another class)
    needs_positives_in_batch = True
    min_classes_in_batch = 2
    normalize_embeddings = True

    options = {
        'alpha': Option(float, 'alpha, scale of the similarity inside the softplus'),
        'beta': Option(float, 'beta, the similarity boundary'),
        'neg_cost': Option(float, 'C, the weight of the negative pairs'),
        'mining': Option((None, 'epsilon'), 'pair mining: none, or epsilon (pairs harder than the hardest of the other kind, within --epsilon)'),
        'epsilon': Option(float, 'epsilon of --mining epsilon'),
    }

    def __init__(self, alpha=2.0, beta=0.5, neg_cost=25.0, mining=None, epsilon=0.1, **kwargs):
        super().__init__(**kwargs)
        if mining not in _MINING:
            raise ValueError("mining must be None or 'epsilon', got %r." % (mining,))
        if alpha <= 0 or neg_cost <= 0:
            raise ValueError('alpha and neg_cost must be positive, got %g and %g.' % (alpha, neg_cost))
        if epsilon < 0:
            raise ValueError('epsilon must be non-negative, got %g.' % epsilon)
        self._alpha = float(alpha)
        self._beta = float(beta)
        self._neg_cost = float(neg_cost)
        self._mining = mining == 'epsilon'
        self._epsilon = float(epsilon)

    def hybrid_forward(self, F, embeddings, labels):
        f = F.L2Normalization(embeddings, mode='instance')
        sim = pairwise_similarity(F, f)                                          # (B, B) cosine
        pos, neg = label_masks(F, labels, sim)
        return self.pair_loss(F, sim, pos, neg)

    def pair_loss(self, F, sim, pos, neg):
        """The loss over the similarities ``sim`` (A, C) of anchors and the items they are paired
        with, ``pos`` / ``neg`` masking the positive and negative pairs (the cross-batch memory
        calls it with the memory as the items)."""
        if self._mining:
            s = F.BlockGrad(sim)
            big = F.ones_like(s) * 1e30
            min_pos = F.min(F.where(pos > 0, s, big), axis=1, keepdims=True)      # +1e30 if none
            max_neg = F.max(F.where(neg > 0, s, -big), axis=1, keepdims=True)     # -1e30 if none
            neg = neg * F.broadcast_greater(s, min_pos - self._epsilon)
            pos = pos * F.broadcast_lesser(s, max_neg + self._epsilon)
        centred = sim - self._beta
        pos_terms = pos * softplus(F, -self._alpha * centred)
        neg_terms = neg * softplus(F, self._alpha * self._neg_cost * centred)
        return (safe_divide(F, F.sum(pos_terms), F.sum(pos))
                + safe_divide(F, F.sum(neg_terms), F.sum(neg)))
