#!/usr/bin/env python
"""One timed k-means for bench/bench_metrics.py --kmeans, in a process of its own.

    python bench/kmeans_worker.py ours DATA.npz [--niter 20 --seed 0]      # gluon_dml's kmeans_assign
    python bench/kmeans_worker.py faiss-gluon DATA.npz                     # the same run by faiss, as
                                                                           # gluon_dml called it before
    /other/env/bin/python bench/kmeans_worker.py faiss DATA.npz            # plain faiss.Kmeans, no
                                                                           # gluon_dml (any faiss version)

DATA.npz holds ``x`` (N, D) float32 and ``y`` (N,) labels; k = number of distinct labels. Prints
one JSON line: seconds (wall clock of the clustering alone), NMI against ``y``, the versions.
'plain faiss' is the way pytorch-metric-learning clusters (``faiss.Clustering``, every point,
``IndexFlatL2``) with gluon_dml's seed convention, so that all three start from the same centroids.
"""
import argparse
import json
import os
import sys
import time


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('impl', choices=('ours', 'faiss-gluon', 'faiss'))
    p.add_argument('data')
    p.add_argument('--niter', type=int, default=20)
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    if a.impl != 'faiss':
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from gluon_dml.metrics import clustering
    import numpy as np
    import faiss
    from sklearn.metrics import normalized_mutual_info_score
    z = np.load(a.data)
    x, y = np.ascontiguousarray(z['x'], np.float32), z['y']
    k = int(np.unique(y).size)
    t0 = time.perf_counter()
    if a.impl == 'ours':
        assign = clustering.kmeans_assign(x, k, seed=a.seed, niter=a.niter)
    elif a.impl == 'faiss-gluon':
        assign = clustering._faiss_kmeans_assign(x, k, seed=a.seed, niter=a.niter)
    else:
        clus = faiss.Clustering(x.shape[1], k)
        clus.niter = a.niter
        clus.seed = a.seed
        clus.max_points_per_centroid = 10000000
        index = faiss.IndexFlatL2(x.shape[1])
        clus.train(x, index)
        assign = index.search(x, 1)[1].ravel()
    seconds = time.perf_counter() - t0
    print(json.dumps(dict(seconds=seconds, nmi=float(normalized_mutual_info_score(y, assign)),
                          faiss=faiss.__version__, numpy=np.__version__,
                          threads=faiss.omp_get_max_threads(), load=os.getloadavg()[0])))


if __name__ == '__main__':
    main()
