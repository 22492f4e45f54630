"""Batch samplers: class-balanced batches (P classes x K images) for metric learning losses, and
plain shuffled batches for the methods that need no class structure in a batch."""
import collections
import warnings

import numpy as np

__all__ = ["BalancedBatchSampler", "SuperClassBatchSampler", "ShuffledBatchSampler",
           "ShardedBatchSampler"]


class BalancedBatchSampler(object):
    """Batches of ``P = batch_size // batch_k`` distinct classes with ``K = batch_k`` images
    each, for ``gluon.data.DataLoader(dataset, batch_sampler=sampler)``.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
        Class of every item of the dataset (any integers, need not be contiguous).
    batch_size : int
        Items per batch; must be a multiple of ``batch_k``.
    batch_k : int
        Images per class in a batch (K).
    num_batches : int, optional
        Batches per epoch; default ``max(1, N // batch_size)``, so that an epoch draws about
        as many images as the dataset holds.
    seed : int
        Seed of the random draws.

    How batches are drawn
    ---------------------
    * Classes: a stream of shuffled permutations of all classes is consumed in order; each
      batch takes the next P classes of the stream that are distinct (a class that would
      repeat inside the batch is kept for the next batch).  Over an epoch every class is
      therefore drawn a nearly equal number of times (counts differ by about one), instead
      of independent draws that leave some classes out.
    * Images: each class walks through a shuffled permutation of its images, K at a time,
      and reshuffles once all were used; a batch never repeats an image of a class that has
      at least K images (at a reshuffle, the images just taken go to the end of the new
      permutation).  A class with fewer than K images gives all its images, repeated in
      shuffled rounds until K (drawing with replacement, in the balanced sense).  A class
      with a single image is allowed (it then fills its K slots alone) and is reported once
      with a warning.
    * Order: the K indices of a class are contiguous: ``batch[i*K:(i+1)*K]`` share a class.
    * Determinism: the batches of an epoch depend only on ``(seed, epoch)``.  Call
      ``set_epoch(e)`` before iterating (as a resumed run must); without it, every pass
      over the sampler moves on to the next epoch by itself (``set_epoch(e)``, iterate,
      iterate again gives epochs e and e + 1).
    """

    def __init__(self, labels, batch_size, batch_k, num_batches=None, seed=0):
        if hasattr(labels, 'asnumpy'):   # an MXNet NDArray
            labels = labels.asnumpy()
        labels = np.asarray(labels).reshape(-1)
        if labels.size == 0:
            raise ValueError('BalancedBatchSampler got no labels: the dataset is empty, so '
                             'there is nothing to sample; check the dataset path and split.')
        if not np.issubdtype(labels.dtype, np.integer):
            if np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)):
                labels = labels.astype(np.int64)
            else:
                raise ValueError('BalancedBatchSampler needs integer class labels, got dtype '
                                 '%s.' % labels.dtype)
        batch_size, batch_k = int(batch_size), int(batch_k)
        if batch_k < 1 or batch_size < 1:
            raise ValueError('batch_size (%d) and batch_k (%d) must both be at least 1.'
                             % (batch_size, batch_k))
        if batch_size % batch_k:
            lower = batch_size - batch_size % batch_k
            raise ValueError('batch_size (%d) must be a multiple of batch_k (%d); use a '
                             'batch size of %s%d.'
                             % (batch_size, batch_k,
                                '%d or ' % lower if lower else '', lower + batch_k))
        self.classes, inverse = np.unique(labels, return_inverse=True)
        num_per_batch = batch_size // batch_k
        if len(self.classes) < 2:
            raise ValueError('The labels hold %d class: a batch needs images of at least two '
                             'classes (positives and negatives); these data cannot train a '
                             'metric.' % len(self.classes))
        if len(self.classes) < num_per_batch:
            raise ValueError('A batch of %d with batch_k=%d needs %d distinct classes, but the '
                             'labels hold only %d; lower batch_size to at most %d or raise '
                             'batch_k.' % (batch_size, batch_k, num_per_batch,
                                           len(self.classes), len(self.classes) * batch_k))
        order = np.argsort(inverse, kind='stable')
        counts = np.bincount(inverse, minlength=len(self.classes))
        self._members = np.split(order, np.cumsum(counts)[:-1])
        if counts.max() < batch_k:
            raise ValueError('batch_k (--batch-k) %d is above the size of every class (the largest '
                             'has %d images): each class would fill its K slots with copies, so its '
                             'positive pairs would be an image and itself; use --batch-k %d or less.'
                             % (batch_k, counts.max(), counts.max()))
        singles = self.classes[counts == 1]
        if singles.size:
            warnings.warn('%d class(es) have a single image (e.g. label %s); their K=%d slots '
                          'in a batch repeat that image.'
                          % (singles.size, ', '.join(str(c) for c in singles[:5]), batch_k),
                          stacklevel=2)
        if num_batches is None:
            num_batches = max(1, labels.size // batch_size)
        num_batches = int(num_batches)
        if num_batches < 1:
            raise ValueError('num_batches must be at least 1, got %d.' % num_batches)
        self.batch_size = batch_size
        self.batch_k = batch_k
        self.num_classes_per_batch = num_per_batch
        self.num_batches = num_batches
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch):
        """Make the next pass yield the batches of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self):
        return self.num_batches

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        return iter(self._epoch_batches(epoch))

    def batches(self, epoch):
        """The batches of ``epoch`` (a list of lists of ints), without changing state."""
        return self._epoch_batches(int(epoch))

    def _epoch_batches(self, epoch):
        rng = np.random.default_rng([abs(self.seed), int(self.seed < 0), abs(epoch),
                                     int(epoch < 0)])
        num_classes = len(self._members)
        class_stream = collections.deque()
        cursors = [None] * num_classes   # per class: [shuffled indices, position]
        p, k = self.num_classes_per_batch, self.batch_k
        batches = []
        for _ in range(self.num_batches):
            chosen = _next_distinct(class_stream, np.arange(num_classes), p, rng)
            batches.append(self._batch_of(chosen, k, cursors, rng))
        return batches

    def _batch_of(self, chosen, k, cursors, rng):
        """K images of each class in ``chosen``, a class's K indices contiguous."""
        batch = []
        for c in chosen:
            batch.extend(self._take(c, k, cursors, rng))
        return batch

    def _take(self, c, k, cursors, rng):
        """K indices of class ``c``: the next ones of its shuffled cycle."""
        members = self._members[c]
        n = len(members)
        if n < k:
            rounds = -(-k // n)
            draws = np.concatenate([rng.permutation(members) for _ in range(rounds)])
            return draws[:k].tolist()
        if cursors[c] is None:
            cursors[c] = [rng.permutation(members), 0]
        perm, pos = cursors[c]
        taken = perm[pos:pos + k]
        if len(taken) == k:
            cursors[c][1] = pos + k
            return taken.tolist()
        # the cycle ran out: start a new one, keeping what was just taken for its end
        fresh = rng.permutation(members)
        fresh = np.concatenate([fresh[~np.isin(fresh, taken)], fresh[np.isin(fresh, taken)]])
        need = k - len(taken)
        cursors[c] = [fresh, need]
        return taken.tolist() + fresh[:need].tolist()


class SuperClassBatchSampler(BalancedBatchSampler):
    """P x K batches whose P classes all come from ONE super-class (Stanford Online Products'
    "InClass" sampling: a batch of bicycles only, so every negative is a hard, same-kind one).

    ``super_labels[i]`` is the super-class of item ``i`` (each class must lie in one
    super-class). Each batch picks a super-class with probability proportional to its number of
    images, then its next P distinct classes from that super-class's own shuffled class stream;
    a super-class with fewer than P classes is topped up with classes of the others. Images
    within a class are drawn as by :class:`BalancedBatchSampler`; the batches of an epoch depend
    only on ``(seed, epoch)``.
    """

    def __init__(self, labels, super_labels, batch_size, batch_k, num_batches=None, seed=0):
        super().__init__(labels, batch_size, batch_k, num_batches=num_batches, seed=seed)
        if hasattr(labels, 'asnumpy'):
            labels = labels.asnumpy()
        labels = np.asarray(labels).reshape(-1)
        super_labels = np.asarray(super_labels).reshape(-1)
        if super_labels.shape != labels.shape:
            raise ValueError('super_labels must give one super-class per item (%d), got %d.'
                             % (labels.size, super_labels.size))
        class_super = []
        for c, members in zip(self.classes, self._members):
            sup = np.unique(super_labels[members])
            if sup.size != 1:
                raise ValueError('Class %s lies in several super-classes (%s); each class must '
                                 'belong to exactly one.' % (c, ', '.join(str(s) for s in sup)))
            class_super.append(sup[0])
        class_super = np.array(class_super)
        self.super_classes = np.unique(class_super)
        self._super_members = [np.flatnonzero(class_super == s) for s in self.super_classes]
        sizes = np.array([sum(len(self._members[c]) for c in cl) for cl in self._super_members],
                         dtype=np.float64)
        self._super_p = sizes / sizes.sum()

    def _epoch_batches(self, epoch):
        rng = np.random.default_rng([abs(self.seed), int(self.seed < 0), abs(epoch),
                                     int(epoch < 0), 1])
        p, k = self.num_classes_per_batch, self.batch_k
        streams = [collections.deque() for _ in self._super_members]
        cursors = [None] * len(self._members)
        batches = []
        for _ in range(self.num_batches):
            s = int(rng.choice(len(self._super_members), p=self._super_p))
            chosen = self._classes_from(s, p, streams, rng)
            if len(chosen) < p:             # a small super-class: top up from the others
                others = [c for c in rng.permutation(len(self._members)).tolist() if c not in chosen]
                chosen.extend(others[:p - len(chosen)])
            batches.append(self._batch_of(chosen, k, cursors, rng))
        return batches

    def _classes_from(self, s, p, streams, rng):
        members = self._super_members[s]
        return _next_distinct(streams[s], members, min(p, len(members)), rng)


def _next_distinct(stream, pool, want, rng):
    """The next ``want`` distinct classes of ``stream``, a deque refilled with shuffled
    permutations of ``pool``; a class that would repeat is kept for the next call."""
    chosen, deferred = [], []
    while len(chosen) < want:
        if not stream:
            stream.extend(rng.permutation(pool).tolist())
        c = stream.popleft()
        (deferred if c in chosen else chosen).append(c)
    stream.extendleft(reversed(deferred))
    return chosen


class ShuffledBatchSampler(object):
    """Plain shuffled batches over ``n`` items (HashNet's images, VSE's image-caption pairs): a
    new permutation each epoch from ``(seed, epoch)``, the last partial batch dropped; with
    ``num_batches`` above ``n // batch_size`` the next permutations continue the epoch."""

    def __init__(self, n, batch_size, num_batches=None, seed=0):
        if batch_size < 1 or n < batch_size:
            raise ValueError('The training split has %d items, fewer than --batch-size %d: a batch '
                             'needs at least that many.' % (n, batch_size))
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 1
        self.num_batches = num_batches or n // batch_size

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def __len__(self):
        return self.num_batches

    def __iter__(self):
        rng = np.random.RandomState((self.seed * 7919 + self.epoch) % (2 ** 32))
        need = self.num_batches * self.batch_size
        order = np.concatenate([rng.permutation(self.n) for _ in range(-(-need // self.n))])
        for b in range(self.num_batches):
            yield order[b * self.batch_size:(b + 1) * self.batch_size].tolist()


class ShardedBatchSampler(object):
    """One worker's share of a global plan of batches (distributed training).

    ``sampler`` draws the global batches of a step (``batch_size`` x ``num_shards`` items); the
    worker of rank ``rank`` takes the ``rank``-th of ``num_shards`` contiguous equal parts of
    each. With P x K batches (a class's K items contiguous) and a local batch that is a multiple
    of K, each part holds whole classes: the classes of a step are spread across the workers,
    no two workers take the same items in a step, and the epoch (the global plan's length)
    covers the data once across all workers. Concatenated in rank order the parts are the
    global batch, item for item, that one process with the whole batch would draw.
    """

    def __init__(self, sampler, rank, num_shards):
        if not 0 <= rank < num_shards:
            raise ValueError('rank must lie in [0, %d), got %d.' % (num_shards, rank))
        self.sampler, self.rank, self.num_shards = sampler, int(rank), int(num_shards)

    def set_epoch(self, epoch):
        self.sampler.set_epoch(epoch)

    def __len__(self):
        return len(self.sampler)

    def shard(self, batch):
        """This worker's part of one global batch."""
        batch = list(batch)
        if len(batch) % self.num_shards:
            raise ValueError('A global batch of %d items cannot be cut into %d equal parts.'
                             % (len(batch), self.num_shards))
        size = len(batch) // self.num_shards
        return batch[self.rank * size:(self.rank + 1) * size]

    def __iter__(self):
        for batch in self.sampler:
            yield self.shard(batch)
