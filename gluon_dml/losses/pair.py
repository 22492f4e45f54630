"""Contrastive (pair) loss.

Hadsell, Chopra, LeCun, "Dimensionality Reduction by Learning an Invariant Mapping", CVPR 2006.
"""
from mxnet import gluon

from .base import label_masks, pairwise_distance, safe_divide
from .options import Option

__all__ = ['ContrastiveLoss']


class ContrastiveLoss(gluon.HybridBlock):
    r"""Contrastive loss over every pair of the batch (Hadsell et al. 2006), with two margins.

    For the Euclidean distance ``D_ij`` between embeddings ``i != j``:

    .. math::
        \ell_{ij} = \begin{cases} (D_{ij} - m_{pos})_+ & y_i = y_j \\
                                  (m_{neg} - D_{ij})_+ & y_i \ne y_j \end{cases}

    the generalised form used by metric-learning libraries: positives are pulled in to
    ``pos_margin``, negatives pushed out to ``neg_margin``. With ``squared=True`` the terms are the
    paper's squared hinges (Sec. 2.1, with ``L_S = D^2 / 2``, ``L_D = max(0, m - D)^2 / 2``):
    ``(D - m_pos)_+^2 / 2`` and ``(m_neg - D)_+^2 / 2`` (``pos_margin=0`` gives the paper exactly).

    Every ordered pair ``(i, j)``, ``i != j``, is a term (each unordered pair counts twice, which
    leaves the means below unchanged). ``reduction``:

    - ``'nonzero'`` (default, the common choice): sum of the terms / number of non-zero terms;
    - ``'all'``: sum of the terms / number of pairs (the paper's average over all pairs).

    Either is 0, never NaN, when nothing is active (e.g. a single image).

    Defaults: ``pos_margin`` 0 (the paper pulls positives to distance 0); ``neg_margin`` 0.5, the
    value of this project's reference run (the paper's ``m`` depends on its embedding scale; 0.5
    suits L2-normalised embeddings, whose distances lie in [0, 2]); ``squared=False``.

    Inputs: ``embeddings`` (B, D), L2-normalised; ``labels`` (B,). Output: scalar loss, shape (1,).
    """
    # what a batch must hold for this loss (checked against --batch-size / --batch-k):
    # positives (two images of a class) and negatives (another class)
    needs_positives_in_batch = True
    min_classes_in_batch = 2
    normalize_embeddings = True

    options = {
        'pos_margin': Option(float, 'positives closer than this give no loss'),
        'neg_margin': Option(float, 'negatives farther than this give no loss'),
        'squared': Option(bool, "the paper's squared hinge on Euclidean distances"),
        'reduction': Option(('nonzero', 'all'), 'average over the non-zero terms or over all pairs'),
    }

    def __init__(self, pos_margin=0.0, neg_margin=0.5, squared=False, reduction='nonzero', **kwargs):
        super().__init__(**kwargs)
        if not 0 <= pos_margin < neg_margin:
            raise ValueError('Margins must satisfy 0 <= pos_margin < neg_margin, got pos_margin=%g, '
                             'neg_margin=%g.' % (pos_margin, neg_margin))
        if reduction not in ('nonzero', 'all'):
            raise ValueError("reduction must be 'nonzero' or 'all', got %r." % (reduction,))
        self._pos_margin = float(pos_margin)
        self._neg_margin = float(neg_margin)
        self._squared = bool(squared)
        self._reduction = reduction

    def hybrid_forward(self, F, embeddings, labels):
        dist = pairwise_distance(F, embeddings)                       # (B, B)
        same, diff = label_masks(F, labels, dist)
        pos = F.relu(dist - self._pos_margin) * same
        neg = F.relu(self._neg_margin - dist) * diff
        if self._squared:
            pos = 0.5 * F.square(pos)
            neg = 0.5 * F.square(neg)
        total = F.sum(pos) + F.sum(neg)
        if self._reduction == 'nonzero':
            count = F.sum(pos > 0) + F.sum(neg > 0)
        else:
            count = F.sum(same) + F.sum(diff)
        return safe_divide(F, total, count)
