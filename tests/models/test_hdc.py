"""HDC (Yuan et al., ICCV 2017): the multi-level network (stage boundaries, heads, concatenated
output) and the cascade loss (pair selection per level, contrastive base loss, pluggable masked
base) against a numpy reference, a hand-worked cascade, gradients and hybridization."""
import mxnet as mx
import numpy as np
import pytest

from gluon_dml.losses.base import label_masks, pairwise_distance, safe_divide
from gluon_dml.losses.pair import ContrastiveLoss
from gluon_dml.models import get_backbone
from gluon_dml.losses.hdc import HDCLoss
from gluon_dml.models.hdc import HDCNet, get_hdc_model, hdc_stages, level_slices
from gluon_dml.models.pooling import spatial_features

from .reference_hdc import cascade_pairs, hdc_loss
from .reference_pooling import numeric_grad


# ------------------------------------------------------------------------------------- network

def _stage_shapes(stages, x):
    shapes = []
    for s in stages:
        x = s(x)
        shapes.append(x.shape)
    return shapes


def test_smallconv_levels_after_each_block():
    feats = get_backbone('smallconv')
    stages = hdc_stages(feats)
    assert len(stages) == 3
    feats.initialize(mx.init.Xavier())
    x = mx.nd.random.uniform(shape=(2, 1, 28, 28))
    assert _stage_shapes(stages, x) == [(2, 32, 28, 28), (2, 64, 14, 14), (2, 128, 7, 7)]
    # the first stage is conv, bn, relu; the max-pooling opens the next one
    assert [type(c).__name__ for c in stages[0]._children.values()] == ['Conv2D', 'BatchNorm',
                                                                      'Activation']
    assert type(list(stages[1]._children.values())[0]).__name__ == 'MaxPool2D'
    # the stages chained are the backbone's feature map, with the same parameters
    chained = x
    for s in stages:
        chained = s(chained)
    np.testing.assert_allclose(chained.asnumpy(), spatial_features(feats)(x).asnumpy(), rtol=1e-6)
    params = set()
    for s in stages:
        params |= set(s.collect_params())
    assert params == set(feats.collect_params())


@pytest.mark.parametrize('name,channels', [('resnet18_v1', (128, 256, 512)),
                                           ('resnet18_v1b', (128, 256, 512)),
                                           ('resnet18_v2', (128, 256, 512))])
def test_resnet_levels_after_stages_2_3_4(name, channels):
    feats = get_backbone(name)
    stages = hdc_stages(feats)
    feats.initialize(mx.init.Xavier())
    with mx.autograd.train_mode():
        shapes = _stage_shapes(stages, mx.nd.random.uniform(shape=(1, 3, 64, 64)))
    assert [s[1] for s in shapes] == list(channels)
    assert [s[2] for s in shapes] == [8, 4, 2]
    last = [type(c).__name__ for c in stages[-1]._children.values()]
    assert 'GlobalAvgPool2D' not in last and 'Flatten' not in last
    if name.endswith('v2'):
        assert last[-2:] == ['BatchNorm', 'Activation']      # v2's final BN + ReLU stay with level 3


def test_other_backbones_need_explicit_cuts():
    with pytest.raises(ValueError, match='cut_after'):
        hdc_stages(get_backbone('mobilenetv2_0.25'))
    stages = hdc_stages(get_backbone('mobilenetv2_0.25'), cut_after=[5, 10])
    assert len(stages) == 3
    with pytest.raises(ValueError, match='distinct indices'):
        hdc_stages(get_backbone('smallconv'), cut_after=[2, 2])


def test_hdc_net_output_and_hybridization():
    net = get_hdc_model('smallconv', (4, 6, 8))
    assert net.levels == 3 and net.dims == (4, 6, 8)
    assert net.level_slices == [(0, 4), (4, 10), (10, 18)] == level_slices((4, 6, 8))
    x = mx.nd.random.uniform(shape=(3, 1, 28, 28))
    z = net(x).asnumpy()
    assert z.shape == (3, 18)
    for s, e in net.level_slices:
        np.testing.assert_allclose(np.linalg.norm(z[:, s:e], axis=1), 1, rtol=1e-5)
    net.hybridize()
    for _ in range(2):
        np.testing.assert_allclose(net(x).asnumpy(), z, rtol=1e-5, atol=1e-6)
    # level 1 depends on the first stage only: its head's input is the GAP of stage 1's output
    stage1 = list(net.backbone._children.values())[0]
    head1 = list(net.heads._children.values())[0]
    h = head1(stage1(x).mean(axis=(2, 3))).asnumpy()
    np.testing.assert_allclose(z[:, :4], h / np.linalg.norm(h, axis=1, keepdims=True), rtol=1e-5)
    assert isinstance(get_hdc_model('smallconv', 5), HDCNet)
    with pytest.raises(ValueError, match='One embedding size per level'):
        HDCNet(hdc_stages(get_backbone('smallconv')), (4, 4))


