"""Pooling heads for instance retrieval: a backbone's feature map (N, C, H, W) -> (N, C').

- :class:`AvgPool`: global average pooling (what every backbone of :mod:`gluon_dml.models` does
  today), output C.
- :class:`GeM`: generalised-mean pooling with a learnable exponent (Radenovic, Tolias, Chum,
  "Fine-tuning CNN Image Retrieval with No Human Annotation", TPAMI 2018), output C.
- :class:`RMAC`: regional maximum activations of convolutions (Tolias, Sicre, Jegou, "Particular
  object retrieval with integral max-pooling of CNN activations", ICLR 2016), output C (or the
  whitening dimension).
- :class:`NetVLAD`: the trainable VLAD layer (Arandjelovic, Gronat, Torii, Pajdla, Sivic, "NetVLAD:
  CNN architecture for weakly supervised place recognition", CVPR 2016), output K*C or a projection.

:func:`get_pooling` builds one by name; :func:`spatial_features` strips the final global pooling
(and Flatten) off a backbone's feature extractor so that a pooling head can take its place. Every
head is a HybridBlock that works on any spatial size (7x7, 14x14, 3x5 ...), imperatively or
hybridized, and exposes ``output_dim``.

Wiring one into the embedding network (:class:`gluon_dml.models.EmbeddingNet` takes any
backbone block)::

    backbone = nn.HybridSequential(prefix='')
    backbone.add(spatial_features(get_backbone('resnet50_v2', pretrained=True)),   # (N, 2048, H, W)
                 get_pooling('gem', channels=2048))                                # (N, 2048)
    net = EmbeddingNet(backbone, embed_dim=512)

With pretrained weights the pooling head's own parameters (GeM's p, NetVLAD's centres and
assignment, R-MAC's whitening) still need ``pooling.initialize(ctx=ctx)``.
"""
import numpy as np
from mxnet import gluon, init
from mxnet.gluon import nn

__all__ = ['AvgPool', 'GeM', 'RMAC', 'NetVLAD', 'get_pooling', 'list_poolings', 'rmac_regions',
           'spatial_features', 'pca_whitening']

_EPS_NORM = 1e-12


def _l2n(F, x, axis):
    """L2-normalise ``x`` along ``axis`` (eps inside the root keeps zero vectors finite)."""
    return F.broadcast_div(x, F.sqrt(F.sum(F.square(x), axis=axis, keepdims=True) + _EPS_NORM))


class AvgPool(gluon.HybridBlock):
    """Global average pooling: (N, C, H, W) -> (N, C), the mean over the H*W positions."""

    def __init__(self, channels=None, **kwargs):
        super().__init__(**kwargs)
        self.output_dim = channels

    def hybrid_forward(self, F, x):
        return F.mean(x, axis=(2, 3))


class GeM(gluon.HybridBlock):
    r"""Generalised-mean pooling (Radenovic et al., TPAMI 2018, eq. 2), per channel ``k``:

    .. math:: f_k = \Big(\frac{1}{|\mathcal{X}_k|}\sum_{x\in\mathcal{X}_k} x^{p}\Big)^{1/p}

    over the H*W activations of channel ``k``, each first clamped at ``eps`` (1e-6) so that the
    power of a zero or negative activation is defined. ``p`` = 1 is average pooling, ``p`` -> inf
    max pooling. ``p`` is one learnable scalar shared by all channels, initialised to 3 (the
    paper's initialisation; ``learn_p=False`` keeps it fixed). ``p`` has no weight decay
    (``wd_mult`` 0): the network's decay would pull it towards 0, i.e. away from max pooling.
    Output (N, C).
    """

    def __init__(self, channels=None, p=3.0, eps=1e-6, learn_p=True, **kwargs):
        super().__init__(**kwargs)
        if p <= 0:
            raise ValueError('GeM needs p > 0, got %g.' % p)
        self.output_dim = channels
        self._eps = float(eps)
        with self.name_scope():
            self.p = self.params.get('p', shape=(1,), init=init.Constant(float(p)), wd_mult=0.0,
                                     grad_req='write' if learn_p else 'null')

    def hybrid_forward(self, F, x, p):
        xp = F.broadcast_power(F.maximum(x, self._eps), F.reshape(p, (1, 1, 1, 1)))
        return F.broadcast_power(F.mean(xp, axis=(2, 3)), F.reshape(1.0 / p, (1, 1)))


