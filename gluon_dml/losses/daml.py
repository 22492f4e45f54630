"""Deep Adversarial Metric Learning: a generator of synthetic hard negatives trained against the
metric, with the triplet and the N-pair metric losses.

Duan, Zheng, Lin, Lu, Zhou, "Deep Adversarial Metric Learning", CVPR 2018.

The paper's objectives (Sec. 3), for a triplet (anchor ``x``, positive ``x+``, negative ``x-``)
and the generator's synthetic negative ``x~ = G(x, x+, x-)``:

.. math::
    J_{gen} = \\underbrace{\\lVert \\tilde x - x\\rVert^2}_{J_{hard}}
        + \\lambda_1 \\underbrace{\\lVert \\tilde x - x^-\\rVert^2}_{J_{reg}}
        + \\lambda_2 \\underbrace{[D(\\tilde x, x)^2 - D(x^+, x)^2 - \\alpha]_+}_{J_{adv}}

    J = J_{gen} + \\lambda J_m, \\qquad
    J_m^{tri} = [D(x^+, x)^2 - D(\\tilde x, x)^2 + \\alpha]_+

``J_hard`` puts the synthetic negative near the anchor, ``J_reg`` keeps it near the real negative
it came from (so it stays a plausible negative), ``J_adv`` is the metric's triplet hinge reversed:
the generator is penalised when the metric already separates the synthetic triplet by the margin.
The metric ``J_m`` is then learnt on the synthetic negatives. For N-pair (DAML (N-pair)) ``J_m`` is
Sohn's loss with every negative of an anchor replaced by its synthetic version.

How this module realises it
---------------------------
- The generator works on the embeddings the network outputs (the paper places it on the CNN
  features before the metric's last layer; here the whole :class:`EmbeddingNet` is the metric and
  ``D`` is the Euclidean distance between embeddings, so ``J_hard``, ``J_reg`` and ``J_adv`` are all
  measured in the embedding space).
- Triplets are mined from the P x K batch: every anchor with a positive gets one positive
  (``positive='random'``: drawn uniformly among its class, with ``mx.random``; ``'hardest'``: the
  farthest), and is paired with *every* negative of the batch, easy ones included (the paper's
  point: easy negatives become hard synthetic ones). ``J_gen`` and the triplet ``J_m`` are means
  over these (anchor, negative) triplets; the N-pair ``J_m`` is a mean over anchors.
- Opposite goals, one backward pass: ``J_gen`` reaches only the generator's parameters (its
  inputs, the real embeddings, are constants to it), and ``J_m`` never reaches the generator (its
  output is a constant to ``J_m``). What ``J_m``'s gradient through a synthetic negative does is
  ``synthetic_grad``: ``'negative'`` (default) passes it straight through to the real negative it
  was made from (``x~_an`` moves with ``x_n``: ``x~_an = x_n + const``), so the metric pushes the
  real negatives away, each with the gradient of its harder synthetic version; ``'none'`` makes
  the synthetic negatives constants, so only anchors and positives move. ``'none'`` was this
  module's first form and does not learn on Omniglot (docs/research.md: the real negatives never
  get a gradient and the generator soon ignores its negative input). So
  ``loss = J_gen + lambda * J_m`` is returned as one scalar and one ``loss.backward()`` gives the
  generator ``dJ_gen/d theta_g`` and the network ``lambda dJ_m/d theta_f``: step the network's
  trainer and the loss's trainer (which holds the generator) after it; neither objective moves
  the other's parameters.
- The paper's practice, a metric trained before the synthetic negatives join, is a schedule of
  ``w`` in ``J_m = (1 - w) J_m(real negatives) + w J_m(synthetic negatives)``
  (:func:`synthetic_weight`): ``w = 0`` for ``warmup_epochs`` epochs (the base loss on the real
  negatives; the generator trains against the metric meanwhile), then a linear ramp over
  ``ramp_epochs`` epochs to ``synthetic`` (1: the paper's J_m on synthetic negatives only).
  :class:`gluon_dml.engine.loop.Engine` calls :meth:`set_epoch` before every epoch; ``w`` is
  kept as a parameter without gradient (``schedule``), so a hybridized graph reads it.

The training loop, per step (this is what :class:`gluon_dml.engine.loop.Engine` already does with
a loss that has parameters: ``loss_trainer`` holds the generator)::

    daml.set_epoch(epoch)                      # once per epoch: w of the schedule
    with autograd.record():
        loss = daml(net(images), labels)       # J_gen + lambda J_m, shape (1,)
    loss.backward()
    net_trainer.step(1)                        # theta_f <- lambda dJ_m/d theta_f
    generator_trainer.step(1)                  # theta_g <- dJ_gen/d theta_g

``return_terms=True`` returns ``(J, J_gen, J_m, J_hard, J_reg, J_adv)`` for logging (the loop's
loss must then be the first element).

Defaults: ``lambda_metric`` (lambda) 1, ``lambda_reg`` (lambda_1) 1, ``lambda_adv`` (lambda_2) 50,
``margin`` (alpha) 1: the settings reported for the paper's experiments by a public
re-implementation (I could not read the paper's implementation section in the material at hand;
lambda_2 much larger than the other weights makes "hard against the metric" dominate while the two
distance terms only keep the synthetic point near the anchor and the real negative). Generator:
three fully connected layers (the paper's), here ``3d -> 512 -> 512 -> d`` with ReLU between;
for the triplet loss its output is L2-normalised (the network's embeddings are), for N-pair not.
"""
from mxnet import gluon, init, nd
from mxnet.gluon import nn

