"""Validation classes held out of a training split, for choosing settings without the test classes.

Musgrave et al. ("A Metric Learning Reality Check", ECCV 2020) point out that much of the field
picked its hyper-parameters on the test classes. ``--val-classes`` trains on part of the
training classes and evaluates every epoch on the rest, so the test split is never looked at:

- a fraction, ``--val-classes 0.3``: that share of the training classes, drawn with a fixed
  generator (the same classes for every ``--seed``, so runs with different seeds compare);
- names, ``--val-classes Korean,Early_Aramaic``: the classes named, or whose name starts with a
  name followed by ``/`` (Omniglot's classes are ``Alphabet/characterNN``, so an alphabet name
  holds out the whole alphabet, as the protocol holds out whole alphabets for testing).

Both parts keep the dataset's type (in-memory or image files) and are renumbered ``0..C-1``.
"""
import copy

import numpy as np

from .base import ArrayDataset

__all__ = ['validation_classes', 'subset_classes', 'split_validation']

SPLIT_SEED = 20170515   # fixed: the held-out classes do not depend on --seed


def validation_classes(class_names, spec):
    """Sorted indices of the classes ``spec`` holds out of ``class_names`` (see the module)."""
    names = [str(c) for c in class_names]
    text = str(spec).strip()
    try:
        fraction = float(text)
    except ValueError:
        fraction = None
    if fraction is not None:
        if not 0.0 < fraction < 1.0:
            raise ValueError('--val-classes as a fraction must lie strictly between 0 and 1, got %s.'
                             % text)
        count = int(round(fraction * len(names)))
        count = min(max(count, 2), len(names) - 2)
        if count < 2:
            raise ValueError('--val-classes %s: the training split has only %d classes; at least 4 '
                             'are needed to keep two on each side.' % (text, len(names)))
        rng = np.random.RandomState(SPLIT_SEED)
        return np.sort(rng.choice(len(names), count, replace=False))
    wanted = [w.strip() for w in text.split(',') if w.strip()]
    if not wanted:
        raise ValueError('--val-classes needs a fraction (0.3) or class names, got %r.' % spec)
    chosen, unmatched = set(), []
    for w in wanted:
        hits = [i for i, n in enumerate(names) if n == w or n.startswith(w + '/')]
        if not hits:
            unmatched.append(w)
        chosen.update(hits)
    if unmatched:
        prefixes = sorted({n.split('/')[0] for n in names})
        raise ValueError('--val-classes: no training class is named %s (or starts with it and a '
                         '"/"); the training classes begin with: %s.'
                         % (', '.join(repr(u) for u in unmatched), ', '.join(prefixes[:20])
                            + (' ...' if len(prefixes) > 20 else '')))
    if len(chosen) < 2 or len(names) - len(chosen) < 2:
        raise ValueError('--val-classes %s holds out %d of the %d training classes; each side needs '
                         'at least 2.' % (text, len(chosen), len(names)))
    return np.array(sorted(chosen), dtype=np.int64)


def subset_classes(dataset, classes, split):
    """The items of ``dataset`` whose class is in ``classes``, relabelled ``0..len(classes)-1`` in
    the given order, as a dataset of the same kind named ``split``."""
    classes = np.asarray(classes, dtype=np.int64)
    remap = np.full(dataset.num_classes, -1, dtype=np.int64)
    remap[classes] = np.arange(classes.size)
    keep = np.flatnonzero(remap[dataset.labels] >= 0)
    labels = remap[dataset.labels[keep]]
    names = [dataset.class_names[c] for c in classes]
    if isinstance(dataset, ArrayDataset):
        return ArrayDataset(dataset.images[keep], labels, names, name=dataset.name, split=split)
    if not hasattr(dataset, 'paths'):
        raise TypeError('Cannot hold classes out of a %s.' % type(dataset).__name__)
    out = copy.copy(dataset)
    out.paths = [dataset.paths[i] for i in keep]
    out.labels = labels
    out.class_names = names
    out.split = split
    if getattr(dataset, 'boxes', None) is not None:
        out.boxes = dataset.boxes[keep]
    if getattr(dataset, 'super_labels', None) is not None:
        out.super_labels = dataset.super_labels[keep]
    return out


def split_validation(train_set, spec, eval_source=None):
    """``(train_part, val_part)``: ``train_set`` without the classes ``spec`` holds out, and those
    classes taken from ``eval_source`` (the same training split read with the test-time transform;
    default ``train_set`` itself, right for the in-memory datasets, which do not augment)."""
    held = validation_classes(train_set.class_names, spec)
    if eval_source is None:
        eval_source = train_set
    if list(eval_source.class_names) != list(train_set.class_names):
        raise ValueError('The evaluation copy of the training split has other classes.')
    rest = np.setdiff1d(np.arange(train_set.num_classes), held)
    return subset_classes(train_set, rest, 'train'), subset_classes(eval_source, held, 'val')
