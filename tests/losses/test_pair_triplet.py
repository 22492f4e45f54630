"""ContrastiveLoss (Hadsell et al. 2006) and TripletLoss (FaceNet 2015; Hermans et al. 2017) against
the papers' equations, worked examples, gradients, hybridization and the NaN edge cases."""
import mxnet as mx
import numpy as np
import pytest

from gluon_dml.losses.pair import ContrastiveLoss
from gluon_dml.losses.triplet import TripletLoss

from .reference import numeric_grad
from .reference_pair_triplet import contrastive_loss, distances, triplet_loss

# Every configuration under test: (class, constructor kwargs).
CONFIGS = [
    (ContrastiveLoss, {}),
    (ContrastiveLoss, dict(reduction='all')),
    (ContrastiveLoss, dict(squared=True, pos_margin=0.3, neg_margin=1.0)),
    (TripletLoss, dict(mining='all')),
    (TripletLoss, dict(mining='all', squared=True, margin=0.2)),
    (TripletLoss, dict(mining='semihard', margin=0.3)),
    (TripletLoss, dict(mining='semihard', squared=True, margin=0.5)),
    (TripletLoss, dict(mining='batch_hard')),
    (TripletLoss, dict(mining='batch_hard', squared=True)),
    (TripletLoss, dict(mining='batch_hard_soft')),
]
IDS = ['%s-%s' % (c.__name__[:-4], '-'.join('%s=%s' % kv for kv in sorted(kw.items())) or 'default')
       for c, kw in CONFIGS]


def _reference(cls, kw, x, y):
    if cls is ContrastiveLoss:
        return contrastive_loss(x, y, **kw)
    return triplet_loss(x, y, **kw)


def _normed(rng, B, D):
    x = rng.normal(size=(B, D))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _points(degrees):
    a = np.deg2rad(degrees)
    return np.stack([np.cos(a), np.sin(a)], 1).astype(np.float32)


def _forward(loss, x, y, grad=False):
    xs = mx.nd.array(x)
    xs.attach_grad()
    with mx.autograd.record():
        out = loss(xs, mx.nd.array(y))
    assert out.shape == (1,)
    if grad:
        out.backward()
        return out.asscalar(), xs.grad.asnumpy()
    return out.asscalar()


@pytest.mark.parametrize('cls,kw', CONFIGS, ids=IDS)
def test_matches_numpy_reference(cls, kw):
    rng = np.random.RandomState(0)
    loss = cls(**kw)
    B, D = 10, 6
    nonzero = 0
    for seed in range(4):
        for y in (np.repeat(np.arange(5), 2), rng.randint(0, 3, size=B), np.arange(B)):
            x = _normed(np.random.RandomState(seed), B, D).astype(np.float32)
            expected = _reference(cls, kw, x, y)
            assert _forward(loss, x, y) == pytest.approx(expected, rel=1e-4, abs=1e-6)
            nonzero += expected > 0
    assert nonzero >= 8                               # the comparison was not all zeros


def test_contrastive_hand_worked():
    # Unit circle, A = {0, 90 deg} (label 0), B = {20, 170 deg} (label 1); chord = 2 sin(angle / 2):
    #   positives: A0-A1 = sqrt 2 = 1.41421, B0-B1 (150 deg) = 1.93185
    #   negatives: A0-B0 (20 deg) = 0.34730, A1-B0 (70) = 1.14715, A1-B1 (80) = 1.28558,
    #              A0-B1 (170) = 1.99239; only A0-B0 is inside neg_margin 0.5: 0.5 - 0.34730 = 0.15270.
    # Each unordered pair appears twice (i, j) and (j, i); 'nonzero' divides by 6 active terms:
    #   2 (1.41421 + 1.93185 + 0.15270) / 6 = 1.16625;  'all' divides by 12 pairs: 0.58313.
    # squared: (2/2 + 3.73205/2 + 0.15270^2/2) * 2 / 6 = (1 + 1.86603 + 0.01166) / 3 = 0.95923.
    # pos_margin 0.2, neg_margin 0.4: positives 1.21421, 1.73185; negative 0.05270:
    #   2 (1.21421 + 1.73185 + 0.05270) / 6 = 0.99959.
    x = _points([0, 90, 20, 170])
    y = np.array([0, 0, 1, 1])
    for kw, expected in [({}, 1.16625), (dict(reduction='all'), 0.58313),
                         (dict(squared=True), 0.95923), (dict(pos_margin=0.2, neg_margin=0.4), 0.99959)]:
        assert _forward(ContrastiveLoss(**kw), x, y) == pytest.approx(expected, abs=2e-5), kw