# ---------------------------------------------------------------------------------------- loss

def _levels(rng, B, dims):
    parts = []
    for d in dims:
        z = rng.normal(size=(B, d))
        parts.append(z / np.linalg.norm(z, axis=1, keepdims=True))
    return np.concatenate(parts, 1).astype(np.float32)


def _forward(loss, x, y, grad=False):
    xs = mx.nd.array(x)
    xs.attach_grad()
    with mx.autograd.record():
        out = loss(xs, mx.nd.array(y))
    out = out if isinstance(out, (tuple, list)) else (out,)
    if grad:
        out[0].backward()
        return [o.asscalar() for o in out], xs.grad.asnumpy()
    return [o.asscalar() for o in out]


CONFIGS = [dict(), dict(keep=(0.3, 0.7)), dict(keep=1.0), dict(squared=False, neg_margin=1.0),
           dict(reduction='nonzero', keep=0.4), dict(weights=(1.0, 0.5, 2.0), pos_margin=0.1)]
IDS = ['-'.join('%s=%s' % kv for kv in sorted(c.items())) or 'default' for c in CONFIGS]


@pytest.mark.parametrize('kw', CONFIGS, ids=IDS)
def test_matches_reference(kw):
    dims = (3, 4, 5)
    loss = HDCLoss(dims, level_losses=True, **kw)
    for seed in range(3):
        rng = np.random.RandomState(seed)
        for y in (np.repeat(np.arange(4), 3), rng.randint(0, 3, size=12)):
            x = _levels(rng, 12, dims)
            total, per = hdc_loss(x, y, dims, **kw)
            got = _forward(loss, x, y)
            np.testing.assert_allclose(got, [total] + per, rtol=1e-4, atol=1e-6)


def test_hand_worked_cascade():
    # Two 1-D levels, labels [0, 0, 1, 1]; level 1 at 0, 0.3, 0.4, 1.0, level 2 at 0, 0.1, 0.2, 0.9.
    # Level-1 distances: positives (0,1) 0.3, (2,3) 0.6; negatives (0,2) 0.4, (0,3) 1.0, (1,2) 0.1,
    # (1,3) 0.7. keep 0.5 -> level 2 gets the farther positive (2,3) and the two closest negatives
    # (1,2), (0,2).
    # Level 1 (squared, margin 0.5, mean over 6 pairs): 0.045 + 0.18 + 0.005 + 0 + 0.08 + 0
    #   = 0.31 / 6 = 0.0516667.
    # Level 2 on (2,3) d 0.7 -> 0.245, (1,2) d 0.1 -> 0.08, (0,2) d 0.2 -> 0.045: 0.37 / 3 = 0.1233333.
    # Total 0.175.
    x = np.array([[0, 0], [0.3, 0.1], [0.4, 0.2], [1.0, 0.9]], np.float32)
    y = np.array([0, 0, 1, 1])
    pairs = cascade_pairs([x[:, :1], x[:, 1:]], y, [0.5])
    assert sorted(pairs[1][0]) == [(2, 3)] and sorted(pairs[1][1]) == [(0, 2), (1, 2)]
    got = _forward(HDCLoss((1, 1), level_losses=True), x, y)
    np.testing.assert_allclose(got, [0.175, 0.0516667, 0.1233333], atol=1e-6)


def test_keep_one_is_the_sum_of_contrastive_losses():
    dims = (4, 4)
    x = _levels(np.random.RandomState(3), 10, dims)
    y = np.repeat(np.arange(5), 2)
    zoo = ContrastiveLoss(squared=True, reduction='all')
    expected = sum(zoo(mx.nd.array(x[:, s:e]), mx.nd.array(y)).asscalar() for s, e in level_slices(dims))
    assert _forward(HDCLoss(dims, keep=1.0), x, y)[0] == pytest.approx(expected, rel=1e-5)


