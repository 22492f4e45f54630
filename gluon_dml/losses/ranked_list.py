"""Ranked list loss: positives inside a hypersphere, negatives pushed beyond a boundary, by a margin.

Wang, Hua, Kodirov, Hu, Garnier, Robertson, "Ranked List Loss for Deep Metric Learning", CVPR 2019.
"""
from mxnet import gluon

from .base import label_masks, pairwise_distance, safe_divide
from .options import Option

__all__ = ['RankedListLoss']

_NEG_INF = -1e30


def _weighted_mean(F, hinge, mask, temperature, detach):
    """Per row: ``sum_j w_j hinge_j / sum_j w_j`` over ``mask`` with ``w_j = exp(T hinge_j)``.

    Computed as a masked softmax shifted by the row's largest logit, so ``sum w >= 1`` on a non-empty
    row, nothing overflows for large ``T``, and an empty row gives 0. ``detach`` holds the weights
    constant in the backward pass.
    """
    logits = F.where(mask > 0, temperature * hinge, F.ones_like(hinge) * _NEG_INF)
    if detach:
        logits = F.BlockGrad(logits)
    shift = F.BlockGrad(F.max(logits, axis=1, keepdims=True))
    w = mask * F.exp(F.broadcast_sub(logits, shift))
    return safe_divide(F, F.sum(w * hinge, axis=1), F.sum(w, axis=1))


class RankedListLoss(gluon.HybridBlock):
    r"""Ranked list loss (Wang et al. 2019, eq. 3-8); every sample of the batch is a query.

    With ``d_ij`` the Euclidean distance of L2-normalised embeddings, the pairwise constraint (eq. 3)
    ``L_m = (1 - y_ij)(alpha - d_ij)_+ + y_ij (d_ij - (alpha - m))_+`` pushes negatives beyond
    ``alpha`` and pulls positives inside ``alpha - m``. Only the non-trivial pairs count:

    - positives ``P*_i = {j != i, y_j = y_i, d_ij > alpha - m}`` (eq. 4), averaged with equal
      weights (eq. 5): ``L_P(i) = 1/|P*_i| sum_{P*_i} (d_ij - (alpha - m))``;
    - negatives ``N*_i = {y_j != y_i, d_ij < alpha}`` (eq. 6), weighted by
      ``w_ij = exp(T_n (alpha - d_ij))`` (eq. 7):
      ``L_N(i) = sum_{N*_i} w_ij (alpha - d_ij) / sum_{N*_i} w_ij``;
    - ``L(i) = L_P(i) + lambda L_N(i)`` (eq. 8); the batch loss is the mean of ``L(i)`` over all B
      queries. An empty set gives 0 for its term.

    ``temperature_pos`` (T_p) generalises the positive average to weights
    ``exp(T_p (d_ij - (alpha - m)))`` (the journal version); 0, the default, is eq. 5 exactly.
    ``detach_weights=True`` treats the weights as constants in the backward pass, as the paper's
    gradient derivation does; ``False`` differentiates through them too (the value is the same).

    Defaults are the paper's: ``margin`` (m) 0.4, ``boundary`` (alpha) 1.2, ``temperature_neg``
    (T_n) 10, ``temperature_pos`` (T_p) 0, ``neg_weight`` (lambda) 1.

    Inputs: ``embeddings`` (B, D), L2-normalised; ``labels`` (B,). Output: scalar loss, shape (1,).
    """
    # what a batch must hold for this loss (checked against --batch-size / --batch-k):
    # positives (two images of a class) and negatives (another class)
    needs_positives_in_batch = True
    min_classes_in_batch = 2
    normalize_embeddings = True

    options = {
        'margin': Option(float, 'm, the gap between positives and negatives'),
        'boundary': Option(float, "alpha, the negatives' boundary"),
        'temperature_neg': Option(float, "T_n, the negatives' weighting temperature"),
        'temperature_pos': Option(float, "T_p, the positives' weighting temperature (0: uniform)"),
        'neg_weight': Option(float, 'lambda, the weight of the negative term'),
        'detach_weights': Option(bool, 'no gradient through the weights'),
    }

    def __init__(self, margin=0.4, boundary=1.2, temperature_neg=10.0, temperature_pos=0.0,
                 neg_weight=1.0, detach_weights=True, **kwargs):
        super().__init__(**kwargs)
        if boundary <= 0:
            raise ValueError('boundary (alpha) must be positive, got %g.' % boundary)
        if not 0 <= margin <= boundary:
            raise ValueError('margin must lie in [0, boundary], got %g with boundary %g.'
                             % (margin, boundary))
        if temperature_neg < 0 or temperature_pos < 0:
            raise ValueError('temperatures must be non-negative, got T_n=%g and T_p=%g.'
                             % (temperature_neg, temperature_pos))
        if neg_weight < 0:
            raise ValueError('neg_weight (lambda) must be non-negative, got %g.' % neg_weight)
        self._margin = float(margin)
        self._alpha = float(boundary)
        self._t_neg = float(temperature_neg)
        self._t_pos = float(temperature_pos)
        self._lambda = float(neg_weight)
        self._detach = bool(detach_weights)

    def hybrid_forward(self, F, embeddings, labels):
        dist = pairwise_distance(F, embeddings)                               # (B, B)
        same, diff = label_masks(F, labels, dist)
        inner = self._alpha - self._margin
        pos_set = same * (dist > inner)                                       # P*_i, eq. 4
        neg_set = diff * (dist < self._alpha)                                 # N*_i, eq. 6
        loss_p = _weighted_mean(F, dist - inner, pos_set, self._t_pos, self._detach)
        loss_n = _weighted_mean(F, self._alpha - dist, neg_set, self._t_neg, self._detach)
        return F.mean(loss_p + self._lambda * loss_n)
