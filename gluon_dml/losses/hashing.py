"""Pairwise deep-hashing losses: HashNet, DSH and DCH.

Every loss takes the hash head's continuous outputs ``h`` (B, bits) and the labels as a
multi-hot matrix ``Y`` (B, C) (one-hot for single-label data; :class:`HashEngine` converts class
indices). A pair (i, j), i != j, is *similar* (``s_ij = 1``) when the label sets intersect,
``Y_i . Y_j > 0`` (the convention of NUS-WIDE and COCO hashing), else dissimilar. All pairs of
the batch are used, with masked dense operations: no loop over the batch, no host sync.
"""
from mxnet.gluon import HybridBlock
from .options import Option

__all__ = ['HashNetLoss', 'DSHLoss', 'DCHLoss', 'hash_pair_masks']


def hash_pair_masks(F, codes, labels):
    """Float masks (B, B) ``similar`` (label sets intersect, diagonal excluded) and
    ``dissimilar``, from multi-hot ``labels`` (B, C) of the codes' dtype."""
    inter = F.dot(labels, labels, transpose_b=True)                # (B, B) shared labels
    like = F.dot(codes, codes, transpose_b=True)
    eye = F.broadcast_equal(F.contrib.arange_like(like, axis=0).reshape((-1, 1)),
                            F.contrib.arange_like(like, axis=1).reshape((1, -1)))
    similar = (inter > 0) * (1 - eye)
    dissimilar = (inter <= 0) * (1 - eye)
    return similar, dissimilar


def _balanced_mean(F, loss, similar, dissimilar):
    """``sum_ij w_ij l_ij / |S|`` with ``w_ij = |S| / |S1|`` on similar pairs and
    ``|S| / |S0|`` on dissimilar ones (HashNet eq. 3 with c_ij = 1): the mean over similar pairs
    plus the mean over dissimilar pairs (an empty set contributes 0)."""
    n1 = F.sum(similar)
    n0 = F.sum(dissimilar)
    pos = F.sum(loss * similar) / F.maximum(n1, F.ones_like(n1))
    neg = F.sum(loss * dissimilar) / F.maximum(n0, F.ones_like(n0))
    return pos + neg


class HashNetLoss(HybridBlock):
    """HashNet's weighted pairwise cross-entropy (Cao, Long, Wang, Yu, ICCV 2017, eq. 4-5).

    ``L = sum_{i != j} w_ij (log(1 + exp(alpha <h_i, h_j>)) - alpha s_ij <h_i, h_j>) / |S|``

    with the re-weighting of eq. 3, ``w_ij = |S| / |S1|`` for similar and ``|S| / |S0|`` for
    dissimilar pairs (``c_ij = 1``), so the loss is the mean over similar pairs plus the mean over
    dissimilar pairs. ``alpha = alpha_bits / bits`` scales the inner product (the authors' code:
    10 / bits). The softplus is computed in its stable form ``max(x, 0) + log(1 + exp(-|x|))``,
    finite and exact for any inner product (the authors' code switches to ``x`` above 15).
    """

    family = 'hashing'          # a loss over binary codes: train_hash.py
    options = {
        'alpha_bits': Option(float, "alpha = alpha_bits / bits, the sigmoid's slope on the inner product"),
    }

    def __init__(self, embed_dim, alpha_bits=10.0, **kwargs):
        super().__init__(**kwargs)
        if embed_dim < 1 or alpha_bits <= 0:
            raise ValueError('HashNet needs bits >= 1 and alpha_bits > 0, got %s and %s.'
                             % (embed_dim, alpha_bits))
        self.bits, self.alpha_bits = int(embed_dim), float(alpha_bits)
        self.alpha = self.alpha_bits / self.bits

    def hybrid_forward(self, F, codes, labels):
        similar, dissimilar = hash_pair_masks(F, codes, labels)
        x = self.alpha * F.dot(codes, codes, transpose_b=True)      # alpha <h_i, h_j>
        softplus = F.relu(x) + F.log(1 + F.exp(-F.abs(x)))
        loss = softplus - similar * x
        return F.reshape(_balanced_mean(F, loss, similar, dissimilar), (1,))


