"""The shared pieces of every loss: distance matrices, label masks, masked log-sum-exp."""
import mxnet as mx
import numpy as np
import pytest

from gluon_dml.losses.base import (label_masks, masked_logsumexp, pairwise_distance,
                                   pairwise_similarity, pairwise_sq_distance, row_pick_index,
                                   safe_divide)

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


@pytest.mark.parametrize('hybrid', [False, True])
def test_row_pick_index_gathers_and_scatters_by_row(hybrid):
    """x[a, index[a, j]] forward; backward adds each picked place's gradient to its (a, column),
    repeated columns summed, in (B, B) like x."""
    rng = np.random.RandomState(1)
    x, index = rng.randn(6, 6), rng.randint(0, 6, (6, 4))
    w = rng.randn(6, 4)

    class Pick(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, x, index, w):
            return F.sum(F.gather_nd(x, row_pick_index(F, index)) * w)

    block = Pick()
    if hybrid:
        block.hybridize()
    xs = F.array(x)
    xs.attach_grad()
    with mx.autograd.record():
        out = block(xs, F.array(index), F.array(w))
    out.backward()
    rows = np.arange(6)[:, None]
    np.testing.assert_allclose(out.asscalar(), (x[rows, index] * w).sum(), rtol=1e-5)
    expect = np.zeros_like(x)
    np.add.at(expect, (np.broadcast_to(rows, index.shape), index), w)
    np.testing.assert_allclose(xs.grad.asnumpy(), expect, rtol=1e-6)
    shared = F.array(np.broadcast_to(rows, index.shape))
    np.testing.assert_array_equal(row_pick_index(F, F.array(index), shared).asnumpy(),
                                  row_pick_index(F, F.array(index)).asnumpy())


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
