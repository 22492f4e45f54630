"""Lifted structured loss and its generalised (per-anchor) form.

Song, Xiang, Jegelka, Savarese, "Deep Metric Learning via Lifted Structured Feature Embedding",
CVPR 2016; generalised form as in Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for
Person Re-Identification", arXiv 2017.
"""
from mxnet import gluon

from .base import label_masks, masked_logsumexp, pairwise_distance, safe_divide
from .options import Option

__all__ = ['LiftedStructureLoss']

_VARIANTS = ('smooth', 'modified')


class LiftedStructureLoss(gluon.HybridBlock):
    r"""Lifted structured loss (Song et al. 2016, eq. 4) or its generalised per-anchor form.

    ``D`` is the Euclidean distance matrix of the batch, ``P`` the positive pairs (same label),
    ``N(i)`` the items whose label differs from ``i``'s.

    ``variant='smooth'`` (default), the paper's smooth upper bound, eq. 4:

    .. math::
        J_{ij} = \log\Big(\sum_{k\in N(i)} e^{m - D_{ik}} + \sum_{l\in N(j)} e^{m - D_{jl}}\Big) + D_{ij},
        \qquad J = \frac{1}{2|P|}\sum_{\{i,j\}\in P} \big(J_{ij}\big)_+^2

    with ``P`` the unordered pairs, as in the paper (its gradient, eq. 5, is ``J_ij / |P|``);
    equivalently one half of the mean of ``(J_ij)_+^2`` over the ordered positive pairs. Margin
    ``m`` (alpha in the paper) default 1.0, the paper's value.

    ``variant='modified'``, the generalised lifted embedding loss of Hermans et al. 2017 (their
    ``L_LG``), one term per anchor, here with separate margins for positives and negatives:

    .. math::
        \ell_i = \Big(\log\sum_{j\in P(i)} e^{D_{ij} - m_p} + \log\sum_{k\in N(i)} e^{m_n - D_{ik}}\Big)_+

    averaged (Hermans et al. sum) over the anchors that have at least one positive and one
    negative, 0 if none; defaults ``pos_margin`` (m_p) 0 and ``neg_margin`` (m_n) 1, which is
    Hermans et al.'s ``L_LG`` with margin 1.
    ``margin`` is unused by this variant, ``pos_margin`` / ``neg_margin`` by the smooth one.

    Empty sets: a pair whose anchors have no negative (a one-class batch) and an anchor with no
    positive contribute 0; the loss is then 0, never NaN.

    ``normalize_embeddings`` is False: the paper applies the loss to the unnormalised embedding
    layer output (the margin 1 then sets the scale of the space).

    Inputs: ``embeddings`` (B, D), ``labels`` (B,). Output: scalar loss, shape (1,).
    """

    # what a batch must hold for this loss (checked against --batch-size / --batch-k):
    # positives (two images of a class) and negatives (another class)
    needs_positives_in_batch = True
    min_classes_in_batch = 2
    normalize_embeddings = False

    options = {
        'margin': Option(float, "alpha, the negatives' margin (smooth variant)"),
        'variant': Option(('smooth', 'modified'), "smooth (the paper's eq. 4) or modified (generalised lifted structure: separate margins)"),
        'pos_margin': Option(float, "modified variant: the positives' margin"),
        'neg_margin': Option(float, "modified variant: the negatives' margin"),
    }

    def __init__(self, margin=1.0, variant='smooth', pos_margin=0.0, neg_margin=1.0, **kwargs):
        super().__init__(**kwargs)
        if variant not in _VARIANTS:
            raise ValueError('variant must be one of %s, got %r.' % (', '.join(_VARIANTS), variant))
        if margin < 0:
            raise ValueError('margin must be non-negative, got %g.' % margin)
        self._margin = float(margin)
        self._variant = variant
        self._pos_margin = float(pos_margin)
        self._neg_margin = float(neg_margin)

    def hybrid_forward(self, F, embeddings, labels):
        dist = pairwise_distance(F, embeddings)                                 # (B, B)
        same, diff = label_masks(F, labels, dist)
        has_neg = F.sum(diff, axis=1, keepdims=True) > 0                        # (B, 1)
        if self._variant == 'modified':
            has_pos = F.sum(same, axis=1, keepdims=True) > 0
            lse_pos = masked_logsumexp(F, dist - self._pos_margin, same)        # (B, 1)
            lse_neg = masked_logsumexp(F, self._neg_margin - dist, diff)
            valid = has_pos * has_neg
            return safe_divide(F, F.sum(valid * F.relu(lse_pos + lse_neg)), F.sum(valid))

        # log sum_{k in N(i)} exp(m - D_ik), one value per row; J_ij adds the rows i and j in the
        # linear domain: log(exp(L_i) + exp(L_j)), computed with a (constant) shift.
        lse = masked_logsumexp(F, self._margin - dist, diff)                    # (B, 1)
        lse_t = F.transpose(lse)                                                # (1, B)
        shift = F.BlockGrad(F.broadcast_maximum(lse, lse_t))                    # (B, B)
        both = shift + F.log(F.exp(F.broadcast_sub(lse, shift)) + F.exp(F.broadcast_sub(lse_t, shift)))
        pairs = F.broadcast_mul(same, has_neg)         # a pair's anchors have negatives or neither has
        j = F.relu(both + dist) * pairs
        return 0.5 * safe_divide(F, F.sum(F.square(j)), F.sum(same))
