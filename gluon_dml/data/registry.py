"""The one dataset registry: every protocol's datasets, by name.

A dataset is a loader ``fn(root=None, split=..., **options)`` registered under a name and a
*protocol*, which says what its splits mean:

===========  ===============================  ================================================
protocol     splits                           used by
===========  ===============================  ================================================
open-set     train, test (query, gallery)     train_margin.py, train_npair.py: the test
                                              classes are never seen in training
hashing      train, database, query           train_hash.py: closed-set, queries of the
                                              training classes searched in the database
captions     train, val, test                 train_vse.py: images with five captions each
===========  ===============================  ================================================

>>> get_dataset('omniglot', split='test')                      # open-set (the default)
>>> get_dataset('fashion-mnist', split='query', protocol='hashing')
>>> get_dataset('f30k', root, 'val', protocol='captions', transform=...)

Adding a dataset is one loader function and one ``register_dataset(name, fn, ...)`` line
(``docs/extending.md``). Names match ignoring case, ``-``, ``_`` and spaces.
"""
from .base import normalize_name

__all__ = ['register_dataset', 'get_dataset', 'list_datasets', 'dataset_splits', 'PROTOCOLS']

PROTOCOLS = {'open-set': ('train', 'test'), 'hashing': ('train', 'database', 'query'),
             'captions': ('train', 'val', 'test')}

_DATASETS = {}      # (protocol, key) -> (loader, splits, display name)


def _protocol(protocol):
    if protocol not in PROTOCOLS:
        raise ValueError('Unknown protocol %r; valid ones: %s.' % (protocol, ', '.join(PROTOCOLS)))
    return protocol


def register_dataset(name, fn, overwrite=False, protocol='open-set', splits=None):
    """Make ``get_dataset(name, root, split, protocol=protocol)`` call ``fn(root=root,
    split=split, **options)``; ``splits`` (default: the protocol's) are the splits it serves.
    Registering a name twice in a protocol raises ``ValueError`` unless ``overwrite=True``."""
    if not callable(fn):
        raise TypeError('register_dataset(%r, fn): fn must be callable, got %r.' % (name, fn))
    key = (_protocol(protocol), normalize_name(name))
    if key in _DATASETS and not overwrite:
        raise ValueError('A dataset named %r is already registered (as %r); pass '
                         'overwrite=True to replace it.' % (name, _DATASETS[key][2]))
    _DATASETS[key] = (fn, tuple(splits or PROTOCOLS[protocol]), name)


def list_datasets(protocol='open-set'):
    """Names of the datasets registered for ``protocol``."""
    return sorted(display for (p, _), (_, _, display) in _DATASETS.items() if p == protocol)


def dataset_splits(name, protocol='open-set'):
    """The splits dataset ``name`` serves."""
    return _entry(name, protocol)[1]


def _entry(name, protocol):
    key = (_protocol(protocol), normalize_name(name))
    if key not in _DATASETS:
        others = [p for p in PROTOCOLS if (p, key[1]) in _DATASETS]
        raise ValueError('Unknown dataset %r%s; valid names: %s.%s'
                         % (name, '' if protocol == 'open-set' else ' for the %s protocol' % protocol,
                            ', '.join(list_datasets(protocol)),
                            ' (%r is a dataset of the %s protocol.)' % (name, ' and '.join(others))
                            if others else ''))
    return _DATASETS[key]


def get_dataset(name, root=None, split='train', protocol='open-set', **options):
    """The ``split`` of dataset ``name`` of ``protocol``; ``root=None`` uses the dataset's default
    location. The in-memory datasets (digits, fashion-mnist, omniglot) return an
    :class:`~gluon_dml.data.ArrayDataset`; the photo datasets an
    :class:`~gluon_dml.data.ImageFileDataset` and take the image options
    (:data:`gluon_dml.data.research.IMAGE_OPTIONS`); the caption datasets a
    :class:`~gluon_dml.data.captions.CaptionSet`."""
    fn, splits, _ = _entry(name, protocol)
    if split not in splits:
        raise ValueError('Unknown split %r of %s; valid splits: %s.' % (split, name, ', '.join(splits)))
    return fn(root=root, split=split, **options)
