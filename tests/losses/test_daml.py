"""DAML (Duan et al., CVPR 2018): the generator objective and the triplet / N-pair metric losses on
synthetic negatives against a numpy reference, a hand-worked batch, which parameters each term
trains (gradients), hybridization, the empty cases, and that training the generator really makes
the synthetic negatives harder."""
import itertools

import mxnet as mx
import numpy as np
import pytest

from gluon_dml.losses.daml import DAMLGenerator, DAMLNPairLoss, DAMLTripletLoss

from .reference import numeric_grad
from .reference_daml import (generator_terms, mixed_metric, npair_metric, straight_through,
                             synthetic, triplet_metric)

CLASSES = [DAMLTripletLoss, DAMLNPairLoss]


def _normed(rng, B, D):
    x = rng.normal(size=(B, D))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _loss(cls, D, hidden=(6, 5), seed=0, **kw):
    mx.random.seed(seed)
    loss = cls(D, hidden=hidden, return_terms=True, **kw)
    loss.initialize(mx.init.Normal(0.5))
    rng = np.random.RandomState(seed)
    for layer in loss.generator.mlp._children.values():      # non-zero biases: no dead output
        layer.bias.set_data(mx.nd.array(rng.normal(0, 0.5, size=layer.bias.shape)))
    return loss


def _weights(loss):
    layers = list(loss.generator.mlp._children.values())
    return [(layer.weight.data().asnumpy().astype(np.float64),
             layer.bias.data().asnumpy().astype(np.float64)) for layer in layers]


def _reference(cls, loss, x, y, pos, kw):
    syn = synthetic(x, y, pos, _weights(loss), cls is DAMLTripletLoss)
    gen = generator_terms(x, y, pos, syn, kw.get('lambda_reg', 1.0), kw.get('lambda_adv', 50.0),
                          kw.get('margin', 1.0))
    if cls is DAMLTripletLoss:
        jm = triplet_metric(x, y, pos, syn, kw.get('margin', 1.0))
    else:
        jm = npair_metric(x, y, pos, syn, kw.get('l2_reg', 0.002))
    return (gen[0] + kw.get('lambda_metric', 1.0) * jm, gen[0], jm) + gen[1:]


def _forward(loss, x, y, grad=False):
    xs = mx.nd.array(x)
    xs.attach_grad()
    with mx.autograd.record():
        out = loss(xs, mx.nd.array(y))
    assert all(o.shape == (1,) for o in out)
    if grad:
        out[0].backward()
        return [o.asscalar() for o in out], xs.grad.asnumpy()
    return [o.asscalar() for o in out]


def _pairs_pos(y):
    """The one positive of each anchor in a batch of pairs (every class twice)."""
    return [next(j for j in range(len(y)) if j != i and y[j] == y[i]) for i in range(len(y))]


def _hardest_pos(x, y):
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    return [max((j for j in range(len(y)) if j != i and y[j] == y[i]), key=lambda j: d[i, j],
                default=i) for i in range(len(y))]


KWS = [{}, dict(lambda_metric=3.0, lambda_reg=0.5, lambda_adv=2.0, margin=0.3)]


@pytest.mark.parametrize('kw', KWS, ids=['defaults', 'custom'])
@pytest.mark.parametrize('cls', CLASSES, ids=['triplet', 'npair'])
def test_matches_reference_on_pairs(cls, kw):
    # Batches of pairs: each anchor has exactly one positive, so 'random' picks it.
    D = 4
    nonzero = 0
    for seed in range(3):
        loss = _loss(cls, D, seed=seed, **kw)
        x = _normed(np.random.RandomState(seed), 8, D)
        y = np.repeat(np.arange(4), 2)
        got = _forward(loss, x, y)
        expected = _reference(cls, loss, x, y, _pairs_pos(y), kw)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
        nonzero += expected[5] > 0
    assert nonzero >= 1                              # the adversarial hinge was exercised