from .base import label_masks, masked_logsumexp, pairwise_sq_distance, safe_divide
from .npair import softplus
from .options import Option

__all__ = ['DAMLGenerator', 'DAMLTripletLoss', 'DAMLNPairLoss', 'synthetic_weight']

_POSITIVES = ('random', 'hardest')


class DAMLGenerator(gluon.HybridBlock):
    """The hard-negative generator: ``G(anchor, positive, negative) -> synthetic negative``.

    An MLP over the concatenation ``[anchor, positive, negative]`` (last axis 3d): ``hidden``
    ReLU layers, then a linear layer back to ``embed_dim``; ``normalize`` L2-normalises the output.
    Inputs of any leading shape (..., d); output (..., d).
    """

    def __init__(self, embed_dim, hidden=(512, 512), normalize=True, **kwargs):
        super().__init__(**kwargs)
        self._normalize = bool(normalize)
        with self.name_scope():
            self.mlp = nn.HybridSequential()
            for i, units in enumerate(hidden):
                self.mlp.add(nn.Dense(units, activation='relu', flatten=False,
                                      in_units=3 * embed_dim if i == 0 else hidden[i - 1],
                                      weight_initializer=init.Xavier()))
            self.mlp.add(nn.Dense(embed_dim, flatten=False,
                                  in_units=hidden[-1] if hidden else 3 * embed_dim,
                                  weight_initializer=init.Xavier()))

    def hybrid_forward(self, F, anchor, positive, negative):
        z = self.mlp(F.concat(anchor, positive, negative, dim=-1))
        if self._normalize:
            z = F.broadcast_div(z, F.sqrt(F.sum(F.square(z), axis=-1, keepdims=True) + 1e-12))
        return z


_SYNTHETIC_GRAD = ('negative', 'none')


def synthetic_weight(epoch, warmup_epochs=0, ramp_epochs=0, synthetic=1.0):
    """The weight ``w`` of the synthetic negatives in ``J_m = (1 - w) J_m(real) + w J_m(synthetic)``
    at ``epoch`` (1-based): 0 for the ``warmup_epochs`` first epochs (the metric alone, on the real
    negatives), then rising linearly over ``ramp_epochs`` epochs to ``synthetic`` (at once when
    ``ramp_epochs`` is 0).

    >>> [synthetic_weight(e, 2, 4) for e in range(1, 8)]
    [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    >>> [synthetic_weight(e, 1, 0, 0.5) for e in (1, 2, 30)]
    [0.0, 0.5, 0.5]
    """
    if epoch <= warmup_epochs:
        return 0.0
    if ramp_epochs <= 0:
        return float(synthetic)
    return float(synthetic) * min(1.0, (epoch - warmup_epochs) / float(ramp_epochs))


