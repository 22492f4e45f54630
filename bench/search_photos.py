#!/usr/bin/env python
"""End to end on real photographs: index the test half of a photo dataset with a trained run,
search it with held-out photos of the same (unseen) classes, and score the hits against the
labels.

    python bench/search_photos.py runs/margin-cub --data CUB_200_2011 --data-path CUB_DIR \\
        --queries-per-class 3 --work runs/cub-search

The test split's images of each class are sorted by path; the first ``--queries-per-class`` of
each class are the queries, the rest go into the catalogue (``gluon-dml index`` with a list file
``path label``). Prints precision@1, precision@10 (the fraction of the ten hits of the query's
class), Recall@10 (a hit of the class among the ten) and MAP@10, the index build time and the
query time per image (embedding included).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from gluon_dml.catalog import build_catalog  # noqa: E402
from gluon_dml.data import get_dataset  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('run_dir')
    p.add_argument('--data', default='CUB_200_2011')
    p.add_argument('--data-path', required=True)
    p.add_argument('--queries-per-class', type=int, default=3)
    p.add_argument('--k', type=int, default=10)
    p.add_argument('--work', required=True, help='folder for the list file and the catalogue')
    p.add_argument('--backend', default='faiss')
    a = p.parse_args(argv)
    test = get_dataset(a.data, a.data_path, 'test')
    order = sorted(range(len(test.paths)), key=lambda i: test.paths[i])
    seen, queries, database = {}, [], []
    for i in order:
        c = int(test.labels[i])
        (queries if seen.get(c, 0) < a.queries_per_class else database).append(i)
        seen[c] = seen.get(c, 0) + 1
    os.makedirs(a.work, exist_ok=True)
    listing = os.path.join(a.work, 'database.txt')
    with open(listing, 'w') as f:
        for i in database:
            f.write('%s %s\n' % (os.path.abspath(test.paths[i]), test.class_names[test.labels[i]]))
    out = os.path.join(a.work, 'catalog')
    t0 = time.time()
    cat, report = build_catalog(a.run_dir, listing, out, backend=a.backend, batch_size=64,
                                progress=True)
    build = time.time() - t0
    t0 = time.time()
    hits = cat.search_images([test.paths[i] for i in queries], k=a.k)
    per_query = (time.time() - t0) / len(queries)
    truth = [test.class_names[test.labels[i]] for i in queries]
    rel = np.array([[h.metadata.get('label') == t for h in hs] + [False] * (a.k - len(hs))
                    for hs, t in zip(hits, truth)], dtype=float)
    prec_at = np.cumsum(rel, axis=1) / np.arange(1, a.k + 1)
    ap = (prec_at * rel).sum(1) / np.maximum(rel.sum(1), 1)
    print('%s test half: %d classes, %d photos indexed, %d held-out query photos (%d per class)'
          % (a.data, len(seen), report['added'], len(queries), a.queries_per_class))
    print('catalogue: %s %s, built in %.1f s (embedding %.1f s)'
          % (report['backend'], report['index_type'], build, report['embed_seconds']))
    print('precision@1 %.3f  precision@%d %.3f  recall@%d %.3f  MAP@%d %.3f  (chance: %.3f)'
          % (rel[:, 0].mean(), a.k, rel.mean(), a.k, (rel.sum(1) > 0).mean(), a.k, ap.mean(),
             1.0 / len(seen)))
    print('%.1f ms a query photo (decode, embed, search)' % (1000 * per_query))
    cat.close()


if __name__ == '__main__':
    main()
