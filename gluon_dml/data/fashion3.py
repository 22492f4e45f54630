#!/usr/bin/env python
"""Build "fashion3": an image-caption set of three Fashion-MNIST items in a row, written in the
Karpathy split layout (``dataset_fashion3.json`` + ``images/*.png``) that Flickr30K and COCO
users have, so ``train_vse.py`` reads it with the very loader it uses for real photos.

    gluon-dml make-fashion3 OUT_DIR [--train 10000] [--seed 0]

Each picture is 28 x 84 pixels: three 28 x 28 Fashion-MNIST items side by side (left, middle,
right). Each picture has five captions, drawn from a small grammar with varied wording (class
synonyms: "t-shirt" / "top", "trousers" / "pants", "sneaker" / "trainer", ...) and word order
("a sandal, then a bag, then a shirt", "a shirt on the right, a sandal on the left and a bag in
the middle", "from right to left: ..."); every caption names all three items with their places,
so it describes its picture's ordered class triple exactly.

=====  =====================================================================================
split  pictures
=====  =====================================================================================
train  ``--train`` pictures of random ordered triples, items drawn from the first 50,000
       items of the Fashion-MNIST TRAIN file
val    1,000 pictures, one per ordered triple of the 10 classes, items drawn from the last
       10,000 items of the TRAIN file (never used in a train picture): chooses the best epoch
test   1,000 pictures, one per ordered triple (10 x 10 x 10), items drawn from the Fashion-MNIST
       TEST (t10k) file; every caption describes exactly one test picture, so the standard
       five-captions-per-image protocol applies unchanged
=====  =====================================================================================

The set is a function of ``--seed`` and ``--train`` (the same arguments give the same files).
``build(out_dir, ...)`` does the same from Python (the tests and the default run of
``train_vse.py --data fashion3`` build it into a cache folder).
"""
import argparse
import itertools
import json
import os
import re
import sys

import numpy as np

from ..fileio import file_in_the_way  # noqa: E402
from .datasets import FASHION_MNIST_DEBIAN_ROOT as FASHION_ROOT  # noqa: E402
JSON_NAME = 'dataset_fashion3.json'

# Fashion-MNIST classes and the words a caption may use for each.
NOUNS = (
    ('a t-shirt', 'a top'),                 # 0 T-shirt/top
    ('trousers', 'pants'),                  # 1 Trouser
    ('a pullover', 'a sweater'),            # 2 Pullover
    ('a dress',),                           # 3 Dress
    ('a coat',),                            # 4 Coat
    ('a sandal',),                          # 5 Sandal
    ('a shirt',),                           # 6 Shirt
    ('a sneaker', 'a trainer'),             # 7 Sneaker
    ('a bag', 'a handbag'),                 # 8 Bag
    ('an ankle boot', 'a boot'),            # 9 Ankle boot
)
_PLACES = ('on the left', 'in the middle', 'on the right')
_PLACES_ALT = ('at the left', 'in the centre', 'at the right')


def _clauses(words, rng, places):
    parts = ['%s %s' % (w, p) for w, p in zip(words, places)]
    order = rng.permutation(3)
    parts = [parts[i] for i in order]
    return '%s, %s and %s' % tuple(parts)


# Each template maps (left, middle, right) phrases to one caption naming all three places.
TEMPLATES = (
    lambda w, rng: '%s, then %s, then %s' % tuple(w),
    lambda w, rng: _clauses(w, rng, _PLACES),
    lambda w, rng: _clauses(w, rng, _PLACES_ALT),
    lambda w, rng: 'from left to right: %s, %s, %s' % tuple(w),
    lambda w, rng: 'from right to left: %s, %s, %s' % (w[2], w[1], w[0]),
    lambda w, rng: ('%s between %s on the left and %s on the right' % (w[1], w[0], w[2])
                    if rng.rand() < 0.5 else
                    '%s between %s on the right and %s on the left' % (w[1], w[2], w[0])),
    lambda w, rng: '%s first, %s second and %s last' % tuple(w),
    lambda w, rng: 'left: %s, middle: %s, right: %s' % tuple(w),
)


