"""Reading a catalogue's metadata: one bulk read (``Index.all_metadata()``, what ``serve``'s
start-up check of ``uploads/`` and ``index --add`` use) against ``get(id)`` per item (what they
did before), on a Milvus Lite or faiss catalogue of ``--items`` synthetic vectors. The per-item
time is measured on ``--sample`` ids and scaled to the whole catalogue.

    python bench/bench_metadata.py                      # Milvus Lite, 20,000 items
    python bench/bench_metadata.py --backend faiss --items 200000
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--backend', choices=('milvus', 'faiss'), default='milvus')
    p.add_argument('--items', type=int, default=20000)
    p.add_argument('--sample', type=int, default=2000, help='ids timed one get() each')
    p.add_argument('--dim', type=int, default=64)
    a = p.parse_args(argv)
    from gluon_dml.index import create_index
    rng = np.random.RandomState(0)
    x = rng.rand(a.items, a.dim).astype(np.float32)
    meta = [{'path': '/catalog/uploads/%08d.png' % i, 'label': int(i % 100)} for i in range(a.items)]
    with tempfile.TemporaryDirectory() as tmp:
        idx = create_index(a.backend, 'float', dim=a.dim, metric='l2', index_type='flat',
                           path=os.path.join(tmp, 'catalog'))
        try:
            idx.add(x, metadata=meta)
            t = time.perf_counter()
            bulk = idx.all_metadata()
            t_bulk = time.perf_counter() - t
            sample = idx.ids()[:min(a.sample, a.items)]
            t = time.perf_counter()
            each = {int(i): idx.get(int(i)) for i in sample}
            t_each = (time.perf_counter() - t) * a.items / len(sample)
        finally:
            idx.close()
    assert len(bulk) == a.items and all(bulk[i] == each[i] for i in each)
    print('%s, %d items: all_metadata() %.2f s; get() per item %.1f s (%d timed, scaled); %.0fx'
          % (a.backend, a.items, t_bulk, t_each, len(sample), t_each / max(t_bulk, 1e-9)))


if __name__ == '__main__':
    main()
