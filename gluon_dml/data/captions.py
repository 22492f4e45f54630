"""Image-caption data for cross-modal retrieval (VSE++, Faghri et al., BMVC 2018).

Two layouts are read, the two that Flickr30K / COCO users have:

* **Karpathy splits**: ``DIR/dataset_flickr30k.json`` (``dataset_coco.json``,
  ``dataset_flickr8k.json``, ``dataset_fashion3.json``) with ``images[]`` entries holding
  ``filename``, ``filepath`` (COCO's ``train2014`` / ``val2014``), ``split`` (``train``,
  ``restval``, ``val``, ``test``; ``restval`` counts as training data, as in VSE++) and
  ``sentences[]`` with ``raw`` and ``tokens``; the pictures are found under ``DIR``,
  ``DIR/images`` or ``DIR/flickr30k-images`` (with or without the ``filepath`` folder).
* **Precomputed features**: ``DIR/{split}_ims.npy`` (one row of CNN features per image, or
  one per caption, as some released files repeat each row five times) with
  ``DIR/{split}_caps.txt`` (five captions per image, one per line, in image order).

Every split keeps exactly five captions per image (the first five; COCO has a few images with
six or seven), so caption ``j`` belongs to image ``j // 5``: the layout the evaluation protocol
of :mod:`gluon_dml.metrics.crossmodal` assumes.

The :class:`Vocabulary` is built from the training captions only: words seen at least
``min_count`` (4) times, plus ``<pad>`` (0), ``<start>``, ``<end>`` and ``<unk>``. A caption is
encoded as ``<start> w1 .. wn <end>``; batches of captions are padded with ``<pad>`` and carry
their lengths (:func:`pad_captions`), so the text encoder reads each caption's state at its last
real token and padding never changes an encoding.
"""
import collections
import glob
import json
import os
import re

import numpy as np
from mxnet.gluon.data import Dataset

from ..fileio import read_json

__all__ = ['Vocabulary', 'tokenize', 'pad_captions', 'CaptionSet', 'CaptionPairs',
           'read_karpathy', 'read_precomputed', 'load_caption_set', 'KARPATHY_FILES',
           'CAPTIONS_PER_IMAGE', 'ImageNetTransform', 'GreyTransform', 'is_precomputed']

CAPTIONS_PER_IMAGE = 5
KARPATHY_FILES = {'f30k': 'dataset_flickr30k.json', 'flickr30k': 'dataset_flickr30k.json',
                  'coco': 'dataset_coco.json', 'f8k': 'dataset_flickr8k.json',
                  'flickr8k': 'dataset_flickr8k.json', 'fashion3': 'dataset_fashion3.json'}
_SPLIT_ALIASES = {'train': ('train', 'restval'), 'val': ('val',), 'dev': ('val',),
                  'test': ('test',), 'testall': ('test',)}


def tokenize(text):
    """Lower-case word tokens of a raw caption (hyphenated words and apostrophes kept whole,
    other punctuation dropped)."""
    return re.findall(r"[a-z0-9]+(?:['\-][a-z0-9]+)*", str(text).lower())


class Vocabulary(object):
    """Word <-> id map; ids 0-3 are ``<pad>``, ``<start>``, ``<end>``, ``<unk>``."""

    PAD, START, END, UNK = '<pad>', '<start>', '<end>', '<unk>'
    SPECIALS = (PAD, START, END, UNK)

    def __init__(self, words=()):
        self.itos = list(self.SPECIALS) + [w for w in words if w not in self.SPECIALS]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, token_lists, min_count=4):
        """The words of ``token_lists`` seen at least ``min_count`` times, most frequent first
        (ties alphabetical), after the four special tokens."""
        counts = collections.Counter(w for tokens in token_lists for w in tokens)
        words = sorted((w for w, c in counts.items() if c >= min_count),
                       key=lambda w: (-counts[w], w))
        return cls(words)

    def __len__(self):
        return len(self.itos)

    def __contains__(self, word):
        return word in self.stoi

    def encode(self, tokens):
        """``[<start>] + ids (unknown words -> <unk>) + [<end>]``."""
        unk = self.stoi[self.UNK]
        return ([self.stoi[self.START]] + [self.stoi.get(w, unk) for w in tokens]
                + [self.stoi[self.END]])

    def decode(self, ids):
        return [self.itos[i] for i in ids if self.itos[i] not in self.SPECIALS]

    def save(self, path):
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            json.dump({'itos': self.itos}, f)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path):
        itos = read_json(path, '%s is missing: the run folder of a VSE run keeps its vocabulary '
                               'there; the run folder is damaged.' % path)
        itos = itos.get('itos') if isinstance(itos, dict) else None
        if not isinstance(itos, list) or tuple(itos[:4]) != cls.SPECIALS:
            raise ValueError('%s is not a vocabulary written by gluon-dml (it does not start with '
                             '%s).' % (path, ', '.join(cls.SPECIALS)))
        return cls(itos[4:])


