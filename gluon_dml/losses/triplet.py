"""Triplet loss with in-batch mining: all, semi-hard (FaceNet), batch-hard and its soft-margin form.

Schroff, Kalenichenko, Philbin, "FaceNet: A Unified Embedding for Face Recognition and Clustering",
CVPR 2015. Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person Re-Identification",
arXiv:1703.07737, 2017.
"""
from mxnet import gluon

from .base import batch_distance, label_masks, safe_divide
from .options import Option

__all__ = ['TripletLoss']

MINING = ('all', 'semihard', 'batch_hard', 'batch_hard_soft')
_FAR = 1e6          # fill for masked-out entries in a masked min; far beyond any distance


class TripletLoss(gluon.HybridBlock):
    r"""Triplet loss (FaceNet, Sec. 3.1) over the triplets of the batch.

    For an anchor ``a``, a positive ``p`` (same label, ``p != a``) and a negative ``n`` (other label):

    .. math::
        \ell(a, p, n) = (D_{ap} - D_{an} + \alpha)_+

    with ``D`` the Euclidean distance, or its square with ``squared=True`` (FaceNet uses squared
    distances). ``mining`` chooses the triplets and the average:

    - ``'all'``: every valid triplet, built as a masked (B, B, B) tensor (fine for B <= 512);
      loss = sum / number of non-zero terms.
    - ``'semihard'``: FaceNet Sec. 3.2. For each anchor-positive pair the negative is the hardest
      *semi-hard* one, i.e. the ``n`` with the smallest ``D_an`` among those with
      ``D_ap < D_an < D_ap + alpha``, so every selected term lies in (0, alpha). An anchor-positive
      pair with no semi-hard negative is dropped. Loss = mean over the pairs that have one.
    - ``'batch_hard'``: Hermans et al. 2017, Sec. 2 (Batch Hard): per anchor the hardest positive
      ``max_p D_ap`` and the hardest negative ``min_n D_an``, term ``(alpha + D_ap* - D_an*)_+``;
      loss = mean over the anchors that have both a positive and a negative.
    - ``'batch_hard_soft'``: the same with the soft margin ``softplus(D_ap* - D_an*)``
      (Hermans et al. Sec. 2, soft-margin, ``ln(1 + exp(x))``); ``margin`` is not used.

    Every average is 0, never NaN, when its set is empty (one class, one image per class).

    Defaults: ``margin`` (alpha) 0.1, the value of this project's reference run (FaceNet used 0.2 on
    squared distances); ``mining='all'``; ``squared=False``.

    Inputs: ``embeddings`` (B, D), L2-normalised; ``labels`` (B,). Output: scalar loss, shape (1,).
    """
    # what a batch must hold for this loss (checked against --batch-size / --batch-k):
    # positives (two images of a class) and negatives (another class)
    needs_positives_in_batch = True
    min_classes_in_batch = 2
    normalize_embeddings = True

    options = {
        'margin': Option(float, 'the triplet margin'),
        'mining': Option(('all', 'semihard', 'batch_hard', 'batch_hard_soft'), 'which triplets: all, semihard (FaceNet), batch_hard, batch_hard_soft (Hermans et al.)'),
        'squared': Option(bool, 'squared Euclidean distances'),
    }

    def __init__(self, margin=0.1, mining='all', squared=False, **kwargs):
        super().__init__(**kwargs)
        if mining not in MINING:
            raise ValueError('mining must be one of %s, got %r.' % (', '.join(MINING), mining))
        if margin < 0:
            raise ValueError('margin must be non-negative, got %g.' % margin)
        self._margin = float(margin)
        self._mining = mining
        self._squared = bool(squared)

    def hybrid_forward(self, F, embeddings, labels):
        dist = batch_distance(F, embeddings, self._squared)                   # (B, B)
        same, diff = label_masks(F, labels, dist)
        if self._mining in ('batch_hard', 'batch_hard_soft'):
            return self._batch_hard(F, dist, same, diff)
        return self._triplets(F, dist, same, diff)

    def _triplets(self, F, dist, same, diff):
        """'all' and 'semihard' on the (anchor, positive, negative) cube."""
        d_ap = F.expand_dims(dist, axis=2)                            # (B, B, 1)
        d_an = F.expand_dims(dist, axis=1)                            # (B, 1, B)
        valid = F.broadcast_mul(F.expand_dims(same, axis=2), F.expand_dims(diff, axis=1))   # (B, B, B)
        if self._mining == 'all':
            loss = F.relu(F.broadcast_sub(d_ap, d_an) + self._margin) * valid
            return safe_divide(F, F.sum(loss), F.sum(loss > 0))
        d_an = F.broadcast_like(d_an, valid)
        semi = valid * F.broadcast_greater(d_an, d_ap) * F.broadcast_lesser(d_an, d_ap + self._margin)
        masked = F.where(semi > 0, d_an, F.ones_like(d_an) * _FAR)
        d_neg = F.pick(d_an, F.argmin(masked, axis=2), axis=2)        # (B, B), one negative per pair
        has = F.sum(semi, axis=2) > 0                                 # (B, B)
        loss = F.relu(dist - d_neg + self._margin) * has
        return safe_divide(F, F.sum(loss), F.sum(has))

    def _batch_hard(self, F, dist, same, diff):
        d_pos = F.pick(dist, F.argmax(F.where(same > 0, dist, -F.ones_like(dist)), axis=1), axis=1)
        d_neg = F.pick(dist, F.argmin(F.where(diff > 0, dist, F.ones_like(dist) * _FAR), axis=1), axis=1)
        has = (F.sum(same, axis=1) > 0) * (F.sum(diff, axis=1) > 0)   # (B,)
        if self._mining == 'batch_hard_soft':
            loss = F.Activation(d_pos - d_neg, act_type='softrelu')
        else:
            loss = F.relu(d_pos - d_neg + self._margin)
        return safe_divide(F, F.sum(loss * has), F.sum(has))
