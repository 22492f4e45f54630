"""Triplet-center loss: each sample nearer its own class centre than any other centre, by a margin.

He, Zhou, Zhou, Bai, Bai, "Triplet-Center Loss for Multi-View 3D Object Retrieval", CVPR 2018.
"""
import math

from mxnet import gluon, init

from .base import pairwise_sq_distance
from .options import Option

__all__ = ['TripletCenterLoss']

_FAR = 1e6          # fill for the own-class column in the min over the other centres


class TripletCenterLoss(gluon.HybridBlock):
    r"""Triplet-center loss (He et al. 2018, eq. 2-3) with one learnable centre per class.

    With ``D(f, c) = 1/2 ||f - c||_2^2`` (eq. 2, the squared Euclidean distance halved, as the paper
    writes it) between an embedding and a centre:

    .. math::
        L_{tc} = \frac{1}{B} \sum_{i=1}^{B}
                 \big(D(f_i, c_{y_i}) + m - \min_{j \ne y_i} D(f_i, c_j)\big)_+

    The paper writes eq. 3 as a sum over the M samples of the batch and uses it divided by the batch
    size; this is that mean. The min runs over *all* other classes' centres, not only those present
    in the batch, so a batch with one class still has negatives.

    Margin: the paper uses ``m = 5`` on unnormalised features (and trains jointly with softmax).
    Our embeddings are L2-normalised (``normalize_embeddings = True``); with centres near the unit
    sphere ``D = 1 - cos(f, c)`` lies in [0, 2], so ``m = 5`` could never be met and every sample
    would be pushed forever. The default ``margin = 0.5`` asks
    ``cos(f, c_y) >= max_{j != y} cos(f, c_j) + 0.5``: a quarter of the range, strict but reachable.
    For the paper's setting use ``margin=5`` with an unnormalised embedding.

    Parameters: ``centers`` (num_classes, embed_dim), drawn from ``N(0, 1/embed_dim)`` so that they
    start with norm about 1, where the normalised embeddings lie (the paper fixes no initialiser
    that we rely on). The centres are learnt by gradient descent on this loss (the engine's
    class-parameter optimizer). ``labels`` must be the training split's class ids 0..num_classes-1.

    Inputs: ``embeddings`` (B, embed_dim); ``labels`` (B,). Output: scalar loss, shape (1,).
    """
    # what a batch must hold for this loss: nothing beyond one image; the other classes are
    # learnt parameters (proxies, class weights, centres)
    needs_positives_in_batch = False
    min_classes_in_batch = 1
    normalize_embeddings = True

    options = {
        'margin': Option(float, "margin between a sample's own centre and the nearest other centre"),
    }

    def __init__(self, num_classes, embed_dim, margin=0.5, **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) < 2:
            raise ValueError('num_classes must be at least 2 (a sample needs another class centre), '
                             'got %d.' % num_classes)
        if int(embed_dim) < 1:
            raise ValueError('embed_dim must be positive, got %d.' % embed_dim)
        if margin < 0:
            raise ValueError('margin must be non-negative, got %g.' % margin)
        self._num_classes = int(num_classes)
        self._margin = float(margin)
        with self.name_scope():
            self.centers = self.params.get('centers', shape=(int(num_classes), int(embed_dim)),
                                           init=init.Normal(1.0 / math.sqrt(embed_dim)))

    def hybrid_forward(self, F, embeddings, labels, centers):
        dist = 0.5 * pairwise_sq_distance(F, embeddings, centers)            # (B, C), eq. 2
        own = F.one_hot(labels, depth=self._num_classes)                      # (B, C)
        d_own = F.sum(dist * own, axis=1)                                     # D(f_i, c_{y_i})
        others = F.where(own > 0, F.ones_like(dist) * _FAR, dist)
        d_other = F.pick(dist, F.argmin(others, axis=1), axis=1)              # nearest other centre
        return F.mean(F.relu(d_own + self._margin - d_other))
