"""Pooling heads (average, GeM, R-MAC, NetVLAD) against numpy references written from the papers:
values, hand-worked maps, the R-MAC region grid, gradients, hybridization, odd map sizes."""
import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

from gluon_dml.models import EmbeddingNet, SmallConvNet, get_backbone
from gluon_dml.models.pooling import (GeM, NetVLAD, RMAC, get_pooling, list_poolings,
                                      pca_whitening, rmac_regions, spatial_features)

from .reference_pooling import (avg_pool, gem_pool, netvlad_pool, numeric_grad, rmac_grid,
                                rmac_pool)

SIZES = [(7, 7), (14, 14), (3, 5), (5, 3), (1, 1), (2, 9)]


def _maps(N, C, H, W, seed=0, positive=True):
    rng = np.random.RandomState(seed)
    x = rng.uniform(0, 1, size=(N, C, H, W)) if positive else rng.normal(size=(N, C, H, W))
    return x.astype(np.float32)


def _block(name, C, **opts):
    blk = get_pooling(name, C, **opts)
    blk.initialize()
    return blk


def _netvlad_params(blk):
    return (blk.assign.weight.data().asnumpy().reshape(blk._clusters, -1),
            blk.assign.bias.data().asnumpy(), blk.centers.data().asnumpy())


def _reference(name, blk, x, **opts):
    if name == 'avg':
        return avg_pool(x)
    if name == 'gem':
        return gem_pool(x, p=float(blk.p.data().asscalar()))
    if name == 'rmac':
        return rmac_pool(x, L=opts.get('levels', 3))
    w, b, c = _netvlad_params(blk)
    proj = None
    if blk.proj is not None:
        proj = (blk.proj.weight.data().asnumpy(), blk.proj.bias.data().asnumpy())
    return netvlad_pool(x, w, b, c, normalize_input=opts.get('normalize_input', True), proj=proj)


CONFIGS = [('avg', {}), ('gem', {}), ('gem', dict(p=1.5)), ('rmac', {}), ('rmac', dict(levels=2)),
           ('netvlad', dict(clusters=3)), ('netvlad', dict(clusters=4, normalize_input=False)),
           ('netvlad', dict(clusters=3, projection=5))]
IDS = ['%s-%s' % (n, '-'.join('%s=%s' % kv for kv in sorted(o.items())) or 'default')
       for n, o in CONFIGS]


def test_registry():
    assert list_poolings() == ['avg', 'gem', 'netvlad', 'rmac']
    assert isinstance(get_pooling('GeM', 8), GeM) and isinstance(get_pooling('net-vlad', 8), NetVLAD)
    with pytest.raises(ValueError, match='Unknown pooling'):
        get_pooling('spp', 8)
    assert get_pooling('avg', 16).output_dim == 16
    assert get_pooling('netvlad', 16, clusters=8).output_dim == 128
    assert get_pooling('netvlad', 16, clusters=8, projection=32).output_dim == 32
    assert get_pooling('rmac', 16, whiten=True, whiten_dim=4).output_dim == 4