class _DAML(gluon.HybridBlock):
    """Shared mining, generator and ``J_gen``; subclasses supply ``J_m``."""

    normalize_embeddings = True
    _normalize_synthetic = True
    options = {
        'lambda_metric': Option(float, "lambda, the metric loss's weight in J = J_gen + lambda J_m"),
        'lambda_reg': Option(float, 'lambda_1, closeness of the synthetic negative to the real one'),
        'lambda_adv': Option(float, 'lambda_2, the adversarial term (a negative harder than the positive)'),
        'margin': Option(float, 'alpha, the margin of the metric and adversarial hinges'),
        'positive': Option(('random', 'hardest'), "the anchor's positive in a mined triplet"),
        'warmup_epochs': Option(int, 'epochs of the metric alone on the real negatives before the '
                                     'synthetic ones join (the generator trains meanwhile)'),
        'ramp_epochs': Option(int, "epochs over which the synthetic negatives' weight then rises "
                                   'linearly to --synthetic'),
        'synthetic': Option(float, 'w, the final weight of the synthetic negatives in '
                                   'J_m = (1 - w) J_m(real) + w J_m(synthetic) (1: the paper)'),
        'synthetic_grad': Option(_SYNTHETIC_GRAD, "where J_m's gradient through a synthetic "
                                 'negative goes: negative (to the real negative it was made from, '
                                 'straight through), none (nowhere: a constant)'),
    }

    def __init__(self, embed_dim, lambda_metric=1.0, lambda_reg=1.0, lambda_adv=50.0, margin=1.0,
                 positive='random', hidden=(512, 512), return_terms=False, warmup_epochs=0,
                 ramp_epochs=0, synthetic=1.0, synthetic_grad='negative', **kwargs):
        super().__init__(**kwargs)
        if positive not in _POSITIVES:
            raise ValueError('positive must be one of %s, got %r.' % (', '.join(_POSITIVES), positive))
        if synthetic_grad not in _SYNTHETIC_GRAD:
            raise ValueError('synthetic_grad must be one of %s, got %r.'
                             % (', '.join(_SYNTHETIC_GRAD), synthetic_grad))
        for name, v in (('lambda_metric', lambda_metric), ('lambda_reg', lambda_reg),
                        ('lambda_adv', lambda_adv), ('margin', margin),
                        ('warmup_epochs', warmup_epochs), ('ramp_epochs', ramp_epochs)):
            if v < 0:
                raise ValueError('%s must be non-negative, got %g.' % (name, v))
        if not 0 <= synthetic <= 1:
            raise ValueError('synthetic must lie in [0, 1], got %g.' % synthetic)
        self._lambda = float(lambda_metric)
        self._lambda1 = float(lambda_reg)
        self._lambda2 = float(lambda_adv)
        self._margin = float(margin)
        self._positive = positive
        self._return_terms = bool(return_terms)
        self.warmup_epochs, self.ramp_epochs = int(warmup_epochs), int(ramp_epochs)
        self.synthetic = float(synthetic)
        self._straight_through = synthetic_grad == 'negative'
        with self.name_scope():
            self.generator = DAMLGenerator(int(embed_dim), tuple(hidden),
                                           normalize=self._normalize_synthetic)
            # w of the schedule: state, not learnt (the engine sets it each epoch, set_epoch)
            self.schedule = self.params.get('schedule', shape=(1,), grad_req='null',
                                            init=init.Constant(self.weight_at(1)))

    def weight_at(self, epoch):
        """``w`` at ``epoch`` (1-based): :func:`synthetic_weight` with this loss's schedule."""
        return synthetic_weight(epoch, self.warmup_epochs, self.ramp_epochs, self.synthetic)

    def set_epoch(self, epoch):
        """Called by the training loop before each epoch: ``w`` of the schedule for ``epoch``."""
        self.set_synthetic_weight(self.weight_at(epoch))

    def set_synthetic_weight(self, w):
        self.schedule.set_data(nd.full((1,), float(w)))

    def schedule_metrics(self):
        """Logged with every epoch by the training loop: the ``w`` the epoch used."""
        return {'daml_synthetic_weight': self.synthetic_weight}

    @property
    def synthetic_weight(self):
        """The current ``w`` (what the next batch uses)."""
        return float(self.schedule.data(self.schedule.list_ctx()[0]).asscalar())

    def hybrid_forward(self, F, embeddings, labels, schedule):
        x = embeddings
        sq = pairwise_sq_distance(F, x)                                        # (B, B)
        same, diff = label_masks(F, labels, sq)
        has_pos = F.sum(same, axis=1) > 0                                      # (B,)
        if self._positive == 'random':
            score = F.random.uniform_like(sq, low=0.0, high=1.0)
        else:
            score = sq
        pos_idx = F.argmax(F.where(same > 0, score, -F.ones_like(score)), axis=1)
        xp = F.take(x, pos_idx)                                                # (B, D)
        valid = F.broadcast_mul(diff, F.expand_dims(has_pos, 1))               # [anchor, negative]

        # The generator sees the real embeddings as constants: J_gen trains only the generator.
        xa_c, xp_c, xn_c = F.BlockGrad(x), F.BlockGrad(xp), F.BlockGrad(x)
        grid = F.zeros_like(F.expand_dims(sq, 2))                              # (B, B, 1)
        anc = F.broadcast_add(F.expand_dims(xa_c, 1), grid)                    # (B, B, D) [a, n]
        pos = F.broadcast_add(F.expand_dims(xp_c, 1), grid)
        neg = F.broadcast_add(F.expand_dims(xn_c, 0), grid)
        syn = self.generator(anc, pos, neg)                                    # (B, B, D)
        j_hard = F.sum(F.square(syn - anc), axis=2)                            # ||x~ - x||^2
        j_reg = F.sum(F.square(syn - neg), axis=2)                             # ||x~ - x-||^2
        d_ap_c = F.sum(F.square(xp_c - xa_c), axis=1, keepdims=True)           # D(x+, x)^2, (B, 1)
        j_adv = F.relu(F.broadcast_sub(j_hard, d_ap_c) - self._margin)
        count = F.sum(valid)
        j_hard_m = safe_divide(F, F.sum(j_hard * valid), count)
        j_reg_m = safe_divide(F, F.sum(j_reg * valid), count)
        j_adv_m = safe_divide(F, F.sum(j_adv * valid), count)
        j_gen = j_hard_m + self._lambda1 * j_reg_m + self._lambda2 * j_adv_m

        # The metric never trains the generator (its output is a constant to J_m). With
        # synthetic_grad='negative' J_m's gradient through x~_an goes straight through to the real
        # negative x_n it was made from (x~ = x_n + const), so the metric pushes real negatives
        # away, the harder ones' synthetic versions weighing more; with 'none' only the anchors
        # and positives move.
        neg_real = F.broadcast_add(F.expand_dims(x, 0), grid)                  # x_n, with gradient
        if self._straight_through:
            syn_m = neg_real + F.BlockGrad(syn - neg_real)
        else:
            syn_m = F.BlockGrad(syn)
        w = F.reshape(schedule, (1,))
        j_m = (F.broadcast_mul(1 - w, self._metric(F, x, xp, neg_real, valid, has_pos))
               + F.broadcast_mul(w, self._metric(F, x, xp, syn_m, valid, has_pos)))
        if self._l2_penalty:
            j_m = j_m + self._l2_penalty * F.mean(F.sum(F.square(x), axis=1))
        total = j_gen + self._lambda * j_m
        if self._return_terms:
            return total, j_gen, j_m, j_hard_m, j_reg_m, j_adv_m
        return total

    _l2_penalty = 0.0

    def _metric(self, F, x, xp, syn, valid, has_pos):
        """``J_m`` with the negatives ``syn`` (B, B, D): ``syn[a, n]`` stands for negative n of
        anchor a (the real ``x_n`` or its synthetic version)."""
        raise NotImplementedError


