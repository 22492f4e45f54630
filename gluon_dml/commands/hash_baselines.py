"""Unsupervised hashing baselines on raw pixels: LSH and ITQ, on a train_hash.py protocol.

    gluon-dml hash-baselines --data fashion-mnist --bits 16,32,48,64

Fitted on the database images (the flattened pixels), the queries encoded with the same
projection; prints mAP over the whole database, mAP@1000 and precision within Hamming radius 2
for each method and code length, and writes them to ``--out`` (JSON; rewritten as each row is
done, so an interrupted command keeps the rows before it).
"""
import argparse
import os
import time

import numpy as np

from .. import cli, config
from ..data.hashing import get_hash_splits
from ..fileio import atomic_write_json
from ..index.baselines import get_baseline
from ..metrics.hashing import hashing_metrics


def main(argv=None):
    p = argparse.ArgumentParser(prog='gluon-dml hash-baselines', description=__doc__.splitlines()[0])
    p.add_argument('--data', default='fashion-mnist')
    p.add_argument('--data-path', '--data_path', default=None)
    p.add_argument('--bits', default='16,32,48,64')
    p.add_argument('--methods', default='lsh,itq')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=None, metavar='FILE.json')
    cli.add_threads_flag(p, 'numpy and faiss')
    a = p.parse_args(argv)
    # everything that can refuse the command, before the data and the fitting
    all_bits = config.parse_int_list(a.bits, '--bits', '16,32,48,64')
    if not all_bits or min(all_bits) < 1:
        raise cli.UserError('--bits takes code lengths of 1 bit or more such as "16,32,48,64", '
                            'got %r.' % a.bits)
    methods = [m.strip() for m in a.methods.split(',') if m.strip()]
    if not methods:
        raise cli.UserError('--methods names no baseline; choose lsh, itq or "lsh,itq".')
    # a length or a method named twice ran twice and wrote the same row twice
    for flag, items in (('--bits', all_bits), ('--methods', [m.lower() for m in methods])):
        twice = sorted({str(x) for x in items if items.count(x) > 1})
        if twice:
            raise cli.UserError('%s names %s twice; each is run once.' % (flag, ', '.join(twice)))
    for method in methods:
        get_baseline(method, all_bits[0])           # an unknown name fails now
    if not 0 <= a.seed < 2 ** 32:                   # numpy's "Seed must be between 0 and 2**32 - 1"
        raise cli.UserError('--seed must lie in 0 .. 2^32 - 1, got %d.' % a.seed)
    a.out = cli.output_path(a.out)
    if a.out and os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(a.out)), 'args.json')):
        # --out RUN/args.json replaced a run's record with the table (the command takes no run,
        # but a folder with an args.json is one)
        cli.refuse_run_file(os.path.dirname(os.path.abspath(a.out)), a.out)

    splits = get_hash_splits(a.data, a.data_path)
    db, q = splits['database'], splits['query']
    # ITQ rotates a PCA of the pixels: no more bits than pixels. Said before any baseline is
    # fitted (it was said when ITQ's turn came, after LSH's work, and nothing was written)
    dim = int(np.prod(db.images.shape[1:]))
    if any(m.lower() == 'itq' for m in methods) and max(all_bits) > dim:
        raise cli.UserError('--bits %d: ITQ makes at most %d bits on %s (one per pixel of its '
                            'images); use shorter codes, or --methods lsh.'
                            % (max(all_bits), dim, a.data))
    results, saved = [], 0
    # a shell script's background job starts with SIGINT ignored: `kill -INT` did nothing and
    # the fitting ran on (index and the training commands answer it as Ctrl-C too)
    try:
        with cli.stop_signals():
            for bits in all_bits:
                for method in methods:
                    t0 = time.time()
                    model = get_baseline(method, bits, seed=a.seed).fit(db.images)
                    m = hashing_metrics(model.encode(q.images), model.encode(db.images), q.labels,
                                        db.labels)
                    m.update(method=method, bits=bits, data=a.data, seed=a.seed,
                             time=time.time() - t0)
                    results.append(m)
                    # each row is kept as it is done, before it is printed: Ctrl-C (or a kill)
                    # during a long code length lost every row before it, since the file was
                    # written only at the end
                    if a.out:
                        atomic_write_json(a.out, results, indent=1, sort_keys=False)
                        saved = len(results)
                    print('%-4s %3d bits  mAP %.4f  mAP@1000 %.4f  precision@r2 %.4f  (%.1f s)'
                          % (method, bits, m['map'], m['map@1000'], m['precision@r2'], m['time']),
                          flush=True)
    except KeyboardInterrupt:
        raise KeyboardInterrupt('Interrupted (Ctrl-C); %s' % (
            'the %d result(s) done so far are in %s.' % (saved, a.out) if saved
            else 'nothing was written.')) from None
    if a.out:
        print('written: %s' % a.out)
    return results

