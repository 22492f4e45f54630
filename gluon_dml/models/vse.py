"""The two encoders of VSE++ (Faghri, Fleet, Kiros, Fidler, "VSE++: Improving Visual-Semantic
Embeddings with Hard Negatives", BMVC 2018), mapping images and captions into one space.

* :class:`ImageEncoder`: a backbone (any GluonCV model, frozen unless ``finetune``; the small
  conv net; or nothing, for precomputed CNN features), then ``Dense(embed_size)`` and L2
  normalisation (the paper's ``f(i) = W_f^T phi(i)``, normalised).
* :class:`TextEncoder`: a word embedding (300-d) and a one-layer GRU whose hidden size is the
  joint space (1024 by default); a caption's encoding is the GRU state at its last real token
  (``SequenceLast`` with the caption lengths), L2-normalised (the paper's ``g(c) = W_g^T
  psi(c)``, with ``W_g`` folded into the GRU as in the authors' code). Padding never changes an
  encoding: a batch of captions of different lengths gives the same vectors as encoding each
  caption alone.
"""
from mxnet import gluon, init
from mxnet.gluon import nn, rnn

from . import add_conv_blocks, get_backbone

__all__ = ['SpatialConvNet', 'ImageEncoder', 'TextEncoder', 'VSEModel', 'get_vse_model']


class SpatialConvNet(nn.HybridSequential):
    """The small conv net (three 3x3 convolutions of 32, 64, 128 channels with batch norm and
    ReLU, 2x2 max-pooling after each) that keeps a coarse spatial grid instead of pooling it
    away: on 28 x 84 pictures it outputs the 3 x 10 x 128 map, flattened (3,840 values), so the
    embedding can tell left from right, which a caption like "a bag on the left" needs."""

    def __init__(self, channels=(32, 64, 128), **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            add_conv_blocks(self, channels, pool_last=True)
            self.add(nn.Flatten())


class ImageEncoder(gluon.HybridBlock):
    """backbone (or none, for precomputed features) -> Dense(embed_size) -> L2 normalisation."""

    def __init__(self, backbone, embed_size, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.backbone = backbone
            self.fc = nn.Dense(embed_size, flatten=True, weight_initializer=init.Xavier())

    def hybrid_forward(self, F, x):
        if self.backbone is not None:
            x = self.backbone(x)
        return F.L2Normalization(self.fc(x), mode='instance', eps=1e-10)

    def project(self, features):
        """Dense + L2 normalisation of backbone features (imperative; the training step of a
        frozen backbone computes its features outside autograd, in inference mode)."""
        import mxnet as mx
        return mx.nd.L2Normalization(self.fc(features), mode='instance', eps=1e-10)


class TextEncoder(gluon.HybridBlock):
    """Word embedding (``word_dim``) -> GRU (``embed_size``, ``num_layers``) -> the state at each
    caption's last real token -> L2 normalisation. Inputs: ``tokens`` (B, T) ids padded with 0,
    ``lengths`` (B,) float, each >= 1."""

    def __init__(self, vocab_size, word_dim=300, embed_size=1024, num_layers=1, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.embed = nn.Embedding(vocab_size, word_dim,
                                      weight_initializer=init.Uniform(0.1))
            self.gru = rnn.GRU(embed_size, num_layers=num_layers, layout='NTC', input_size=word_dim)

    def hybrid_forward(self, F, tokens, lengths):
        out = self.gru(self.embed(tokens))                       # (B, T, embed_size)
        last = F.SequenceLast(out, sequence_length=lengths, use_sequence_length=True, axis=1)
        return F.L2Normalization(last, mode='instance', eps=1e-10)


class VSEModel(gluon.HybridBlock):
    """``(images, tokens, lengths) -> (image embeddings (B, D), caption embeddings (B, D))``;
    ``.image`` and ``.text`` embed one modality alone."""

    def __init__(self, image_encoder, text_encoder, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.image = image_encoder
            self.text = text_encoder

    def hybrid_forward(self, F, images, tokens, lengths):
        return self.image(images), self.text(tokens, lengths)


def get_vse_model(model, vocab_size, embed_size=1024, word_dim=300, finetune=False,
                  pretrained=False, precomputed=False, num_layers=1, ctx=None):
    """An initialised :class:`VSEModel`. ``model``: ``smallconv`` (the :class:`SpatialConvNet`)
    or a GluonCV name; ``precomputed`` uses no backbone. A GluonCV backbone is frozen (its
    parameters get no gradient) unless ``finetune``."""
    if precomputed:
        backbone = None
    elif model.lower() in ('smallconv', 'small_conv', 'convnet'):
        if pretrained:
            raise ValueError('smallconv has no pretrained weights; drop --use-pretrained.')
        backbone = SpatialConvNet()
    else:
        if not pretrained and not finetune:
            raise ValueError('The %s backbone would stay frozen (no --finetune) with random weights; '
                             'pass --use-pretrained (frozen ImageNet features, the VSE++ default) '
                             'and/or --finetune.' % model)
        backbone = get_backbone(model, pretrained)
    with_pretrained = backbone is not None and pretrained
    net = VSEModel(ImageEncoder(backbone, embed_size),
                   TextEncoder(vocab_size, word_dim, embed_size, num_layers))
    if with_pretrained:
        net.image.fc.initialize(init.Xavier(), ctx=ctx)
        net.text.initialize(ctx=ctx)
        if ctx is not None:
            backbone.collect_params().reset_ctx(ctx)
    else:
        net.initialize(init.Xavier(magnitude=2), ctx=ctx)
    net.frozen_backbone = bool(backbone is not None and not finetune and not isinstance(
        backbone, SpatialConvNet))
    if net.frozen_backbone:
        backbone.collect_params().setattr('grad_req', 'null')
    return net