class DAMLTripletLoss(_DAML):
    r"""DAML (triplet): ``J = J_gen + lambda J_m`` with
    ``J_m = mean over (a, n) of [D(x+, x)^2 - D(x~_an, x)^2 + alpha]_+`` (squared Euclidean
    distances; the synthetic ``x~_an = G(x_a, x+_a, x_n)`` stands in for the real negative).

    Parameters: ``embed_dim`` (the generator's input/output size), ``lambda_metric`` (lambda, 1),
    ``lambda_reg`` (lambda_1, 1), ``lambda_adv`` (lambda_2, 50), ``margin`` (alpha, 1),
    ``positive`` ('random' | 'hardest'), ``hidden`` (generator widths, (512, 512)),
    ``return_terms`` (also return ``J_gen, J_m, J_hard, J_reg, J_adv``); the schedule
    ``warmup_epochs`` (0), ``ramp_epochs`` (0), ``synthetic`` (w after the ramp, 1) and
    ``synthetic_grad`` ('negative' | 'none'), see the module docstring. With ``w`` < 1, ``J_m`` is
    ``(1 - w)`` times the same hinge over the real negatives plus ``w`` times the synthetic one.

    Inputs: ``embeddings`` (B, D), L2-normalised; ``labels`` (B,). Output: ``J`` (1,), or the tuple
    ``(J, J_gen, J_m, J_hard, J_reg, J_adv)`` with ``return_terms``. Every mean is 0, never NaN, on
    an empty set (one class; one image per class). Learnable parameters: the generator's; seed
    ``mx.random`` for a repeatable ``positive='random'`` draw. See the module docstring for which
    term trains what.
    """
    normalize_embeddings = True
    _normalize_synthetic = True

    def _metric(self, F, x, xp, syn, valid, has_pos):
        d_ap = F.sum(F.square(xp - x), axis=1, keepdims=True)                   # (B, 1)
        d_an = F.sum(F.square(F.broadcast_sub(syn, F.expand_dims(x, 1))), axis=2)   # (B, B)
        hinge = F.relu(F.broadcast_sub(d_ap, d_an) + self._margin)
        return safe_divide(F, F.sum(hinge * valid), F.sum(valid))