def test_selection_follows_the_previous_level():
    # Level 2's pairs are chosen by level 1's distances: changing level 1 alone changes L_2.
    dims = (3, 3)
    rng = np.random.RandomState(1)
    x = _levels(rng, 12, dims)
    y = np.repeat(np.arange(4), 3)
    loss = HDCLoss(dims, keep=0.25, level_losses=True)
    l2_a = _forward(loss, x, y)[2]
    x2 = x.copy()
    x2[:, :3] = _levels(rng, 12, (3,))
    l2_b = _forward(loss, x2, y)[2]
    assert l2_a != pytest.approx(l2_b, rel=1e-3)
    assert l2_b == pytest.approx(hdc_loss(x2, y, dims, keep=0.25)[1][1], rel=1e-4)


def test_gradients_match_reference_and_stay_on_selected_pairs():
    dims = (3, 4)
    rng = np.random.RandomState(7)
    x = _levels(rng, 9, dims)
    y = np.repeat(np.arange(3), 3)
    kw = dict(keep=0.2, squared=True, neg_margin=1.2)
    loss = HDCLoss(dims, **kw)
    loss.hybridize()
    _, g = _forward(loss, x, y, grad=True)
    num = numeric_grad(lambda v: hdc_loss(v, y, dims, **kw)[0], x, eps=1e-4)
    np.testing.assert_allclose(g, num, rtol=2e-3, atol=1e-5)
    # Level 2's slice is trained only by the rows of its selected pairs.
    pos, neg = cascade_pairs([x[:, :3], x[:, 3:]], y, [0.2])[1]
    rows = {i for p in pos + neg for i in p}
    assert len(rows) < 9
    for i in range(9):
        if i not in rows:
            assert np.abs(g[i, 3:]).max() == 0
    assert np.abs(g[sorted(rows), 3:]).sum() > 0


def test_hybridized_equals_imperative_any_batch_size():
    dims = (4, 4, 4)
    loss = HDCLoss(dims, level_losses=True)
    hyb = HDCLoss(dims, level_losses=True)
    hyb.hybridize()
    rng = np.random.RandomState(0)
    for B in (12, 7, 16):
        x = _levels(rng, B, dims)
        y = rng.randint(0, 4, size=B)
        v1, g1 = _forward(loss, x, y, grad=True)
        v2, g2 = _forward(hyb, x, y, grad=True)
        np.testing.assert_allclose(v1, v2, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize('case', ['one_class', 'singletons', 'single'])
def test_edge_batches(case):
    dims = (3, 3)
    B = 1 if case == 'single' else 6
    x = _levels(np.random.RandomState(0), B, dims)
    y = {'one_class': np.zeros(B, int), 'singletons': np.arange(B), 'single': np.zeros(1, int)}[case]
    for hybrid in (False, True):
        loss = HDCLoss(dims, level_losses=True)
        if hybrid:
            loss.hybridize()
        vals, g = _forward(loss, x, y, grad=True)
        assert np.all(np.isfinite(vals)) and np.all(np.isfinite(g))
        total, per = hdc_loss(x, y, dims)
        np.testing.assert_allclose(vals, [total] + per, rtol=1e-4, atol=1e-6)


class MaskedContrastive(mx.gluon.HybridBlock):
    """A pair-based loss honouring HDC's ``pair_mask`` protocol (as a zoo loss would with one)."""

    def hybrid_forward(self, F, z, labels, pair_mask):
        d = pairwise_distance(F, z)
        same, diff = label_masks(F, labels, d)
        pos, neg = same * pair_mask, diff * pair_mask
        terms = 0.5 * F.square(F.relu(d)) * pos + 0.5 * F.square(F.relu(0.5 - d)) * neg
        return safe_divide(F, F.sum(terms), F.sum(pos) + F.sum(neg))


def test_pluggable_masked_base_loss():
    dims = (3, 3, 3)
    x = _levels(np.random.RandomState(5), 12, dims)
    y = np.repeat(np.arange(4), 3)
    builtin = _forward(HDCLoss(dims, level_losses=True), x, y)
    plugged = HDCLoss(dims, base=MaskedContrastive(), level_losses=True)
    np.testing.assert_allclose(_forward(plugged, x, y), builtin, rtol=1e-5)
    plugged.hybridize()
    np.testing.assert_allclose(_forward(plugged, x, y), builtin, rtol=1e-5)


def test_loss_options_validated():
    with pytest.raises(ValueError, match='keep'):
        HDCLoss((4, 4), keep=0)
    with pytest.raises(ValueError, match='keep'):
        HDCLoss((4, 4, 4), keep=(0.5,))
    with pytest.raises(ValueError, match='weights'):
        HDCLoss((4, 4), weights=(1,))
    with pytest.raises(ValueError, match='base'):
        HDCLoss((4, 4), base='triplet')
    assert HDCLoss.normalize_embeddings