def test_triplet_hand_worked():
    # Unit circle, A = {0, 60 deg} (label 0), B = {62, 67 deg} (label 1), margin 0.2 (FaceNet's):
    #   D(A0,A1) = 1, D(B0,B1) = 2 sin 2.5 = 0.087239
    #   D(A0,B0) = 2 sin 31 = 1.030076, D(A0,B1) = 2 sin 33.5 = 1.103874,
    #   D(A1,B0) = 2 sin 1 = 0.034905, D(A1,B1) = 2 sin 3.5 = 0.122097.
    # Triplets (a, p, n) -> D_ap - D_an + 0.2:
    #   (A0,A1,B0) 0.169924  (A0,A1,B1) 0.096126  (A1,A0,B0) 1.165095  (A1,A0,B1) 1.077903
    #   (B0,B1,A0) < 0       (B0,B1,A1) 0.252334  (B1,B0,A0) < 0       (B1,B0,A1) 0.165142
    # all: 6 non-zero, sum 2.926524 -> 0.487754.
    # semihard, window D_ap < D_an < D_ap + 0.2:
    #   (A0,A1): both B0 1.030 and B1 1.104 are in (1, 1.2); the closer, B0, is taken -> 0.169924
    #   (A1,A0): both negatives closer than the positive -> dropped
    #   (B0,B1): window (0.0872, 0.2872) holds neither 0.0349 nor 1.030 -> dropped
    #   (B1,B0): A1 at 0.1221 is in the window -> 0.165142
    #   mean over the 2 kept pairs: 0.167533.
    # batch_hard (one positive each; hardest negatives A0: B0, A1: B0, B0: A1, B1: A1):
    #   (0.169924 + 1.165095 + 0.252334 + 0.165142) / 4 = 0.438124.
    # batch_hard_soft: softplus of -0.030076, 0.965095, 0.052334, -0.034858
    #   = 0.678222, 1.287865, 0.719657, 0.675870 -> mean 0.840403.
    x = _points([0, 60, 62, 67])
    y = np.array([0, 0, 1, 1])
    for mining, expected in [('all', 0.487754), ('semihard', 0.167533),
                             ('batch_hard', 0.438124), ('batch_hard_soft', 0.840403)]:
        assert _forward(TripletLoss(margin=0.2, mining=mining), x, y) == pytest.approx(expected, abs=2e-5)


def test_batch_hard_hand_worked_takes_hardest_positive():
    # A = {0, 60, 90 deg} (label 0), B = {180 deg} (label 1, no positive: dropped), margin 0.6.
    #   A0: positives D 1 (60) and sqrt 2 (90): hardest sqrt 2; negative D 2 -> 0.6 + 1.41421 - 2 = 0.01421
    #   A1: positives 1 (0) and 2 sin 15 = 0.51764 (90): hardest 1; negative sqrt 3 -> 0.6 + 1 - 1.73205 < 0
    #   A2: positives sqrt 2 and 0.51764: hardest sqrt 2; negative sqrt 2 -> 0.6
    #   mean over 3 anchors: 0.61421 / 3 = 0.204738 (the easiest positives would give 0).
    # Soft margin: softplus(-0.58579) + softplus(-0.73205) + softplus(0) = 0.44255 + 0.39266 + 0.69315,
    #   / 3 = 0.509453.
    x = _points([0, 60, 90, 180])
    y = np.array([0, 0, 0, 1])
    assert _forward(TripletLoss(0.6, 'batch_hard'), x, y) == pytest.approx(0.204738, abs=2e-5)
    assert _forward(TripletLoss(0.6, 'batch_hard_soft'), x, y) == pytest.approx(0.509453, abs=2e-5)


def _kink_gap(cls, kw, x, y):
    """Smallest distance of any hinge / selection boundary from being crossed, so that the finite
    differences below never straddle a jump in the number of active terms."""
    sq = kw.get('squared', False) and cls is TripletLoss
    d = distances(x, sq)
    gaps = [np.inf]
    B = len(y)
    for a in range(B):
        for p in range(B):
            if p == a:
                continue
            if cls is ContrastiveLoss:
                m = kw.get('pos_margin', 0.0) if y[p] == y[a] else kw.get('neg_margin', 0.5)
                gaps.append(abs(d[a, p] - m))
            elif y[p] == y[a]:
                for n in range(B):
                    if y[n] != y[a]:
                        gaps += [abs(d[a, p] - d[a, n] + kw.get('margin', 0.1)), abs(d[a, p] - d[a, n])]
    return min(gaps)