class DAMLNPairLoss(_DAML):
    r"""DAML (N-pair): ``J = J_gen + lambda J_m`` with Sohn's multi-class N-pair loss on synthetic
    negatives, per anchor ``a`` with its chosen positive ``x+``:

    .. math:: \ell_a = \log\Big(1 + \sum_{n} \exp(x_a \cdot \tilde x_{an} - x_a \cdot x^+)\Big),
        \qquad J_m = \operatorname{mean}_a \ell_a + \text{l2\_reg}\cdot\operatorname{mean}_b \lVert x_b\rVert^2

    over the anchors with a positive (an anchor without negatives contributes 0). ``l2_reg`` is
    Sohn's embedding-norm regulariser (0.002, as :class:`NPairLoss`); the embeddings and the
    synthetic negatives are not normalised (``normalize_embeddings`` False, as N-pair).
    Same parameters, inputs and outputs as :class:`DAMLTripletLoss`, plus ``l2_reg``.
    """
    normalize_embeddings = False
    _normalize_synthetic = False
    options = dict(_DAML.options, l2_reg=Option(float, "N-pair's L2 penalty on the embeddings' norms"))

    def __init__(self, embed_dim, lambda_metric=1.0, lambda_reg=1.0, lambda_adv=50.0, margin=1.0,
                 positive='random', hidden=(512, 512), l2_reg=0.002, return_terms=False,
                 warmup_epochs=0, ramp_epochs=0, synthetic=1.0, synthetic_grad='negative',
                 **kwargs):
        super().__init__(embed_dim, lambda_metric, lambda_reg, lambda_adv, margin, positive, hidden,
                         return_terms, warmup_epochs, ramp_epochs, synthetic, synthetic_grad,
                         **kwargs)
        if l2_reg < 0:
            raise ValueError('l2_reg must be non-negative, got %g.' % l2_reg)
        self._l2_reg = float(l2_reg)
        self._l2_penalty = self._l2_reg

    def _metric(self, F, x, xp, syn, valid, has_pos):
        s_an = F.sum(F.broadcast_mul(syn, F.expand_dims(x, 1)), axis=2)         # (B, B)
        s_ap = F.sum(x * xp, axis=1, keepdims=True)                             # (B, 1)
        has_neg = F.sum(valid, axis=1, keepdims=True) > 0
        lse = masked_logsumexp(F, s_an, valid)                                  # (B, 1)
        terms = softplus(F, lse - s_ap) * has_neg
        has_pos = F.expand_dims(has_pos, 1)
        return safe_divide(F, F.sum(terms * has_pos), F.sum(has_pos))
