"""HashNet, DSH and DCH against numpy implementations of their papers' equations."""
import mxnet as mx
import numpy as np
import pytest

from gluon_dml.losses import get_loss
from gluon_dml.losses.hashing import hash_pair_masks

from .reference import numeric_grad
from .reference_hashing import dch_loss, dsh_loss, hashnet_loss

REFS = {'hashnet': hashnet_loss, 'dsh': dsh_loss, 'dch': dch_loss}


def _onehot(labels, C):
    return np.eye(C)[labels]


def _value(name, h, y, hybridize=False, grad=False, **kw):
    loss = get_loss(name, embed_dim=h.shape[1], **kw)
    loss.initialize()
    if hybridize:
        loss.hybridize()
    x = mx.nd.array(h, dtype='float64')
    x.attach_grad()
    with mx.autograd.record():
        out = loss(x, mx.nd.array(y, dtype='float64'))
    out.backward()
    return out.asnumpy().item(), x.grad.asnumpy()


@pytest.mark.parametrize('name', sorted(REFS))
@pytest.mark.parametrize('seed', [0, 1])
def test_matches_numpy_reference(name, seed):
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, 3, size=8)
    h = np.tanh(2 * rng.randn(8, 12))
    value, _ = _value(name, h, _onehot(labels, 3))
    assert value == pytest.approx(REFS[name](h, labels), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize('name', sorted(REFS))
def test_multi_label_pairs_are_similar_when_label_sets_intersect(name):
    rng = np.random.RandomState(3)
    y = (rng.rand(7, 4) < 0.4).astype(np.float64)
    y[np.arange(7), rng.randint(0, 4, 7)] = 1            # every image has a label
    h = np.tanh(rng.randn(7, 16))
    value, _ = _value(name, h, y)
    assert value == pytest.approx(REFS[name](h, y), rel=1e-6)
    # and it is not the single-label answer of the first label only
    assert value != pytest.approx(REFS[name](h, y.argmax(1)), rel=1e-3)


def test_pair_masks_by_hand():
    y = mx.nd.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]])
    h = mx.nd.ones((4, 2))
    sim, dis = hash_pair_masks(mx.nd, h, y)
    expect_sim = np.array([[0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0]])
    np.testing.assert_array_equal(sim.asnumpy(), expect_sim)
    np.testing.assert_array_equal(dis.asnumpy(), 1 - expect_sim - np.eye(4))


def test_hashnet_by_hand():
    # two identical codes of one class, one opposite code of another: 2 bits, alpha = 10 / 2
    h = np.array([[1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]])
    labels = np.array([0, 0, 1])
    value, _ = _value('hashnet', h, _onehot(labels, 2))
    pos = np.log1p(np.exp(10.0)) - 10.0            # <h0, h1> = 2, alpha x = 10, similar
    neg = np.log1p(np.exp(-10.0))                  # <h0, h2> = -2, dissimilar
    assert value == pytest.approx(pos + neg, rel=1e-9)


@pytest.mark.parametrize('name', sorted(REFS))
def test_finite_difference_gradients(name):
    rng = np.random.RandomState(5)
    labels = np.array([0, 0, 1, 1, 2, 0])
    y = _onehot(labels, 3)
    h = np.tanh(rng.randn(6, 5))
    _, grad = _value(name, h, y)
    num = numeric_grad(lambda v: _value(name, v, y)[0], h, eps=1e-6)
    np.testing.assert_allclose(grad, num, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize('name', sorted(REFS))
def test_hybridized_equals_imperative(name):
    rng = np.random.RandomState(7)
    y = _onehot(rng.randint(0, 4, 10), 4)
    h = np.tanh(rng.randn(10, 24))
    v1, g1 = _value(name, h, y, hybridize=False)
    v2, g2 = _value(name, h, y, hybridize=True)
    assert v1 == pytest.approx(v2, rel=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=1e-10, atol=1e-12)


def test_hashnet_no_overflow_for_large_inner_products():
    # alpha <h_i, h_j> = +-1000 in float32: exp would overflow, the stable form does not
    h = np.full((4, 100), 10.0)
    h[2:] *= -1
    labels = np.array([0, 1, 0, 1])               # every kind of pair: similar/dissimilar, +-1000
    loss = get_loss('hashnet', embed_dim=100)
    loss.initialize()
    loss.hybridize()
    x = mx.nd.array(h)
    x.attach_grad()
    with mx.autograd.record():
        out = loss(x, mx.nd.array(_onehot(labels, 2)))
    out.backward()
    value = out.asscalar()
    assert np.isfinite(value) and np.all(np.isfinite(x.grad.asnumpy()))
    assert value == pytest.approx(hashnet_loss(h, labels), rel=1e-5)
    # by hand: the similar pairs (0,2), (1,3) have x = -1000, loss 1000 each: mean 1000; of the
    # dissimilar pairs, (0,1), (2,3) have x = +1000 (loss 1000), (0,3), (1,2) x = -1000 (loss 0):
    # mean 500
    assert value == pytest.approx(1500.0, rel=1e-6)


@pytest.mark.parametrize('name', sorted(REFS))
def test_edge_cases_are_finite(name):
    # one class only (no dissimilar pair), all-equal codes, all-zero codes
    for h, labels in [(np.tanh(np.random.RandomState(0).randn(4, 8)), np.zeros(4, int)),
                      (np.ones((4, 8)), np.array([0, 1, 0, 1])),
                      (np.zeros((4, 8)), np.array([0, 1, 2, 3]))]:
        value, grad = _value(name, h, _onehot(labels, 4))
        assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_losses_learn_separable_codes():
    # a few steps of gradient descent on free codes separate two classes in Hamming space
    rng = np.random.RandomState(0)
    labels = np.repeat([0, 1], 6)
    for name in sorted(REFS):
        z = mx.nd.array(rng.randn(12, 16) * 0.1)
        loss = get_loss(name, embed_dim=16)
        loss.initialize()
        y = mx.nd.array(_onehot(labels, 2))
        for _ in range(200):
            z.attach_grad()
            with mx.autograd.record():
                out = loss(mx.nd.tanh(z), y)
            out.backward()
            z = z - 0.5 * z.grad
        codes = np.sign(z.asnumpy())
        ham = (16 - codes @ codes.T) / 2
        same = labels[:, None] == labels[None, :]
        assert ham[same].max() < ham[~same].min(), name
