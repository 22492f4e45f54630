"""The in-memory dataset every loader in :mod:`gluon_dml.data` returns.

A deep-metric-learning dataset is one *split* of an open-set protocol: the training split
and the test split hold disjoint classes, and the labels of each split are renumbered
``0 .. num_classes - 1`` so that losses and metrics never see gaps.
"""
import os
import re

import numpy as np
from mxnet.gluon.data import Dataset

__all__ = ['ArrayDataset', 'normalize_name', 'data_home']


def normalize_name(name):
    """Registry key of a dataset or transform name: lower case, without ``-``, ``_``,
    spaces or dots, so that ``'Fashion-MNIST'``, ``'fashion_mnist'`` and ``'fashionmnist'``
    all mean the same thing."""
    if not isinstance(name, str):
        raise TypeError('A dataset name must be a string, got %r.' % (name,))
    return re.sub(r'[\s_\-.]', '', name).lower()


def data_home():
    """MXNet's data folder: ``$MXNET_HOME`` if set, else ``~/.mxnet`` (read at call time,
    so changing the environment variable takes effect immediately)."""
    home = os.environ.get('MXNET_HOME')
    if home:
        return os.path.expanduser(home)
    return os.path.join(os.path.expanduser('~'), '.mxnet')


class ArrayDataset(Dataset):
    """One split of a dataset, held in memory as preprocessed arrays.

    Parameters
    ----------
    images : array-like, shape (N, C, H, W)
        Preprocessed images, converted to float32; values must lie in [0, 1].
    labels : array-like of int, shape (N,)
        Class of each image, converted to int64; must use every value of
        ``0 .. len(class_names) - 1`` (contiguous within this split).
    class_names : list of str
        ``class_names[label]`` is the human-readable name of ``label``.
    name : str
        Dataset name (e.g. ``'omniglot'``).
    split : str
        ``'train'`` or ``'test'``.

    ``dataset[i]`` returns ``(images[i], labels[i])`` as numpy values, so the dataset works
    with :class:`mxnet.gluon.data.DataLoader` and with
    :class:`gluon_dml.data.BalancedBatchSampler` (``batch_sampler=``).
    """

    def __init__(self, images, labels, class_names, name='', split=''):
        images = np.ascontiguousarray(images, dtype=np.float32)
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        class_names = [str(c) for c in class_names]
        if images.ndim != 4:
            raise ValueError('images must have shape (N, C, H, W), got shape %s.'
                             % (images.shape,))
        if images.shape[1] > 4 and images.shape[3] in (1, 3, 4):
            raise ValueError('images must have shape (N, C, H, W); shape %s looks like (N, H, W, '
                             'C), channels last: pass images.transpose(0, 3, 1, 2).'
                             % (images.shape,))
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError('labels must have shape (%d,) to match the images, got %s.'
                             % (images.shape[0], labels.shape))
        if images.size and (images.min() < 0 or images.max() > 1):
            raise ValueError('images must be scaled to [0, 1], got values in [%g, %g].'
                             % (images.min(), images.max()))
        present = np.unique(labels)
        if not np.array_equal(present, np.arange(len(class_names))):
            raise ValueError('labels must be exactly 0..%d (one per class name), got %d '
                             'distinct values between %s and %s.'
                             % (len(class_names) - 1, len(present),
                                present.min() if present.size else None,
                                present.max() if present.size else None))
        self.images = images
        self.labels = labels
        self.class_names = class_names
        self.name = name
        self.split = split

    @property
    def num_classes(self):
        """Number of classes in this split."""
        return len(self.class_names)

    @property
    def image_shape(self):
        """Shape ``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])

    def __getitem__(self, idx):
        return self.images[idx], self.labels[idx]

    def gather(self, indices):
        """The batch of ``indices`` as numpy arrays ``(images (B, C, H, W) float32, labels (B,)
        int64)``: what :class:`mxnet.gluon.data.DataLoader` would stack from ``dataset[i]``, in
        one indexing operation (the training loop and the embedding use it for in-memory
        datasets; a subclass whose items differ from the stored arrays overrides it). Gluon's
        ``Dataset.take(count)`` is another thing and is left as it is."""
        idx = np.asarray(indices, dtype=np.int64)
        return self.images[idx], self.labels[idx]

    def __len__(self):
        return self.labels.shape[0]

    def __repr__(self):
        return ('%s(name=%r, split=%r, images=%d, classes=%d, image_shape=%s)'
                % (type(self).__name__, self.name, self.split, len(self),
                   self.num_classes, self.image_shape))
