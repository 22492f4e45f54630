"""Cross-batch memory for the pair-based losses.

Wang, Zhang, Huang, Scott, "Cross-Batch Memory for Embedding Learning", CVPR 2020.

Embeddings drift slowly once a network has warmed up, so the embeddings of the last few batches
still stand for their images: a FIFO memory of the last ``M`` embeddings and labels gives every
anchor of the batch ``M`` more pairs at almost no cost (no forward pass for them, no gradient
through them).
"""
import warnings

from mxnet import autograd, gluon, init, nd

from .base import masked_logsumexp, pairwise_distance, pairwise_similarity, pairwise_sq_distance, \
    safe_divide
from .binomial import BinomialDevianceLoss
from .lifted import LiftedStructureLoss
from .multisim import MultiSimilarityLoss
from .pair import ContrastiveLoss
from .triplet import TripletLoss

__all__ = ['CrossBatchMemory', 'MEMORY_LOSSES', 'check_memory_loss', 'cross_loss']

# the losses whose terms are pairs, by registry name
MEMORY_LOSSES = {'contrastive': ContrastiveLoss, 'triplet': TripletLoss,
                 'multi_similarity': MultiSimilarityLoss, 'binomial': BinomialDevianceLoss,
                 'lifted': LiftedStructureLoss}

_FAR = 1e6


def check_memory_loss(name, options=None):
    """Refuse (ValueError, one sentence) a loss the memory cannot extend."""
    key = (name or '').lower().replace('-', '_')
    if key not in MEMORY_LOSSES:
        raise ValueError('--xbm-size needs a pair-based loss (%s); --loss %s is not one.'
                         % (', '.join(sorted(MEMORY_LOSSES)), name))
    mining = (options or {}).get('mining', 'all')
    if key == 'triplet' and mining in ('all', 'semihard'):
        raise ValueError('--xbm-size with the triplet loss needs --mining batch_hard or '
                         'batch_hard_soft: --mining %s builds a batch x memory x memory cube.'
                         % mining)


def _cross_masks(F, labels, mem_labels, valid):
    """(B, M) masks of the same-label and other-label pairs between the batch and the filled
    memory slots (no diagonal: the memory holds earlier batches)."""
    y = F.reshape(labels, (-1, 1)).astype('float32')
    m = F.reshape(mem_labels, (1, -1)).astype('float32')
    v = F.reshape(valid, (1, -1))
    equal = F.broadcast_equal(y, m)
    return F.broadcast_mul(equal, v), F.broadcast_mul(1 - equal, v)