def pad_captions(encoded, max_len=None):
    """Encoded captions (lists of ids) -> ``tokens`` int32 (B, T) padded with 0 and ``lengths``
    float32 (B,), T the longest caption (or ``max_len``: longer captions are cut, keeping
    their ``<end>``)."""
    if len(encoded) == 0:
        raise ValueError('pad_captions got no captions.')
    encoded = [list(e) for e in encoded]
    if max_len is not None:
        encoded = [e if len(e) <= max_len else e[:max_len - 1] + e[-1:] for e in encoded]
    lengths = np.array([len(e) for e in encoded], dtype=np.float32)
    if lengths.min() < 1:
        raise ValueError('pad_captions got an empty caption; encode captions with '
                         'Vocabulary.encode, which adds <start> and <end>.')
    tokens = np.zeros((len(encoded), int(lengths.max())), dtype=np.int32)
    for i, e in enumerate(encoded):
        tokens[i, :len(e)] = e
    return tokens, lengths


# image preprocessing: GreyTransform (fashion3) and ImageNetTransform live with every other
# transform in gluon_dml.data.transforms
from .transforms import GreyTransform, ImageNetTransform  # noqa: E402,F401


# ---------------------------------------------------------------------------------------------
# one split: images (files, arrays or features) and five captions per image
# ---------------------------------------------------------------------------------------------

class CaptionSet(object):
    """One split: ``num_images`` images and ``5 * num_images`` captions (caption ``j`` belongs to
    image ``j // 5``).

    ``images`` is an array (N, C, H, W) of pictures already in memory, an array (N, D) of
    precomputed features, or a list of N file paths read by ``transform``. ``captions`` is a list
    of 5N token lists; ``raw`` the 5N raw captions; ``image_ids`` N identifiers (file names,
    or the row numbers of a feature file)."""

    def __init__(self, images, captions, raw=None, image_ids=None, transform=None, name='',
                 split=''):
        n = len(images)
        if len(captions) != CAPTIONS_PER_IMAGE * n:
            raise ValueError('%s %s: %d images need %d captions (five per image, in image order), '
                             'got %d.' % (name, split, n, CAPTIONS_PER_IMAGE * n, len(captions)))
        if n == 0:
            raise ValueError('%s has no images in its %s split.' % (name or 'The dataset', split))
        self.images, self.captions = images, [list(c) for c in captions]
        self.raw = list(raw) if raw is not None else [' '.join(c) for c in captions]
        self.image_ids = list(image_ids) if image_ids is not None else list(range(n))
        self.transform, self.name, self.split = transform, name, split
        self.precomputed = isinstance(images, np.ndarray) and images.ndim == 2

    @property
    def num_images(self):
        return len(self.images)

    def __len__(self):
        return len(self.captions)

    def image(self, i, train=False, rng=None):
        if isinstance(self.images, np.ndarray):
            return self.images[i]
        return self.transform(self.images[i], train=train, rng=rng)

    def load_images(self):
        """Read every file into one array (small sets such as fashion3)."""
        if not isinstance(self.images, np.ndarray):
            self.images = np.stack([self.image(i) for i in range(self.num_images)])
        return self

    def encode(self, vocab):
        return [vocab.encode(c) for c in self.captions]


