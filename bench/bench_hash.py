"""Hamming search over packed binary codes versus float flat search, with faiss.

1,000,000 random 64-bit codes (packed: 8 bytes each) in ``IndexBinaryFlat`` (exhaustive),
``IndexBinaryIVF`` (1,024 lists trained on 100,000 codes, 16 probed) and ``IndexBinaryHash``
(16-bit keys, buckets within 1 bit flip), against 1,000,000 random 64-d float32 vectors (256
bytes each) in ``IndexFlatL2``; 1,000 queries, k = 10. Prints, for each index, its memory (the
serialised index: the codes or vectors plus the structure), the time to build it, the queries
per second (IndexBinaryHash, which is slow, over the first ``--hash-queries`` = 100 queries) and,
for the approximate indexes, the recall of the exact 10 neighbours (the true Hamming neighbours
of IndexBinaryFlat; ties at the 10th distance count as found).

    python bench/bench_hash.py                          # 1,000,000 codes, faiss threads = OMP_NUM_THREADS
    python bench/bench_hash.py --n 100000 --threads 1
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from gluon_dml.index import build_binary_index, index_bytes  # noqa: E402

import faiss  # noqa: E402


def timed_search(index, q, k, repeat):
    index.search(q[:10], k)                               # warm up
    best = float('inf')
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = index.search(q, k)
        best = min(best, time.perf_counter() - t0)
    return best, out


def recall_vs_exact(dist, ids, exact_dist):
    """Fraction of queries' exact k-NN distances matched: a returned list is as good as the exact
    one at position j when its distance equals the exact j-th distance (ties are interchangeable)."""
    ok = (np.sort(np.where(ids >= 0, dist, 1 << 30), axis=1) == exact_dist)
    return float(ok.mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=1000000, help='database size')
    p.add_argument('--bits', type=int, default=64)
    p.add_argument('--queries', type=int, default=1000)
    p.add_argument('--k', type=int, default=10)
    p.add_argument('--hash-queries', type=int, default=100,
                   help='queries timed on IndexBinaryHash (the first ones; it is slow)')
    p.add_argument('--threads', type=int, default=None, help='faiss threads (default: OMP_NUM_THREADS)')
    p.add_argument('--repeat', type=int, default=3, help='timed repetitions (the best is kept)')
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    if a.threads:
        faiss.omp_set_num_threads(a.threads)
    rng = np.random.RandomState(a.seed)
    nbytes = a.bits // 8
    db = rng.randint(0, 256, size=(a.n, nbytes), dtype=np.uint8)
    q = rng.randint(0, 256, size=(a.queries, nbytes), dtype=np.uint8)
    print('faiss %s, %d threads; database %d x %d bits (packed %.1f MB), %d queries, k=%d'
          % (faiss.__version__, faiss.omp_get_max_threads(), a.n, a.bits, db.nbytes / 2 ** 20,
             a.queries, a.k))
    rows = []
    exact = None
    for kind, kw in [('flat', {}), ('ivf', dict(nlist=1024, nprobe=16)), ('hash', dict(hash_bits=16, nprobe=1))]:
        t0 = time.perf_counter()
        index = build_binary_index(db, kind, **kw)
        build = time.perf_counter() - t0
        nq = a.hash_queries if kind == 'hash' else a.queries     # IndexBinaryHash is slow
        took, (dist, ids) = timed_search(index, q[:nq], a.k, a.repeat)
        if kind == 'flat':
            exact = np.sort(dist, axis=1)
            rec = 1.0
        else:
            rec = recall_vs_exact(dist, ids, exact[:nq])
        label = {'flat': 'IndexBinaryFlat',
                 'ivf': 'IndexBinaryIVF nlist=%d nprobe=16' % getattr(index, 'nlist', 0),
                 'hash': 'IndexBinaryHash b=16 nflip=1'}[kind]
        rows.append((label, index_bytes(index), build, nq / took, rec))
        del index
    x = rng.standard_normal((a.n, a.bits)).astype(np.float32)
    xq = rng.standard_normal((a.queries, a.bits)).astype(np.float32)
    t0 = time.perf_counter()
    index = faiss.IndexFlatL2(a.bits)
    index.add(x)
    build = time.perf_counter() - t0
    took, _ = timed_search(index, xq, a.k, a.repeat)
    rows.append(('IndexFlatL2 float32 %d-d' % a.bits, index_bytes(index), build, a.queries / took, 1.0))
    print('%-40s %12s %9s %12s %8s' % ('index', 'memory MB', 'build s', 'queries/s', 'recall'))
    for label, mem, build, qps, rec in rows:
        print('%-40s %12.1f %9.2f %12.0f %8.3f' % (label, mem / 2 ** 20, build, qps, rec))
    return rows


if __name__ == '__main__':
    main()