@pytest.mark.parametrize('name,opts', CONFIGS, ids=IDS)
@pytest.mark.parametrize('size', SIZES, ids=['%dx%d' % s for s in SIZES])
def test_matches_reference_and_hybridized(name, opts, size):
    C = 6
    x = _maps(3, C, *size, seed=size[0] * 31 + size[1], positive=name != 'netvlad')
    blk = _block(name, C, **opts)
    expected = _reference(name, blk, x, **opts)
    out = blk(mx.nd.array(x)).asnumpy()
    assert out.shape == (3, blk.output_dim)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    blk.hybridize()
    for _ in range(2):
        np.testing.assert_allclose(blk(mx.nd.array(x)).asnumpy(), out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name,opts', CONFIGS, ids=IDS)
def test_one_hybridized_block_serves_every_size(name, opts):
    # The cached graph must not bake in the first call's spatial size (R-MAC's grid especially).
    C = 5
    blk = _block(name, C, **opts)
    blk.hybridize()
    for i, size in enumerate([(7, 7), (3, 5), (14, 14), (5, 3), (7, 7)]):
        x = _maps(2, C, *size, seed=i, positive=name != 'netvlad')
        np.testing.assert_allclose(blk(mx.nd.array(x)).asnumpy(), _reference(name, blk, x, **opts),
                                   rtol=1e-4, atol=1e-5)


def test_avg_is_global_average_pool():
    x = _maps(2, 4, 3, 5)
    np.testing.assert_allclose(_block('avg', 4)(mx.nd.array(x)).asnumpy(), x.mean(axis=(2, 3)),
                               rtol=1e-6)


def test_gem_hand_worked_and_limits():
    # One channel with values 1, 2, 3, 4 (2x2): p = 3 -> ((1 + 8 + 27 + 64) / 4)^(1/3) = 25^(1/3)
    # = 2.924018; p = 1 is the mean 2.5; a large p tends to the max 4; negative activations clamp
    # to eps (1e-6), so a map of -1s pools to 1e-6.
    x = mx.nd.array(np.array([1, 2, 3, 4], np.float32).reshape(1, 1, 2, 2))
    assert _block('gem', 1)(x).asscalar() == pytest.approx(2.924018, rel=1e-5)
    assert _block('gem', 1, p=1.0)(x).asscalar() == pytest.approx(2.5, rel=1e-6)
    assert _block('gem', 1, p=60.0)(x).asscalar() == pytest.approx(4 * 0.25 ** (1 / 60.), rel=1e-4)
    assert _block('gem', 1)(-mx.nd.ones((1, 1, 2, 2))).asscalar() == pytest.approx(1e-6, rel=1e-3)
    gem = _block('gem', 1)
    assert gem.p.data().asscalar() == 3.0 and gem.p.grad_req == 'write' and gem.p.wd_mult == 0
    assert _block('gem', 1, learn_p=False).p.grad_req == 'null'


def test_gem_gradients_for_input_and_p():
    x = _maps(2, 3, 3, 4, seed=5) + 0.1
    gem = _block('gem', 3, p=2.5)
    gem.hybridize()
    xs = mx.nd.array(x)
    xs.attach_grad()
    w = np.random.RandomState(1).normal(size=(2, 3))
    with mx.autograd.record():
        out = (gem(xs) * mx.nd.array(w)).sum()
    out.backward()
    num_x = numeric_grad(lambda v: float((gem_pool(v, 2.5) * w).sum()), x, eps=1e-4)
    np.testing.assert_allclose(xs.grad.asnumpy(), num_x, rtol=2e-3, atol=1e-5)
    num_p = (float((gem_pool(x, 2.5 + 1e-4) * w).sum()) - float((gem_pool(x, 2.5 - 1e-4) * w).sum())) / 2e-4
    assert gem.p.grad().asscalar() == pytest.approx(num_p, rel=2e-3)
    assert abs(num_p) > 1e-3


def test_rmac_grid_matches_the_paper_description():
    # 3x4 landscape map (the paper's Fig.-style example): m = 2, so 2, 6 and 12 regions at l = 1..3.
    counts = {}
    for t, l, s in rmac_grid(30, 40):
        counts[s] = counts.get(s, 0) + 1
    assert counts == {30: 2, 20: 6, 15: 12}
    # Square map: one region at l = 1 covering everything, then 2x2 and 3x3.
    assert rmac_grid(7, 7)[0] == (0, 0, 7) and len(rmac_grid(7, 7)) == 1 + 4 + 9
    # 3x11: m = 5 (overlap 1/3) and m = 6 (overlap 7/15) are equally far from 0.4; the tie goes to
    # the fewer regions, in the graph as well (test below).
    assert sum(s == 3 for _, _, s in rmac_grid(3, 11)) == 5
    for H in range(1, 40):
        for W in range(1, 40):
            assert sorted(rmac_regions(H, W)) == sorted(rmac_grid(H, W)), (H, W)
            for (t, le, s) in rmac_grid(H, W):
                assert 0 <= t and t + s <= H and 0 <= le and le + s <= W


def test_rmac_graph_grid_matches_reference_grid():
    # The in-graph grid (ROIs) for every map size up to 14x14 and a few larger ones, imperative
    # and symbolic.
    blk = RMAC()

    class Grid(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, x):
            return blk._grid(F, x)
    graph = Grid()
    graph.hybridize()                                  # the symbolic path, one cached graph
    sizes = [(h, w) for h in range(1, 15) for w in range(1, 15)]
    for H, W in sizes + [(3, 11), (11, 3), (24, 32), (40, 30), (7, 50), (33, 13)]:
        x = mx.nd.zeros((1, 1, H, W))
        expect = sorted((t, le, le + s - 1, t + s - 1) for (t, le, s) in rmac_grid(H, W))
        for rois, valid in [blk._grid(mx.nd, x), graph(x)]:
            keep = valid.asnumpy().ravel() > 0
            # rows are (batch, x1, y1, x2, y2), corners inclusive
            got = sorted((int(r[2]), int(r[1]), int(r[3]), int(r[4])) for r in rois.asnumpy()[keep])
            assert got == expect, (H, W)


def test_rmac_hand_worked():
    # 3x3 map, 2 channels, levels 2: l = 1 the whole map; l = 2 side 2 at (0,0), (0,1), (1,0), (1,1).
    # Channel 0 is 1 everywhere except 5 at (0, 0); channel 1 is 0 except 4 at (2, 2).
    #   whole map: (5, 4) -> (0.780869, 0.624695)
    #   top-left 2x2: (5, 0) -> (1, 0); top-right: (1, 0) -> (1, 0); bottom-left (1, 0) -> (1, 0);
    #   bottom-right holds (2, 2): (1, 4) -> (0.242536, 0.970143)
    #   sum (4.023405, 1.594838), norm 4.327959 -> (0.929630, 0.368496)
    x = np.zeros((1, 2, 3, 3), np.float32)
    x[0, 0] = 1
    x[0, 0, 0, 0] = 5
    x[0, 1, 2, 2] = 4
    out = _block('rmac', 2, levels=2)(mx.nd.array(x)).asnumpy()
    np.testing.assert_allclose(out, [[0.929629, 0.368496]], atol=2e-6)


def test_rmac_gradient():
    x = _maps(1, 3, 4, 5, seed=7)          # distinct values: the max of each region is unique
    blk = _block('rmac', 3)
    blk.hybridize()
    xs = mx.nd.array(x)
    xs.attach_grad()
    w = np.array([[0.3, -1.0, 0.7]])
    with mx.autograd.record():
        out = (blk(xs) * mx.nd.array(w)).sum()
    out.backward()
    num = numeric_grad(lambda v: float((rmac_pool(v) * w).sum()), x, eps=1e-4)
    np.testing.assert_allclose(xs.grad.asnumpy(), num, rtol=2e-3, atol=1e-4)
    assert np.abs(num).sum() > 0.1


def test_rmac_whitening():
    C, D = 6, 4
    train = _maps(5, C, 7, 9, seed=11)
    blk = _block('rmac', C, whiten=True, whiten_dim=D)
    # Initially the whitening is the identity on the first D coordinates.
    np.testing.assert_allclose(blk.whitening.weight.data().asnumpy(), np.eye(D, C))
    vecs = blk.region_vectors(mx.nd.array(train))
    assert vecs.shape == (5 * len(rmac_grid(7, 9)), C)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1, rtol=1e-5)
    mean, P = pca_whitening(vecs, D, eps=1e-12)
    # the whitened training vectors have identity covariance over the kept components
    z = (vecs - mean).dot(P.T)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(D), atol=1e-3)
    blk.set_whitening(mean, P)
    x = _maps(2, C, 5, 8, seed=12)
    expected = rmac_pool(x, whiten=(mean, P))
    np.testing.assert_allclose(blk(mx.nd.array(x)).asnumpy(), expected, rtol=1e-4, atol=1e-5)
    blk.hybridize()
    np.testing.assert_allclose(blk(mx.nd.array(x)).asnumpy(), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match='whiten=True'):
        _block('rmac', C).set_whitening(mean, P)


