"""MarginLoss (Wu et al. 2017) against the paper's equations, its sampling, gradients, hybridization
and the NaN edge cases."""
import mxnet as mx
import numpy as np
import pytest

from gluon_dml.losses import MarginLoss, get_loss

from .reference import gumbel_choice, margin_loss, margin_sampling_weights, numeric_grad

LOW, HIGH = 1e-6, 1.0 - 1e-6


def _normed(rng, B, D):
    x = rng.normal(size=(B, D))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _loss(S=3, **kw):
    loss = MarginLoss(negatives_per_anchor=S, **kw)
    loss.initialize()
    return loss


def _forward(loss, x, y, seed, grad=False):
    xs = mx.nd.array(x)
    ys = mx.nd.array(y)
    xs.attach_grad()
    mx.random.seed(seed)
    with mx.autograd.record():
        out = loss(xs, ys)
    if grad:
        out.backward()
        return out.asscalar(), xs.grad.asnumpy(), loss.beta.grad().asnumpy().copy()
    return out.asscalar()


def test_hand_worked_square():
    # Four points on the unit circle at 0, 90, 180 and 270 degrees, labels 0, 1, 0, 1.
    # Each anchor's positive is the opposite point (D = 2); both of its negatives are adjacent
    # (D = sqrt 2 = 1.41421), so whichever negative is drawn the term is the same.
    # beta = 1.3, alpha = 0.2, nonzero-loss cutoff 1.5 (so both negatives may be drawn):
    #   positive term: 0.2 + 2 - 1.3 = 0.9, four ordered pairs          -> 3.6
    #   negative term: 0.2 + 1.3 - 1.41421 = 0.08579, one per anchor    -> 0.34315
    #   8 non-zero terms: (3.6 + 0.34315) / 8 = 0.49289
    x = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.float32)
    y = np.array([0, 1, 0, 1])
    loss = _loss(S=1, beta=1.3, nonzero_loss_cutoff=1.5)
    for seed in range(5):
        assert _forward(loss, x, y, seed) == pytest.approx(0.49289, abs=1e-4)


def test_hand_worked_no_active_negative():
    # Two classes of two points 60 degrees apart, the classes facing each other:
    # positives at D = 1, negatives at D = 1.732 or 2. beta = 0.9: positive terms 0.2 + 1 - 0.9 = 0.3
    # (four ordered pairs); negative terms 0.2 + 0.9 - D < 0 -> 0. Mean over 4 active terms: 0.3.
    a = np.deg2rad([0, 60, 180, 240])
    x = np.stack([np.cos(a), np.sin(a)], 1).astype(np.float32)
    loss = _loss(S=1, beta=0.9, nonzero_loss_cutoff=2.5)
    assert _forward(loss, x, np.array([0, 0, 1, 1]), 0) == pytest.approx(0.3, abs=1e-4)


@pytest.mark.parametrize('per_class,nu', [(False, 0.0), (True, 0.0), (False, 0.1)])
def test_matches_numpy_reference_same_draw(per_class, nu):
    rng = np.random.RandomState(0)
    B, D, S = 12, 16, 3
    y = np.repeat(np.arange(4), 3)
    loss = _loss(S=S, num_classes=4 if per_class else None, nu=nu, nonzero_loss_cutoff=1.4)
    if per_class:
        loss.beta.set_data(mx.nd.array([1.0, 1.1, 1.2, 1.3]))
    beta = loss.beta.data().asnumpy()
    for seed in range(4):
        x = _normed(rng, B, D).astype(np.float32)
        P, _ = margin_sampling_weights(x, y, 0.5, 1.4)
        mx.random.seed(seed)
        u = mx.nd.random.uniform_like(mx.nd.zeros((B, S, B)), low=LOW, high=HIGH).asnumpy()
        choice = gumbel_choice(P, u)
        expected = margin_loss(x, y, choice, beta, nu=nu, beta_per_class=per_class)
        assert _forward(loss, x, y, seed) == pytest.approx(expected, rel=1e-4)


