"""Data: open-set datasets, class-balanced batch sampling and test-time transforms.

>>> from gluon_dml.data import get_dataset, BalancedBatchSampler
>>> train = get_dataset('omniglot', split='train')          # the copy in the package
>>> sampler = BalancedBatchSampler(train.labels, batch_size=128, batch_k=4)
>>> loader = mxnet.gluon.data.DataLoader(train, batch_sampler=sampler)
"""
from .base import ArrayDataset, normalize_name
from .registry import PROTOCOLS, dataset_splits, get_dataset, list_datasets, register_dataset
from .datasets import (is_image_dataset, dataset_sampling, has_query_split, load_digits,
                       load_fashion_mnist, load_omniglot, read_idx, SPLITS, FASHION_MNIST_CLASSES,
                       OMNIGLOT_TRAIN_ALPHABETS, OMNIGLOT_TEST_ALPHABETS)
from .images import BadImageError, ImageFileDataset
from .research import (IMAGE_OPTIONS, load_cars196, load_cub, load_folder, load_inshop,
                       load_lfw, load_list, load_sop)
from .sampler import (BalancedBatchSampler, ShardedBatchSampler, ShuffledBatchSampler,
                      SuperClassBatchSampler)
from .validation import split_validation, subset_classes, validation_classes
from .transforms import (ImageTransform, RGBTransform, get_transform, list_transforms,
                         register_transform, load_image)
from . import captions, hashing  # noqa: F401,E402  (they register the caption and hashing datasets)

__all__ = ['ArrayDataset', 'normalize_name', 'get_dataset', 'list_datasets', 'dataset_splits',
           'PROTOCOLS', 'register_dataset', 'is_image_dataset', 'dataset_sampling',
           'has_query_split', 'BadImageError', 'ImageFileDataset', 'RGBTransform', 'IMAGE_OPTIONS',
           'load_cub', 'load_cars196', 'load_sop', 'load_inshop', 'load_lfw', 'load_folder',
           'load_list', 'SuperClassBatchSampler', 'ShuffledBatchSampler', 'load_digits',
           'load_fashion_mnist', 'load_omniglot', 'read_idx', 'SPLITS', 'FASHION_MNIST_CLASSES',
           'OMNIGLOT_TRAIN_ALPHABETS', 'OMNIGLOT_TEST_ALPHABETS', 'BalancedBatchSampler',
           'ImageTransform', 'get_transform', 'list_transforms', 'register_transform',
           'ShardedBatchSampler',
           'load_image', 'split_validation', 'subset_classes', 'validation_classes']
