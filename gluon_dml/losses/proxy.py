"""Proxy losses: one learnable proxy per class stands in for the class in every comparison.

Movshovitz-Attias, Toshev, Leung, Ioffe, Singh, "No Fuss Distance Metric Learning using Proxies",
ICCV 2017 (Proxy-NCA); Kim, Kim, Cho, Kwak, "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020.
"""
from mxnet import gluon, init

from .base import masked_logsumexp, pairwise_similarity, pairwise_sq_distance, safe_divide
from .options import Option

__all__ = ['ProxyNCALoss', 'ProxyAnchorLoss']


def _check_classes(num_classes, embed_dim, least):
    if num_classes is None or int(num_classes) < least:
        raise ValueError('num_classes must be at least %d, got %r.' % (least, num_classes))
    if embed_dim is None or int(embed_dim) < 1:
        raise ValueError('embed_dim must be a positive integer, got %r.' % (embed_dim,))


class ProxyNCALoss(gluon.HybridBlock):
    r"""Proxy-NCA loss (Movshovitz-Attias et al. 2017, Sec. 4, static proxy assignment).

    With ``x_i`` and the proxies ``p_z`` L2-normalised and multiplied by ``scale``, and ``D`` the
    Euclidean distance:

    .. math::
        L = \frac{1}{B} \sum_i -\log \frac{\exp(-D(x_i, p_{y_i})^2)}
                                         {\sum_{z \ne y_i} \exp(-D(x_i, p_z)^2)}
          = \frac{1}{B} \sum_i \Big[ D(x_i, p_{y_i})^2 + \log \sum_{z \ne y_i} \exp(-D(x_i, p_z)^2) \Big]

    The denominator leaves out the true proxy, as in the paper (NCA), so the loss is unbounded
    below and may be negative; it is minimised all the same. Computed with a masked log-sum-exp,
    so it stays finite for any distances.

    ``scale`` (default 3, for both the embeddings and the proxies): the paper normalises both but
    leaves the radius open; on the unit sphere ``D^2`` lies in [0, 4], so the softmax can favour
    the true proxy by at most ``e^4`` and training stalls. Scaling by 3 (the popular
    re-implementations' choice) stretches the range to [0, 36], i.e. a softmax temperature of 1/9.

    Parameter ``proxies`` (num_classes, embed_dim), initialised N(0, 1/8^2) as in the popular
    re-implementations (the paper does not say). Proxies want a larger learning rate than the
    network: about 100x (e.g. ``loss_lr`` 1e-2 for a network at 1e-4 with Adam), no weight decay.

    Inputs: ``embeddings`` (B, D); ``labels`` (B,) class ids 0..num_classes-1. Output: (1,).
    """

    # what a batch must hold for this loss: nothing beyond one image; the other classes are
    # learnt parameters (proxies, class weights, centres)
    needs_positives_in_batch = False
    min_classes_in_batch = 1
    normalize_embeddings = True

    options = {
        'scale': Option(float, 'scale of the normalised embeddings and proxies'),
    }

    def __init__(self, num_classes, embed_dim, scale=3.0, **kwargs):
        super().__init__(**kwargs)
        _check_classes(num_classes, embed_dim, 2)       # the denominator needs another proxy
        if scale <= 0:
            raise ValueError('scale must be positive, got %r.' % (scale,))
        self._num_classes = int(num_classes)
        self._scale = float(scale)
        with self.name_scope():
            self.proxies = self.params.get('proxies', shape=(int(num_classes), int(embed_dim)),
                                           init=init.Normal(1.0 / 8))

    def hybrid_forward(self, F, embeddings, labels, proxies):
        x = self._scale * F.L2Normalization(embeddings, mode='instance')
        p = self._scale * F.L2Normalization(proxies, mode='instance')
        d2 = pairwise_sq_distance(F, x, p)                                   # (B, C)
        true = F.one_hot(labels, self._num_classes)                          # (B, C)
        pos = F.sum(d2 * true, axis=1)                                       # D(x_i, p_yi)^2
        neg = masked_logsumexp(F, -d2, 1 - true, axis=1).reshape((-1,))
        return F.mean(pos + neg)


class ProxyAnchorLoss(gluon.HybridBlock):
    r"""Proxy Anchor loss (Kim et al. 2020, eq. 4).

    With ``s(x, p)`` the cosine similarity, ``P`` all proxies, ``P+`` the proxies whose class
    has an embedding in the batch, ``X_p+`` the batch embeddings of class ``p`` and ``X_p-`` the rest:

    .. math::
        \ell = \frac{1}{|P^+|} \sum_{p \in P^+} \log\Big(1 + \sum_{x \in X_p^+} e^{-\alpha (s(x,p) - \delta)}\Big)
             + \frac{1}{|P|} \sum_{p \in P} \log\Big(1 + \sum_{x \in X_p^-} e^{\alpha (s(x,p) + \delta)}\Big)

    Defaults are the paper's: ``alpha`` 32, ``delta`` (margin) 0.1. A batch always has ``|P+| >= 1``;
    the first mean uses safe_divide anyway, and a proxy with no negative in the batch adds 0.

    Parameter ``proxies`` (num_classes, embed_dim), Kaiming-normal (fan-out) initialised as in the
    authors' code; only their direction matters. The paper trains them with a learning rate 100x
    the network's (1e-2 for 1e-4, AdamW), no weight decay.

    Inputs: ``embeddings`` (B, D); ``labels`` (B,) class ids 0..num_classes-1. Output: (1,).
    """

    # what a batch must hold for this loss: nothing beyond one image; the other classes are
    # learnt parameters (proxies, class weights, centres)
    needs_positives_in_batch = False
    min_classes_in_batch = 1
    normalize_embeddings = True

    options = {
        'alpha': Option(float, 'alpha, the scale'),
        'delta': Option(float, 'delta, the margin'),
    }

    def __init__(self, num_classes, embed_dim, alpha=32.0, delta=0.1, **kwargs):
        super().__init__(**kwargs)
        _check_classes(num_classes, embed_dim, 1)
        if alpha <= 0:
            raise ValueError('alpha must be positive, got %r.' % (alpha,))
        if delta < 0:
            raise ValueError('delta (the margin) must be non-negative, got %r.' % (delta,))
        self._num_classes = int(num_classes)
        self._alpha = float(alpha)
        self._delta = float(delta)
        with self.name_scope():
            self.proxies = self.params.get('proxies', shape=(int(num_classes), int(embed_dim)),
                                           init=init.MSRAPrelu(factor_type='out', slope=0.0))

    def hybrid_forward(self, F, embeddings, labels, proxies):
        x = F.L2Normalization(embeddings, mode='instance')
        p = F.L2Normalization(proxies, mode='instance')
        sim = pairwise_similarity(F, x, p)                                   # (B, C)
        pos = F.one_hot(labels, self._num_classes)                           # (B, C)
        neg = 1 - pos
        pos_term = masked_logsumexp(F, -self._alpha * (sim - self._delta), pos, axis=0, add_one=True)
        neg_term = masked_logsumexp(F, self._alpha * (sim + self._delta), neg, axis=0, add_one=True)
        with_pos = F.sum(F.max(pos, axis=0))                                 # |P+|
        return safe_divide(F, F.sum(pos_term), with_pos) + F.sum(neg_term) / self._num_classes
