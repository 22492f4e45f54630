"""Multi-class N-pair loss.

Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective", NeurIPS 2016.
"""
from mxnet import gluon

from .base import label_masks, masked_logsumexp, pairwise_similarity, safe_divide
from .options import Option

__all__ = ['NPairLoss', 'softplus']

_PAIRS = ('all', 'paper')


def softplus(F, x):
    """``log(1 + exp(x))`` without overflow, never negative, gradient exactly ``sigmoid(x)``."""
    shift = F.BlockGrad(F.relu(x))
    return shift + F.log(F.exp(-shift) + F.exp(x - shift))


class NPairLoss(gluon.HybridBlock):
    r"""Multi-class N-pair loss (Sohn 2016, eq. 3) with the L2 regulariser of Sec. 3.2.2.

    With ``s_ik = f_i . f_k`` (inner products of the embeddings as given), for an anchor ``i``, a
    positive ``j`` and the anchor's negatives ``N(i)``:

    .. math::
        \ell_{ij} = \log\Big(1 + \sum_{k\in N(i)} \exp(s_{ik} - s_{ij})\Big),\qquad
        L = \operatorname{mean}_{(i,j)} \ell_{ij} + \lambda\, \operatorname{mean}_b \lVert f_b\rVert^2

    Which (anchor, positive) pairs and negatives enter, ``pairs``:

    - ``'all'`` (default): every ordered same-label pair ``(i, j)``, ``j != i``, is an (anchor,
      positive) pair; ``N(i)`` is every item of another class. This serves any P x K batch. On the
      paper's N x 2 batch it differs from eq. 3 in two ways: both items of a pair act as anchor,
      and ``N(i)`` holds both items of each other class (2(N-1) negatives, not N-1).
    - ``'paper'``: eq. 3 as written, for a batch laid out as the N-pair sampler gives it: the first
      item of each class in batch order is the anchor ``x_i``, its other items are positives
      ``x_i^+``, and ``N(i)`` is the positives ``x_k^+`` of the other classes. On an N x 2 batch this
      is exactly ``1/N sum_i log(1 + sum_{k != i} exp(f_i.f_k^+ - f_i.f_i^+))``.

    A pair whose anchor has no negative contributes ``log 1 = 0``; with no pair at all the first
    term is 0. The regulariser ``l2_reg`` (lambda, default 0.002) is applied to the embeddings as
    given, averaged over the whole batch (the paper regularises the norm of every embedding, anchors
    and positives; TensorFlow's ``npairs_loss`` uses ``lambda/4`` times the sum of the anchors' and
    the positives' mean squared norm, i.e. half this value).

    ``normalize_embeddings`` is False: the paper does not L2-normalise (it regularises the norm
    instead). ``normalize=True`` L2-normalises inside the loss for the similarities (the
    regulariser still acts on the embeddings as given).

    Inputs: ``embeddings`` (B, D), ``labels`` (B,). Output: scalar loss, shape (1,).
    """

    # what a batch must hold for this loss (checked against --batch-size / --batch-k):
    # positives (two images of a class) and negatives (another class)
    needs_positives_in_batch = True
    min_classes_in_batch = 2
    normalize_embeddings = False

    options = {
        'l2_reg': Option(float, "lambda, the L2 penalty on the embeddings' norms"),
        'normalize': Option(bool, 'L2-normalise inside the loss for the similarities'),
        'pairs': Option(('all', 'paper'), "paper: eq. 3 (each class's first image the anchor); all: every pair"),
    }

    def __init__(self, l2_reg=0.002, normalize=False, pairs='all', **kwargs):
        super().__init__(**kwargs)
        if l2_reg < 0:
            raise ValueError('l2_reg must be non-negative, got %g.' % l2_reg)
        if pairs not in _PAIRS:
            raise ValueError('pairs must be one of %s, got %r.' % (', '.join(_PAIRS), pairs))
        self._l2_reg = float(l2_reg)
        self._normalize = bool(normalize)
        self._pairs = pairs

    def hybrid_forward(self, F, embeddings, labels):
        f = F.L2Normalization(embeddings, mode='instance') if self._normalize else embeddings
        sim = pairwise_similarity(F, f)                                          # (B, B)
        same, diff = label_masks(F, labels, sim)
        if self._pairs == 'paper':
            # The first item of its class in batch order is the anchor; the others are positives.
            rows = F.contrib.arange_like(sim, axis=0).reshape((-1, 1))
            cols = F.contrib.arange_like(sim, axis=1).reshape((1, -1))
            earlier = F.broadcast_lesser(cols, rows)                              # [i, j] = j < i
            first = 1 - (F.sum(same * earlier, axis=1, keepdims=True) > 0)        # (B, 1)
            pairs = F.broadcast_mul(same, first)
            negatives = F.broadcast_mul(diff, 1 - F.transpose(first))
        else:
            pairs, negatives = same, diff
        has_neg = F.sum(negatives, axis=1, keepdims=True) > 0                    # (B, 1)
        lse = masked_logsumexp(F, sim, negatives)                               # log sum_k e^{s_ik}
        terms = softplus(F, F.broadcast_sub(lse, sim)) * F.broadcast_mul(pairs, has_neg)
        loss = safe_divide(F, F.sum(terms), F.sum(pairs))
        if self._l2_reg:
            loss = loss + self._l2_reg * F.mean(F.sum(F.square(embeddings), axis=1))
        return loss
