"""Proxy-NCA, Proxy Anchor, multi-similarity, ArcFace and CosFace against the papers' equations,
hand-worked batches, gradients, hybridization, the NaN edge cases and constructor validation."""
import inspect
import math

import mxnet as mx
import numpy as np
import pytest

from gluon_dml.losses import face, multisim, proxy
from gluon_dml.losses.face import ArcFaceLoss, CosFaceLoss
from gluon_dml.losses.multisim import MultiSimilarityLoss
from gluon_dml.losses.proxy import ProxyAnchorLoss, ProxyNCALoss

from . import reference_proxy_ms_face as ref
from .reference import numeric_grad

B, D, C = 8, 6, 4

# name -> (class, constructor kwargs for a batch of dimension D over C classes, reference, parameter)
SPECS = {
    'proxy_nca': (ProxyNCALoss, dict(num_classes=C, embed_dim=D), ref.proxy_nca_loss, 'proxies'),
    'proxy_anchor': (ProxyAnchorLoss, dict(num_classes=C, embed_dim=D), ref.proxy_anchor_loss, 'proxies'),
    'multi_similarity': (MultiSimilarityLoss, {}, ref.multi_similarity_loss, None),
    'arcface': (ArcFaceLoss, dict(num_classes=C, embed_dim=D), ref.arcface_loss, 'weight'),
    'cosface': (CosFaceLoss, dict(num_classes=C, embed_dim=D), ref.cosface_loss, 'weight'),
}
NAMES = sorted(SPECS)


def _normed(rng, n, d):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _make(name, param_value=None, hybrid=False, **kw):
    """The loss, initialised; its parameter (if any) set to ``param_value`` (random by default)."""
    cls, base_kw, _, param = SPECS[name]
    loss = cls(**dict(base_kw, **kw))
    loss.initialize()
    if param is not None:
        p = getattr(loss, param)
        if param_value is None:
            param_value = np.random.RandomState(99).normal(size=p.shape)
        p.set_data(mx.nd.array(param_value))
    if hybrid:
        loss.hybridize()
    return loss


def _param(loss, name):
    param = SPECS[name][3]
    return None if param is None else getattr(loss, param)


def _run(loss, name, x, y, grad=False):
    """Loss value (and with ``grad`` the gradients w.r.t. the embeddings and the parameter)."""
    xs = mx.nd.array(np.asarray(x, np.float32))
    ys = mx.nd.array(np.asarray(y, np.float32))
    xs.attach_grad()
    with mx.autograd.record():
        out = loss(xs, ys)
    assert out.shape == (1,)
    if not grad:
        return out.asscalar()
    out.backward()
    p = _param(loss, name)
    gp = None if p is None else p.grad().asnumpy().copy()
    return out.asscalar(), xs.grad.asnumpy(), gp


def _reference(name, loss, x, y, **kw):
    fn, p = SPECS[name][2], _param(loss, name)
    if p is None:
        return fn(x, y, **kw)
    return fn(x, y, p.data().asnumpy().astype(np.float64), **kw)


# ---------------------------------------------------------------- 1. against the numpy reference