# ---------------------------------------------------------------------------------------------
# R-MAC
# ---------------------------------------------------------------------------------------------
_OVERLAP = 0.4                 # target overlap of consecutive regions (Tolias et al. Sec. 3)
_STEPS = tuple(range(2, 8))    # candidate numbers of largest-scale regions along a long side


def _rmac_extra(height, width):
    """m - 1: how many regions beyond one the largest scale places along the longer side."""
    w, d = min(height, width), max(height, width)
    if d == w:
        return 0
    errs = [_overlap_error(w, d, n) for n in _STEPS]
    return _STEPS[int(np.argmin(errs))] - 1      # a tie goes to the fewer regions


def _overlap_error(w, d, n):
    """|overlap - 0.4| for n regions of side w spread over length d, as one division of two
    integers, |3 w (n - 1) - 5 (d - w)| / (5 w (n - 1)), so that exact ties stay ties in any
    floating-point precision (the graph computes the same in float32)."""
    return abs(3 * w * (n - 1) - 5 * (d - w)) / (5.0 * w * (n - 1))


def rmac_regions(height, width, levels=3):
    """The R-MAC region grid of an ``height`` x ``width`` map, as ``(top, left, side)`` triples.

    Tolias et al. 2016, Sec. 3 ("Regional feature vectors"): square regions at ``levels`` scales.
    At scale ``l`` the side is ``floor(2 min(H, W) / (l + 1))`` (the whole shorter side at l = 1).
    Along the shorter side ``l`` regions, along the longer side ``l + m - 1``, placed uniformly from
    one end to the other (starts ``floor(j (A - side) / (count - 1))``); ``m`` (number of largest
    regions) is chosen from 2..7 so that consecutive largest regions overlap as close to 40% as
    possible (a tie goes to the smaller m), and is 1 on a square map. This is the grid :class:`RMAC` pools (computed there in the
    graph, from the input's shape).
    """
    height, width = int(height), int(width)
    extra = _rmac_extra(height, width)
    short, long_ = min(height, width), max(height, width)
    out = []
    for lev in range(1, levels + 1):
        side = max((2 * short) // (lev + 1), 1)
        n_long = lev + extra
        starts_s = [(a * (short - side)) // max(lev - 1, 1) for a in range(lev)]
        starts_l = [(b * (long_ - side)) // max(n_long - 1, 1) for b in range(n_long)]
        for a in starts_s:
            for b in starts_l:
                out.append((a, b, side) if height <= width else (b, a, side))
    return out


class RMAC(gluon.HybridBlock):
    r"""Regional maximum activations of convolutions (Tolias et al., ICLR 2016, Sec. 3).

    The map is max-pooled over each region of :func:`rmac_regions` (``levels`` scales, 40%
    overlap); each regional vector is L2-normalised, optionally PCA-whitened and L2-normalised
    again (``whiten=True``: a learnable affine map C -> ``whiten_dim`` applied to every region,
    set from data with :meth:`set_whitening`), the regional vectors are summed and the sum is
    L2-normalised. Output (N, C), or (N, whiten_dim).

    The grid is computed inside the graph from the input's shape, so one hybridized block serves
    maps of any size, and the regions are pooled with ``ROIPooling``. Every map gets the largest
    possible slot count of the grid (``sum_l l (l + 6)``, 50 for L = 3); slots beyond a map's grid
    are masked out of the sum.
    """

    def __init__(self, channels=None, levels=3, whiten=False, whiten_dim=None, **kwargs):
        super().__init__(**kwargs)
        if levels < 1:
            raise ValueError('R-MAC needs levels >= 1, got %r.' % (levels,))
        if whiten and not channels:
            raise ValueError('R-MAC whitening needs channels (the feature-map depth).')
        self._levels = int(levels)
        self._whiten = bool(whiten)
        self.output_dim = (whiten_dim or channels) if whiten else channels
        if whiten:
            with self.name_scope():
                self.whitening = nn.Dense(self.output_dim, in_units=channels, flatten=False,
                                          weight_initializer=init.Constant(np.eye(self.output_dim, channels)),
                                          bias_initializer='zeros')

    @property
    def num_slots(self):
        return sum(lev * (lev + _STEPS[-1] - 1) for lev in range(1, self._levels + 1))

    def set_whitening(self, mean, projection):
        """Load a whitening learnt offline: region vector ``v`` -> ``projection @ (v - mean)``
        (``projection`` (whiten_dim, C), ``mean`` (C,); :func:`pca_whitening` computes both)."""
        if not self._whiten:
            raise ValueError('This RMAC was built without whiten=True.')
        projection = np.asarray(projection, np.float32)
        mean = np.asarray(mean, np.float32)
        self.whitening.weight.set_data(projection)
        self.whitening.bias.set_data(-projection.dot(mean))

    def _grid(self, F, x):
        """rois (N * S, 5) and slot validity (1, S, 1) for the input's spatial size."""
        shape = F.cast(F.shape_array(x), 'float32')
        h = F.slice_axis(shape, axis=0, begin=2, end=3)                      # (1,)
        w = F.slice_axis(shape, axis=0, begin=3, end=4)
        short, long_ = F.minimum(h, w), F.maximum(h, w)
        steps = F.arange(_STEPS[0], _STEPS[-1] + 1).reshape((1, -1))          # (1, 6)
        w1 = F.broadcast_mul(F.reshape(short, (1, 1)), steps - 1)             # w (n - 1)
        num = F.abs(F.broadcast_sub(3 * w1, F.reshape(5 * (long_ - short), (1, 1))))
        err = num / (5 * w1)                                                  # _overlap_error
        extra = F.reshape(F.argmin(err, axis=1), (1,)) + (_STEPS[0] - 1)     # first on a tie
        extra = extra * (long_ > short)                                       # 0 on a square map
        portrait = F.reshape(h > w, (1, 1))                                   # long side = height
        ys, xs, sides, valid = [], [], [], []
        for lev in range(1, self._levels + 1):
            n_max = lev + _STEPS[-1] - 1
            side = F.maximum(F.floor(2 * short / (lev + 1)), F.ones_like(short))   # (1,)
            n_long = lev + extra                                                    # (1,)
            a = F.arange(lev).reshape((-1, 1))                                      # (lev, 1)
            bidx = F.arange(n_max).reshape((1, -1))                                 # (1, n_max)
            start_s = F.floor(F.broadcast_mul(a, F.reshape(short - side, (1, 1))) / max(lev - 1, 1))
            den = F.reshape(F.maximum(n_long - 1, F.ones_like(n_long)), (1, 1))
            start_l = F.floor(F.broadcast_div(
                F.broadcast_mul(bidx, F.reshape(long_ - side, (1, 1))), den))
            start_s = F.broadcast_like(start_s, F.broadcast_add(a, bidx))          # (lev, n_max)
            start_l = F.broadcast_like(start_l, start_s)
            port = F.broadcast_like(portrait, start_s)
            ys.append(F.reshape(F.where(port, start_l, start_s), (-1,)))
            xs.append(F.reshape(F.where(port, start_s, start_l), (-1,)))
            sides.append(F.broadcast_like(side, ys[-1]))
            ok = F.broadcast_lesser(bidx, F.reshape(n_long, (1, 1)))
            valid.append(F.reshape(F.broadcast_like(ok, start_s), (-1,)))
        y0, x0, side = F.concat(*ys, dim=0), F.concat(*xs, dim=0), F.concat(*sides, dim=0)
        valid = F.concat(*valid, dim=0)                                         # (S,)
        box = F.stack(x0, y0, x0 + side - 1, y0 + side - 1, axis=1)            # (S, 4)
        batch = F.contrib.arange_like(x, axis=0).reshape((-1, 1, 1))           # (N, 1, 1)
        box = F.broadcast_add(F.zeros_like(batch), F.expand_dims(box, 0))      # (N, S, 4)
        idx = F.broadcast_like(batch, F.slice_axis(box, axis=2, begin=0, end=1))
        rois = F.reshape(F.concat(idx, box, dim=2), (-1, 5))
        return F.BlockGrad(rois), F.reshape(valid, (1, -1, 1))

    def hybrid_forward(self, F, x):
        rois, valid = self._grid(F, x)
        pooled = F.ROIPooling(x, rois, pooled_size=(1, 1), spatial_scale=1.0)   # (N*S, C, 1, 1)
        regions = F.reshape(pooled, (-4, -1, self.num_slots, -2))               # (N, S, C, 1, 1)
        regions = _l2n(F, F.reshape(regions, (0, 0, -1)), axis=2)               # (N, S, C)
        if self._whiten:
            regions = _l2n(F, self.whitening(regions), axis=2)
        total = F.sum(F.broadcast_mul(regions, valid), axis=1)                  # (N, C')
        return _l2n(F, total, axis=1)

    def region_vectors(self, x):
        """The L2-normalised regional vectors of an NDArray map before whitening, as a numpy array
        (num_regions_total, C): the data to fit :func:`pca_whitening` on."""
        from mxnet import nd
        rois, valid = self._grid(nd, x)
        pooled = nd.ROIPooling(x, rois, pooled_size=(1, 1), spatial_scale=1.0)
        v = _l2n(nd, pooled.reshape((0, -1)), axis=1).asnumpy()
        keep = np.tile(valid.asnumpy().reshape(-1) > 0, x.shape[0])
        return v[keep]


def pca_whitening(vectors, dim=None, eps=1e-6):
    """PCA whitening fitted on ``vectors`` (M, C): ``(mean (C,), projection (dim, C))`` with
    ``projection = diag(1 / sqrt(eigenvalue + eps)) @ eigenvectors^T`` over the ``dim`` leading
    components (Tolias et al. learn it on regional vectors of a separate image set)."""
    v = np.asarray(vectors, np.float64)
    mean = v.mean(axis=0)
    cov = np.cov(v - mean, rowvar=False)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1][:dim or v.shape[1]]
    proj = evecs[:, order].T / np.sqrt(evals[order] + eps)[:, None]
    return mean.astype(np.float32), proj.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# NetVLAD
# ---------------------------------------------------------------------------------------------
class NetVLAD(gluon.HybridBlock):
    r"""The NetVLAD layer (Arandjelovic et al., CVPR 2016, Sec. 3.1).

    Each of the H*W local descriptors ``x_i`` (C-dim; L2-normalised across channels first when
    ``normalize_input``, as the paper's layer does with its conv5 descriptors) is softly assigned to
    ``clusters`` (K) learnable centres ``c_k`` by a 1x1 convolution and a softmax over K:
    ``a_k(x_i) = softmax_k(w_k . x_i + b_k)``; the aggregated residuals

    .. math:: V(k, j) = \sum_i a_k(x_i)\,(x_i(j) - c_k(j))

    are L2-normalised per cluster (intra-normalisation), flattened to K*C and L2-normalised.
    ``projection`` (an int) adds ``Dense(projection)`` and a final L2 normalisation, so the head
    can output a compact descriptor (the paper reduces with PCA + whitening instead).

    :meth:`init_from_centroids` sets the paper's initialisation from k-means centres of sampled
    descriptors: ``c_k`` the centres, ``w_k = 2 alpha c_k``, ``b_k = -alpha ||c_k||^2``.
    """

    def __init__(self, channels, clusters=64, normalize_input=True, projection=None, **kwargs):
        super().__init__(**kwargs)
        if not channels or clusters < 1:
            raise ValueError('NetVLAD needs channels > 0 and clusters >= 1, got %r, %r.'
                             % (channels, clusters))
        self._channels, self._clusters = int(channels), int(clusters)
        self._normalize_input = bool(normalize_input)
        self.output_dim = int(projection) if projection else self._clusters * self._channels
        with self.name_scope():
            self.assign = nn.Conv2D(self._clusters, kernel_size=1, in_channels=self._channels)
            self.centers = self.params.get('centers', shape=(self._clusters, self._channels),
                                           init=init.Uniform(1.0 / np.sqrt(self._channels)))
            self.proj = nn.Dense(int(projection), in_units=self._clusters * self._channels) \
                if projection else None

    def init_from_centroids(self, centroids, alpha=100.0):
        """Paper initialisation (Sec. 3.1) from k-means ``centroids`` (K, C) of the (normalised)
        descriptors; large ``alpha`` makes the soft assignment close to the hard one."""
        c = np.asarray(centroids, np.float32)
        if c.shape != (self._clusters, self._channels):
            raise ValueError('centroids must have shape %s, got %s.'
                             % ((self._clusters, self._channels), c.shape))
        self.centers.set_data(c)
        self.assign.weight.set_data((2 * alpha * c).reshape(self._clusters, self._channels, 1, 1))
        self.assign.bias.set_data(-alpha * np.sum(c * c, axis=1))

    def hybrid_forward(self, F, x, centers):
        if self._normalize_input:
            x = _l2n(F, x, axis=1)
        soft = F.softmax(self.assign(x), axis=1)                              # (N, K, H, W)
        soft = F.reshape(soft, (0, 0, -1))                                    # (N, K, HW)
        desc = F.reshape(x, (0, 0, -1))                                       # (N, C, HW)
        vlad = F.batch_dot(soft, desc, transpose_b=True)                      # (N, K, C)
        vlad = vlad - F.broadcast_mul(F.sum(soft, axis=2, keepdims=True), F.expand_dims(centers, 0))
        vlad = _l2n(F, vlad, axis=2)                                          # intra-normalisation
        vlad = _l2n(F, F.reshape(vlad, (0, -1)), axis=1)
        if self.proj is not None:
            vlad = _l2n(F, self.proj(vlad), axis=1)
        return vlad


_POOLINGS = {'avg': AvgPool, 'gem': GeM, 'rmac': RMAC, 'netvlad': NetVLAD}


def init_netvlad_from_features(vlad, batches, spatial, descriptors=50000, seed=0, alpha=100.0):
    """The paper's NetVLAD initialisation (Arandjelovic et al. 2016, Sec. 3.1): k-means (faiss,
    ``seed``) of local descriptors of training images, then :meth:`NetVLAD.init_from_centroids`.
    ``batches`` yields image NDArrays, ``spatial`` maps them to the feature maps the head pools
    (N, C, H, W); each position is one descriptor (L2-normalised when the head normalises its
    input), at most ``descriptors`` of them drawn with ``seed``. Returns the centroids (K, C)."""
    import faiss
    from mxnet import autograd
    feats = []
    with autograd.pause(train_mode=False):
        for data in batches:
            fmap = spatial(data).asnumpy()                                  # (N, C, H, W)
            feats.append(fmap.transpose(0, 2, 3, 1).reshape(-1, fmap.shape[1]))
    desc = np.ascontiguousarray(np.concatenate(feats), dtype=np.float32)
    if vlad._normalize_input:
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
    if desc.shape[0] > descriptors:
        desc = desc[np.random.RandomState(seed).choice(desc.shape[0], descriptors, replace=False)]
    if desc.shape[0] < vlad._clusters:
        raise ValueError('NetVLAD initialisation needs at least %d descriptors (its clusters), got '
                         '%d; use more images.' % (vlad._clusters, desc.shape[0]))
    km = faiss.Kmeans(desc.shape[1], vlad._clusters, niter=20, seed=int(seed) & 0x7fffffff)
    km.cp.min_points_per_centroid = 1          # few descriptors per cluster is expected here
    km.train(desc)
    vlad.init_from_centroids(km.centroids, alpha)
    return km.centroids


def list_poolings():
    return sorted(_POOLINGS)


def get_pooling(name, channels=None, **opts):
    """A pooling head by name: ``avg``, ``gem``, ``rmac`` or ``netvlad``; ``channels`` is the
    feature map's depth C (needed by ``netvlad`` and by ``rmac`` with whitening; it sets
    ``output_dim`` for all). ``opts`` go to the class (``p``, ``learn_p``; ``levels``, ``whiten``;
    ``clusters``, ``projection`` ...)."""
    key = str(name).lower().replace('-', '').replace('_', '')
    if key not in _POOLINGS:
        raise ValueError('Unknown pooling %r; available: %s.' % (name, ', '.join(list_poolings())))
    return _POOLINGS[key](channels=channels, **opts)


_GLOBAL_POOLS = (nn.GlobalAvgPool2D, nn.GlobalMaxPool2D, nn.AvgPool2D, nn.MaxPool2D)


def spatial_features(features):
    """The feature extractor ``features`` (a HybridSequential from
    :func:`gluon_dml.models.get_backbone`) without its final pooling: trailing Flatten / Dropout
    layers are dropped, then the last layer must be a pooling layer (GlobalAvgPool2D, or the
    fixed-window AvgPool2D of densenet / inception at their nominal input size) and is dropped.
    Returns a new HybridSequential holding the same child blocks (same parameters) that outputs
    the feature map (N, C, H, W). Raises ValueError for extractors that do not end in a pooling
    (vgg, alexnet, squeezenet, mobilenetv3 ...)."""
    children = list(features._children.values())
    while children and isinstance(children[-1], (nn.Flatten, nn.Dropout)):
        children.pop()
    if not children or not isinstance(children[-1], _GLOBAL_POOLS):
        raise ValueError('This backbone does not end in a global pooling layer (it ends in %s), so '
                         'there is no feature map to pool; use smallconv, a ResNet, MobileNet(v2) '
                         'or DenseNet.' % (type(children[-1]).__name__ if children else 'nothing'))
    children.pop()
    out = nn.HybridSequential(prefix='')
    for child in children:
        out.add(child)
    return out
