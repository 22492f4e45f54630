"""Decoded-and-augmented images per second of the photo pipeline (no network): JPEG decode, RGB
conversion, random resized crop + flip (+ jitter), ImageNet normalisation, batching, through the
same DataLoader (worker threads) the engine uses.

    python bench/bench_pipeline.py --data-path CUB_DIR              # a CUB_200_2011 folder
    python bench/bench_pipeline.py --data CUB_200_2011 --data-path ~/data --workers 0,2,4
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))



def measure(dataset, batch_size, workers, images):
    from mxnet import gluon
    loader = gluon.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, last_batch='discard',
                                   num_workers=workers, thread_pool=workers > 0)
    it = iter(loader)
    next(it)                                   # warm-up batch (pool start, first decode)
    n, t0 = 0, time.perf_counter()
    for data, _ in it:
        data.wait_to_read()
        n += data.shape[0]
        if n >= images:
            break
    return n / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', default='CUB_200_2011')
    p.add_argument('--data-path', required=True, help='the dataset folder (CUB_200_2011 layout)')
    p.add_argument('--sizes', default='224,96', help='image sizes (crop side) to measure')
    p.add_argument('--workers', default='0,1,2', help='DataLoader worker threads to measure')
    p.add_argument('--batch-size', type=int, default=60)
    p.add_argument('--images', type=int, default=600, help='images timed per setting')
    p.add_argument('--color-jitter', type=float, default=0.4)
    a = p.parse_args(argv)

    import mxnet as mx
    from gluon_dml.data import get_dataset
    print('data: %s (%s), OMP_NUM_THREADS=%s, cpu count %d, mxnet %s'
          % (a.data, a.data_path, os.environ.get('OMP_NUM_THREADS', '-'), os.cpu_count(), mx.__version__))
    print('%-6s %-8s %-8s %10s' % ('size', 'jitter', 'workers', 'images/s'))
    for size in [int(s) for s in a.sizes.split(',')]:
        for jitter in (0.0, a.color_jitter):
            ds = get_dataset(a.data, a.data_path, 'train', image_size=size, color_jitter=jitter)
            for w in [int(s) for s in a.workers.split(',')]:
                rate = measure(ds, a.batch_size, w, a.images)
                print('%-6d %-8g %-8d %10.1f' % (size, jitter, w, rate), flush=True)


if __name__ == '__main__':
    main()
