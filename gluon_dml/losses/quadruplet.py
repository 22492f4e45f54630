"""Quadruplet loss with batch-hard selection.

Chen, Chen, Zhang, Huang, "Beyond triplet loss: a deep quadruplet network for person
re-identification", CVPR 2017.
"""
from mxnet import gluon

from .base import batch_distance, label_masks, safe_divide
from .options import Option

__all__ = ['QuadrupletLoss']

_FAR = 1e6          # fill for masked-out entries in a masked min; far beyond any distance


class QuadrupletLoss(gluon.HybridBlock):
    r"""Quadruplet loss (Chen et al. 2017, eq. 4), one batch-hard quadruplet per anchor.

    Eq. 4 sums over all triplets ``(i, j, k)`` and quadruplets ``(i, j, l, k)`` with
    ``y_j = y_i``, ``y_k != y_i``, ``y_l != y_i``, ``y_l != y_k``:

    .. math::
        \sum (D_{ij} - D_{ik} + \alpha_1)_+ + \sum (D_{ij} - D_{lk} + \alpha_2)_+

    The first term is the triplet loss; the second asks the anchor's positive pair to be closer
    than *any* negative pair of two other classes (the pair need not share a sample with ``i``).
    Instead of the paper's sum (a (B, B, B, B) tensor) this takes, per anchor ``i``, the hardest
    of each (batch-hard selection):

    - ``D_ij*`` = max over the positives ``j`` (same label, ``j != i``);
    - ``D_ik*`` = min over the negatives ``k``;
    - ``D_lk*`` = min over the pairs ``(l, k)`` with ``y_l != y_k`` and neither of class ``y_i``,

    term ``(D_ij* - D_ik* + alpha1)_+ + (D_ij* - D_lk* + alpha2)_+``. The loss is the sum of the terms
    divided by the number of anchors that have a positive and a negative (0 when none has). An
    anchor whose batch holds fewer than three classes has no pair ``(l, k)``: its second term is 0.
    (This replaces the paper's margin-based online hard negative mining of Sec. 3.3 and its adaptive
    margin; the margins here are fixed.)

    ``D_lk*`` costs O(B^2): for every ``l`` the nearest negative ``k1(l)`` and the nearest negative
    outside the class of ``k1(l)``; for an anchor of class ``c`` the best partner of ``l`` is the
    first unless its class is ``c``, else the second.

    Distances: squared Euclidean by default (``squared=True``), as the paper's ``g(x_i, x_j)^2``;
    ``squared=False`` uses the Euclidean distance. Defaults ``margin1`` (alpha1) 1.0 and ``margin2``
    (alpha2) 0.5, the paper's values, kept as they are: on L2-normalised embeddings the squared
    distance is ``2 - 2 cos`` in [0, 4], so they ask for cosine gaps of 0.5 (anchor-positive over
    anchor-negative) and 0.25 (over other negative pairs), attainable without rescaling.

    Inputs: ``embeddings`` (B, D), L2-normalised; ``labels`` (B,). Output: scalar loss, shape (1,).
    """
    # what a batch must hold for this loss (checked against --batch-size / --batch-k):
    # positives (two images of a class) and negatives (another class)
    needs_positives_in_batch = True
    min_classes_in_batch = 2
    normalize_embeddings = True

    options = {
        'margin1': Option(float, "alpha1, the triplet term's margin"),
        'margin2': Option(float, "alpha2, the second (pair-pair) term's margin"),
        'squared': Option(bool, 'squared Euclidean distances'),
    }

    def __init__(self, margin1=1.0, margin2=0.5, squared=True, **kwargs):
        super().__init__(**kwargs)
        if margin1 < 0 or margin2 < 0:
            raise ValueError('margin1 and margin2 must be non-negative, got %g and %g.'
                             % (margin1, margin2))
        self._margin1 = float(margin1)
        self._margin2 = float(margin2)
        self._squared = bool(squared)

    def hybrid_forward(self, F, embeddings, labels):
        dist = batch_distance(F, embeddings, self._squared)                          # (B, B)
        same, diff = label_masks(F, labels, dist)
        far = F.ones_like(dist) * _FAR
        labels = F.reshape(labels, (-1,)).astype('float32')

        # Hardest positive and hardest negative of each sample (gradient to the one picked).
        d_pos = F.pick(dist, F.argmax(F.where(same > 0, dist, -F.ones_like(dist)), axis=1), axis=1)
        k1 = F.argmin(F.where(diff > 0, dist, far), axis=1)                  # (B,)
        d_neg = F.pick(dist, k1, axis=1)
        has_pos = F.sum(same, axis=1) > 0
        has_neg = F.sum(diff, axis=1) > 0

        # Nearest negative of l outside the class of k1(l).
        cls1 = F.BlockGrad(F.take(labels, k1))                               # (B,) class of k1(l)
        not_cls1 = 1 - F.broadcast_equal(F.reshape(cls1, (-1, 1)), F.reshape(labels, (1, -1)))
        masked2 = F.where(diff * not_cls1 > 0, dist, far)
        d_neg2 = F.pick(masked2, F.argmin(masked2, axis=1), axis=1)          # _FAR when none
        d_neg1 = F.where(has_neg, d_neg, F.ones_like(d_neg) * _FAR)

        # For anchor i and l of another class: l's best partner outside class y_i.
        anchor_is_cls1 = F.broadcast_equal(F.reshape(labels, (-1, 1)), F.reshape(cls1, (1, -1)))
        partner = F.where(anchor_is_cls1 > 0,
                          F.broadcast_like(F.reshape(d_neg2, (1, -1)), dist),
                          F.broadcast_like(F.reshape(d_neg1, (1, -1)), dist))   # (B_i, B_l)
        pairs = F.where(diff > 0, partner, far)
        d_pair = F.pick(pairs, F.argmin(pairs, axis=1), axis=1)              # (B,)
        has_pair = d_pair < 0.5 * _FAR

        valid = has_pos * has_neg
        zero = F.zeros_like(d_pos)
        term1 = F.where(valid, F.relu(d_pos - d_neg + self._margin1), zero)
        term2 = F.where(valid * has_pair, F.relu(d_pos - d_pair + self._margin2), zero)
        return safe_divide(F, F.sum(term1) + F.sum(term2), F.sum(valid))