def cross_loss(F, loss, x, labels, mem, mem_labels, valid):
    """The terms of ``loss`` between the batch (anchors ``x`` (B, D), ``labels``) and the memory
    (``mem`` (M, D), ``mem_labels``, ``valid`` (M,) 1 for a filled slot): every pair (batch
    item, memory item), averaged as the loss averages its own pairs. Memory pairs carry no
    gradient to the memory (it is a constant)."""
    same, diff = _cross_masks(F, labels, mem_labels, valid)
    if isinstance(loss, ContrastiveLoss):
        dist = pairwise_distance(F, x, mem)
        pos = F.relu(dist - loss._pos_margin) * same
        neg = F.relu(loss._neg_margin - dist) * diff
        if loss._squared:
            pos, neg = 0.5 * F.square(pos), 0.5 * F.square(neg)
        if loss._reduction == 'nonzero':
            count = F.sum(pos > 0) + F.sum(neg > 0)
        else:
            count = F.sum(same) + F.sum(diff)
        return safe_divide(F, F.sum(pos) + F.sum(neg), count)
    if isinstance(loss, MultiSimilarityLoss):
        sim = pairwise_similarity(F, F.L2Normalization(x, mode='instance'),
                                  F.L2Normalization(mem, mode='instance'))
        pos, neg = loss.mine(F, sim, same, diff) if loss._mining else (same, diff)
        pos_term = masked_logsumexp(F, -loss._alpha * (sim - loss._lam), pos, add_one=True)
        neg_term = masked_logsumexp(F, loss._beta * (sim - loss._lam), neg, add_one=True)
        return F.mean(pos_term / loss._alpha + neg_term / loss._beta)
    if isinstance(loss, BinomialDevianceLoss):
        sim = pairwise_similarity(F, F.L2Normalization(x, mode='instance'),
                                  F.L2Normalization(mem, mode='instance'))
        return loss.pair_loss(F, sim, same, diff)
    if isinstance(loss, TripletLoss):
        if loss._mining not in ('batch_hard', 'batch_hard_soft'):
            raise ValueError('the memory takes the triplet loss with batch_hard mining only')
        dist = (pairwise_sq_distance(F, x, mem) if loss._squared else
                pairwise_distance(F, x, mem))
        d_pos = F.pick(dist, F.argmax(F.where(same > 0, dist, -F.ones_like(dist)), axis=1), axis=1)
        d_neg = F.pick(dist, F.argmin(F.where(diff > 0, dist, F.ones_like(dist) * _FAR), axis=1),
                       axis=1)
        has = (F.sum(same, axis=1) > 0) * (F.sum(diff, axis=1) > 0)
        if loss._mining == 'batch_hard_soft':
            terms = F.Activation(d_pos - d_neg, act_type='softrelu')
        else:
            terms = F.relu(d_pos - d_neg + loss._margin)
        return safe_divide(F, F.sum(terms * has), F.sum(has))
    if isinstance(loss, LiftedStructureLoss):
        dist = pairwise_distance(F, x, mem)                                      # (B, M)
        has_neg = F.sum(diff, axis=1, keepdims=True) > 0                         # (B, 1)
        if loss._variant == 'modified':
            has_pos = F.sum(same, axis=1, keepdims=True) > 0
            lse_pos = masked_logsumexp(F, dist - loss._pos_margin, same)
            lse_neg = masked_logsumexp(F, loss._neg_margin - dist, diff)
            ok = has_pos * has_neg
            return safe_divide(F, F.sum(ok * F.relu(lse_pos + lse_neg)), F.sum(ok))
        # J_ij for a batch anchor i and a memory positive j: i's negatives in the memory and
        # j's negatives in the batch
        lse_i = masked_logsumexp(F, loss._margin - dist, diff, axis=1)           # (B, 1)
        lse_j = masked_logsumexp(F, loss._margin - dist, diff, axis=0)           # (1, M)
        has_neg_j = F.sum(diff, axis=0, keepdims=True) > 0                       # (1, M)
        shift = F.BlockGrad(F.broadcast_maximum(lse_i, lse_j))
        both = shift + F.log(F.broadcast_mul(F.exp(F.broadcast_sub(lse_i, shift)),
                                             F.broadcast_add(has_neg, F.zeros_like(shift)))
                             + F.broadcast_mul(F.exp(F.broadcast_sub(lse_j, shift)),
                                               F.broadcast_add(has_neg_j, F.zeros_like(shift)))
                             + 1e-30)
        pairs = same * (F.broadcast_add(has_neg, has_neg_j) > 0)
        j = F.relu(both + dist) * pairs
        return 0.5 * safe_divide(F, F.sum(F.square(j)), F.sum(same))
    raise ValueError('the memory cannot extend %s' % type(loss).__name__)


