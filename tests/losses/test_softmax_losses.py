"""The softmax / log-sum-exp family (lifted structure, N-pair, binomial deviance, NCA) against the
papers' equations, hand-worked batches, gradients, hybridization and the NaN edge cases."""
import inspect

import mxnet as mx
import numpy as np
import pytest

from gluon_dml.losses import binomial, lifted, nca, npair
from gluon_dml.losses.binomial import BinomialDevianceLoss
from gluon_dml.losses.lifted import LiftedStructureLoss
from gluon_dml.losses.nca import NCALoss
from gluon_dml.losses.npair import NPairLoss

from . import reference_softmax as ref
from .reference import numeric_grad

# id: (class, constructor kwargs, reference function with the same kwargs, embeddings L2-normalised?)
CONFIGS = {
    'lifted': (LiftedStructureLoss, {}, ref.lifted_loss, False),
    'lifted_m0.5': (LiftedStructureLoss, {'margin': 0.5}, ref.lifted_loss, True),
    'lifted_modified': (LiftedStructureLoss, {'variant': 'modified'},
                        lambda e, y: ref.lifted_modified_loss(e, y), False),
    'lifted_modified_margins': (LiftedStructureLoss, {'variant': 'modified', 'pos_margin': 0.3,
                                                      'neg_margin': 1.4},
                                lambda e, y: ref.lifted_modified_loss(e, y, 0.3, 1.4), True),
    'npair': (NPairLoss, {}, ref.npair_loss, False),
    'npair_paper': (NPairLoss, {'pairs': 'paper'}, ref.npair_loss, False),
    'npair_normalize': (NPairLoss, {'normalize': True, 'l2_reg': 0.01}, ref.npair_loss, False),
    'binomial': (BinomialDevianceLoss, {}, ref.binomial_loss, True),
    'binomial_epsilon': (BinomialDevianceLoss, {'mining': 'epsilon'}, ref.binomial_loss, True),
    'binomial_eps0.3': (BinomialDevianceLoss, {'mining': 'epsilon', 'epsilon': 0.3, 'alpha': 3.0,
                                               'beta': 0.3, 'neg_cost': 5.0}, ref.binomial_loss, True),
    'nca': (NCALoss, {}, ref.nca_loss, False),
    'nca_t0.5': (NCALoss, {'temperature': 0.5}, ref.nca_loss, True),
    'nca_scale2': (NCALoss, {'scale': 2.0}, lambda e, y: ref.nca_loss(e, y, temperature=0.5), True),
}


def _make(name, hybrid=False):
    cls, kw, _, _ = CONFIGS[name]
    loss = cls(**kw)
    loss.initialize()
    if hybrid:
        loss.hybridize()
    return loss


def _reference(name, x, y):
    _, kw, fn, _ = CONFIGS[name]
    if fn in (ref.lifted_loss, ref.npair_loss, ref.binomial_loss, ref.nca_loss):
        return fn(x, y, **kw)
    return fn(x, y)


def _embeddings(name, rng, B, D):
    x = rng.normal(size=(B, D)) * 0.6
    if CONFIGS[name][3]:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _forward(loss, x, y, grad=False):
    xs = mx.nd.array(x, dtype='float32')
    xs.attach_grad()
    with mx.autograd.record():
        out = loss(xs, mx.nd.array(y, dtype='float32'))
    assert out.shape == (1,)
    if grad:
        out.backward()
        return out.asscalar(), xs.grad.asnumpy()
    return out.asscalar()


def _circle(degrees):
    a = np.deg2rad(degrees)
    return np.stack([np.cos(a), np.sin(a)], 1).astype(np.float32)


# ---------------------------------------------------------------------------- 1. numpy reference

