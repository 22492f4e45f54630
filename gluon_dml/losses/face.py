"""Classification losses with an angular / cosine margin on normalised class weights.

Deng, Guo, Xue, Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
CVPR 2019; Wang, Wang, Zhou, Ji, Gong, Zhou, Li, Liu, "CosFace: Large Margin Cosine Loss for Deep
Face Recognition", CVPR 2018.
"""
import math

from mxnet import gluon, init

from .base import pairwise_similarity
from .options import Option

__all__ = ['ArcFaceLoss', 'CosFaceLoss']

_CLIP = 1e-6        # cosines are kept in [-1 + _CLIP, 1 - _CLIP]: sin(theta) > 0, finite gradients


class _MarginSoftmax(gluon.HybridBlock):
    """Softmax cross-entropy over ``scale * cos(theta_z)`` with the true class's cosine replaced by
    ``self.target(F, cos)``. Parameter ``weight`` (num_classes, embed_dim), L2-normalised in the
    forward pass, initialised N(0, 0.01^2) as in the authors' MXNet code (insightface)."""

    # what a batch must hold for this loss: nothing beyond one image; the other classes are
    # learnt parameters (proxies, class weights, centres)
    needs_positives_in_batch = False
    min_classes_in_batch = 1
    normalize_embeddings = True

    def __init__(self, num_classes, embed_dim, scale, margin, **kwargs):
        super().__init__(**kwargs)
        if num_classes is None or int(num_classes) < 2:
            raise ValueError('num_classes must be at least 2, got %r.' % (num_classes,))
        if embed_dim is None or int(embed_dim) < 1:
            raise ValueError('embed_dim must be a positive integer, got %r.' % (embed_dim,))
        if scale <= 0:
            raise ValueError('scale must be positive, got %r.' % (scale,))
        if margin < 0:
            raise ValueError('margin must be non-negative, got %r.' % (margin,))
        self._num_classes = int(num_classes)
        self._scale = float(scale)
        self._margin = float(margin)
        with self.name_scope():
            self.weight = self.params.get('weight', shape=(int(num_classes), int(embed_dim)),
                                          init=init.Normal(0.01))

    def target(self, F, cos):
        raise NotImplementedError

    def hybrid_forward(self, F, embeddings, labels, weight):
        x = F.L2Normalization(embeddings, mode='instance')
        w = F.L2Normalization(weight, mode='instance')
        cos = F.clip(pairwise_similarity(F, x, w), -1 + _CLIP, 1 - _CLIP)      # (B, C)
        true = F.one_hot(labels, self._num_classes)
        logits = self._scale * F.where(true > 0, self.target(F, cos), cos)
        return F.mean(-F.pick(F.log_softmax(logits, axis=1), labels, axis=1))


class ArcFaceLoss(_MarginSoftmax):
    r"""ArcFace, additive angular margin (Deng et al. 2019, eq. 3).

    .. math::
        L = -\frac{1}{B} \sum_i \log \frac{e^{s \cos(\theta_{y_i} + m)}}
              {e^{s \cos(\theta_{y_i} + m)} + \sum_{j \ne y_i} e^{s \cos\theta_j}}

    with ``cos(theta_j)`` the cosine between the embedding and the normalised class weight ``W_j``.
    Defaults are the paper's: ``scale`` (s) 64, ``margin`` (m) 0.5.

    ``cos(theta + m)`` stops decreasing once ``theta + m > pi``; there the target falls back to
    ``cos(theta) - m sin(m)`` (the authors' code's default, ``easy_margin=False``), which keeps it
    decreasing in theta. ``easy_margin=True`` instead applies the margin only where
    ``cos(theta) > 0`` and uses ``cos(theta)`` elsewhere. ``cos(theta + m)`` is computed as
    ``cos(theta) cos(m) - sin(theta) sin(m)`` with the cosine clipped to ``[-1 + 1e-6, 1 - 1e-6]``,
    so ``sin(theta) = sqrt(1 - cos^2)`` (the arccos) never has an infinite gradient.

    Parameter ``weight`` (num_classes, embed_dim); the paper trains it with the network (SGD,
    same learning rate), no scaling needed. Inputs: ``embeddings`` (B, D); ``labels`` (B,) class
    ids 0..num_classes-1. Output: (1,).
    """

    options = {
        'scale': Option(float, 's, the logit scale'),
        'margin': Option(float, 'm, the additive angular margin (radians)'),
        'easy_margin': Option(bool, 'apply the margin only where the angle is below pi/2 - m'),
    }

    def __init__(self, num_classes, embed_dim, scale=64.0, margin=0.5, easy_margin=False, **kwargs):
        if not 0 <= margin < math.pi / 2:
            raise ValueError('margin must be an angle in [0, pi/2) radians, got %r.' % (margin,))
        super().__init__(num_classes, embed_dim, scale, margin, **kwargs)
        self._easy = bool(easy_margin)

    def target(self, F, cos):
        m = self._margin
        sin = F.sqrt(1 - F.square(cos))
        cos_m = cos * math.cos(m) - sin * math.sin(m)                        # cos(theta + m)
        if self._easy:
            return F.where(cos > 0, cos_m, cos)
        return F.where(cos > math.cos(math.pi - m), cos_m, cos - m * math.sin(m))


class CosFaceLoss(_MarginSoftmax):
    r"""CosFace, large margin cosine loss (Wang et al. 2018, eq. 4).

    .. math::
        L = -\frac{1}{B} \sum_i \log \frac{e^{s (\cos\theta_{y_i} - m)}}
              {e^{s (\cos\theta_{y_i} - m)} + \sum_{j \ne y_i} e^{s \cos\theta_j}}

    Defaults: ``scale`` (s) 64 and ``margin`` (m) 0.35, the paper's. Parameter ``weight``
    (num_classes, embed_dim), trained with the network (same learning rate). Inputs:
    ``embeddings`` (B, D); ``labels`` (B,) class ids 0..num_classes-1. Output: (1,).
    """

    options = {
        'scale': Option(float, 's, the logit scale'),
        'margin': Option(float, 'm, the additive cosine margin'),
    }

    def __init__(self, num_classes, embed_dim, scale=64.0, margin=0.35, **kwargs):
        super().__init__(num_classes, embed_dim, scale, margin, **kwargs)

    def target(self, F, cos):
        return cos - self._margin
