"""Test-only reference: the (B, B, B) cube implementation of 'all' and 'semihard' triplet mining that
``gluon_dml.losses.triplet`` used until the O(B^2) rank-based form replaced it, kept verbatim so that
tests can compare the two on batches too large for the numpy loop references (values and gradients).
"""
from mxnet import gluon

from gluon_dml.losses.base import batch_distance, label_masks, safe_divide

_FAR = 1e6


class CubeTripletLoss(gluon.HybridBlock):
    """The former ``TripletLoss`` for ``mining`` in ('all', 'semihard'), on the masked (B, B, B) cube."""

    def __init__(self, margin=0.1, mining='all', squared=False, **kwargs):
        super().__init__(**kwargs)
        assert mining in ('all', 'semihard')
        self._margin = float(margin)
        self._mining = mining
        self._squared = bool(squared)

    def hybrid_forward(self, F, embeddings, labels):
        dist = batch_distance(F, embeddings, self._squared)                   # (B, B)
        same, diff = label_masks(F, labels, dist)
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
