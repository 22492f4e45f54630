"""Hard-Aware Deeply Cascaded embedding (HDC): embedding heads at several depths and the cascade loss.

Yuan, Yang, Zhang, "Hard-Aware Deeply Cascaded Embedding", ICCV 2017.

The network (:class:`HDCNet`) splits a backbone into consecutive stages; after each stage a head
(global average pooling, ``Dense``, L2 normalisation) gives that level's embedding. Shallow levels
are simple models, deep ones complex; they share the computation of the earlier stages. The output
is the concatenation of the levels' embeddings (the paper's test embedding); each level alone is a
slice of it (:attr:`HDCNet.level_slices`, for ablations).

The loss (:class:`gluon_dml.losses.hdc.HDCLoss`) is the cascade: level 1 is trained on every pair of the batch; each
further level only on the pairs that the previous level finds hard, so a pair reaches a deep
(complex) model only if the shallower ones could not handle it, and it updates only the models that
consider it hard (the stages before a level get gradients from that level's pairs, besides their
own). Hardness is ranked within the batch: among the positive pairs that level ``k - 1`` was
trained on, the fraction ``keep`` with the *largest* level-(k - 1) distances goes on to level ``k``;
among its negative pairs, the fraction with the *smallest* distances. (The paper ranks the pairs by
their loss at the previous level; for the contrastive loss that is the same order wherever the loss
is non-zero, and ranking by distance also serves any pair-based base loss.) Each level's loss is the
base loss over its selected pairs; the total is their (weighted) sum.

Stage boundaries: ``smallconv`` after each of its three conv blocks (conv, batch norm, ReLU; the
2x2 max-pooling opens the next stage); ResNets (GluonCV v1, v1b, v2) after stages 2, 3 and 4 (the
paper cascades GoogLeNet's inception 3, 4 and 5 in the same way). Other backbones take explicit
``cut_after`` child indices.
"""
import re

from mxnet import gluon
from mxnet.gluon import nn

from . import get_backbone, initialize_with_head
from .pooling import spatial_features

__all__ = ['HDCNet', 'get_hdc_model', 'hdc_stages', 'level_slices']

_STAGE = re.compile(r'(?:stage|layers)(\d)_$')


def level_slices(dims):
    """``[(start, end), ...]``: where each level's embedding lies in the concatenation."""
    out, start = [], 0
    for d in dims:
        out.append((start, start + int(d)))
        start += int(d)
    return out


def _relu_before_pool(children):
    """smallconv's blocks run conv, batch norm, max-pooling, ReLU (the same function as conv,
    batch norm, ReLU, pooling, and cheaper): put each such ReLU back before its pooling, so that a
    level's head sees the block's unpooled map and the pooling opens the next stage."""
    out = list(children)
    for i in range(len(out) - 1):
        if isinstance(out[i], nn.MaxPool2D) and isinstance(out[i + 1], nn.Activation):
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


def _smallconv_cuts(children):
    acts = [i for i, c in enumerate(children) if isinstance(c, nn.Activation)]
    return acts[:-1]                          # after each block's ReLU but the last


def _resnet_cuts(children, after=(2, 3)):
    found = {}
    for i, c in enumerate(children):
        m = _STAGE.search(getattr(c, 'prefix', '') or '')
        if m:
            found[int(m.group(1))] = i
    if not all(s in found for s in after) or 4 not in found:
        return None
    return [found[s] for s in after]


