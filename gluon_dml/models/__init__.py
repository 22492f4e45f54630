"""Backbones and the embedding network.

``get_model(backbone, embed_dim, pretrained)`` gives an :class:`EmbeddingNet`: a backbone's
feature extractor, then ``Dense(embed_dim)`` and L2 normalisation. The backbone is ``smallconv``
(the small conv net for 28x28 and 8x8 grey images) or any GluonCV model-zoo name whose network
has ``.features`` (``resnet50_v2``, ``mobilenet1.0``, ``densenet121`` ...) or is a ResNetV1b
(``resnet50_v1b`` ...). ``members=N`` gives a :class:`MemberEnsemble` of N such networks.
"""
import math
import os

from mxnet import gluon, init
from mxnet.gluon import nn

__all__ = ['SmallConvNet', 'EmbeddingNet', 'MemberEnsemble', 'ShiftAveraged', 'with_tta',
           'get_backbone', 'get_model', 'pretrained_cache_dir', 'feature_channels',
           'pooled_backbone', 'Conv4',
           'initializers', 'initialize_with_head', 'INITS',
           'PretrainedUnavailableError']


class PretrainedUnavailableError(RuntimeError):
    """The GluonCV pretrained weights could not be downloaded or read."""


class SmallConvNet(nn.HybridSequential):
    """Three 3x3 convolutions (32, 64, 128 channels), each followed by batch norm and ReLU, 2x2
    max-pooling after the first two, global average pooling. Outputs (B, 128). Works on 28x28
    (Fashion-MNIST, Omniglot) and 8x8 (digits) inputs.

    Where a block pools, its layers run conv, batch norm, max-pooling, ReLU: the ReLU after the
    pooling instead of before it. The two orders are the same function with the same gradients
    (ReLU is monotone, so ``max(relu(a), relu(b)) = relu(max(a, b))``, and the pooling routes
    the gradient to the same element either way), but the ReLU then reads and writes a quarter
    of the values, forward and backward, which shortens the training step of this memory-bound
    net (docs/speed.md). The parameters sit at the same child indices as in the
    conv, batch norm, ReLU, pooling order, so parameter files of either order load."""

    def __init__(self, channels=(32, 64, 128), pool_last=False, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            add_conv_blocks(self, channels, pool_last)
            self.add(nn.GlobalAvgPool2D(), nn.Flatten())


def add_conv_blocks(seq, channels, pool_last):
    """Add the small conv nets' blocks to the HybridSequential ``seq`` (inside its name scope): per
    entry of ``channels`` a 3x3 convolution, batch norm, 2x2 max-pooling (all blocks but the last
    unless ``pool_last``) and ReLU, the ReLU after the pooling (see :class:`SmallConvNet`)."""
    for i, c in enumerate(channels):
        seq.add(nn.Conv2D(c, kernel_size=3, padding=1, use_bias=False), nn.BatchNorm())
        if i < len(channels) - 1 or pool_last:
            seq.add(nn.MaxPool2D(pool_size=2, strides=2))
        seq.add(nn.Activation('relu'))


class Conv4(SmallConvNet):
    """The four-block network of the few-shot literature (Vinyals et al. 2016, Snell et al. 2017):
    four 3x3 convolutions of 64 channels, each followed by batch norm, ReLU and 2x2 max-pooling
    (28x28 -> 1x1), global average pooling. Outputs (B, 64). About 110 k weights, 11 M
    multiply-adds per 28x28 image (the small conv net: 93 k and 18 M)."""

    def __init__(self, width=64, **kwargs):
        super().__init__(channels=(width,) * 4, pool_last=True, **kwargs)


def pretrained_cache_dir():
    """Where GluonCV looks for (and downloads) pretrained weights."""
    home = os.environ.get('MXNET_HOME', os.path.join(os.path.expanduser('~'), '.mxnet'))
    return os.path.join(home, 'models')


def _features_of(net, name):
    if hasattr(net, 'features'):
        return net.features
    stages = ['conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4']
    if all(hasattr(net, s) for s in stages):          # GluonCV ResNetV1b family
        feats = nn.HybridSequential(prefix='')
        for s in stages:
            feats.add(getattr(net, s))
        feats.add(nn.GlobalAvgPool2D(), nn.Flatten())
        return feats
    raise ValueError('Backbone %r has no .features part to embed from; pick a GluonCV model such as '
                     'resnet50_v2, resnet50_v1b, mobilenet1.0 or densenet121, or smallconv / conv4.' % name)


def get_backbone(name, pretrained=False):
    """The feature extractor of a backbone, as a HybridBlock."""
    if name.lower() in ('smallconv', 'small_conv', 'convnet'):
        if pretrained:
            raise ValueError('smallconv has no pretrained weights; drop --use-pretrained or pick a '
                             'GluonCV backbone such as resnet50_v2.')
        return SmallConvNet()
    if name.lower() == 'conv4':
        if pretrained:
            raise ValueError('conv4 has no pretrained weights; drop --use-pretrained.')
        return Conv4()
    from gluoncv import model_zoo
    if name.lower() not in model_zoo.get_model_list():
        raise ValueError('Unknown backbone %r: use smallconv, conv4 or a GluonCV model-zoo name such as '
                         'resnet50_v2 (gluoncv.model_zoo.get_model_list() lists them all).' % name)
    try:
        net = model_zoo.get_model(name, pretrained=bool(pretrained), root=pretrained_cache_dir())
    except Exception as err:  # network errors, missing files, bad checksums
        if not pretrained:
            raise
        try:
            from gluoncv.model_zoo.model_store import short_hash
            fname = '%s-%s.params' % (name, short_hash(name))
        except Exception:
            fname = 'the %s .params file' % name
        raise PretrainedUnavailableError(
            'Could not get the pretrained weights of %s (%s); on a machine with internet run '
            'gluoncv.model_zoo.get_model(%r, pretrained=True) and copy %s into %s, or train '
            'without --use-pretrained.'
            % (name, type(err).__name__, name, fname, pretrained_cache_dir())) from None
    return _features_of(net, name)


class EmbeddingNet(gluon.HybridBlock):
    """backbone -> Dense(embed_dim) -> L2 normalisation (``normalize=False`` skips the last step)."""

    def __init__(self, backbone, embed_dim, normalize=True, **kwargs):
        super().__init__(**kwargs)
        self._normalize = normalize
        with self.name_scope():
            self.backbone = backbone
            self.embed = nn.Dense(embed_dim, flatten=True)

    def hybrid_forward(self, F, x):
        z = self.embed(self.backbone(x))
        if self._normalize:
            z = F.L2Normalization(z, mode='instance', eps=1e-10)
        return z


class MemberEnsemble(gluon.HybridBlock):
    """N embedding networks side by side on one input (``--members N``): the output is their N
    embeddings joined, (B, N x D), each scaled by 1 / sqrt(N) when they are L2-normalised, so
    that the joined vector has length 1 too and its dot products are the mean of the members'
    cosine similarities. The members start from different random weights and learn together,
    each with its own copy of the loss (:class:`gluon_dml.losses.MemberLoss`), on the same
    batches; searching with the joined vector is the ensemble. ``members[i]`` is member i."""

    def __init__(self, members, normalize=True, **kwargs):
        super().__init__(**kwargs)
        if len(members) < 2:
            raise ValueError('an ensemble needs at least 2 members, got %d' % len(members))
        self._scale = 1.0 / math.sqrt(len(members)) if normalize else 1.0
        self.members = []
        for i, m in enumerate(members):
            setattr(self, 'member%d' % i, m)           # registered: member0.backbone.0.weight ...
            self.members.append(m)

    def hybrid_forward(self, F, x):
        z = F.concat(*[m(x) for m in self.members], dim=1)
        return z * self._scale if self._scale != 1.0 else z


class ShiftAveraged(gluon.HybridBlock):
    """Test-time augmentation (``--tta-shift PX``): the embedding of an image averaged with the
    embeddings of its four copies moved by ``shift`` pixels up, down, left and right (the
    border repeated into the uncovered rows and columns), L2-normalised again when ``normalize``.
    The five views run as one batch of 5 x B. ``net``'s parameters are this block's:
    ``load_parameters`` / ``save_parameters`` read and write ``net``'s own files, so a run's
    parameters load into it unchanged. Used for inference only (evaluation, the exported
    model, ``evaluate``, ``index``, ``serve``); training sees ``net`` alone."""

    VIEWS = 5

    def __init__(self, net, shift, normalize=True, **kwargs):
        super().__init__(**kwargs)
        if int(shift) < 1:
            raise ValueError('shift must be at least 1 pixel, got %r' % (shift,))
        self._shift, self._normalize = int(shift), normalize
        self.net = net

    def hybrid_forward(self, F, x):
        s = self._shift
        p = F.pad(x, mode='edge', pad_width=(0, 0, 0, 0, s, s, s, s))
        a, b = 2 * s, -2 * s            # (rows, cols) of each view in the padded image
        windows = [((s, -s), (s, -s)),                                   # the image itself
                   ((0, b), (s, -s)), ((a, None), (s, -s)),              # moved down, up
                   ((s, -s), (0, b)), ((s, -s), (a, None))]              # moved right, left
        views = [F.slice(p, begin=(None, None, r[0], c[0]), end=(None, None, r[1], c[1]))
                 for r, c in windows]
        z = self.net(F.concat(*views, dim=0))                           # (5 B, D)
        z = F.add_n(*F.split(z, num_outputs=self.VIEWS, axis=0)) / self.VIEWS    # view mean
        if self._normalize:
            z = F.L2Normalization(z, mode='instance', eps=1e-10)
        return z

    def load_parameters(self, *args, **kwargs):
        return self.net.load_parameters(*args, **kwargs)

    def save_parameters(self, *args, **kwargs):
        return self.net.save_parameters(*args, **kwargs)


def with_tta(net, shift, normalize=True):
    """``net`` wrapped in :class:`ShiftAveraged` for ``shift`` > 0, else ``net``."""
    return ShiftAveraged(net, shift, normalize) if shift else net


INITS = ('xavier', 'fan-in')


def initializers(name='xavier'):
    """``(backbone initializer, embedding-layer initializer)`` for the weights (biases start at 0,
    batch norm at scale 1 and shift 0).

    - ``'xavier'``: Xavier-uniform, magnitude 2 (He-like) in the backbone and 3 in the Dense layer.
    - ``'fan-in'``: uniform in +-1/sqrt(fan_in) everywhere, PyTorch's default for convolutions and
      linear layers (``kaiming_uniform_(a=sqrt(5))``), the initialisation a protocol run in PyTorch
      starts from. Behind batch norm (and the L2 normalisation) a layer's scale does not change its
      output, but with Adam it sets the effective step size (about lr / |w|), so the two start the
      same network on different training dynamics.
    """
    if name == 'xavier':
        return init.Xavier(magnitude=2), init.Xavier()
    if name == 'fan-in':
        fan_in = init.Xavier(rnd_type='uniform', factor_type='in', magnitude=1.0)   # U(+-sqrt(1/fan_in))
        return fan_in, fan_in
    raise ValueError('Unknown initialisation %r; valid: %s.' % (name, ', '.join(INITS)))


def feature_channels(features):
    """The depth C of the feature map a backbone's layers end with: the output channels of its
    last convolution or batch norm whose size is known (None when none is)."""
    channels = None
    for block in _leaves(features):
        if isinstance(block, nn.Conv2D):
            channels = block._channels
        elif isinstance(block, nn.BatchNorm) and block.gamma.shape and block.gamma.shape[0] > 0:
            channels = block.gamma.shape[0]
    return channels


def _leaves(block):
    children = list(block._children.values())
    if not children:
        yield block
    for child in children:
        yield from _leaves(child)


def pooled_backbone(features, pool, **opts):
    """``features`` with its global average pooling replaced by the pooling head ``pool``
    (``gem``, ``rmac``, ``netvlad``: :mod:`gluon_dml.models.pooling`)."""
    from .pooling import get_pooling, spatial_features
    spatial = spatial_features(features)
    channels = feature_channels(spatial)
    if pool == 'netvlad' and not channels:
        raise ValueError('--pool netvlad needs the depth of the feature map, which this backbone '
                         'does not state before training; pick a ResNet, MobileNet or smallconv.')
    head = nn.HybridSequential(prefix='')
    head.add(spatial, get_pooling(pool, channels, **opts))
    return head


def get_model(backbone, embed_dim, pretrained=False, normalize=True, ctx=None, init_name='xavier',
              pool='avg', pool_options=None, members=1):
    """An initialised :class:`EmbeddingNet`. With ``pretrained`` the backbone keeps its GluonCV
    weights and only the new layers are initialised (``init_name``: see :func:`initializers`).
    ``pool``: the global pooling of the feature map, ``avg`` (the backbone's own) or a pooling
    head, ``gem``, ``rmac``, ``netvlad``. ``members`` > 1: a :class:`MemberEnsemble` of that
    many such networks, each initialised with its own random draws (output ``members x
    embed_dim``)."""
    if members > 1:
        return MemberEnsemble([get_model(backbone, embed_dim, pretrained, normalize, ctx, init_name,
                                         pool, pool_options) for _ in range(members)],
                              normalize=normalize)
    features = get_backbone(backbone, pretrained)
    if pool != 'avg':
        features = pooled_backbone(features, pool, **(pool_options or {}))
    net = EmbeddingNet(features, embed_dim, normalize=normalize)
    initialize_with_head(net, net.embed, pretrained, ctx, init_name)
    if pretrained and pool != 'avg':
        _, head_init = initializers(init_name)
        net.backbone[1].initialize(head_init, ctx=ctx)       # the new pooling head
    return net


def initialize_with_head(net, head, pretrained=False, ctx=None, init_name='xavier'):
    """Initialise ``net.backbone`` (unless it holds ``pretrained`` weights, which only move to
    ``ctx``) and the new ``head`` layer with :func:`initializers`; parameters that name their own
    initializer keep it. Returns ``net``."""
    backbone_init, head_init = initializers(init_name)
    if pretrained:
        if ctx is not None:
            net.backbone.collect_params().reset_ctx(ctx)
    else:
        net.backbone.initialize(backbone_init, ctx=ctx)
    head.initialize(head_init, ctx=ctx)
    return net