@pytest.mark.parametrize('name', sorted(CONFIGS))
@pytest.mark.parametrize('layout', ['balanced', 'random', 'distinct'])
def test_matches_numpy_reference(name, layout):
    B, D = 12, 6
    for seed in range(4):
        rng = np.random.RandomState(seed)
        if layout == 'balanced':          # 4 classes x 3, shuffled (N-pair 'paper' takes the first of each)
            y = rng.permutation(np.repeat(np.arange(4), 3))
        elif layout == 'random':          # uneven classes, usually a singleton among them
            y = rng.randint(0, 5, size=B)
        else:                             # no repeated label: no positive pair at all
            y = rng.permutation(B)
        x = _embeddings(name, rng, B, D).astype(np.float32)
        expected = _reference(name, x, y)
        assert _forward(_make(name), x, y) == pytest.approx(expected, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize('name', ['npair', 'npair_paper'])
def test_npair_on_the_papers_n_by_2_batch(name):
    # N = 5 classes x 2 in the sampler's layout (x_1, x_1+, x_2, x_2+, ...). 'paper' must equal eq. 3
    # written as softmax cross-entropy over the logits f_i . f_k+ (anchors x_i, targets k = i).
    rng = np.random.RandomState(5)
    x = rng.normal(size=(10, 4)).astype(np.float32)
    y = np.repeat(np.arange(5), 2)
    a, p = x[0::2].astype(np.float64), x[1::2].astype(np.float64)
    logits = a @ p.T
    xent = np.mean([np.log(np.exp(logits[i]).sum()) - logits[i, i] for i in range(5)])
    reg = 0.002 * np.mean((x.astype(np.float64) ** 2).sum(1))
    got = _forward(_make(name), x, y)
    if name == 'npair_paper':
        assert got == pytest.approx(xent + reg, rel=1e-5)
    else:                                 # both items anchor, both items of other classes negative
        assert got == pytest.approx(_reference(name, x, y), rel=1e-5)
        assert abs(got - (xent + reg)) > 1e-3


# ---------------------------------------------------------------------------- 2. worked by hand

def test_lifted_by_hand():
    # Unit circle at 0, 90, 180, 270 degrees, labels 0, 1, 0, 1. Positive pairs {0,2}, {1,3}: D = 2.
    # Each point's two negatives lie at D = sqrt 2 = 1.41421. For {0, 2}:
    #   sum = 4 exp(1 - 1.41421) = 4 * 0.66086 = 2.64344; log = 0.97208; J = 0.97208 + 2 = 2.97208
    #   J^2 = 8.83326, the same for {1, 3}: loss = (8.83326 + 8.83326) / (2 * 2) = 4.41663
    x, y = _circle([0, 90, 180, 270]), np.array([0, 1, 0, 1])
    assert _forward(_make('lifted'), x, y) == pytest.approx(4.41663, abs=1e-4)
    # Modified, per anchor: log exp(2 - 0) = 2 (one positive) + log(2 exp(1 - 1.41421))
    #   = 0.69315 - 0.41421 = 0.27893; 2.27893 for each of the 4 anchors, mean 2.27893.
    assert _forward(_make('lifted_modified'), x, y) == pytest.approx(2.27893, abs=1e-4)
    # Margin 0.5 on the smooth form: log(4 exp(0.5 - 1.41421)) + 2 = 1.38629 - 0.91421 + 2 = 2.47208,
    #   squared 6.11118, halved: 3.05559.
    assert _forward(_make('lifted_m0.5'), x, y) == pytest.approx(3.05559, abs=1e-4)


def test_npair_by_hand():
    # f = (1,0), (2,0), (0,1), (0,1), labels 0, 0, 1, 1.  Mean ||f||^2 = (1+4+1+1)/4 = 1.75,
    # times 0.002 = 0.0035.
    # 'all': (0,1): s01 = 2, negatives 2, 3 with s = 0: log(1 + 2 e^-2) = 0.23954; (1,0) the same.
    #        (2,3): s23 = 1, negatives 0, 1 with s = 0: log(1 + 2 e^-1) = 0.55144; (3,2) the same.
    #        mean 0.39549 + 0.0035 = 0.39899
    # 'paper': anchors 0 and 2, positives 1 and 3; anchor 0's negative is x_1+ = item 3 (s = 0):
    #        log(1 + e^-2) = 0.12693; anchor 2's is item 1 (s = 0): log(1 + e^-1) = 0.31326.
    #        mean (0.12693 + 0.31326) / 2 = 0.22010, + 0.0035 = 0.22360
    x = np.array([[1, 0], [2, 0], [0, 1], [0, 1]], np.float32)
    y = np.array([0, 0, 1, 1])
    assert _forward(_make('npair'), x, y) == pytest.approx(0.39899, abs=1e-4)
    assert _forward(_make('npair_paper'), x, y) == pytest.approx(0.22360, abs=1e-4)
    # Normalised (l2_reg 0.01 on the raw norms: 0.0175): f = (1,0), (1,0), (0,1), (0,1):
    #   s_ij = 1 for positives, 0 for negatives: log(1 + 2 e^-1) = 0.55144 for all four pairs.
    assert _forward(_make('npair_normalize'), x, y) == pytest.approx(0.55144 + 0.0175, abs=1e-4)


def test_binomial_by_hand():
    # Unit circle at 0, 60, 120 degrees (A, B, C), labels 0, 0, 1.  S_AB = 0.5, S_BC = 0.5, S_AC = -0.5.
    # Positive (A,B): log(1 + exp(-2 (0.5 - 0.5))) = log 2 = 0.69315, ordered twice, mean 0.69315.
    # Negative (B,C): log(1 + exp(-2 (0.5 - 0.5)(-25))) = log 2; (A,C): log(1 + exp(-50)) = 0.
    #   Four ordered negatives: (2 log 2 + 0) / 4 = 0.34657.  Total 1.03972.
    x, y = _circle([0, 60, 120]), np.array([0, 0, 1])
    assert _forward(_make('binomial'), x, y) == pytest.approx(1.03972, abs=1e-4)
    # Epsilon mining (0.1). Negatives kept when S > min positive S - 0.1:
    #   anchor A (min pos 0.5): C at -0.5 > 0.4? no.  Anchor B: C at 0.5 > 0.4, kept.
    #   anchor C: no positive, keeps nothing.
    # Positives kept when S < max negative S + 0.1:
    #   anchor A (max neg -0.5): B at 0.5 < -0.4? no.  Anchor B (max neg 0.5): A at 0.5 < 0.6, kept.
    # One positive (log 2) and one negative (log 2): 2 log 2 = 1.38629.
    assert _forward(_make('binomial_epsilon'), x, y) == pytest.approx(1.38629, abs=1e-4)


def test_nca_by_hand():
    # 1-d points 0, 1, 3, labels 0, 0, 1, T = 1.  Anchor 0: D^2 = 1 (positive), 9 (negative):
    #   p = e^-1 / (e^-1 + e^-9) = 1 / (1 + e^-8) = 0.999665, -log p = 0.000335.
    # Anchor 1: D^2 = 1 (positive), 4: p = 1 / (1 + e^-3) = 0.952574, -log p = 0.048587.
    # Anchor 2 has no positive and is left out: loss = (0.000335 + 0.048587) / 2 = 0.024461.
    x, y = np.array([[0.0], [1.0], [3.0]], np.float32), np.array([0, 0, 1])
    assert _forward(_make('nca'), x, y) == pytest.approx(0.024461, abs=1e-5)
    # T = 0.5: -log(1 / (1 + e^-16)) = 1.1e-7 and -log(1 / (1 + e^-6)) = 0.0024757; mean 0.0012379.
    assert _forward(_make('nca_t0.5'), x, y) == pytest.approx(0.0012379, abs=1e-6)


# ---------------------------------------------------------------------------- 3. finite differences

@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_finite_difference_gradients(name):
    rng = np.random.RandomState(3)
    x = _embeddings(name, rng, 8, 4).astype(np.float64)
    y = np.array([0, 0, 1, 1, 1, 2, 2, 3])
    loss = _make(name)
    _, g = _forward(loss, x.astype(np.float32), y, grad=True)
    eps = 1e-3
    fd = numeric_grad(lambda z: _forward(loss, z.astype(np.float32), y), x, eps)
    np.testing.assert_allclose(g, fd, atol=3e-3, rtol=3e-2)
    assert np.abs(fd).max() > 1e-2                  # the check compared real gradients


# ---------------------------------------------------------------------------- 4. hybridized

@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_hybridized_equals_imperative(name):
    rng = np.random.RandomState(2)
    x = _embeddings(name, rng, 16, 8).astype(np.float32)
    y = rng.permutation(np.repeat(np.arange(4), 4))
    v1, g1 = _forward(_make(name), x, y, grad=True)
    hyb = _make(name, hybrid=True)
    for _ in range(2):                              # the second call runs the cached graph
        v2, g2 = _forward(hyb, x, y, grad=True)
        assert v1 == pytest.approx(v2, rel=1e-6)
        np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-7)
    assert np.abs(g1).sum() > 0


