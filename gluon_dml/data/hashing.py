"""Closed-set retrieval protocols for deep hashing: a training set, a database and queries.

Unlike the open-set splits of :mod:`gluon_dml.data.datasets`, hashing benchmarks search queries
of the *training* classes in a database (Cao et al. 2017 and the field): every class is in the
training set, the database and the queries. ``get_hash_splits(name, root)`` returns
``{'train', 'database', 'query'}`` datasets:

==============  ===============================  ==================================================
name            train = database                 queries
==============  ===============================  ==================================================
fashion-mnist   the TRAIN file: 60,000 images,    1,000 images of the TEST (t10k) file: the first
                10 classes, 28x28, /255           100 of each class in file order
digits          scikit-learn digits less the      the first 30 images of each digit (300)
                queries (1,497 images)
==============  ===============================  ==================================================

Multi-label data (NUS-WIDE, COCO) use :class:`MultiLabelDataset`: labels are multi-hot (N, C)
and a pair is similar when the label sets intersect.
"""
import functools
import os

import numpy as np
from mxnet.gluon.data import Dataset

from .base import ArrayDataset
from .registry import get_dataset, list_datasets, register_dataset
from .datasets import (FASHION_MNIST_CLASSES, FASHION_MNIST_DEBIAN_ROOT, _fashion_cache_dir,
                       _find_pair, read_idx)

__all__ = ['get_hash_splits', 'list_hash_protocols', 'MultiLabelDataset', 'first_per_class']


class MultiLabelDataset(Dataset):
    """Images (N, C, H, W) float32 in [0, 1] with multi-hot labels (N, num_classes)."""

    def __init__(self, images, labels, class_names=None, name='', split=''):
        images = np.ascontiguousarray(images, dtype=np.float32)
        labels = np.ascontiguousarray(labels, dtype=np.float32)
        if images.ndim != 4 or labels.ndim != 2 or len(labels) != len(images):
            raise ValueError('A multi-label dataset needs images (N, C, H, W) and multi-hot labels '
                             '(N, num_classes), got %s and %s.' % (images.shape, labels.shape))
        self.images, self.labels, self.name, self.split = images, labels, name, split
        self.class_names = list(class_names) if class_names else [str(i) for i in range(labels.shape[1])]

    @property
    def num_classes(self):
        return self.labels.shape[1]

    def __getitem__(self, idx):
        return self.images[idx], self.labels[idx]

    def __len__(self):
        return len(self.images)


def first_per_class(labels, per_class):
    """Indices of the first ``per_class`` items of each class, in their original order."""
    labels = np.asarray(labels)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise ValueError('class %s has %d images, fewer than the %d queries per class the '
                             'protocol takes.' % (c, len(idx), per_class))
        keep.extend(idx[:per_class])
    return np.sort(np.array(keep))


def _fashion_split(root, split):
    folders = [os.path.expanduser(root or FASHION_MNIST_DEBIAN_ROOT), _fashion_cache_dir()]
    for folder in folders:
        pair = _find_pair(folder, split)
        if pair:
            images, labels = read_idx(pair[0]), read_idx(pair[1])
            if images.shape[0] != labels.shape[0]:
                raise ValueError('%s and %s differ in length; download both again.' % tuple(pair))
            return images.astype(np.float32)[:, None] / np.float32(255.0), labels.astype(np.int64)
    raise FileNotFoundError('Fashion-MNIST %s files not found in %s; install them with "apt-get '
                            'install dataset-fashion-mnist" or pass --data-path to the folder of '
                            'the four IDX files.' % (split, ' or '.join(folders)))


def _fashion_mnist(root):
    x_tr, y_tr = _fashion_split(root, 'train')
    x_te, y_te = _fashion_split(root, 'test')
    q = first_per_class(y_te, 100)
    names = list(FASHION_MNIST_CLASSES)
    train = ArrayDataset(x_tr, y_tr, names, name='fashion-mnist', split='train')
    return {'train': train, 'database': train,
            'query': ArrayDataset(x_te[q], y_te[q], names, name='fashion-mnist', split='query')}


def _digits(root):
    from sklearn.datasets import load_digits
    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / np.float32(16.0))[:, None]
    y = bunch.target.astype(np.int64)
    q = first_per_class(y, 30)
    rest = np.setdiff1d(np.arange(len(y)), q)
    names = [str(d) for d in range(10)]
    train = ArrayDataset(x[rest], y[rest], names, name='digits', split='train')
    return {'train': train, 'database': train,
            'query': ArrayDataset(x[q], y[q], names, name='digits', split='query')}


@functools.lru_cache(maxsize=4)
def _splits(protocol, root):
    return {'fashion-mnist': _fashion_mnist, 'digits': _digits}[protocol](root)


def _loader(name):
    def load(root=None, split='train'):
        return _splits(name, root)[split]
    load.__name__ = 'load_%s_hashing' % name.replace('-', '_')
    return load


for _name in ('fashion-mnist', 'digits'):
    register_dataset(_name, _loader(_name), protocol='hashing')


def list_hash_protocols():
    """The datasets of the hashing protocol (``list_datasets('hashing')``)."""
    return list_datasets('hashing')


def get_hash_splits(name, root=None):
    """``{'train', 'database', 'query'}`` datasets of the closed-set hashing protocol ``name``."""
    return {split: get_dataset(name, root, split, protocol='hashing')
            for split in ('train', 'database', 'query')}