class CaptionPairs(Dataset):
    """The (image, caption) training pairs of a :class:`CaptionSet`, one per caption:
    item ``j`` is ``(image of j // 5, (tokens_j, length_j))``, the tokens padded to the split's
    longest caption (the training step cuts each batch to its own longest caption)."""

    def __init__(self, cset, vocab, max_len=None, train=True, seed=0):
        self.cset, self.train, self.seed = cset, train, seed
        self.tokens, self.lengths = pad_captions(cset.encode(vocab), max_len)
        self._rng = np.random.RandomState(seed)

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, j):
        image = self.cset.image(j // CAPTIONS_PER_IMAGE, train=self.train, rng=self._rng)
        return image, (self.tokens[j], self.lengths[j])


# ---------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------

def is_precomputed(root, data=''):
    return str(data).replace('-', '_').endswith('_precomp') or bool(
        root and glob.glob(os.path.join(root, '*_ims.npy')))


def _karpathy_json(root, data):
    name = KARPATHY_FILES.get(str(data).lower())
    if root is None or not os.path.isdir(root):
        raise FileNotFoundError('The caption data folder %s does not exist; pass --data-path DIR, '
                                'the folder holding the Karpathy split file (%s) and the images.'
                                % (root, name or 'e.g. dataset_flickr30k.json'))
    if name and os.path.isfile(os.path.join(root, name)):
        return os.path.join(root, name)
    found = sorted(glob.glob(os.path.join(root, 'dataset_*.json')))
    if len(found) == 1:
        return found[0]
    raise FileNotFoundError(
        '%s holds no Karpathy split file %s; expected %s (dataset_flickr30k.json, '
        'dataset_coco.json ...) next to the images, or {split}_ims.npy + {split}_caps.txt for '
        'precomputed features.' % (root, name or 'dataset_*.json',
                                   'one of ' + ', '.join(os.path.basename(f) for f in found)
                                   if found else 'dataset_NAME.json'))


def _image_path(root, record):
    fp, fn = record.get('filepath', ''), record['filename']
    for cand in (os.path.join(root, fp, fn), os.path.join(root, 'images', fp, fn),
                 os.path.join(root, 'images', fn), os.path.join(root, fn),
                 os.path.join(root, 'flickr30k-images', fn)):
        if os.path.isfile(cand):
            return cand
    return None


def read_karpathy(root, data, split):
    """Records of ``split`` in the Karpathy JSON of ``root``: (image path, five token lists,
    five raw captions, image id)."""
    path = _karpathy_json(root, data)
    try:
        with open(path) as f:
            doc = json.load(f)
        images = doc['images']
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError('%s is not a Karpathy split file (%s); it must hold {"images": [{"filename", '
                         '"split", "sentences": [{"raw", "tokens"}]}]}.' % (path, err)) from None
    wanted = _SPLIT_ALIASES.get(split)
    if wanted is None:
        raise ValueError('Unknown split %r; use train, val or test.' % split)
    paths, tokens, raw, ids = [], [], [], []
    for rec in images:
        if rec.get('split') not in wanted:
            continue
        sents = rec.get('sentences', [])
        if len(sents) < CAPTIONS_PER_IMAGE:
            raise ValueError('%s: image %s has %d captions; the protocol needs five per image.'
                             % (path, rec.get('filename'), len(sents)))
        p = _image_path(root, rec)
        if p is None:
            raise FileNotFoundError(
                'Image %s of %s not found under %s (looked in %s/, %s/images/ and their %s '
                'subfolder); put the images next to the JSON file.'
                % (rec.get('filename'), os.path.basename(path), root, root, root,
                   rec.get('filepath') or 'filepath'))
        paths.append(p)
        ids.append(rec.get('filename'))
        for s in sents[:CAPTIONS_PER_IMAGE]:
            raw.append(s.get('raw', ' '.join(s.get('tokens', []))))
            tokens.append([t.lower() for t in s['tokens']] if s.get('tokens') else tokenize(raw[-1]))
    if not paths:
        raise ValueError('%s has no image in the %s split (its splits: %s).'
                         % (path, split, ', '.join(sorted({r.get('split', '?') for r in images}))))
    return paths, tokens, raw, ids


def read_precomputed(root, split):
    """``{split}_ims.npy`` features (N, D) and ``{split}_caps.txt`` (5N lines) of ``root``."""
    ims_path = os.path.join(root, '%s_ims.npy' % split)
    caps_path = os.path.join(root, '%s_caps.txt' % split)
    for p in (ims_path, caps_path):
        if not os.path.isfile(p):
            raise FileNotFoundError('%s not found; the precomputed layout is {split}_ims.npy (image '
                                    'features) with {split}_caps.txt (five captions per image).' % p)
    feats = np.load(ims_path).astype(np.float32)
    with open(caps_path, encoding='utf-8') as f:
        raw = [line.strip() for line in f if line.strip()]
    if feats.ndim != 2:
        raise ValueError('%s must hold a 2-D array (one row of features per image), got shape %s.'
                         % (ims_path, feats.shape))
    if feats.shape[0] == len(raw) and len(raw) % CAPTIONS_PER_IMAGE == 0:
        feats = feats[::CAPTIONS_PER_IMAGE]          # one row per caption: keep one per image
    if len(raw) != CAPTIONS_PER_IMAGE * feats.shape[0]:
        raise ValueError('%s has %d captions for %d images in %s; five captions per image are '
                         'needed.' % (caps_path, len(raw), feats.shape[0], ims_path))
    return feats, [tokenize(r) for r in raw], raw


def load_caption_set(data, root, split, transform=None, in_memory=False):
    """The :class:`CaptionSet` of ``split`` (train, val, test) of dataset ``data`` in ``root``."""
    if is_precomputed(root, data):
        if root is None or not os.path.isdir(root):
            raise FileNotFoundError('The feature folder %s does not exist; pass --data-path DIR '
                                    'holding {split}_ims.npy and {split}_caps.txt.' % root)
        feats, tokens, raw = read_precomputed(root, 'dev' if split == 'val' and not os.path.exists(
            os.path.join(root, 'val_ims.npy')) else split)
        return CaptionSet(feats, tokens, raw, None, name=data, split=split)
    paths, tokens, raw, ids = read_karpathy(root, data, split)
    transform = transform or ImageNetTransform()
    cset = CaptionSet(paths, tokens, raw, ids, transform=transform, name=data, split=split)
    return cset.load_images() if in_memory else cset


def _caption_loader(name):
    def load(root=None, split='train', transform=None, in_memory=False):
        return load_caption_set(name, root, split, transform, in_memory)
    load.__name__ = 'load_%s' % name
    return load


def _register_caption_datasets():
    from .registry import register_dataset
    for name in sorted(KARPATHY_FILES):
        register_dataset(name, _caption_loader(name), protocol='captions',
                         splits=('train', 'val', 'dev', 'test', 'restval'))
        if name != 'fashion3':
            register_dataset(name + '_precomp', _caption_loader(name + '_precomp'),
                             protocol='captions', splits=('train', 'val', 'dev', 'test'))


_register_caption_datasets()
