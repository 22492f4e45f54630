"""Triplet loss with in-batch mining: all, semi-hard (FaceNet), batch-hard and its soft-margin form.

Schroff, Kalenichenko, Philbin, "FaceNet: A Unified Embedding for Face Recognition and Clustering",
CVPR 2015. Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person Re-Identification",
arXiv:1703.07737, 2017.
"""
from mxnet import gluon

from .base import batch_distance, label_masks, row_pick_index, safe_divide
from .options import Option

__all__ = ['TripletLoss']

MINING = ('all', 'semihard', 'batch_hard', 'batch_hard_soft')
_FAR = 1e6          # fill for masked-out entries in a masked min; far beyond any distance


def _nudge(F, x, order):
    """``x`` (float32 values) as float64 keys where exact ties sort by ``order`` (integers >= 0).

    Distinct float32 values are at least 2^-24 apart relative to their size (2^-149 absolute
    below the normal range); the nudge ``order * (x * 2^-44 + 2^-200)`` stays far below that gap
    for ``order < 2^19``, so it only reorders entries whose float32 values are equal.
    """
    x = F.cast(x, 'float64')
    step = x * 2.0 ** -44 + 2.0 ** -200
    return x + F.cast(order, 'float64') * step


class TripletLoss(gluon.HybridBlock):
    r"""Triplet loss (FaceNet, Sec. 3.1) over the triplets of the batch.

    For an anchor ``a``, a positive ``p`` (same label, ``p != a``) and a negative ``n`` (other label):

    .. math::
        \ell(a, p, n) = (D_{ap} - D_{an} + \alpha)_+

    with ``D`` the Euclidean distance, or its square with ``squared=True`` (FaceNet uses squared
    distances). ``mining`` chooses the triplets and the average:

    - ``'all'``: every valid triplet; loss = sum / number of non-zero terms.
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

    'all' and 'semihard' never build the (B, B, B) tensor of triplets: one sort per anchor row and
    a running count give the same sums, counts and gradients in O(B^2) memory (see
    ``_triplets``); tests/losses/test_triplet_mining.py checks them against the cube form.

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
        'margin': Option(float, 'the triplet margin', low=0),
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
        """'all' and 'semihard' in O(B^2) memory: ranks along each anchor's row, not the (a, p, n) cube.

        Each anchor's row is sorted once (the anchor itself first, then its positives and negatives
        together by key); a running count over the sorted row, one product with a triangular
        matrix, then says for every positive how many negatives sort before it and for every
        negative how many positives sort after it. Ranks are constants of the graph; gradients
        reach ``dist`` through the gathered entries, the same entries as in the cube form. Keys are
        float64 with exact float32 ties broken by ``_nudge``, so ranks honour strict inequalities.
        """
        rows = F.contrib.arange_like(dist, axis=0).reshape((-1, 1))               # (B, 1)
        cols = F.contrib.arange_like(dist, axis=1).reshape((1, -1))               # (1, B)
        n = F.sum(F.ones_like(cols), axis=1, keepdims=True)                       # B, shape (1, 1)
        rows_b = F.broadcast_like(rows, dist)                                     # row index a
        cols_b = F.broadcast_like(cols, dist)                                     # column index j
        upper = F.broadcast_lesser_equal(rows, cols)                              # [i, j] = i <= j
        same = F.BlockGrad(same)
        diff = F.BlockGrad(diff)
        is_self = 1 - same - diff
        d = F.BlockGrad(dist)

        def at(index):                                    # gather_nd indices of x[a, index[a, j]]
            return row_pick_index(F, index, rows_b)

        gather = F.gather_nd

        def sort_rows(key, later):
            """Sorted order of each row, as gather_nd indices: the anchor first, then by ``key``
            (float32), exact ties by ``later`` then column; per sorted place, the positives and the
            negatives at or before it."""
            key = F.where(is_self > 0, -F.ones_like(key), key)                    # distances are >= 0
            order = at(F.argsort(_nudge(F, key, F.broadcast_add(cols_b, F.broadcast_mul(later, n))), axis=1))
            pos_s = gather(same, order)
            pos_upto = F.dot(pos_s, upper)                    # positives at or before each place
            neg_upto = cols_b - pos_upto                      # the rest but the anchor (at place 0)
            return order, pos_s, pos_upto, neg_upto

        if self._mining == 'all':
            # Triplet (a, p, n) is active iff D_an < D_ap + alpha. Key: D_ap + alpha for positives,
            # D_an for negatives; on an exact tie the negative sorts after (inactive, as the hinge).
            order, pos_s, pos_upto, neg_upto = sort_rows(d + same * self._margin, diff)
            neg_s = 1 - pos_s - (cols_b == 0)                 # all but the positives and the anchor
            pos_after = F.broadcast_sub(F.sum(pos_s, axis=1, keepdims=True), pos_upto)
            count_s = pos_s * neg_upto                        # active negatives of each positive
            weight = count_s - neg_s * pos_after              # minus active positives of each negative
            count = F.sum(count_s)
            # sum over active (a, p, n) of D_ap - D_an + alpha = sum_j weight_j D_aj + alpha * count,
            # accumulated in float64 (the two sums are larger than their difference).
            total = F.sum(F.cast(F.BlockGrad(weight), 'float64') * F.cast(gather(dist, order), 'float64'))
            total = F.cast(total, 'float32') + self._margin * count
            return safe_divide(F, total, count)

        # Semi-hard: the negative for (a, p) is the nearest negative with D_an > D_ap (the first in
        # column order among equals, as argmin), kept when it is below D_ap + alpha. Among the
        # negatives sorted by distance it is the one at place #{n : D_an <= D_ap} (on an exact
        # tie the negative sorts first: it is not semi-hard).
        order, pos_s, _, neg_upto = sort_rows(d, same)
        far = F.ones_like(d) * _FAR
        neg_order = F.argsort(_nudge(F, F.where(diff > 0, d, far), cols_b), axis=1)
        # A positive above every negative has no such negative: place #negatives is not one.
        idx = at(gather(neg_order, at(neg_upto)))                                 # column of n
        d_ap = gather(dist, order)
        d_neg = gather(dist, idx)                                                 # gradient to D_an
        exists = F.broadcast_lesser(neg_upto, F.sum(diff, axis=1, keepdims=True))
        has = pos_s * exists * (d_neg > d_ap) * (d_neg < d_ap + self._margin)
        has = F.BlockGrad(has)
        loss = F.relu(d_ap - d_neg + self._margin) * has
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