def test_netvlad_hand_worked():
    # 2 channels, 2 clusters with centres c0 = (1, 0), c1 = (0, 1), zero assignment weights and
    # biases: every descriptor is assigned 1/2 to each cluster. Descriptors (1x2 map, not
    # normalised): d1 = (1, 0), d2 = (0, 2).
    #   V0 = 1/2 (d1 - c0) + 1/2 (d2 - c0) = 1/2 (0, 0) + 1/2 (-1, 2) = (-0.5, 1) -> (-0.447214, 0.894427)
    #   V1 = 1/2 (1, -1) + 1/2 (0, 1) = (0.5, 0) -> (1, 0)
    #   concatenated (-0.447214, 0.894427, 1, 0) / sqrt 2
    blk = NetVLAD(2, clusters=2, normalize_input=False)
    blk.initialize()
    blk.assign.weight.set_data(mx.nd.zeros((2, 2, 1, 1)))
    blk.assign.bias.set_data(mx.nd.zeros((2,)))
    blk.centers.set_data(mx.nd.array([[1, 0], [0, 1]]))
    x = mx.nd.array(np.array([[[[1, 0]], [[0, 2]]]], np.float32))       # (1, 2, 1, 2)
    expected = np.array([-0.447214, 0.894427, 1, 0]) / np.sqrt(2)
    np.testing.assert_allclose(blk(x).asnumpy()[0], expected, atol=2e-6)


