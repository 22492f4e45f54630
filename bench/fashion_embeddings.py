#!/usr/bin/env python
"""Real embeddings for the index benchmark: the 60,000 Fashion-MNIST training images (database)
and the 10,000 test images (queries), embedded by a trained run.

    python bench/fashion_embeddings.py runs/margin-fashion-mnist --out fmnist.npz
    python bench/bench_index.py --embeddings fmnist.npz --work runs/bench-fmnist

Writes ``embeddings`` (60000, D), ``labels``, ``query_embeddings`` (10000, D), ``query_labels``
(the ten classes; the run trained on five of them).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from gluon_dml.data import ArrayDataset, FASHION_MNIST_CLASSES, read_idx  # noqa: E402
from gluon_dml.data.datasets import FASHION_MNIST_DEBIAN_ROOT, _find_pair  # noqa: E402
from gluon_dml.methods import open_run  # noqa: E402


def split(root, which):
    images, labels = (read_idx(p) for p in _find_pair(root, which))
    return ArrayDataset(images.astype(np.float32)[:, None] / np.float32(255.0), labels.astype(np.int64),
                        list(FASHION_MNIST_CLASSES), name='fashion-mnist', split=which)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('run_dir')
    p.add_argument('--out', required=True)
    p.add_argument('--data-path', default=FASHION_MNIST_DEBIAN_ROOT)
    a = p.parse_args(argv)
    trained = open_run(a.run_dir)
    t0 = time.time()
    db, db_labels = trained.embed(split(a.data_path, 'train'), 512, progress=True)
    q, q_labels = trained.embed(split(a.data_path, 'test'), 512, progress=True)
    np.savez(a.out, embeddings=db, labels=db_labels, query_embeddings=q, query_labels=q_labels)
    print('%d + %d images embedded by %s (%s) in %.1f s: %s'
          % (len(db), len(q), a.run_dir, trained.params_label, time.time() - t0, a.out))


if __name__ == '__main__':
    main()