class DSHLoss(HybridBlock):
    """Deep Supervised Hashing (Liu, Wang, Shan, Chen, CVPR 2016, eq. 4-5).

    Over the pairs ``(i, j), i != j`` of the batch, the mean of

    ``1/2 s_ij ||h_i - h_j||^2 + 1/2 (1 - s_ij) max(m - ||h_i - h_j||^2, 0)
    + alpha (|| |h_i| - 1 ||_1 + || |h_j| - 1 ||_1)``

    with ``m = margin_scale * bits`` (the paper: m = 2k) and ``alpha = 0.01``. (The paper writes
    y = 0 for similar pairs; here s = 1 means similar.) The paper's head is linear; here it is the
    shared tanh head, whose outputs already lie in [-1, 1].
    """

    family = 'hashing'          # a loss over binary codes: train_hash.py
    options = {
        'margin_scale': Option(float, "m = margin_scale * bits, the dissimilar pairs' margin"),
        'alpha': Option(float, 'alpha, the weight of the binarisation regulariser'),
    }

    def __init__(self, embed_dim, margin_scale=2.0, alpha=0.01, **kwargs):
        super().__init__(**kwargs)
        if embed_dim < 1 or margin_scale <= 0 or alpha < 0:
            raise ValueError('DSH needs bits >= 1, margin_scale > 0 and alpha >= 0, got %s, %s, %s.'
                             % (embed_dim, margin_scale, alpha))
        self.bits, self.alpha = int(embed_dim), float(alpha)
        self.margin = float(margin_scale) * self.bits

    def hybrid_forward(self, F, codes, labels):
        similar, dissimilar = hash_pair_masks(F, codes, labels)
        sq = F.sum(F.square(codes), axis=1, keepdims=True)
        d2 = F.relu(F.broadcast_add(F.broadcast_sub(sq, 2 * F.dot(codes, codes, transpose_b=True)),
                                    F.transpose(sq)))
        pair = 0.5 * similar * d2 + 0.5 * dissimilar * F.relu(self.margin - d2)
        n_pairs = F.sum(similar + dissimilar)
        pair_mean = F.sum(pair) / F.maximum(n_pairs, F.ones_like(n_pairs))
        reg = F.mean(F.sum(F.abs(F.abs(codes) - 1), axis=1))
        # every image is in 2 (B - 1) of the B (B - 1) ordered pairs: the pair mean of
        # alpha (r_i + r_j) is 2 alpha mean_i r_i
        return F.reshape(pair_mean + 2 * self.alpha * reg, (1,))


class DCHLoss(HybridBlock):
    """Deep Cauchy Hashing (Cao, Long, Liu, Wang, CVPR 2018, eq. 6-10).

    ``d_ij = bits / 2 (1 - cos(h_i, h_j))`` (the normalised Hamming distance), the Cauchy
    probability ``P(s_ij = 1) = gamma / (gamma + d_ij)``, the weighted cross-entropy
    ``w_ij (s_ij log(d_ij / gamma) + log(1 + gamma / d_ij))`` (eq. 8, written as
    ``s log(1 + d / gamma) + (1 - s) log(1 + gamma / d)``, which is the same and finite at
    d = 0 for similar pairs; d is clipped at 1e-6 for dissimilar ones), with HashNet's weights
    (mean over similar plus mean over dissimilar pairs), plus the Cauchy quantisation loss
    ``lambda mean_i log(1 + d(|h_i|, 1) / gamma)`` (eq. 9). Defaults gamma 20, lambda 0.1.
    """

    family = 'hashing'          # a loss over binary codes: train_hash.py
    options = {
        'gamma': Option(float, 'gamma, the Cauchy scale'),
        'lam': Option(float, 'lambda, the weight of the Cauchy quantisation loss'),
    }

    def __init__(self, embed_dim, gamma=20.0, lam=0.1, **kwargs):
        super().__init__(**kwargs)
        if embed_dim < 1 or gamma <= 0 or lam < 0:
            raise ValueError('DCH needs bits >= 1, gamma > 0 and lam >= 0, got %s, %s, %s.'
                             % (embed_dim, gamma, lam))
        self.bits, self.gamma, self.lam = int(embed_dim), float(gamma), float(lam)

    def hybrid_forward(self, F, codes, labels):
        similar, dissimilar = hash_pair_masks(F, codes, labels)
        unit = F.L2Normalization(codes, mode='instance', eps=1e-10)
        d = self.bits / 2.0 * (1 - F.dot(unit, unit, transpose_b=True))
        d = F.maximum(d, F.ones_like(d) * 1e-6)
        ce = similar * F.log(1 + d / self.gamma) + dissimilar * F.log(1 + self.gamma / d)
        cauchy = _balanced_mean(F, ce, similar, dissimilar)
        # d(|h_i|, 1) = bits / 2 (1 - cos(|h_i|, 1)), cos = sum |h| / (||h|| sqrt(bits))
        norm = F.sqrt(F.sum(F.square(codes), axis=1) + 1e-10)
        cos1 = F.sum(F.abs(codes), axis=1) / (norm * (self.bits ** 0.5))
        quant = F.mean(F.log(1 + self.bits / 2.0 * (1 - cos1) / self.gamma))
        return F.reshape(cauchy + self.lam * quant, (1,))
