"""Multi-similarity loss with its pair mining.

Wang, Han, Huang, Dong, Scott, "Multi-Similarity Loss with General Pair Weighting for Deep Metric
Learning", CVPR 2019.
"""
from mxnet import gluon

from .base import label_masks, masked_logsumexp, pairwise_similarity
from .options import Option

__all__ = ['MultiSimilarityLoss']


class MultiSimilarityLoss(gluon.HybridBlock):
    r"""Multi-similarity loss (Wang et al. 2019, eq. 8) after the pair mining of eq. 5-6.

    ``S_ij`` is the cosine similarity of the batch embeddings (L2-normalised here). For an anchor
    ``i`` with positives ``j`` (same label, ``j != i``) and negatives ``k`` (different label), the
    mining (``mining=True``) keeps

    .. math::
        N_i = \{k : S_{ik} > \min_j S_{ij} - \epsilon\}, \qquad
        P_i = \{j : S_{ij} < \max_k S_{ik} + \epsilon\}

    (both sets computed from the unmined positives and negatives), and the loss is

    .. math::
        L = \frac{1}{m} \sum_{i=1}^{m} \Big[ \frac{1}{\alpha} \log\Big(1 + \sum_{j \in P_i} e^{-\alpha (S_{ij} - \lambda)}\Big)
            + \frac{1}{\beta} \log\Big(1 + \sum_{k \in N_i} e^{\beta (S_{ik} - \lambda)}\Big) \Big]

    with ``m`` the batch size. An empty set gives 0 for its term (eq. 8 as written; the authors'
    code instead skips an anchor unless both mined sets are non-empty). An anchor with no positive
    keeps no negative and one with no negative keeps no positive, so a one-class batch gives 0.
    ``mining=False`` uses every positive and negative.

    Defaults: ``alpha`` 2, ``beta`` 50, ``lam`` (the base lambda) 0.5, ``epsilon`` 0.1 (the values
    of the paper's experiments and the authors' released code).

    Inputs: ``embeddings`` (B, D); ``labels`` (B,). Output: (1,).
    """

    # what a batch must hold for this loss (checked against --batch-size / --batch-k):
    # positives (two images of a class) and negatives (another class)
    needs_positives_in_batch = True
    min_classes_in_batch = 2
    normalize_embeddings = True

    options = {
        'alpha': Option(float, "alpha, the positives' scale"),
        'beta': Option(float, "beta, the negatives' scale"),
        'lam': Option(float, 'lambda, the similarity offset'),
        'epsilon': Option(float, 'epsilon of the pair mining'),
        'mining': Option(bool, "mine informative pairs (the paper's step 1)"),
    }

    def __init__(self, alpha=2.0, beta=50.0, lam=0.5, epsilon=0.1, mining=True, **kwargs):
        super().__init__(**kwargs)
        if alpha <= 0 or beta <= 0:
            raise ValueError('alpha and beta must be positive, got alpha=%r, beta=%r.' % (alpha, beta))
        if epsilon < 0:
            raise ValueError('epsilon (the mining margin) must be non-negative, got %r.' % (epsilon,))
        self._alpha, self._beta = float(alpha), float(beta)
        self._lam, self._epsilon = float(lam), float(epsilon)
        self._mining = bool(mining)

    def mine(self, F, sim, same, diff):
        """Masks (B, B) of the kept positives and negatives (eq. 5-6); similarities lie in [-1, 1],
        so +-2 stand for 'no positive' / 'no negative' and then keep nothing."""
        s = F.BlockGrad(sim)
        two = 2 * F.ones_like(s)
        min_pos = F.min(F.where(same > 0, s, two), axis=1, keepdims=True)       # (B, 1)
        max_neg = F.max(F.where(diff > 0, s, -two), axis=1, keepdims=True)
        neg = diff * F.broadcast_greater(s, min_pos - self._epsilon)
        pos = same * F.broadcast_lesser(s, max_neg + self._epsilon)
        return pos, neg

    def hybrid_forward(self, F, embeddings, labels):
        x = F.L2Normalization(embeddings, mode='instance')
        sim = pairwise_similarity(F, x)                                        # (B, B)
        same, diff = label_masks(F, labels, sim)
        pos, neg = self.mine(F, sim, same, diff) if self._mining else (same, diff)
        pos_term = masked_logsumexp(F, -self._alpha * (sim - self._lam), pos, add_one=True)
        neg_term = masked_logsumexp(F, self._beta * (sim - self._lam), neg, add_one=True)
        return F.mean(pos_term / self._alpha + neg_term / self._beta)
