"""TripletLoss 'all' and 'semihard' mining without the (B, B, B) cube: the same values and gradients as
the former cube implementation (kept as a test-only reference) on batches large enough for ranks and
ties to matter, exact ties included, and a vectorised float64 numpy reference at a batch size where
the cube would no longer fit in memory."""
import mxnet as mx
import numpy as np
import pytest

from gluon_dml.losses.triplet import TripletLoss

from .reference_triplet_cube import CubeTripletLoss

CASES = [dict(mining='all'), dict(mining='all', squared=True, margin=0.2),
         dict(mining='all', margin=0.5), dict(mining='semihard', margin=0.3),
         dict(mining='semihard', squared=True, margin=0.5), dict(mining='semihard', margin=0.05)]
CASE_IDS = ['-'.join('%s=%s' % kv for kv in sorted(kw.items())) for kw in CASES]


def _normed(rng, B, D):
    x = rng.normal(size=(B, D))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(rng, B, D, classes):
    """Embeddings near their class centre (so that many triplets are neither easy nor hopeless)."""
    centres = _normed(rng, classes, D)
    y = rng.randint(0, classes, size=B)
    x = centres[y] + 0.7 * rng.normal(size=(B, D)) / np.sqrt(D)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


def _run(loss, x, y):
    xs = mx.nd.array(x)
    xs.attach_grad()
    with mx.autograd.record():
        out = loss(xs, mx.nd.array(y))
    out.backward()
    return out.asscalar(), xs.grad.asnumpy()


def _batches():
    rng = np.random.RandomState(5)
    yield 'PxK-128', _normed(rng, 128, 32), np.repeat(np.arange(32), 4)
    yield 'PxK-256-clustered', _clustered(rng, 256, 16, 64)[0], np.repeat(np.arange(64), 4)
    x, y = _clustered(rng, 200, 8, 30)                   # uneven classes, some of one image
    yield 'uneven-200', x, y
    yield 'few-classes-96', _normed(rng, 96, 8), rng.randint(0, 3, size=96)


@pytest.mark.parametrize('kw', CASES, ids=CASE_IDS)
@pytest.mark.parametrize('hybrid', [False, True])
def test_matches_cube_implementation(kw, hybrid):
    new, old = TripletLoss(**kw), CubeTripletLoss(**kw)
    if hybrid:
        new.hybridize()
        old.hybridize()
    for name, x, y in _batches():
        v_new, g_new = _run(new, x, y)
        v_old, g_old = _run(old, x, y)
        assert v_old > 0, name                           # the comparison is not between zeros
        assert v_new == pytest.approx(v_old, rel=1e-5), name
        np.testing.assert_allclose(g_new, g_old, rtol=1e-4, atol=1e-6 * np.abs(g_old).max(), err_msg=name)


def _tied_batch():
    """Points on the coordinate axes, so that distances (0, sqrt 2, 2; squared 0, 2, 4) tie exactly,
    with duplicated points: D_an == D_ap and D_an == D_ap + alpha both occur, in float32 too."""
    basis = np.eye(4, dtype=np.float32)
    pts = np.concatenate([basis, -basis])               # 8 points
    idx = np.array([0, 0, 1, 4, 2, 2, 5, 6, 3, 7, 1, 0, 4, 5, 6, 7, 2, 3, 0, 1])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4])
    return pts[idx], y


@pytest.mark.parametrize('kw', [dict(mining='all', squared=True, margin=2.0),     # 2 + 2 == 4
                                dict(mining='all', squared=True, margin=0.0),     # 2 + 0 == 2
                                dict(mining='all', margin=0.5),
                                dict(mining='semihard', squared=True, margin=2.5),
                                dict(mining='semihard', squared=True, margin=2.0),
                                dict(mining='semihard', margin=1.0)],
                         ids=['all-sq-tie', 'all-sq-m0', 'all', 'semi-sq', 'semi-sq-tie', 'semi'])
def test_exact_ties_as_the_cube(kw):
    # Ties decide which triplets count (strict inequalities) and, for semi-hard, which of several
    # equally near negatives receives the gradient (argmin: the first column).
    x, y = _tied_batch()
    for hybrid in (False, True):
        new, old = TripletLoss(**kw), CubeTripletLoss(**kw)
        if hybrid:
            new.hybridize()
            old.hybridize()
        v_new, g_new = _run(new, x, y)
        v_old, g_old = _run(old, x, y)
        assert v_new == pytest.approx(v_old, rel=1e-6, abs=1e-7)
        np.testing.assert_allclose(g_new, g_old, rtol=1e-5, atol=1e-7)
    if kw['mining'] == 'semihard' and kw['margin'] == 2.5:
        assert v_old > 0 and np.abs(g_old).max() > 0     # the tied batch has semi-hard triplets


def _reference_vectorised(x, y, margin, mining, squared):
    """float64 numpy, per anchor over its positives and negatives (O(B^2 K) memory, not O(B^3))."""
    x = x.astype(np.float64)
    sq = np.sum(x * x, 1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0)
    d = d2 if squared else np.sqrt(d2 + 1e-8)
    total, count = 0.0, 0
    for a in range(len(y)):
        pos = np.flatnonzero((y == y[a]) & (np.arange(len(y)) != a))
        neg = np.flatnonzero(y != y[a])
        if not len(pos) or not len(neg):
            continue
        d_ap, d_an = d[a, pos][:, None], d[a, neg][None, :]
        if mining == 'all':
            t = np.maximum(d_ap - d_an + margin, 0)
            total, count = total + t.sum(), count + np.count_nonzero(t)
        else:
            semi = np.where((d_an > d_ap) & (d_an < d_ap + margin), d_an, np.inf).min(1)
            keep = np.isfinite(semi)
            total, count = total + np.sum(d[a, pos][keep] - semi[keep] + margin), count + keep.sum()
    return total / max(count, 1)


@pytest.mark.parametrize('kw', [dict(mining='all'), dict(mining='semihard', margin=0.2),
                                dict(mining='all', squared=True, margin=0.3)],
                         ids=['all', 'semihard', 'all-squared'])
def test_large_batch_matches_numpy(kw):
    # B = 1024: the cube would hold 1.07e9 entries per tensor (4.3 GB each, several of them).
    rng = np.random.RandomState(11)
    x, y = _clustered(rng, 1024, 32, 256)
    loss = TripletLoss(**kw)
    loss.hybridize(static_alloc=True)
    v, g = _run(loss, x, y)
    expected = _reference_vectorised(x, y, kw.get('margin', 0.1), kw['mining'], kw.get('squared', False))
    assert expected > 0
    assert v == pytest.approx(expected, rel=2e-4)
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 0