@pytest.mark.parametrize('cls,kw', CONFIGS, ids=IDS)
def test_finite_difference_gradients(cls, kw):
    x = _normed(np.random.RandomState(38), 8, 4)     # seed chosen so that no boundary is within reach
    y = np.array([0, 0, 0, 1, 1, 2, 2, 3])
    eps = 1e-3
    # One coordinate moved by eps moves D_ap - D_an by at most 2 eps (4 eps for squared distances).
    assert _kink_gap(cls, kw, x, y) > (4 if kw.get('squared') else 2) * eps
    loss = cls(**kw)
    _, g = _forward(loss, x.astype(np.float32), y, grad=True)
    fd = numeric_grad(lambda z: _forward(loss, z.astype(np.float32), y), x, eps)
    np.testing.assert_allclose(g, fd, atol=3e-3, rtol=3e-2)
    assert np.abs(fd).max() > 1e-2                    # the check compared real gradients


@pytest.mark.parametrize('cls,kw', CONFIGS, ids=IDS)
def test_hybridized_equals_imperative(cls, kw):
    rng = np.random.RandomState(2)
    x = _normed(rng, 16, 8).astype(np.float32)
    y = np.repeat(np.arange(4), 4)
    hyb = cls(**kw)
    hyb.hybridize()
    v1, g1 = _forward(cls(**kw), x, y, grad=True)
    for _ in range(2):                                # the cached graph is reused correctly
        v2, g2 = _forward(hyb, x, y, grad=True)
        assert v1 == pytest.approx(v2, rel=1e-6)
        np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-7)
    assert np.abs(g1).sum() > 0
    # a different batch size through the same hybridized block
    x2 = _normed(rng, 6, 8).astype(np.float32)
    y2 = np.array([0, 0, 1, 1, 2, 2])
    assert _forward(hyb, x2, y2) == pytest.approx(_reference(cls, kw, x2, y2), rel=1e-4, abs=1e-6)


def _edge_batch(case, D=8):
    e = np.zeros(D, np.float32)
    e[0] = 1
    if case == 'identical':                           # every distance 0
        return np.tile(e, (8, 1)), np.repeat(np.arange(4), 2)
    if case == 'antipodal':                           # same-class pairs at 2, cross-class at 0
        return np.stack([e, e, -e, -e]), np.array([0, 1, 0, 1])
    if case == 'one_class':                           # no negative in the batch
        return _normed(np.random.RandomState(0), 6, D).astype(np.float32), np.zeros(6)
    if case == 'one_image_class':                     # a class with one image: no positive for it
        return _normed(np.random.RandomState(1), 5, D).astype(np.float32), np.array([0, 0, 1, 1, 2])
    return _normed(np.random.RandomState(2), 5, D).astype(np.float32), np.arange(5)   # no positives at all


@pytest.mark.parametrize('case', ['identical', 'antipodal', 'one_class', 'one_image_class', 'all_singletons'])
@pytest.mark.parametrize('hybrid', [False, True])
@pytest.mark.parametrize('cls,kw', CONFIGS, ids=IDS)
def test_edge_cases_are_finite(cls, kw, hybrid, case):
    x, y = _edge_batch(case)
    loss = cls(**kw)
    if hybrid:
        loss.hybridize()
    v, g = _forward(loss, x, y.astype(np.float32), grad=True)
    assert np.isfinite(v) and v >= 0
    assert np.all(np.isfinite(g))
    assert v == pytest.approx(_reference(cls, kw, x, y), rel=1e-4, abs=1e-5)


def test_empty_sets_give_zero():
    x, y = _edge_batch('one_class')
    for mining in ('all', 'semihard', 'batch_hard', 'batch_hard_soft'):
        v, g = _forward(TripletLoss(mining=mining), x, y, grad=True)
        assert v == 0 and np.all(g == 0)
    x, y = _edge_batch('all_singletons')
    v, g = _forward(TripletLoss(mining='batch_hard'), x, y, grad=True)
    assert v == 0 and np.all(g == 0)


def test_constructor_validation():
    with pytest.raises(ValueError, match='mining'):
        TripletLoss(mining='hard')
    with pytest.raises(ValueError, match='margin'):
        TripletLoss(margin=-0.1)
    with pytest.raises(ValueError, match='pos_margin'):
        ContrastiveLoss(pos_margin=-0.1)
    with pytest.raises(ValueError, match='neg_margin'):
        ContrastiveLoss(pos_margin=0.6, neg_margin=0.5)
    with pytest.raises(ValueError, match='reduction'):
        ContrastiveLoss(reduction='mean')
    assert ContrastiveLoss.normalize_embeddings and TripletLoss.normalize_embeddings


def test_no_asnumpy_in_losses():
    import inspect
    from gluon_dml.losses import pair, triplet
    for mod in (pair, triplet):
        src = inspect.getsource(mod)
        assert '.asnumpy(' not in src and '.asscalar(' not in src