# ---------------------------------------------------------------------------- 5. edge cases

def _edge_batch(case):
    D = 6
    e = np.zeros(D)
    e[0] = 1
    if case == 'identical':                  # every distance 0, every cosine 1
        return np.tile(e, (8, 1)), np.repeat(np.arange(4), 2)
    if case == 'antipodal':                  # distances exactly 0 and 2
        return np.stack([e, e, -e, -e]), np.array([0, 1, 0, 1])
    if case == 'one_class':                  # no negative anywhere
        return _unit(np.random.RandomState(0).normal(size=(6, D))), np.zeros(6)
    if case == 'one_image_class':            # class 2 has a single image: no positive for it
        return _unit(np.random.RandomState(1).normal(size=(5, D))), np.array([0, 0, 1, 1, 2])
    if case == 'no_positive':                # every label distinct
        return _unit(np.random.RandomState(2).normal(size=(5, D))), np.arange(5)
    return e[None], np.zeros(1)              # a batch of one


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize('case', ['identical', 'antipodal', 'one_class', 'one_image_class',
                                  'no_positive', 'single'])
@pytest.mark.parametrize('hybrid', [False, True])
@pytest.mark.parametrize('name', ['lifted', 'lifted_modified', 'npair', 'npair_paper',
                                  'npair_normalize', 'binomial', 'binomial_epsilon', 'nca'])