def hdc_stages(features, cut_after=None):
    """Split a feature extractor (from :func:`gluon_dml.models.get_backbone`) into the HDC stages.

    The final global pooling is removed first (:func:`spatial_features`). ``cut_after``: indices of
    the children (of the stripped extractor) after which a level ends; by default smallconv's conv
    blocks and a ResNet's stages 2 and 3 (the last level ends after stage 4 and anything that
    follows it, e.g. v2's final batch norm and ReLU). Returns a list of HybridSequentials holding
    the original child blocks (same parameters).
    """
    feats = spatial_features(features)
    children = list(feats._children.values())
    if cut_after is None:
        if any(isinstance(c, nn.Conv2D) for c in children) and \
                all(isinstance(c, (nn.Conv2D, nn.BatchNorm, nn.Activation, nn.MaxPool2D))
                    for c in children):
            children = _relu_before_pool(children)
            cut_after = _smallconv_cuts(children)
        else:
            cut_after = _resnet_cuts(children)
        if not cut_after:
            raise ValueError('No default HDC stage boundaries for this backbone (only smallconv and '
                             'GluonCV ResNets v1 / v1b / v2); pass cut_after=[child indices].')
    cuts = sorted(int(c) for c in cut_after)
    if not cuts or cuts[0] < 0 or cuts[-1] >= len(children) - 1 or len(set(cuts)) != len(cuts):
        raise ValueError('cut_after must be distinct indices in 0..%d, got %r.'
                         % (len(children) - 2, cut_after))
    stages, start = [], 0
    for end in cuts + [len(children) - 1]:
        stage = nn.HybridSequential(prefix='')
        for c in children[start:end + 1]:
            stage.add(c)
        stages.append(stage)
        start = end + 1
    return stages


class HDCNet(gluon.HybridBlock):
    """Backbone stages, each followed by an embedding head: ``x -> concat_k(L2n(Dense_k(GAP(h_k))))``.

    ``stages``: the consecutive HybridBlocks (:func:`hdc_stages`); ``embed_dims``: one size per
    level (an int: the same for all). Output (N, sum(embed_dims)); level ``k`` is
    ``out[:, level_slices[k][0]:level_slices[k][1]]``, unit-norm when ``normalize`` (so the
    concatenation has norm sqrt(levels)). ``backbone`` holds the stages and ``heads`` the Dense
    layers (the layout :func:`gluon_dml.models.initialize_with_head` expects).
    """

    def __init__(self, stages, embed_dims, normalize=True, **kwargs):
        super().__init__(**kwargs)
        if isinstance(embed_dims, int):
            embed_dims = [embed_dims] * len(stages)
        if len(embed_dims) != len(stages):
            raise ValueError('One embedding size per level: %d stages, %d sizes.'
                             % (len(stages), len(embed_dims)))
        self.dims = tuple(int(d) for d in embed_dims)
        self.level_slices = level_slices(self.dims)
        self._normalize = bool(normalize)
        with self.name_scope():
            self.backbone = nn.HybridSequential(prefix='')
            for s in stages:
                self.backbone.add(s)
            self.heads = nn.HybridSequential(prefix='hdc_')
            for d in self.dims:
                self.heads.add(nn.Dense(d, flatten=True))

    @property
    def levels(self):
        return len(self.dims)

    def hybrid_forward(self, F, x):
        outs = []
        for stage, head in zip(self.backbone._children.values(), self.heads._children.values()):
            x = stage(x)
            z = head(F.mean(x, axis=(2, 3)))
            if self._normalize:
                z = F.L2Normalization(z, mode='instance', eps=1e-10)
            outs.append(z)
        return F.concat(*outs, dim=1) if len(outs) > 1 else outs[0]


def get_hdc_model(backbone, embed_dim, pretrained=False, normalize=True, ctx=None,
                  init_name='xavier', cut_after=None):
    """An initialised :class:`HDCNet` on a backbone name (``smallconv``, ``resnet50_v2`` ...):
    :func:`hdc_stages` of its feature extractor, one head per level of size ``embed_dim`` (an int
    or one per level). With ``pretrained`` only the heads are initialised."""
    stages = hdc_stages(get_backbone(backbone, pretrained), cut_after)
    net = HDCNet(stages, embed_dim, normalize=normalize)
    return initialize_with_head(net, net.heads, pretrained, ctx, init_name)


# ---------------------------------------------------------------------------------------------
# the cascade loss
# ---------------------------------------------------------------------------------------------