def test_sampling_distribution_matches_paper_weights():
    rng = np.random.RandomState(1)
    B, D, S = 8, 8, 4000
    x = _normed(rng, B, D).astype(np.float32)
    x[4] = x[0] + 0.05 * rng.normal(size=D)        # a close negative: weight capped by the 0.5 cutoff
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    P, _ = margin_sampling_weights(x, y, 0.5, 1.4)
    loss = MarginLoss(negatives_per_anchor=S)
    F = mx.nd
    xs = mx.nd.array(x)
    from gluon_dml.losses import label_masks, pairwise_distance
    dist = pairwise_distance(F, xs)
    _, diff = label_masks(F, mx.nd.array(y), dist)
    mx.random.seed(3)
    choice, has_neg = loss.sample_negatives(F, dist, diff, xs)
    choice = choice.asnumpy().astype(int)
    for i in range(B):
        freq = np.bincount(choice[i], minlength=B) / S
        assert np.all(freq[y == y[i]] == 0), 'a positive or the anchor itself was drawn as a negative'
        # Binomial standard error at S = 4000 draws is at most 0.008; allow 4 of them.
        np.testing.assert_allclose(freq, P[i], atol=0.032)


def test_hybridized_equals_imperative_values_and_gradients():
    rng = np.random.RandomState(2)
    x = _normed(rng, 16, 8).astype(np.float32)
    y = np.repeat(np.arange(4), 4)
    imp = _loss(S=3, num_classes=4)
    hyb = _loss(S=3, num_classes=4)
    hyb.hybridize()
    for seed in (0, 7):
        v1, gx1, gb1 = _forward(imp, x, y, seed, grad=True)
        v2, gx2, gb2 = _forward(hyb, x, y, seed, grad=True)
        assert v1 == pytest.approx(v2, rel=1e-6)
        np.testing.assert_allclose(gx1, gx2, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(gb1, gb2, rtol=1e-5, atol=1e-7)
    assert np.abs(gx1).sum() > 0 and np.abs(gb1).sum() > 0


def test_finite_difference_gradients():
    rng = np.random.RandomState(3)
    x = _normed(rng, 8, 4).astype(np.float64)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    loss = _loss(S=2, beta=1.0, nonzero_loss_cutoff=2.1)
    seed = 11
    _, gx, gb = _forward(loss, x.astype(np.float32), y, seed, grad=True)
    eps = 1e-3
    fd = numeric_grad(lambda z: _forward(loss, z.astype(np.float32), y, seed), x, eps)
    np.testing.assert_allclose(gx, fd, atol=3e-3, rtol=3e-2)
    assert np.abs(fd).max() > 1e-2                  # the check compared real gradients
    # d loss / d beta by finite differences too
    b0 = loss.beta.data().asnumpy()
    vals = []
    for s in (+eps, -eps):
        loss.beta.set_data(mx.nd.array(b0 + s))
        vals.append(_forward(loss, x.astype(np.float32), y, seed))
    loss.beta.set_data(mx.nd.array(b0))
    assert gb[0] == pytest.approx((vals[0] - vals[1]) / (2 * eps), abs=2e-3)


@pytest.mark.parametrize('case', ['identical', 'antipodal', 'one_class', 'one_image_class',
                                  'all_negatives_far'])
@pytest.mark.parametrize('hybrid', [False, True])
def test_edge_cases_are_finite(case, hybrid):
    D = 8
    e = np.zeros(D, np.float32)
    e[0] = 1
    if case == 'identical':                  # every distance 0
        x, y = np.tile(e, (8, 1)), np.repeat(np.arange(4), 2)
    elif case == 'antipodal':                # distances 2 and 0
        x, y = np.stack([e, e, -e, -e]), np.array([0, 1, 0, 1])
    elif case == 'one_class':                # no negative in the batch
        x, y = _normed(np.random.RandomState(0), 6, D).astype(np.float32), np.zeros(6)
    elif case == 'one_image_class':          # a class with one image: no positive for it
        x, y = _normed(np.random.RandomState(1), 5, D).astype(np.float32), np.array([0, 0, 1, 1, 2])
    else:                                    # every negative beyond the 1.4 cutoff: uniform fallback
        x, y = np.stack([e, e * 0.99 + 0.01, -e, -e * 0.99 - 0.01]), np.array([0, 0, 1, 1])
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    loss = _loss(S=2, num_classes=4)
    if hybrid:
        loss.hybridize()
    v, gx, gb = _forward(loss, x.astype(np.float32), y.astype(np.float32), 0, grad=True)
    assert np.isfinite(v) and v >= 0
    assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gb))


def test_no_asnumpy_and_registry():
    import inspect
    from gluon_dml.losses import margin
    assert '.asnumpy(' not in inspect.getsource(margin)
    loss = get_loss('margin', margin=0.3, negatives_per_anchor=2)
    assert isinstance(loss, MarginLoss) and loss._margin == 0.3
    with pytest.raises(ValueError, match='Unknown loss'):
        get_loss('nope')
    with pytest.raises(ValueError, match='negatives_per_anchor'):
        MarginLoss(negatives_per_anchor=0)
