"""Margin loss with distance-weighted negative sampling.

Wu, Manmatha, Smola, Kraehenbuehl, "Sampling Matters in Deep Embedding Learning", ICCV 2017.
"""
from mxnet import gluon, init

from .base import label_masks, pairwise_distance, row_pick_index, safe_divide
from .options import Option

__all__ = ['MarginLoss', 'distance_log_weights']


def distance_log_weights(F, dist, dim, cutoff):
    """Log of the paper's sampling weight ``q(d)^-1`` (Sec. 4, eq. 3), up to a constant.

    For points uniform on the unit sphere in R^n the pairwise distance has density
    ``q(d) ~ d^(n-2) (1 - d^2/4)^((n-3)/2)``; sampling negatives with weight ``min(lambda, q(d)^-1)``
    spreads them over all distances. ``d`` is clipped below at ``cutoff`` (0.5 in the paper), which
    bounds the weight of very close (noisy) negatives. ``dim`` is the embedding dimension ``n`` as a
    (1,) array so that this stays symbolic.
    """
    d = F.maximum(dist, cutoff)
    log_d = F.log(d)
    log_1m = F.log(F.maximum(1.0 - 0.25 * F.square(d), 1e-8))
    return F.broadcast_mul(2.0 - dim, log_d) - F.broadcast_mul((dim - 3.0) / 2.0, log_1m)


class MarginLoss(gluon.HybridBlock):
    r"""Margin loss (Wu et al. 2017, eq. 4) over a batch, with distance-weighted sampling (eq. 3-5).

    For an anchor ``i`` with boundary ``beta_i = beta(class of i)`` (learnable; eq. 5 with
    ``beta^(0)`` folded into the parameter):

    .. math::
        \ell(i, j) = \big(\alpha + y_{ij}\,(D_{ij} - \beta_i)\big)_+

    with ``y_ij = +1`` for every positive pair (same label, ``j != i``) and ``y_ij = -1`` for
    ``negatives_per_anchor`` negatives per anchor drawn with probability proportional to
    ``q(D_ij)^-1`` (eq. 3) among the different-label items with ``D_ij < nonzero_loss_cutoff``
    (negatives farther than ``beta + alpha`` give no loss; the published code uses 1.4). A row whose
    negatives are all beyond the cutoff samples its different-label items uniformly; a row with no
    different-label item (one class in the batch) contributes positive terms only.

    The loss is the sum of all terms plus ``nu * sum_{(i,j) positive} beta_i`` (the regulariser of
    eq. 5 on beta), divided by the number of terms that are non-zero (as in the published code), so
    ``0`` when nothing is active, never NaN.

    Defaults are the paper's: ``margin`` (alpha) 0.2, ``beta`` 1.2, ``nu`` 0, ``cutoff`` 0.5,
    ``nonzero_loss_cutoff`` 1.4. ``num_classes`` set means one beta per class (labels must then be
    0..num_classes-1, the training split's labels); ``None`` means one global beta.
    ``negatives_per_anchor``: the published code draws ``batch_k - 1`` per anchor, as many as the
    anchor has positives; ``train_margin.py`` sets it so.

    Inputs: ``embeddings`` (B, D), L2-normalised for the sampling weights to be meaningful;
    ``labels`` (B,). Output: scalar loss, shape (1,). Sampling uses ``F.random``: seed MXNet's
    generator (``mx.random.seed``) for a repeatable draw.
    """

    # what a batch must hold for this loss (checked against --batch-size / --batch-k):
    # positives (two images of a class) and negatives (another class)
    needs_positives_in_batch = True
    min_classes_in_batch = 2
    options = {
        'margin': Option(float, 'alpha, the margin around the boundary beta', low=0),
        'beta': Option(float, 'beta(0), the initial boundary (learnable)'),
        'nu': Option(float, 'nu, the regulariser on beta'),
        'cutoff': Option(float, 'lower cutoff of the distance in the sampling weights'),
        'nonzero_loss_cutoff': Option(float, 'negatives farther than this are not sampled'),
    }

    def __init__(self, margin=0.2, beta=1.2, nu=0.0, cutoff=0.5, nonzero_loss_cutoff=1.4,
                 num_classes=None, negatives_per_anchor=4, **kwargs):
        super().__init__(**kwargs)
        if negatives_per_anchor < 1:
            raise ValueError('negatives_per_anchor must be at least 1, got %d.' % negatives_per_anchor)
        self._margin = float(margin)
        self._nu = float(nu)
        self._cutoff = float(cutoff)
        self._nonzero_loss_cutoff = float(nonzero_loss_cutoff)
        self._per_class = num_classes is not None
        self._num_neg = int(negatives_per_anchor)
        with self.name_scope():
            self.beta = self.params.get('beta', shape=(num_classes if self._per_class else 1,),
                                        init=init.Constant(beta))

    def sample_negatives(self, F, dist, diff, embeddings):
        """Indices (B, S) of ``S = negatives_per_anchor`` negatives per anchor, drawn with
        replacement with probability ~ ``q(d)^-1`` (no gradient through the choice), and a (B, 1)
        mask of the anchors that have any negative at all."""
        d_const = F.BlockGrad(dist)
        dim = F.sum(F.ones_like(F.slice_axis(embeddings, axis=0, begin=0, end=1)), axis=1)   # (1,)
        log_w = distance_log_weights(F, d_const, dim, self._cutoff)
        near = diff * (d_const < self._nonzero_loss_cutoff)
        has_near = F.sum(near, axis=1, keepdims=True) > 0
        has_neg = F.sum(diff, axis=1, keepdims=True) > 0                        # (B, 1)
        allowed = F.broadcast_mul(has_near, near) + F.broadcast_mul(1 - has_near, diff)
        logits = F.broadcast_mul(has_near, log_w)                               # uniform fallback
        logits = F.where(allowed > 0, logits, F.ones_like(logits) * -1e30)
        # Gumbel-max: argmax(logits + Gumbel noise) is a draw from softmax(logits), one per slot.
        slots = F.repeat(F.expand_dims(logits, axis=1), repeats=self._num_neg, axis=1)   # (B, S, B)
        u = F.random.uniform_like(slots, low=1e-6, high=1.0 - 1e-6)
        choice = F.argmax(slots - F.log(-F.log(u)), axis=2)                     # (B, S)
        return choice, has_neg

    def hybrid_forward(self, F, embeddings, labels, beta):
        dist = pairwise_distance(F, embeddings)                                 # (B, B)
        same, diff = label_masks(F, labels, dist)
        if self._per_class:
            beta_i = F.take(beta, labels.astype('int32'), mode='clip')         # (B,)
        else:
            beta_i = F.broadcast_like(beta, F.slice_axis(dist, axis=1, begin=0, end=1).reshape((-1,)))
        beta_col = F.reshape(beta_i, (-1, 1))

        # Positive terms: every same-label pair.
        pos = F.relu(self._margin + F.broadcast_sub(dist, beta_col)) * same

        choice, has_neg = self.sample_negatives(F, dist, diff, embeddings)
        d_neg = F.gather_nd(dist, row_pick_index(F, choice))        # dist[i, choice[i, s]], (B, S)
        neg = F.broadcast_mul(F.relu(self._margin + F.broadcast_sub(beta_col, d_neg)), has_neg)

        active = F.sum(pos > 0) + F.sum(neg > 0)
        total = F.sum(pos) + F.sum(neg)
        if self._nu:
            total = total + self._nu * F.sum(F.broadcast_mul(same, beta_col))
        return safe_divide(F, total, active)