class _MemoryStore(gluon.HybridBlock):
    """Holds the memory as parameters without gradient, so that checkpoints keep it."""

    def __init__(self, size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.feats = self.params.get('feats', shape=(size, embed_dim), init=init.Zero(),
                                         grad_req='null')
            self.labels = self.params.get('labels', shape=(size,), init=init.Zero(),
                                          grad_req='null')
            self.valid = self.params.get('valid', shape=(size,), init=init.Zero(),
                                         grad_req='null')
            # [next slot to write, training steps seen]
            self.state = self.params.get('state', shape=(2,), init=init.Zero(), grad_req='null')

    def hybrid_forward(self, F, x, *args, **kwargs):      # never called
        return x


class CrossBatchMemory(gluon.HybridBlock):
    r"""A pair-based loss over the batch plus the same loss between the batch and a memory.

    .. math::
        L = L(X, X) + w\, L(X, \mathcal{M})

    ``L(X, X)`` is the wrapped loss on the batch; ``L(X, M)`` has the batch items as anchors and
    the last ``size`` embeddings of earlier steps (labels kept with them) as the other end of
    every pair, averaged as the loss averages its own (:func:`cross_loss`). After the loss of a
    training step the batch is enqueued, the oldest entries leave (a FIFO ring), as the paper's
    Algorithm 1 does; the memory carries no gradient. For ``start`` training steps (warm-up,
    while the embedding still moves fast) the memory is neither used nor filled. ``weight`` is
    ``w`` (1 in the paper).

    Differences from the authors' code: it enqueues the batch before computing the memory term,
    so that each anchor also meets a detached copy of itself (a positive at distance 0) and of
    its own batch; here the memory holds earlier steps only, and the batch's own pairs are in
    ``L(X, X)`` once.

    In a distributed job the loss sees the gathered global batch, so the memory holds the
    batches of every worker (the same memory on each). The memory, its write position and the
    step count are parameters without gradient: checkpoints keep them and a resumed run
    continues with the same memory.

    Hybridizable: the graph takes a copy of the memory as input, so that the in-place enqueue
    that follows the forward pass cannot change what the backward pass reads.

    Losses: contrastive, triplet (batch_hard / batch_hard_soft), multi_similarity, binomial,
    lifted (both variants; the smooth one pairs a batch anchor's memory negatives with the memory
    positive's batch negatives).

    Inputs: ``embeddings`` (B, D), ``labels`` (B,). Output: (1,).
    """

    def __init__(self, loss, size, embed_dim, start=0, weight=1.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(loss, tuple(MEMORY_LOSSES.values())):
            raise ValueError('--xbm-size needs a pair-based loss (%s), not %s.'
                             % (', '.join(sorted(MEMORY_LOSSES)), type(loss).__name__))
        if isinstance(loss, TripletLoss) and loss._mining not in ('batch_hard', 'batch_hard_soft'):
            check_memory_loss('triplet', {'mining': loss._mining})
        if int(size) < 1 or int(start) < 0 or weight < 0:
            raise ValueError('the memory size must be >= 1, the warm-up >= 0 and the weight >= 0, '
                             'got %r, %r and %r.' % (size, start, weight))
        self.size, self.start, self.weight = int(size), int(start), float(weight)
        self.normalize_embeddings = getattr(loss, 'normalize_embeddings', True)
        self._mirror = None
        with self.name_scope():
            self.inner = loss
            self.memory = _MemoryStore(self.size, int(embed_dim), prefix='memory_')

    # -- the memory ----------------------------------------------------------------------------
    def _state(self):
        """(next slot, training steps seen), mirrored in Python (read from the parameter once
        after loading, so that a step does not wait for the device)."""
        if self._mirror is None:
            ptr, steps = self.memory.state.data().asnumpy().tolist()
            self._mirror = (int(ptr), int(steps))
        return self._mirror

    def _set_state(self, ptr, steps):
        self._mirror = (int(ptr), int(steps))
        self.memory.state.set_data(nd.array([ptr, steps], dtype='float32'))

    def load_parameters(self, *args, **kwargs):
        super().load_parameters(*args, **kwargs)
        self._mirror = None

    def filled(self):
        """The number of filled memory slots."""
        return int(self.memory.valid.data().sum().asscalar())

    def contents(self):
        """(embeddings (n, D), labels (n,)) in the memory, oldest first (numpy)."""
        import numpy as np
        ptr, _ = self._state()
        valid = self.memory.valid.data().asnumpy() > 0
        order = np.roll(np.arange(self.size), -ptr)
        order = order[valid[order]]
        return (self.memory.feats.data().asnumpy()[order],
                self.memory.labels.data().asnumpy()[order])

    def enqueue(self, embeddings, labels):
        """Write a batch into the ring (its last ``size`` rows if it is larger)."""
        emb = embeddings.detach().as_in_context(self.memory.feats.data().context)
        lab = labels.astype('float32').reshape((-1,)).as_in_context(emb.context)
        if emb.shape[0] > self.size:
            emb, lab = emb[-self.size:], lab[-self.size:]
        ptr, steps = self._state()
        n = emb.shape[0]
        feats, labs, valid = (self.memory.feats.data(), self.memory.labels.data(),
                              self.memory.valid.data())
        first = min(n, self.size - ptr)
        feats[ptr:ptr + first] = emb[:first]
        labs[ptr:ptr + first] = lab[:first]
        valid[ptr:ptr + first] = 1
        if first < n:
            feats[0:n - first] = emb[first:]
            labs[0:n - first] = lab[first:]
            valid[0:n - first] = 1
        self._set_state((ptr + n) % self.size, steps)

    # -- the loss ------------------------------------------------------------------------------
    def forward(self, embeddings, labels):
        training = autograd.is_training()
        ptr, steps = self._state()
        use = steps >= self.start
        with autograd.pause():
            mem = self.memory.feats.data().copy()
            mem_labels = self.memory.labels.data().copy()
            valid = self.memory.valid.data().copy() if use else nd.zeros_like(mem_labels)
        with warnings.catch_warnings():    # the memory's parameters are inputs, not graph weights
            warnings.filterwarnings('ignore', message='Parameter .* is not used by any computation')
            out = super().forward(embeddings, labels, mem, mem_labels, valid)
        if training:
            with autograd.pause():
                if use:
                    self.enqueue(embeddings, labels)
                ptr, _ = self._state()
                self._set_state(ptr, steps + 1)
        return out

    def hybrid_forward(self, F, embeddings, labels, mem, mem_labels, valid):
        own = self.inner(embeddings, labels)
        if not self.weight:
            return own
        return own + self.weight * cross_loss(F, self.inner, embeddings, labels, mem, mem_labels,
                                              valid)