def test_netvlad_init_from_centroids_gives_hard_assignment():
    # With alpha large the soft assignment is the nearest centre: each descriptor then contributes
    # only to its own cluster's residual.
    C, K = 3, 2
    cents = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    blk = NetVLAD(C, clusters=K)
    blk.initialize()
    blk.init_from_centroids(cents, alpha=1000.0)
    d = np.array([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1]], np.float32)         # near c0, near c1
    x = d.T.reshape(1, C, 1, 2)
    d_n = d / np.linalg.norm(d, axis=1, keepdims=True)
    V = np.stack([d_n[0] - cents[0], d_n[1] - cents[1]])
    V = V / np.linalg.norm(V, axis=1, keepdims=True)
    np.testing.assert_allclose(blk(mx.nd.array(x)).asnumpy()[0], V.ravel() / np.sqrt(2), atol=1e-5)
    with pytest.raises(ValueError, match='centroids must have shape'):
        blk.init_from_centroids(cents[:1])


def test_netvlad_gradients():
    C, K = 3, 2
    blk = NetVLAD(C, clusters=K)
    blk.initialize(mx.init.Normal(0.5))
    blk.hybridize()
    x = _maps(1, C, 2, 3, seed=4, positive=False)
    xs = mx.nd.array(x)
    xs.attach_grad()
    w = np.random.RandomState(0).normal(size=(1, K * C))
    with mx.autograd.record():
        out = (blk(xs) * mx.nd.array(w)).sum()
    out.backward()
    W, b, c = _netvlad_params(blk)
    num_x = numeric_grad(lambda v: float((netvlad_pool(v, W, b, c) * w).sum()), x, eps=1e-4)
    np.testing.assert_allclose(xs.grad.asnumpy(), num_x, rtol=3e-3, atol=1e-4)
    num_c = numeric_grad(lambda v: float((netvlad_pool(x, W, b, v) * w).sum()), c, eps=1e-4)
    np.testing.assert_allclose(blk.centers.grad().asnumpy(), num_c, rtol=3e-3, atol=1e-4)
    num_b = numeric_grad(lambda v: float((netvlad_pool(x, W, v, c) * w).sum()), b, eps=1e-4)
    np.testing.assert_allclose(blk.assign.bias.grad().asnumpy(), num_b, rtol=3e-3, atol=1e-4)
    assert np.abs(num_c).sum() > 1e-2


def test_spatial_features_and_embedding_net():
    feats = spatial_features(SmallConvNet())
    assert not isinstance(list(feats._children.values())[-1], (nn.GlobalAvgPool2D, nn.Flatten))
    pool = get_pooling('gem', 128)
    net = EmbeddingNet(nn.HybridSequential(prefix=''), 16)
    net.backbone.add(feats, pool)
    net.initialize(mx.init.Xavier())
    # GeM's p keeps its own initialiser under a global one
    assert pool.p.data().asscalar() == 3.0
    net.hybridize()
    fmap = feats(mx.nd.random.uniform(shape=(2, 1, 28, 28)))
    assert fmap.shape == (2, 128, 7, 7)
    z = net(mx.nd.random.uniform(shape=(2, 1, 28, 28))).asnumpy()
    assert z.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, rtol=1e-5)
    # The stripped extractor shares the backbone's parameters.
    sc = SmallConvNet()
    assert set(spatial_features(sc).collect_params()) == set(sc.collect_params())


@pytest.mark.parametrize('name', ['resnet18_v1', 'resnet18_v1b', 'mobilenetv2_0.25', 'densenet121'])
def test_spatial_features_gluoncv(name):
    feats = spatial_features(get_backbone(name))
    last = list(feats._children.values())[-1]
    assert not isinstance(last, (nn.GlobalAvgPool2D, nn.AvgPool2D, nn.Flatten))


def test_spatial_features_refuses_backbones_without_pooling():
    with pytest.raises(ValueError, match='global pooling'):
        spatial_features(get_backbone('vgg11'))
