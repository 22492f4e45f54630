"""The shared pieces of every loss: distance matrices, label masks, masked log-sum-exp."""
import mxnet as mx
import numpy as np
import pytest

from gluon_dml.losses.base import (label_masks, masked_logsumexp, pairwise_distance,
                                   pairwise_similarity, pairwise_sq_distance, safe_divide)

F = mx.nd


def test_distances_and_similarity_match_numpy():
    rng = np.random.RandomState(0)
    x, y = rng.randn(5, 3), rng.randn(4, 3)
    d2 = ((x[:, None] - y[None]) ** 2).sum(-1)
    np.testing.assert_allclose(pairwise_sq_distance(F, F.array(x), F.array(y)).asnumpy(), d2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pairwise_distance(F, F.array(x)).asnumpy(),
                               np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1) + 1e-8), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(pairwise_similarity(F, F.array(x), F.array(y)).asnumpy(), x @ y.T, rtol=1e-5)


def test_label_masks():
    same, diff = label_masks(F, F.array([0, 0, 1, 2, 1]), F.zeros((5, 5)))
    expect_same = np.array([[0, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 1],
                            [0, 0, 0, 0, 0], [0, 0, 1, 0, 0]])
    np.testing.assert_array_equal(same.asnumpy(), expect_same)
    np.testing.assert_array_equal(diff.asnumpy(), 1 - expect_same - np.eye(5))


@pytest.mark.parametrize('add_one', [False, True])
def test_masked_logsumexp(add_one):
    x = np.array([[1000.0, 2.0, -3.0], [0.5, 0.25, 7.0], [1.0, 2.0, 3.0]])
    mask = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 0]], dtype=float)
    xs = F.array(x)
    xs.attach_grad()
    with mx.autograd.record():
        out = masked_logsumexp(F, xs, F.array(mask), add_one=add_one)
    out.backward()
    got = out.asnumpy()[:, 0]
    for i in range(2):
        terms = [x[i, j] for j in range(3) if mask[i, j]] + ([0.0] if add_one else [])
        top = max(terms)
        assert got[i] == pytest.approx(top + np.log(np.sum(np.exp(np.array(terms) - top))), rel=1e-6)
    if add_one:
        assert got[2] == 0.0
    else:
        assert got[2] < -60
    g = xs.grad.asnumpy()
    assert np.all(np.isfinite(g)) and np.all(g[mask == 0] == 0)
    assert g[1].sum() == pytest.approx(1.0 - (np.exp(-got[1]) if add_one else 0.0), rel=1e-5)


def test_safe_divide_of_empty_set_is_zero():
    assert safe_divide(F, F.array([0.0]), F.array([0.0])).asscalar() == 0.0
    assert safe_divide(F, F.array([3.0]), F.array([2.0])).asscalar() == 1.5