def tokenize(text):
    """Lower-case words (hyphenated words kept whole), punctuation dropped."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())


def captions_for(triple, rng, n=5):
    """``n`` captions of the ordered class triple (left, middle, right), each from a different
    template, with synonyms drawn at random."""
    out = []
    for t in rng.choice(len(TEMPLATES), size=n, replace=False):
        words = [NOUNS[c][rng.randint(len(NOUNS[c]))] for c in triple]
        text = TEMPLATES[t](words, rng)
        out.append(text[0].upper() + text[1:] + '.')
    return out


def _load(root, prefix):
    def find(base):
        for name in (base, base + '.gz'):
            if os.path.isfile(os.path.join(root, name)):
                return os.path.join(root, name)
        raise FileNotFoundError('Fashion-MNIST file %s(.gz) not found in %s; install it with '
                                '"apt-get install dataset-fashion-mnist" or pass --fashion-root.'
                                % (base, root))
    from .datasets import read_idx
    return (read_idx(find('%s-images-idx3-ubyte' % prefix)),
            read_idx(find('%s-labels-idx1-ubyte' % prefix)))


ALL_TRIPLES = np.array(list(itertools.product(range(10), repeat=3)), dtype=np.int64)


def _pictures(images, labels, pool, triples, rng):
    """One 28 x 84 picture per triple, each item drawn from ``pool`` (indices) of its class,
    cycling through a shuffled pool so items repeat as little as possible."""
    by_class = [rng.permutation(pool[labels[pool] == c]) for c in range(10)]
    cursor = [0] * 10
    pics = np.empty((len(triples), 28, 84), np.uint8)
    for i, triple in enumerate(triples):
        for slot, c in enumerate(triple):
            idx = by_class[c][cursor[c] % len(by_class[c])]
            cursor[c] += 1
            pics[i, :, 28 * slot:28 * (slot + 1)] = images[idx]
    return pics


def build(out_dir, num_train=10000, seed=0, fashion_root=FASHION_ROOT, progress=False):
    """Write ``out_dir/dataset_fashion3.json`` and ``out_dir/images/``; returns the JSON path.
    Does nothing when the folder already holds the set built with the same arguments."""
    from PIL import Image
    path = os.path.join(out_dir, JSON_NAME)
    stamp = {'num_train': int(num_train), 'seed': int(seed), 'version': 1}
    if os.path.exists(path):
        with open(path) as f:
            if json.load(f).get('fashion3') == stamp:
                return path
    rng = np.random.RandomState(seed)
    tr_images, tr_labels = _load(fashion_root, 'train')
    te_images, te_labels = _load(fashion_root, 't10k')
    split_at = len(tr_labels) - 10000
    order = np.arange(len(tr_labels))
    plan = [('train', tr_images, tr_labels, order[:split_at],
             ALL_TRIPLES[rng.randint(len(ALL_TRIPLES), size=num_train)]),
            ('val', tr_images, tr_labels, order[split_at:], ALL_TRIPLES),
            ('test', te_images, te_labels, np.arange(len(te_labels)), ALL_TRIPLES)]
    os.makedirs(os.path.join(out_dir, 'images'), exist_ok=True)
    records, sentid = [], 0
    for split, images, labels, pool, triples in plan:
        pics = _pictures(images, labels, pool, triples, rng)
        for i, (pic, triple) in enumerate(zip(pics, triples)):
            fname = '%s_%05d.png' % (split, i)
            Image.fromarray(pic, mode='L').save(os.path.join(out_dir, 'images', fname))
            sents = []
            for raw in captions_for(triple, rng):
                sents.append({'raw': raw, 'tokens': tokenize(raw), 'imgid': len(records),
                              'sentid': sentid})
                sentid += 1
            records.append({'filepath': 'images', 'filename': fname, 'split': split,
                            'imgid': len(records), 'sentids': [s['sentid'] for s in sents],
                            'sentences': sents, 'classes': [int(c) for c in triple]})
        if progress:
            print('%s: %d pictures' % (split, len(pics)), file=sys.stderr)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump({'dataset': 'fashion3', 'fashion3': stamp, 'images': records}, f)
    os.replace(tmp, path)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(
        prog='gluon-dml make-fashion3',
        description='Build "fashion3": an image-caption set of three Fashion-MNIST items in a row '
                    '(28 x 84 pictures, five captions each), in the Karpathy split layout '
                    '(dataset_fashion3.json + images/) that train-vse reads.')
    p.add_argument('out_dir', help='the folder to write (made if missing)')
    p.add_argument('--train', type=int, default=10000, metavar='N',
                   help='training pictures (default 10000; val and test: 10000 each)')
    p.add_argument('--seed', type=int, default=0, help='seed of the drawn pictures and captions '
                                                       '(default 0)')
    p.add_argument('--fashion-root', default=FASHION_ROOT,
                   help='folder with the four Fashion-MNIST IDX files (default %(default)s)')
    a = p.parse_args(argv)
    if a.train < 1:
        p.error('--train must be a positive number of training pictures, got %d' % a.train)
    # before Fashion-MNIST is read (the OS's "Not a directory (OUT_DIR/images)" named no argument)
    blocker = file_in_the_way(a.out_dir)
    if blocker is not None and blocker == os.path.abspath(a.out_dir):
        raise ValueError('OUT_DIR %s is a file, not a folder; give a folder to write the fashion3 '
                         'set into (made if missing).' % a.out_dir)
    if blocker is not None:
        raise ValueError('OUT_DIR %s cannot be made: %s is a file, not a folder; give a folder to '
                         'write the fashion3 set into.' % (a.out_dir, blocker))
    path = build(a.out_dir, a.train, a.seed, a.fashion_root, progress=True)
    print('written: %s' % path)


if __name__ == '__main__':
    main()
