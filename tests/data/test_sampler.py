"""BalancedBatchSampler: P classes x K images per batch, errors, determinism, coverage."""
import warnings

import mxnet as mx
import numpy as np
import pytest

from gluon_dml.data import ArrayDataset, BalancedBatchSampler


def balanced_labels(num_classes, per_class, seed=0):
    """Labels of ``num_classes`` x ``per_class`` items, shuffled, with non-contiguous ids."""
    labels = np.repeat(np.arange(num_classes) * 3 + 7, per_class)
    return np.random.RandomState(seed).permutation(labels)


def check_batch(batch, labels, p, k):
    assert len(batch) == p * k
    assert all(isinstance(i, int) for i in batch)
    groups = np.asarray(labels)[np.asarray(batch)].reshape(p, k)
    assert (groups == groups[:, :1]).all(), 'the K indices of a class must be contiguous'
    assert len(set(groups[:, 0])) == p, 'the P classes of a batch must be distinct'
    return groups[:, 0]


def test_batches_are_p_distinct_classes_by_k_grouped():
    labels = balanced_labels(30, 9)
    sampler = BalancedBatchSampler(labels, batch_size=40, batch_k=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 270 // 40
    for batch in batches:
        check_batch(batch, labels, p=10, k=4)
        # a class with >= K images never repeats an image inside a batch
        assert len(set(batch)) == len(batch)


def test_uneven_classes_and_small_classes_drawn_with_replacement():
    labels = np.array([0] * 50 + [1] * 3 + [2] * 2 + [3] * 10 + [4] * 7)
    sampler = BalancedBatchSampler(labels, batch_size=20, batch_k=5, num_batches=40)
    seen_small = False
    for batch in sampler:
        classes = check_batch(batch, labels, p=4, k=5)
        for group, cls in zip(np.reshape(batch, (4, 5)), classes):
            members = set(np.flatnonzero(labels == cls))
            assert set(group) <= members
            if len(members) < 5:
                seen_small = True
                assert set(group) == members     # every image, repeated to fill K
            else:
                assert len(set(group)) == 5
    assert seen_small


def test_single_image_class_warns_once_and_repeats():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    with pytest.warns(UserWarning, match='single image') as record:
        sampler = BalancedBatchSampler(labels, batch_size=6, batch_k=2, num_batches=20)
    assert len([w for w in record if 'single image' in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter('error')                  # no more warnings while sampling
        batches = list(sampler)
    groups = [b[2 * i:2 * i + 2] for b in batches for i in range(3)]
    assert [8, 8] in groups                              # class 2, drawn with replacement
    assert all(g == [8, 8] for g in groups if 8 in g)


@pytest.mark.parametrize('batch_size, batch_k, match', [
    (10, 3, r'batch_size \(10\) must be a multiple of batch_k \(3\); use a batch size of '
            r'9 or 12'),
    (0, 2, r'at least 1'),
    (8, 0, r'at least 1'),
    (8, -2, r'at least 1'),
])
def test_batch_size_errors(batch_size, batch_k, match):
    with pytest.raises(ValueError, match=match):
        BalancedBatchSampler(balanced_labels(10, 5), batch_size, batch_k)


def test_too_few_classes_and_empty_labels():
    with pytest.raises(ValueError, match='needs 8 distinct classes, but the labels hold only '
                                         '5; lower batch_size to at most 20'):
        BalancedBatchSampler(balanced_labels(5, 20), batch_size=32, batch_k=4)
    with pytest.raises(ValueError, match='no labels'):
        BalancedBatchSampler([], batch_size=8, batch_k=4)
    # exactly P classes is fine: every batch holds them all
    labels = balanced_labels(8, 5)
    for batch in BalancedBatchSampler(labels, batch_size=32, batch_k=4):
        assert sorted(check_batch(batch, labels, 8, 4)) == sorted(set(labels))


def test_deterministic_per_seed_and_epoch():
    labels = balanced_labels(40, 12)
    first = BalancedBatchSampler(labels, 32, 4, seed=5)
    second = BalancedBatchSampler(labels, 32, 4, seed=5)
    first.set_epoch(7)
    second.set_epoch(7)
    epoch7 = list(first)
    assert epoch7 == list(second)
    first.set_epoch(7)
    assert list(first) == epoch7                          # a resumed run sees the same
    first.set_epoch(8)
    assert list(first) != epoch7                          # different epochs differ
    other_seed = BalancedBatchSampler(labels, 32, 4, seed=6)
    other_seed.set_epoch(7)
    assert list(other_seed) != epoch7
    # without set_epoch, each pass moves to the next epoch
    fresh = BalancedBatchSampler(labels, 32, 4, seed=5)
    fresh.set_epoch(7)
    assert list(fresh) == epoch7 and list(fresh) == first.batches(8)


def test_default_length_is_dataset_over_batch_size():
    assert len(BalancedBatchSampler(balanced_labels(183, 20), 128, 4)) == 3660 // 128 == 28
    assert len(BalancedBatchSampler(balanced_labels(5, 6000), 125, 25)) == 240
    assert len(BalancedBatchSampler(balanced_labels(3, 2), 6, 2)) == 1   # at least one
    assert len(BalancedBatchSampler(balanced_labels(10, 10), 20, 4, num_batches=7)) == 7
    sampler = BalancedBatchSampler(balanced_labels(10, 10), 20, 4, num_batches=7)
    assert len(list(sampler)) == 7


@pytest.mark.parametrize('num_classes, per_class, batch_size, batch_k, bound', [
    (183, 20, 128, 4, 0.95),    # Omniglot train: 28 batches of 32 classes x 4
    (50, 20, 40, 4, 0.99),      # 25 batches use every image exactly once when even
    (5, 6000, 125, 25, 0.99),   # Fashion-MNIST train protocol
])
def test_an_epoch_covers_classes_evenly_and_most_images(num_classes, per_class, batch_size,
                                                        batch_k, bound):
    """Every class appears, class counts differ by at most 2 over an epoch, and the epoch
    uses at least ``bound`` of the distinct images (independent uniform draws of the same
    number of images would cover only about 1 - 1/e = 63% of them)."""
    labels = balanced_labels(num_classes, per_class)
    sampler = BalancedBatchSampler(labels, batch_size, batch_k, seed=11)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        used = np.concatenate(list(sampler))
        counts = np.bincount(np.searchsorted(np.unique(labels), labels[used][::batch_k]),
                             minlength=num_classes)
        assert counts.min() >= 1
        assert counts.max() - counts.min() <= 2
        assert len(np.unique(used)) >= bound * len(labels)


def test_works_as_dataloader_batch_sampler():
    rng = np.random.RandomState(0)
    labels = np.repeat(np.arange(6), 7)
    data = ArrayDataset(rng.rand(len(labels), 1, 4, 4), labels, list('abcdef'))
    sampler = BalancedBatchSampler(data.labels, batch_size=12, batch_k=3)
    loader = mx.gluon.data.DataLoader(data, batch_sampler=sampler)
    assert len(loader) == len(sampler) == 3
    seen = 0
    for images, batch_labels in loader:
        assert images.shape == (12, 1, 4, 4)
        groups = batch_labels.asnumpy().reshape(4, 3)
        assert (groups == groups[:, :1]).all() and len(set(groups[:, 0])) == 4
        seen += 1
    assert seen == 3


def test_labels_of_one_class_are_refused_in_one_sentence():
    # the advice of the class-count check ('lower batch_size to at most K') would lead to a
    # batch of one class, which the losses refuse next: say what is wrong instead
    with pytest.raises(ValueError, match='The labels hold 1 class: a batch needs images of at least two'):
        BalancedBatchSampler(np.zeros(20, np.int64), batch_size=10, batch_k=5)
