"""VSE0 (sum of hinges) and VSE++ (max of hinges) against a numpy implementation of the paper's
equations (Faghri et al., BMVC 2018, eqs. 2 and 3), the hardest-negative choice, gradients, and
hybridized == imperative."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluon_dml.losses.vse import VSELoss


def numpy_vse(im, s, margin=0.2, max_violation=False):
    """Per pair n: [caption term of image n] + [image term of caption n], written with loops."""
    B = im.shape[0]
    S = im @ s.T
    out = np.zeros(B)
    for n in range(B):
        cap_terms = [max(0.0, margin - S[n, n] + S[n, m]) for m in range(B) if m != n]
        img_terms = [max(0.0, margin - S[n, n] + S[k, n]) for k in range(B) if k != n]
        agg = max if max_violation else sum
        out[n] = agg(cap_terms) + agg(img_terms)
    return out


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _hand_batch():
    # three pairs in 2-D; image n and caption n are the positives
    im = _unit([[1, 0], [0, 1], [1, 1]])
    s = _unit([[1, 0.2], [0.1, 1], [0.3, 1]])
    return im, s


@pytest.mark.parametrize('max_violation', [False, True])
def test_matches_numpy_on_a_hand_batch(max_violation):
    im, s = _hand_batch()
    loss = VSELoss(0.2, max_violation)
    out = loss(mx.nd.array(im), mx.nd.array(s)).asnumpy()
    np.testing.assert_allclose(out, numpy_vse(im, s, 0.2, max_violation), rtol=1e-5, atol=1e-6)


def test_hand_checked_values():
    # two pairs, orthogonal-ish: S = [[1, 0], [0, 1]] -> every hinge is margin - 1 + 0 < 0: loss 0
    im = np.eye(2)
    assert VSELoss(0.2)(mx.nd.array(im), mx.nd.array(im)).asnumpy().tolist() == [0.0, 0.0]
    # S = [[0.5, 0.6], [0.1, 0.9]]: image 0 vs caption 1: 0.2 - 0.5 + 0.6 = 0.3;
    # caption 0 vs image 1: 0.2 - 0.5 + 0.1 = -0.2 -> 0; image 1 vs caption 0: 0.2 - 0.9 + 0.1 < 0;
    # caption 1 vs image 0: 0.2 - 0.9 + 0.6 = -0.1 -> 0. Total 0.3, all in pair 0's caption term.
    im = np.array([[1.0, 0.0], [0.0, 1.0]])
    s = np.array([[0.5, 0.1], [0.6, 0.9]])          # rows: captions; S = im @ s.T
    for mv in (False, True):
        out = VSELoss(0.2, mv)(mx.nd.array(im), mx.nd.array(s)).asnumpy()
        np.testing.assert_allclose(out, [0.3, 0.0], atol=1e-6)


def test_max_violation_uses_only_the_hardest_negative():
    rng = np.random.RandomState(0)
    B, D = 6, 8
    im = _unit(rng.randn(B, D))
    s = _unit(im + 0.8 * rng.randn(B, D))
    # make caption 4 the hardest negative of image 0 by far: almost image 0 itself
    s[4] = _unit(im[0:1] + 0.05 * rng.randn(1, D))[0]
    S = im @ s.T
    hardest = max((m for m in range(B) if m != 0), key=lambda m: S[0, m])
    assert hardest == 4
    x_im, x_s = mx.nd.array(im), mx.nd.array(s)
    x_s.attach_grad()
    with autograd.record():
        out = VSELoss(0.2, max_violation=True)(x_im, x_s)
        term = out[0]
    term.backward()
    g = np.abs(x_s.grad.asnumpy()).sum(axis=1)
    # pair 0's loss touches caption 0 (its positive), the hardest negative caption 4, and no other
    # caption (its image term involves images only)
    assert g[4] > 0 and g[0] > 0
    assert np.all(g[[1, 2, 3, 5]] == 0)
    expected = max(0, 0.2 - S[0, 0] + S[0, 4]) + max(0, max(0.2 - S[0, 0] + S[k, 0] for k in range(1, B)))
    assert float(term.asscalar()) == pytest.approx(expected, rel=1e-5)
    # VSE0 spreads the gradient over every violating negative
    x_s.attach_grad()
    with autograd.record():
        term = VSELoss(0.2, max_violation=False)(x_im, x_s)[0]
    term.backward()
    violating = [m for m in range(1, B) if 0.2 - S[0, 0] + S[0, m] > 0]
    assert len(violating) >= 2
    assert np.all(np.abs(x_s.grad.asnumpy()).sum(axis=1)[violating] > 0)


@pytest.mark.parametrize('max_violation', [False, True])
def test_random_batches_and_hybridized_equals_imperative(max_violation):
    rng = np.random.RandomState(3)
    for B in (2, 5, 16):
        im, s = _unit(rng.randn(B, 10)), _unit(rng.randn(B, 10))
        ref = numpy_vse(im, s, 0.2, max_violation)
        loss = VSELoss(0.2, max_violation)
        a = loss(mx.nd.array(im), mx.nd.array(s)).asnumpy()
        loss.hybridize()
        b = loss(mx.nd.array(im), mx.nd.array(s)).asnumpy()
        np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('max_violation', [False, True])
def test_gradient_matches_finite_differences(max_violation):
    rng = np.random.RandomState(5)
    im, s = rng.randn(4, 3), rng.randn(4, 3)
    loss = VSELoss(0.2, max_violation)
    x = mx.nd.array(im, dtype='float64')
    x.attach_grad()
    with autograd.record():
        total = loss(x, mx.nd.array(s, dtype='float64')).sum()
    total.backward()
    eps, num = 1e-6, np.zeros_like(im)
    for idx in np.ndindex(*im.shape):
        p, m = im.copy(), im.copy()
        p[idx] += eps
        m[idx] -= eps
        num[idx] = (numpy_vse(p, s, 0.2, max_violation).sum()
                    - numpy_vse(m, s, 0.2, max_violation).sum()) / (2 * eps)
    np.testing.assert_allclose(x.grad.asnumpy(), num, rtol=1e-4, atol=1e-6)


def test_all_equal_embeddings_give_twice_the_margin():
    e = np.ones((4, 3)) / np.sqrt(3)
    for mv, per_pair in ((True, 0.4), (False, 0.2 * 3 * 2)):
        out = VSELoss(0.2, mv)(mx.nd.array(e), mx.nd.array(e)).asnumpy()
        np.testing.assert_allclose(out, per_pair, rtol=1e-5)


def test_not_in_the_metric_learning_registry():
    from gluon_dml.losses import list_losses
    assert not any('vse' in n for n in list_losses())