def test_edge_cases_are_finite_and_match_reference(name, hybrid, case):
    x, y = _edge_batch(case)
    x = x.astype(np.float32)
    v, g = _forward(_make(name, hybrid), x, y, grad=True)
    assert np.isfinite(v) and v >= 0
    assert np.all(np.isfinite(g))
    assert v == pytest.approx(_reference(name, x, y), rel=1e-4, abs=1e-5)


def test_empty_sets_give_zero():
    x, y = _edge_batch('one_class')
    x = x.astype(np.float32)
    for name in ('lifted', 'lifted_modified', 'binomial_epsilon', 'nca'):
        assert _forward(_make(name), x, y) == 0.0, name
    x, y = _edge_batch('no_positive')
    for name in ('lifted', 'lifted_modified', 'nca'):
        assert _forward(_make(name), x.astype(np.float32), y) == 0.0, name
    # N-pair without a pair keeps only its regulariser: 0.002 * mean ||f||^2 = 0.002 (unit vectors).
    assert _forward(_make('npair'), x.astype(np.float32), y) == pytest.approx(0.002, rel=1e-5)


# ---------------------------------------------------------------------------- 6. construction

@pytest.mark.parametrize('cls,kw,match', [
    (LiftedStructureLoss, {'margin': -0.1}, 'margin'),
    (LiftedStructureLoss, {'variant': 'hard'}, 'variant'),
    (NPairLoss, {'l2_reg': -1.0}, 'l2_reg'),
    (NPairLoss, {'pairs': 'ovo'}, 'pairs'),
    (BinomialDevianceLoss, {'alpha': 0.0}, 'alpha'),
    (BinomialDevianceLoss, {'neg_cost': -25.0}, 'neg_cost'),
    (BinomialDevianceLoss, {'mining': 'hard'}, 'mining'),
    (BinomialDevianceLoss, {'mining': 'epsilon', 'epsilon': -0.1}, 'epsilon'),
    (NCALoss, {'temperature': 0.0}, 'temperature'),
    (NCALoss, {'scale': -2.0}, 'scale'),
    (NCALoss, {'scale': 2.0, 'temperature': 0.5}, 'not both'),
])
def test_constructor_validation(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(**kw)


def test_defaults_and_embedding_normalisation_flags():
    assert LiftedStructureLoss()._margin == 1.0 and LiftedStructureLoss()._neg_margin == 1.0
    assert NPairLoss()._l2_reg == 0.002 and not NPairLoss()._normalize
    b = BinomialDevianceLoss()
    assert (b._alpha, b._beta, b._neg_cost, b._mining, b._epsilon) == (2.0, 0.5, 25.0, False, 0.1)
    assert NCALoss()._temperature == 1.0 and NCALoss(scale=4.0)._temperature == 0.25
    assert not LiftedStructureLoss.normalize_embeddings and not NPairLoss.normalize_embeddings
    assert BinomialDevianceLoss.normalize_embeddings and not NCALoss.normalize_embeddings


def test_no_host_sync_in_sources():
    for module in (lifted, npair, binomial, nca):
        src = inspect.getsource(module)
        assert '.asnumpy(' not in src and '.asscalar(' not in src, module.__name__


@pytest.mark.parametrize('hybrid', [False, True])
def test_far_apart_one_class_batch_stays_exact(hybrid):
    # Unnormalised points 50 units apart: distances beyond the ~69 of an empty log-sum-exp and
    # squared distances of thousands. One class: nothing to push apart, so lifted and NCA give 0
    # (every neighbour is a positive) and N-pair only its regulariser 0.002 * mean ||f||^2.
    x = (50 * _edge_batch('one_class')[0]).astype(np.float32)
    y = np.zeros(len(x))
    for name, expected in [('lifted', 0.0), ('lifted_modified', 0.0), ('nca', 0.0), ('npair', 5.0)]:
        v, g = _forward(_make(name, hybrid), x, y, grad=True)
        assert v == pytest.approx(expected, abs=1e-5), name
        assert np.all(np.isfinite(g)), name
