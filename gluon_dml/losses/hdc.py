"""The cascade loss of HDC (Yuan, Yang, Zhang, "Hard-Aware Deeply Cascaded Embedding", ICCV
2017): each level of an :class:`gluon_dml.models.hdc.HDCNet` is trained on the pairs the earlier
levels find hard.
"""
import numpy as np
from mxnet import gluon

from .base import label_masks, pairwise_distance, safe_divide

__all__ = ['HDCLoss']


_LOW = -1e30
_ROUND = 1e-3       # ceil(n * frac - 1e-3): float32 products such as 10 * 0.3 must not round up to 4


def _hardest(F, values, mask, frac):
    """The members of ``mask`` (B, B) whose ``values`` are among the largest ``ceil(frac * n)``
    of the ``n`` members (all members tied with the last one kept are kept too; a product within
    1e-3 above an integer counts as that integer)."""
    if frac >= 1.0:
        return mask
    n = F.sum(mask)                                                     # (1,)
    flat = F.reshape(F.where(mask > 0, values, F.ones_like(values) * _LOW), (1, -1))
    ordered = F.sort(flat, axis=1, is_ascend=False)
    idx = F.maximum(F.ceil(n * frac - _ROUND) - 1, F.zeros_like(n))
    threshold = F.pick(ordered, idx, axis=1)                            # (1,)
    keep = F.broadcast_greater_equal(values, F.reshape(threshold, (1, 1)))
    return F.BlockGrad(mask * keep)


class HDCLoss(gluon.HybridBlock):
    r"""The HDC cascade loss over the concatenated level embeddings of :class:`HDCNet`.

    ``dims``: the levels' sizes (``net.dims``). Pair sets: level 1 has every unordered pair of the
    batch (positives ``P_1``: same label; negatives ``N_1``: different label); level ``k`` keeps
    the ``keep`` fraction (rounded up) of ``P_{k-1}`` with the largest level-(k-1) distances and of
    ``N_{k-1}`` with the smallest. ``keep``: one fraction for every transition, or one per
    transition (levels - 1 values). Default 0.5 (our choice: each deeper model sees the harder
    half of what the previous one saw).

    ``base``: the loss each level applies to its pairs:

    - ``'contrastive'`` (the paper's): Hadsell et al.'s contrastive loss on the Euclidean distance
      ``D`` of the level's embeddings, positives ``(D - pos_margin)_+``, negatives
      ``(neg_margin - D)_+``, each squared and halved with ``squared=True`` (default, the paper's
      form); averaged over the selected pairs (``reduction='all'``) or over the non-zero terms
      (``'nonzero'``). Defaults ``pos_margin`` 0, ``neg_margin`` 0.5 (this project's contrastive
      default for L2-normalised embeddings).
    - any pair-based loss block taking ``(embeddings, labels, pair_mask)``: ``pair_mask`` (B, B)
      is 1 on the selected pairs (symmetric, both orders), and the loss must restrict its positive
      and negative pairs to it (``same * pair_mask``, ``diff * pair_mask``). The zoo's losses do
      not take a mask yet (see the integration notes).

    ``weights``: per-level loss weights (default all 1); the loss is ``sum_k w_k L_k``.
    Every level's mean is 0, never NaN, when its pair set is empty.

    Inputs: ``embeddings`` (B, sum(dims)) from :class:`HDCNet`; ``labels`` (B,). Output (1,).
    ``level_losses=True`` returns ``(total, L_1, ..., L_K)`` instead.
    """
    normalize_embeddings = True

    def __init__(self, dims, keep=0.5, base='contrastive', pos_margin=0.0, neg_margin=0.5,
                 squared=True, reduction='all', weights=None, level_losses=False, **kwargs):
        super().__init__(**kwargs)
        self._dims = tuple(int(d) for d in dims)
        levels = len(self._dims)
        keep = [float(keep)] * (levels - 1) if isinstance(keep, (int, float)) else [float(k) for k in keep]
        if len(keep) != levels - 1 or not all(0 < k <= 1 for k in keep):
            raise ValueError('keep must be a fraction in (0, 1], or one per transition (%d), got %r.'
                             % (levels - 1, keep))
        self._keep = keep
        self._weights = [1.0] * levels if weights is None else [float(w) for w in weights]
        if len(self._weights) != levels:
            raise ValueError('weights needs one value per level (%d).' % levels)
        if reduction not in ('all', 'nonzero'):
            raise ValueError("reduction must be 'all' or 'nonzero', got %r." % (reduction,))
        if not 0 <= pos_margin < neg_margin:
            raise ValueError('Margins must satisfy 0 <= pos_margin < neg_margin.')
        self._pos_margin, self._neg_margin = float(pos_margin), float(neg_margin)
        self._squared, self._reduction = bool(squared), reduction
        self._level_losses = bool(level_losses)
        if isinstance(base, str):
            if base != 'contrastive':
                raise ValueError("base must be 'contrastive' or a loss block, got %r." % (base,))
            self.base = None
        else:
            with self.name_scope():
                self.base = base

    def _contrastive(self, F, dist, pos, neg):
        p = F.relu(dist - self._pos_margin) * pos
        n = F.relu(self._neg_margin - dist) * neg
        if self._squared:
            p, n = 0.5 * F.square(p), 0.5 * F.square(n)
        total = F.sum(p) + F.sum(n)
        count = F.sum(pos) + F.sum(neg) if self._reduction == 'all' else F.sum(p > 0) + F.sum(n > 0)
        return safe_divide(F, total, count)

    def hybrid_forward(self, F, embeddings, labels):
        ends = np.cumsum(self._dims).tolist()          # level k: columns ends[k-1]..ends[k]
        levels = [F.slice_axis(embeddings, axis=1, begin=s, end=e)
                  for s, e in zip([0] + ends[:-1], ends)]
        dist = pairwise_distance(F, levels[0])
        same, diff = label_masks(F, labels, dist)
        rows = F.contrib.arange_like(dist, axis=0).reshape((-1, 1))
        cols = F.contrib.arange_like(dist, axis=1).reshape((1, -1))
        upper = F.broadcast_lesser(rows, cols)                          # each unordered pair once
        pos, neg = same * upper, diff * upper
        total, per_level, prev = 0, [], None
        for k, z in enumerate(levels):
            if k > 0:
                pos = _hardest(F, prev, pos, self._keep[k - 1])         # far positives
                neg = _hardest(F, -prev, neg, self._keep[k - 1])        # close negatives
                dist = pairwise_distance(F, z)
            pos_sym = pos + F.transpose(pos)
            neg_sym = neg + F.transpose(neg)
            if self.base is None:
                loss = self._contrastive(F, dist, pos_sym, neg_sym)
            else:
                loss = self.base(z, labels, pos_sym + neg_sym)
            per_level.append(loss)
            total = total + self._weights[k] * loss
            prev = F.BlockGrad(dist)
        if self._level_losses:
            return tuple([total] + per_level)
        return total