@pytest.mark.parametrize('repeated', [True, False])
@pytest.mark.parametrize('name', NAMES)
def test_matches_numpy_reference(name, repeated):
    for seed in range(4):
        rng = np.random.RandomState(seed)
        x = _normed(rng, B, D) * rng.uniform(0.5, 2.0, size=(B, 1))       # unnormalised on purpose
        y = np.repeat(np.arange(C), 2) if repeated else rng.permutation(B) % C
        if not repeated:
            x, y = x[:C], y[:C]                 # C distinct labels: no positive pair at all
        loss = _make(name, param_value=rng.normal(size=(C, D)))
        expected = _reference(name, loss, x, y)
        assert _run(loss, name, x, y) == pytest.approx(expected, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize('name,kw', [
    ('proxy_nca', dict(scale=1.0)), ('proxy_anchor', dict(alpha=4.0, delta=0.3)),
    ('multi_similarity', dict(mining=False)), ('multi_similarity', dict(alpha=1.0, beta=10.0, lam=0.2, epsilon=0.3)),
    ('arcface', dict(easy_margin=True)), ('arcface', dict(scale=10.0, margin=0.3)),
    ('cosface', dict(scale=10.0, margin=0.2))])
def test_matches_numpy_reference_other_hyper_parameters(name, kw):
    rng = np.random.RandomState(5)
    x = _normed(rng, 12, D)
    y = np.repeat(np.arange(C), 3)
    loss = _make(name, **kw)
    assert _run(loss, name, x, y) == pytest.approx(_reference(name, loss, x, y, **kw), rel=1e-4, abs=1e-5)


def test_multi_similarity_mining_changes_the_loss():
    # The hand-worked batch below: mining drops e.g. anchor 0 deg's easy positive (S = .5 > max neg 0 + .1),
    # worth 1/2 log(1 + e^0) = .3466 before averaging over the 4 anchors.
    x, y = _circle(0, 60, 90, 180), np.array([0, 0, 1, 1])
    mined = _run(_make('multi_similarity'), 'multi_similarity', x, y)
    full = _run(_make('multi_similarity', mining=False), 'multi_similarity', x, y)
    assert mined < full - 0.3466 / 4
    assert full == pytest.approx(ref.multi_similarity_loss(x, y, mining=False), rel=1e-4)


# ---------------------------------------------------------------- 2. worked by hand

def _circle(*deg):
    a = np.deg2rad(deg)
    return np.stack([np.cos(a), np.sin(a)], 1)


def test_proxy_nca_by_hand():
    # Proxies at 0, 120, 240 degrees on the unit circle, scale 1. Squared chord: 2 - 2 cos(angle).
    # x0 at 0 deg, label 0: D^2 = 0 to p0, 3 to p1 and p2:
    #   -log(e^0 / (e^-3 + e^-3)) = log 2 - 3 = -2.306853   (NCA leaves p_y out of the denominator)
    # x1 at 90 deg, label 1: D^2 = 2 to p0, 2 - 2 cos 30 = 0.267949 to p1, 2 + 2 cos 30 = 3.732051 to p2:
    #   0.267949 + log(e^-2 + e^-3.732051) = 0.267949 - 1.837098 = -1.569149
    # mean: -1.938001.   With scale 3 every D^2 is 9x: x0 alone gives log 2 - 27 = -26.306853.
    p = _circle(0, 120, 240)
    loss = _make('proxy_nca', param_value=p, num_classes=3, embed_dim=2, scale=1.0)
    assert _run(loss, 'proxy_nca', _circle(0, 90), [0, 1]) == pytest.approx(-1.938001, abs=1e-5)
    loss3 = _make('proxy_nca', param_value=p * 5, num_classes=3, embed_dim=2)   # proxies' norm is irrelevant
    assert _run(loss3, 'proxy_nca', _circle(0), [0]) == pytest.approx(-26.306853, abs=1e-4)


def test_proxy_anchor_by_hand():
    # Proxies at 0, 90, 180 degrees; x0 at 0 deg (label 0), x1 at 90 deg (label 1); alpha 2, delta 0.1.
    # Cosines: x0 -> (1, 0, -1), x1 -> (0, 1, 0). P+ = {p0, p1}; p2 has no positive.
    #   positive terms, p0 and p1 alike: log(1 + e^{-2 (1 - 0.1)}) = log(1 + e^-1.8) = 0.152978
    #     -> mean over |P+| = 2: 0.152978
    #   negative terms: p0 (x1, s = 0): log(1 + e^{2 (0 + 0.1)}) = log(1 + e^0.2) = 0.798139; p1 the same;
    #     p2 (x0 s = -1, x1 s = 0): log(1 + e^-1.8 + e^0.2) = 0.869912
    #     -> mean over |P| = 3: (2 * 0.798139 + 0.869912) / 3 = 0.822063
    #   loss = 0.152978 + 0.822063 = 0.975041
    loss = _make('proxy_anchor', param_value=_circle(0, 90, 180), num_classes=3, embed_dim=2,
                 alpha=2.0, delta=0.1)
    assert _run(loss, 'proxy_anchor', _circle(0, 90), [0, 1]) == pytest.approx(0.975041, abs=1e-5)


def test_multi_similarity_by_hand():
    # Points at 0, 60 deg (class 0) and 90, 180 deg (class 1); defaults alpha 2, beta 50, lambda 0.5, eps 0.1.
    # Cosines: S(0,60) = .5, S(0,90) = 0, S(0,180) = -1, S(60,90) = cos 30 = .866025, S(60,180) = -.5, S(90,180) = 0.
    # anchor 0 deg:  min pos .5 -> negatives with S > .4: none;  max neg 0 -> positives with S < .1: none -> 0
    # anchor 60 deg: min pos .5 -> negative 90 (.866) kept; max neg .866 -> positive 0 deg (.5) kept:
    #   1/2 log(1 + e^{-2 (.5 - .5)}) + 1/50 log(1 + e^{50 (.866025 - .5)}) = .346574 + .366025 = .712599
    # anchor 90 deg: min pos 0 -> negatives with S > -.1: 0 deg (0) and 60 deg (.866); positive 180 (0) kept:
    #   1/2 log(1 + e^{-2 (0 - .5)}) + 1/50 log(1 + e^-25 + e^18.30127) = .656631 + .366025 = 1.022656
    # anchor 180 deg: min pos 0 -> negatives with S > -.1: none (-1, -.5); max neg -.5 -> no positive -> 0
    # loss = (0 + .712599 + 1.022656 + 0) / 4 = 0.433814
    x, y = _circle(0, 60, 90, 180), [0, 0, 1, 1]
    assert _run(_make('multi_similarity'), 'multi_similarity', x, y) == pytest.approx(0.433814, abs=1e-5)


def test_arcface_by_hand():
    # Class weights at 0 and 90 deg, s = 2, m = 0.5.
    # x at 30 deg, label 0: theta = pi/6 = .523599, target cos(.523599 + .5) = cos(1.023599) = .520296;
    #   other class cos 60 = .5.  CE = log(1 + e^{2 (.5 - .520296)}) = log(1 + e^-.040592) = .673057
    # x at 170 deg, label 0: theta + m = 2.967 + .5 > pi, so the target is
    #   cos 170 - m sin m = -.984808 - .239713 = -1.224521; other class cos 80 = .173648.
    #   CE = log(1 + e^{2 (.173648 + 1.224521)}) = 2.855581
    w = _circle(0, 90)
    loss = _make('arcface', param_value=w, num_classes=2, embed_dim=2, scale=2.0, margin=0.5)
    assert _run(loss, 'arcface', _circle(30), [0]) == pytest.approx(0.673057, abs=1e-5)
    assert _run(loss, 'arcface', _circle(170), [0]) == pytest.approx(2.855581, abs=1e-5)
    assert _run(loss, 'arcface', _circle(30, 170), [0, 0]) == pytest.approx((0.673057 + 2.855581) / 2, abs=1e-5)
    # easy margin: at 170 deg cos < 0, so no margin: CE = log(1 + e^{2 (.173648 + .984808)}) = 2.409838
    easy = _make('arcface', param_value=w, num_classes=2, embed_dim=2, scale=2.0, easy_margin=True)
    assert _run(easy, 'arcface', _circle(170), [0]) == pytest.approx(
        math.log(1 + math.exp(2 * (0.173648 + 0.984808))), abs=1e-5)
    # x at 87 deg: cos = .052336 > 0, so both variants apply the margin:
    #   target cos(1.518436 + .5) = -.432839; other class cos 3 = .998630;
    #   CE = log(1 + e^{2 (.998630 + .432839)}) = 2.918468
    for lo in (loss, easy):
        assert _run(lo, 'arcface', _circle(87), [0]) == pytest.approx(2.918468, abs=1e-5)


def test_cosface_by_hand():
    # Class weights at 0 and 90 deg, s = 2, m = 0.35; x at 30 deg, label 0:
    # target cos 30 - .35 = .866025 - .35 = .516025; other cos 60 = .5.
    # CE = log(1 + e^{2 (.5 - .516025)}) = .677250
    loss = _make('cosface', param_value=_circle(0, 90), num_classes=2, embed_dim=2, scale=2.0, margin=0.35)
    assert _run(loss, 'cosface', _circle(30), [0]) == pytest.approx(0.677250, abs=1e-5)


# ---------------------------------------------------------------- 3. finite differences

FD_KW = {'proxy_nca': {}, 'proxy_anchor': dict(alpha=8.0), 'multi_similarity': dict(beta=10.0),
         'arcface': dict(scale=8.0), 'cosface': dict(scale=8.0)}


@pytest.mark.parametrize('defaults', [False, True])
@pytest.mark.parametrize('name', NAMES)
def test_finite_difference_gradients(name, defaults):
    rng = np.random.RandomState(3)
    x = _normed(rng, B, D) * 1.3
    y = np.repeat(np.arange(C), 2)
    pv = rng.normal(size=(C, D))
    if name in ('arcface', 'cosface'):      # one embedding 172 deg from its class weight: ArcFace's fallback
        v = _normed(rng, 1, D)[0]
        v -= v.dot(pv[0]) * pv[0] / pv[0].dot(pv[0])
        x[0] = 1.3 * (np.cos(np.deg2rad(172)) * pv[0] / np.linalg.norm(pv[0])
                      + np.sin(np.deg2rad(172)) * v / np.linalg.norm(v))
    loss = _make(name, param_value=pv, **({} if defaults else FD_KW[name]))
    _, gx, gp = _run(loss, name, x, y, grad=True)

    def fd(arr, f):
        return numeric_grad(f, arr, 1e-3)

    fx = fd(x, lambda v: _run(loss, name, v, y))
    np.testing.assert_allclose(gx, fx, atol=3e-3, rtol=3e-2)
    assert np.abs(fx).max() > 1e-2                  # the check compared real gradients
    p = _param(loss, name)
    if p is not None:
        p0 = p.data().asnumpy().astype(np.float64)

        def with_param(v):
            p.set_data(mx.nd.array(v))
            return _run(loss, name, x, y)
        fp = fd(p0, with_param)
        p.set_data(mx.nd.array(p0))
        np.testing.assert_allclose(gp, fp, atol=3e-3, rtol=3e-2)
        assert np.abs(fp).max() > 1e-2


# ---------------------------------------------------------------- 4. hybridized == imperative

@pytest.mark.parametrize('name', NAMES)
def test_hybridized_equals_imperative(name):
    rng = np.random.RandomState(4)
    x, y = _normed(rng, 12, D), np.repeat(np.arange(C), 3)
    pv = rng.normal(size=(C, D))
    imp, hyb = _make(name, param_value=pv), _make(name, param_value=pv, hybrid=True)
    for _ in range(2):                              # the second call runs the cached graph
        v1, gx1, gp1 = _run(imp, name, x, y, grad=True)
        v2, gx2, gp2 = _run(hyb, name, x, y, grad=True)
        assert v1 == pytest.approx(v2, rel=1e-6, abs=1e-7)
        np.testing.assert_allclose(gx1, gx2, rtol=1e-5, atol=1e-6)
        if gp1 is not None:
            np.testing.assert_allclose(gp1, gp2, rtol=1e-5, atol=1e-6)
    assert np.abs(gx1).sum() > 0


# ---------------------------------------------------------------- 5. edge cases

CASES = ['identical', 'antipodal', 'one_class', 'one_image_class']


@pytest.mark.parametrize('hybrid', [False, True])
@pytest.mark.parametrize('case', CASES)
@pytest.mark.parametrize('name', NAMES)
def test_edge_cases_are_finite(name, case, hybrid):
    e = np.zeros(D)
    e[0] = 1
    # class parameters: row 0 along e, row 1 along -e, so embeddings at +-e sit at cosine +-1
    # (distance 0 and 2) from them; the other rows random.
    pv = np.random.RandomState(7).normal(size=(C, D))
    pv[0], pv[1] = e, -e
    if case == 'identical':                 # every pairwise distance 0, all on the class-0 parameter
        x, y = np.tile(e, (8, 1)), np.repeat(np.arange(C), 2)
    elif case == 'antipodal':               # pairwise distances 0 and 2, cosines +-1 to the parameters
        x, y = np.stack([e, e, -e, -e]), np.array([0, 1, 0, 1])
    elif case == 'one_class':               # no negative in the batch
        x, y = np.concatenate([np.tile(e, (2, 1)), _normed(np.random.RandomState(0), 4, D)]), np.zeros(6)
    else:                                   # a class with a single image
        x, y = np.concatenate([e[None], _normed(np.random.RandomState(1), 4, D)]), np.array([0, 1, 1, 2, 2])
    loss = _make(name, param_value=pv, hybrid=hybrid)
    v, gx, gp = _run(loss, name, x, y, grad=True)
    assert np.isfinite(v)
    assert np.all(np.isfinite(gx))
    assert gp is None or np.all(np.isfinite(gp))
    if name == 'multi_similarity' and case == 'one_class':
        assert v == 0.0                     # no negative: nothing mined


def test_empty_sets_give_zero_terms():
    # Multi-similarity on distinct labels: no positive and no negative kept -> exactly 0.
    x = _normed(np.random.RandomState(2), 4, D)
    assert _run(_make('multi_similarity'), 'multi_similarity', x, [0, 1, 2, 3]) == 0.0
    # Proxy Anchor with one class in the batch: its proxy is the only one in P+; the other proxies
    # have only negatives. Agrees with the reference (which averages over |P+| = 1).
    loss = _make('proxy_anchor')
    y = np.zeros(4)
    assert _run(loss, 'proxy_anchor', x, y) == pytest.approx(_reference('proxy_anchor', loss, x, y), rel=1e-4)


# ---------------------------------------------------------------- 6. constructor validation and style

@pytest.mark.parametrize('cls,kw,match', [
    (ProxyNCALoss, dict(num_classes=1, embed_dim=4), 'num_classes'),
    (ProxyNCALoss, dict(num_classes=3, embed_dim=0), 'embed_dim'),
    (ProxyNCALoss, dict(num_classes=3, embed_dim=4, scale=0), 'scale'),
    (ProxyAnchorLoss, dict(num_classes=0, embed_dim=4), 'num_classes'),
    (ProxyAnchorLoss, dict(num_classes=3, embed_dim=4, alpha=-1), 'alpha'),
    (ProxyAnchorLoss, dict(num_classes=3, embed_dim=4, delta=-0.1), 'delta'),
    (MultiSimilarityLoss, dict(alpha=0), 'alpha'),
    (MultiSimilarityLoss, dict(beta=-5), 'beta'),
    (MultiSimilarityLoss, dict(epsilon=-0.1), 'epsilon'),
    (ArcFaceLoss, dict(num_classes=1, embed_dim=4), 'num_classes'),
    (ArcFaceLoss, dict(num_classes=3, embed_dim=4, margin=2.0), 'margin'),
    (ArcFaceLoss, dict(num_classes=3, embed_dim=4, margin=-0.1), 'margin'),
    (ArcFaceLoss, dict(num_classes=3, embed_dim=4, scale=0), 'scale'),
    (CosFaceLoss, dict(num_classes=3, embed_dim=4, margin=-0.1), 'margin'),
    (CosFaceLoss, dict(num_classes=3, embed_dim=None), 'embed_dim'),
])
def test_constructor_validation(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(**kw)


def test_defaults_parameters_and_no_host_sync():
    nca = ProxyNCALoss(10, 16)
    assert nca._scale == 3.0 and nca.proxies.shape == (10, 16)
    pa = ProxyAnchorLoss(10, 16)
    assert (pa._alpha, pa._delta) == (32.0, 0.1) and pa.proxies.shape == (10, 16)
    ms = MultiSimilarityLoss()
    assert (ms._alpha, ms._beta, ms._lam, ms._epsilon, ms._mining) == (2.0, 50.0, 0.5, 0.1, True)
    arc, cos = ArcFaceLoss(10, 16), CosFaceLoss(10, 16)
    assert (arc._scale, arc._margin, arc._easy) == (64.0, 0.5, False) and arc.weight.shape == (10, 16)
    assert (cos._scale, cos._margin) == (64.0, 0.35) and cos.weight.shape == (10, 16)
    for cls in (ProxyNCALoss, ProxyAnchorLoss, MultiSimilarityLoss, ArcFaceLoss, CosFaceLoss):
        assert cls.normalize_embeddings is True
    for mod in (proxy, multisim, face):
        src = inspect.getsource(mod)
        assert '.asnumpy(' not in src and '.asscalar(' not in src
    # Proxy Anchor's Kaiming-normal (fan-out) init: std sqrt(2 / num_classes)
    big = ProxyAnchorLoss(50, 400)
    big.initialize()
    assert big.proxies.data().asnumpy().std() == pytest.approx(math.sqrt(2 / 50), rel=0.05)