@pytest.mark.parametrize('cls', CLASSES, ids=['triplet', 'npair'])
def test_matches_reference_hardest_positive(cls):
    D = 5
    loss = _loss(cls, D, positive='hardest', seed=4)
    x = _normed(np.random.RandomState(9), 12, D)
    y = np.repeat(np.arange(3), 4)
    expected = _reference(cls, loss, x, y, _hardest_pos(x, y), {})
    np.testing.assert_allclose(_forward(loss, x, y), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('cls', CLASSES, ids=['triplet', 'npair'])
def test_random_positive_is_one_of_the_class(cls):
    # Classes of three: each anchor has two possible positives; enumerate all 2^6 assignments and
    # check every seeded draw equals the reference for one of them; different seeds differ.
    D = 3
    loss = _loss(cls, D, seed=1)
    x = _normed(np.random.RandomState(2), 6, D)
    y = np.array([0, 0, 0, 1, 1, 1])
    options = [[j for j in range(6) if j != i and y[j] == y[i]] for i in range(6)]
    possible = [_reference(cls, loss, x, y, list(p), {})[0] for p in itertools.product(*options)]
    seen = set()
    for seed in range(8):
        mx.random.seed(seed)
        v = _forward(loss, x, y)[0]
        assert min(abs(v - p) for p in possible) < 1e-4 * max(1, abs(v))
        mx.random.seed(seed)
        assert _forward(loss, x, y)[0] == v            # repeatable for a seed
        seen.add(round(v, 5))
    assert len(seen) > 1


def test_hand_worked_triplet_with_identity_generator():
    # Generator without hidden layers whose weight copies the negative: x~ = x_n (unit points stay
    # unit). Unit circle, class 0 at {0, 60} deg, class 1 at {90, 180} deg; squared chords 2 - 2 cos:
    #   anchor 0 (pos 60, D2 1):    negatives 90 (D2 2), 180 (4)
    #   anchor 60 (pos 0, D2 1):    negatives 90 (0.267949), 180 (3)
    #   anchor 90 (pos 180, D2 2):  negatives 0 (2), 60 (0.267949)
    #   anchor 180 (pos 90, D2 2):  negatives 0 (4), 60 (3)
    # J_hard = mean D2(x_n, x_a) = 18.535898 / 8 = 2.316987; J_reg = 0;
    # J_adv = mean [D2_an - D2_ap - 1]_+ = (2 + 1 + 1) / 8 = 0.5; J_gen = 2.316987 + 50 * 0.5 = 27.316987
    # J_m = mean [D2_ap - D2_an + 1]_+ = (1.732051 + 1 + 2.732051) / 8 = 0.683013; J = 28.0
    a = np.deg2rad([0, 60, 90, 180])
    x = np.stack([np.cos(a), np.sin(a)], 1).astype(np.float32)
    y = np.array([0, 0, 1, 1])
    loss = DAMLTripletLoss(2, hidden=(), return_terms=True)
    loss.initialize()
    dense = list(loss.generator.mlp._children.values())[0]
    dense.weight.set_data(mx.nd.array(np.hstack([np.zeros((2, 4)), np.eye(2)])))
    dense.bias.set_data(mx.nd.zeros(2))
    total, j_gen, j_m, j_hard, j_reg, j_adv = _forward(loss, x, y)
    assert j_hard == pytest.approx(2.316987, abs=1e-5)
    assert j_reg == pytest.approx(0, abs=1e-6)
    assert j_adv == pytest.approx(0.5, abs=1e-5)
    assert j_gen == pytest.approx(27.316987, abs=2e-4)
    assert j_m == pytest.approx(0.683013, abs=1e-5)
    assert total == pytest.approx(28.0, abs=2e-4)


@pytest.mark.parametrize('grad_to', ['negative', 'none'])
@pytest.mark.parametrize('cls', CLASSES, ids=['triplet', 'npair'])
def test_each_objective_trains_only_its_own_parameters(cls, grad_to):
    # One backward of J = J_gen + lambda J_m: the embeddings get exactly lambda dJ_m/dx, the
    # synthetic negatives moving with the real negative they were made from (x~_an = x_n + a fixed
    # offset: synthetic_grad='negative') or held fixed ('none'); the generator gets exactly
    # dJ_gen/dtheta_g.
    D, lam = 3, 2.5
    loss = _loss(cls, D, hidden=(4,), seed=3, lambda_metric=lam, lambda_adv=2.0, margin=0.2,
                 synthetic_grad=grad_to)
    rng = np.random.RandomState(5)
    x = _normed(rng, 6, D) * (1.0 if cls is DAMLTripletLoss else 1.3)
    y = np.repeat(np.arange(3), 2)
    pos = _pairs_pos(y)
    _, gx = _forward(loss, x, y, grad=True)
    W = _weights(loss)
    syn = synthetic(x, y, pos, W, cls is DAMLTripletLoss)
    moved = straight_through(x, syn) if grad_to == 'negative' else (lambda v: syn)
    if cls is DAMLTripletLoss:
        jm = lambda v: triplet_metric(v, y, pos, moved(v), 0.2)     # noqa: E731
    else:
        jm = lambda v: npair_metric(v, y, pos, moved(v))             # noqa: E731
    np.testing.assert_allclose(gx, lam * numeric_grad(jm, x, eps=1e-4), rtol=2e-3, atol=2e-5)
    assert np.abs(gx).sum() > 1e-3
    # the two routes differ: the real negatives' rows get J_m's gradient only with 'negative'
    other = (lambda v: syn) if grad_to == 'negative' else straight_through(x, syn)
    metric = triplet_metric if cls is DAMLTripletLoss else npair_metric
    kw = {'margin': 0.2} if cls is DAMLTripletLoss else {}
    g_other = lam * numeric_grad(lambda v: metric(v, y, pos, other(v), **kw), x, eps=1e-4)
    assert np.abs(gx - g_other).max() > 1e-3

    layers = list(loss.generator.mlp._children.values())
    for li, layer in enumerate(layers):
        for which, param in ((0, layer.weight), (1, layer.bias)):
            def j_gen(v, li=li, which=which):
                w = [list(p) for p in W]
                w[li][which] = v
                s = synthetic(x, y, pos, w, cls is DAMLTripletLoss)
                return generator_terms(x, y, pos, s, 1.0, 2.0, 0.2)[0]
            np.testing.assert_allclose(param.grad().asnumpy(), numeric_grad(j_gen, W[li][which], 1e-4),
                                       rtol=2e-3, atol=2e-5)


@pytest.mark.parametrize('hybrid', [False, True], ids=['imperative', 'hybridized'])
@pytest.mark.parametrize('cls', CLASSES, ids=['triplet', 'npair'])
def test_schedule_mixes_real_and_synthetic_negatives(cls, hybrid):
    # J_m = (1 - w) J_m(real negatives) + w J_m(synthetic), w set between calls through the same
    # (hybridized) graph; value and embedding gradient against the numpy reference for each w.
    D = 4
    loss = _loss(cls, D, seed=6)
    if hybrid:
        loss.hybridize()
    x = _normed(np.random.RandomState(7), 8, D) * (1.0 if cls is DAMLTripletLoss else 1.4)
    y = np.repeat(np.arange(4), 2)
    pos = _pairs_pos(y)
    syn = synthetic(x, y, pos, _weights(loss), cls is DAMLTripletLoss)
    metric = triplet_metric if cls is DAMLTripletLoss else npair_metric
    moved = straight_through(x, syn)
    seen = []
    for w in (0.0, 0.3, 1.0, 0.0):
        loss.set_synthetic_weight(w)
        assert loss.synthetic_weight == pytest.approx(w)
        vals, gx = _forward(loss, x, y, grad=True)
        expected = mixed_metric(metric, x, y, pos, syn, w)
        assert vals[2] == pytest.approx(expected, rel=1e-4, abs=1e-6)
        ref = numeric_grad(lambda v: mixed_metric(metric, v, y, pos, moved(v), w), x, eps=1e-4)
        np.testing.assert_allclose(gx, ref, rtol=2e-3, atol=2e-5)
        seen.append(vals[2])
    assert seen[0] == pytest.approx(seen[3], rel=1e-6)       # back to w = 0: the same value
    assert abs(seen[0] - seen[2]) > 1e-3                      # real and synthetic J_m differ


def test_warmup_metric_is_the_plain_triplet_on_real_negatives():
    # With w = 0 DAML-triplet's J_m is the triplet hinge over (anchor, its positive, every real
    # negative) on squared distances, by a loop written here; the generator's terms are unchanged.
    D = 3
    loss = _loss(DAMLTripletLoss, D, seed=8, warmup_epochs=2)
    assert loss.synthetic_weight == 0.0                       # epoch 1 of a warm-up: w = 0
    x = _normed(np.random.RandomState(8), 6, D)
    y = np.repeat(np.arange(3), 2)
    pos = _pairs_pos(y)
    vals = _forward(loss, x, y)
    d2 = lambda i, j: float(((x[i].astype(np.float64) - x[j]) ** 2).sum())   # noqa: E731
    hinge = [max(0.0, d2(a, pos[a]) - d2(a, n) + 1.0) for a in range(6) for n in range(6)
             if y[n] != y[a]]
    assert vals[2] == pytest.approx(np.mean(hinge), rel=1e-5)
    syn = synthetic(x, y, pos, _weights(loss), True)
    assert vals[1] == pytest.approx(generator_terms(x, y, pos, syn)[0], rel=1e-4)


def test_synthetic_weight_schedule():
    from gluon_dml.losses.daml import synthetic_weight
    assert [synthetic_weight(e, 3, 0) for e in range(1, 6)] == [0, 0, 0, 1, 1]
    assert [synthetic_weight(e, 2, 4, 0.8) for e in range(1, 9)] == pytest.approx(
        [0, 0, 0.2, 0.4, 0.6, 0.8, 0.8, 0.8])
    assert [synthetic_weight(e) for e in (1, 10)] == [1, 1]           # no schedule: the paper's
    loss = DAMLTripletLoss(4, warmup_epochs=2, ramp_epochs=2, synthetic=0.5)
    loss.initialize()
    got = []
    for epoch in range(1, 6):
        loss.set_epoch(epoch)
        got.append(loss.synthetic_weight)
    assert got == pytest.approx([0, 0, 0.25, 0.5, 0.5])
    with pytest.raises(ValueError, match='synthetic'):
        DAMLTripletLoss(4, synthetic=1.5)
    with pytest.raises(ValueError, match='warmup_epochs'):
        DAMLTripletLoss(4, warmup_epochs=-1)
    with pytest.raises(ValueError, match='synthetic_grad'):
        DAMLTripletLoss(4, synthetic_grad='generator')


@pytest.mark.parametrize('cls', CLASSES, ids=['triplet', 'npair'])
def test_lambda_scales_only_the_metric_gradient(cls):
    D = 4
    x = _normed(np.random.RandomState(1), 8, D)
    y = np.repeat(np.arange(4), 2)
    grads = {}
    for lam in (0.0, 1.0, 4.0):
        loss = _loss(cls, D, seed=2, lambda_metric=lam)
        _, gx = _forward(loss, x, y, grad=True)
        gw = loss.generator.mlp[0].weight.grad().asnumpy().copy()
        grads[lam] = (gx, gw)
    assert np.abs(grads[0.0][0]).max() == 0                     # J_gen never reaches the network
    np.testing.assert_allclose(grads[4.0][0], 4 * grads[1.0][0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(grads[0.0][1], grads[4.0][1], rtol=1e-6)   # nor J_m the generator
    assert np.abs(grads[0.0][1]).sum() > 0


@pytest.mark.parametrize('cls', CLASSES, ids=['triplet', 'npair'])
def test_hybridized_equals_imperative(cls):
    D = 4
    x = _normed(np.random.RandomState(3), 12, D)
    y = np.repeat(np.arange(3), 4)
    loss = _loss(cls, D, positive='hardest', seed=5)
    v1, g1 = _forward(loss, x, y, grad=True)
    gw1 = loss.generator.mlp[0].weight.grad().asnumpy().copy()
    loss.hybridize()
    for _ in range(2):
        v2, g2 = _forward(loss, x, y, grad=True)
        np.testing.assert_allclose(v1, v2, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(loss.generator.mlp[0].weight.grad().asnumpy(), gw1, rtol=1e-4,
                                   atol=1e-7)
    # another batch size through the same graph
    x2 = _normed(np.random.RandomState(4), 6, D)
    y2 = np.array([0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(_forward(loss, x2, y2),
                               _reference(cls, loss, x2, y2, _pairs_pos(y2), {}), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('cls', CLASSES, ids=['triplet', 'npair'])
@pytest.mark.parametrize('case', ['one_class', 'singletons'])
def test_empty_sets_give_zero_not_nan(cls, case):
    D = 4
    x = _normed(np.random.RandomState(0), 5, D)
    y = np.zeros(5, int) if case == 'one_class' else np.arange(5)
    for hybrid in (False, True):
        loss = _loss(cls, D)
        if hybrid:
            loss.hybridize()
        vals, g = _forward(loss, x, y, grad=True)
        assert np.all(np.isfinite(vals)) and np.all(np.isfinite(g))
        l2 = 0.002 * np.mean(np.sum(x.astype(np.float64) ** 2, 1)) if cls is DAMLNPairLoss else 0
        assert vals[0] == pytest.approx(l2, abs=1e-6)


def test_training_the_generator_makes_harder_negatives():
    # Fixed embeddings (the metric is frozen): Adam on J_gen alone. The synthetic negatives must
    # end up closer to their anchors than the real negatives were, and violate the metric's margin
    # (positive metric hinge) far more often than the real triplets do.
    D, B = 8, 16
    rng = np.random.RandomState(0)
    centres = _normed(rng, 4, D) * 3
    y = np.repeat(np.arange(4), 4)
    x = centres[y] + 0.3 * rng.normal(size=(B, D))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    mx.random.seed(0)
    loss = DAMLTripletLoss(D, hidden=(32, 32), return_terms=True, margin=0.2)
    loss.initialize()
    trainer = mx.gluon.Trainer(loss.collect_params(), 'adam', {'learning_rate': 0.01})
    first = None
    for _ in range(150):
        with mx.autograd.record():
            terms = loss(mx.nd.array(x), mx.nd.array(y))
        terms[1].backward()                           # J_gen: the generator's own objective
        trainer.step(1)
        first = first if first is not None else terms[1].asscalar()
    last = loss(mx.nd.array(x), mx.nd.array(y))[1].asscalar()
    assert last < 0.5 * first
    d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
    W = _weights(loss)
    real_an, syn_an, real_viol, syn_viol = [], [], 0, 0
    # The loss drew its positives at random; measure with the hardest positive of each anchor.
    hp = _hardest_pos(x, y)
    syn = synthetic(x, y, hp, W, True)
    for (a, n), s in syn.items():
        real_an.append(d2[a, n])
        syn_an.append(float(((s - x[a]) ** 2).sum()))
        real_viol += d2[a, hp[a]] - d2[a, n] + 0.2 > 0
        syn_viol += d2[a, hp[a]] - syn_an[-1] + 0.2 > 0
    assert np.mean(syn_an) < 0.5 * np.mean(real_an)
    assert syn_viol > 2 * max(real_viol, 1)


def test_generator_block_and_options():
    g = DAMLGenerator(4, hidden=(8,), normalize=True)
    g.initialize()
    out = g(mx.nd.ones((2, 3, 4)), mx.nd.zeros((2, 3, 4)), mx.nd.ones((2, 3, 4)))
    assert out.shape == (2, 3, 4)
    np.testing.assert_allclose(np.linalg.norm(out.asnumpy(), axis=-1), 1, rtol=1e-5)
    assert DAMLTripletLoss.normalize_embeddings and not DAMLNPairLoss.normalize_embeddings
    with pytest.raises(ValueError, match='positive'):
        DAMLTripletLoss(4, positive='semihard')
    with pytest.raises(ValueError, match='lambda_adv'):
        DAMLTripletLoss(4, lambda_adv=-1)
    with pytest.raises(ValueError, match='l2_reg'):
        DAMLNPairLoss(4, l2_reg=-1)
    # Without return_terms the loss is one scalar, as the training loop expects.
    loss = DAMLTripletLoss(4)
    loss.initialize()
    out = loss(mx.nd.array(_normed(np.random.RandomState(0), 6, 4)), mx.nd.array([0, 0, 1, 1, 2, 2]))
    assert out.shape == (1,)


def test_one_training_step_as_the_engine_does_it():
    # What gluon_dml.engine.loop.Engine._step does with a loss that has parameters: one backward of
    # the scalar loss, then the network's trainer and the loss's trainer (the generator) step.
    mx.random.seed(0)
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(8, in_units=5), mx.gluon.nn.HybridLambda(
        lambda F, z: F.L2Normalization(z, mode='instance')))
    net.initialize(mx.init.Xavier())
    loss = DAMLTripletLoss(8, hidden=(16, 16))
    loss.initialize()
    net.hybridize()
    loss.hybridize()
    net_tr = mx.gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 0.01})
    gen_tr = mx.gluon.Trainer(loss.collect_params(), 'adam', {'learning_rate': 0.01})
    data = mx.nd.array(np.random.RandomState(0).normal(size=(12, 5)))
    labels = mx.nd.array(np.repeat(np.arange(4), 3))
    learnt = [p for p in list(net.collect_params().values()) + list(loss.collect_params().values())
              if p.grad_req != 'null']                # not the schedule's w (state)
    assert len(learnt) == len(net.collect_params().keys()) + len(loss.collect_params().keys()) - 1
    before = [p.data().asnumpy().copy() for p in learnt]
    for _ in range(3):
        with mx.autograd.record():
            value = loss(net(data), labels)
        value.backward()
        net_tr.step(1)
        gen_tr.step(1)
        assert np.isfinite(value.asscalar())
    after = [p.data().asnumpy() for p in learnt]
    assert all(np.abs(a - b).max() > 0 for a, b in zip(after, before))
