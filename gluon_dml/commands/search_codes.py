"""Hamming search with faiss binary indexes over a hashing run's codes.

    gluon-dml search-codes runs/hash-fashion-mnist-hashnet-48                     # flat, queries split
    gluon-dml search-codes RUN_DIR --db database --queries query --index ivf --nprobe 8 --k 100
    gluon-dml search-codes RUN_DIR --db codes.npz --queries codes.npz --index hash  # codes of a file
    gluon-dml search-codes RUN_DIR --queries my_images/ --k 5 --out hits.npz       # your own images

The database is a split of the run's protocol (``database``, ``query`` or ``train``), encoded with
the run's network, packed, and added to a faiss ``IndexBinaryFlat``, ``IndexBinaryIVF`` or
``IndexBinaryHash``. The queries are a split, a ``.npz`` with ``query_codes`` (packed, as
written by ``eval/evaluate.py --save-codes``), or images (a folder or a list file). Prints the
index's size, queries per second and, for labelled queries, precision@k and the mAP of the
returned lists; ``--out`` writes the neighbours' ids and Hamming distances. A codes file must
hold this run's codes: one that records another run, or other parameters of this one, is refused.
"""
import argparse
import os
import pickle
import sys
import time
import zipfile

import numpy as np

from .. import cli
from ..data.hashing import get_hash_splits
from ..data.sources import list_images
from ..engine import get_contexts
from ..fileio import atomic_savez, params_digest
from ..index import build_binary_index, index_bytes, load_codes, search
from ..methods import open_run
from ..methods.base import run_name
from ..methods.hashing import encode
from ..metrics.hashing import relevance, to_pm1
from ..models.hashing import binarize


def _encode_split(net, splits, name, ctx, batch_size):
    if name not in splits:
        raise cli.UserError('Unknown split %r; this protocol has: %s.' % (name, ', '.join(sorted(splits))))
    out, labels = encode(net, splits[name], ctx, batch_size, progress=True, desc='encode ' + name)
    return binarize(out), labels


def _encode_images(trained, source, batch_size):
    """The codes of the images of ``source`` (a file, a folder, a list file) and their paths;
    unreadable images are left out and listed, as ``gluon-dml index`` does."""
    paths, _ = list_images(source)
    codes, kept, bad = trained.encoders().embed_paths(paths, batch_size, skip_bad=True)
    for path, why in bad:
        print('skipped: %s (%s)' % (path, why))
    if not kept:
        raise cli.UserError('None of the %d image(s) of %s could be read.' % (len(paths), source))
    return codes, kept


def _load_codes(path, run_bits):
    """The codes of a ``.npz`` written by ``evaluate --save-codes`` / ``save_codes``, checked
    against the run's code length; one sentence naming the file otherwise."""
    if not os.path.isfile(path):
        raise FileNotFoundError('%s does not exist (a codes .npz written by gluon-dml evaluate '
                                '--save-codes).' % path)
    with open(path, 'rb') as f:
        magic = f.read(4)
    if magic != b'PK\x03\x04':                   # every .npz is a zip archive
        raise cli.UserError('%s is not a codes .npz file (not a zip archive); write one with '
                            'gluon-dml evaluate --save-codes.' % path)
    try:
        c = load_codes(path)
    except ValueError as err:
        if 'holds no' in str(err):
            raise
        raise cli.UserError('%s is not a codes .npz file (%s); write one with gluon-dml evaluate '
                            '--save-codes.' % (path, err)) from None
    except (OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        raise cli.UserError('%s is not a codes .npz file (%s); write one with gluon-dml evaluate '
                            '--save-codes.' % (path, err)) from None
    if c['bits'] != run_bits:
        raise cli.UserError('%s holds %d-bit codes but the run makes %d-bit codes; use the codes '
                            'of this run.' % (path, c['bits'], run_bits))
    return c


def _check_codes_record(path, c, trained):
    """Codes of another run (or of this run's other parameters: trained further, another
    --checkpoint) have the length of this run's codes and searched in silence, in another
    Hamming space than the run's own queries. The record ``save_codes`` writes (the run folder's
    name and the SHA-256 of the parameter file) is checked; a file without one (written before
    it) is searched with one warning line."""
    here = run_name(trained.run_dir)
    recorded, digest = c.get('run'), c.get('params_sha256')
    if recorded is None and digest is None:
        print('warning: %s records no run (written before codes files did); it is searched as '
              'codes of %s without a check.' % (path, here), file=sys.stderr)
        return
    if recorded is not None and recorded != here:
        raise cli.UserError('%s holds the codes of the run %s, not of %s; write this run\'s codes '
                            'with gluon-dml evaluate %s --save-codes FILE.npz.'
                            % (path, recorded, here, trained.run_dir))
    if digest is not None and digest != params_digest(trained.params):
        raise cli.UserError('%s holds the codes of the run %s with other parameters (SHA-256 '
                            '%s...) than its %s, %s (trained further since, or another '
                            '--checkpoint); write them again with gluon-dml evaluate %s '
                            '--save-codes FILE.npz.'
                            % (path, recorded or here, digest[:12], trained.params_label,
                               trained.params, trained.run_dir))


# the index flags and the indexes they set: --nlist 64 with --index flat was ignored in silence
_FLAG_INDEXES = (('--nlist', 'nlist', ('ivf',)), ('--nprobe', 'nprobe', ('ivf', 'hash')),
                 ('--hash-bits', 'hash_bits', ('hash',)))
NPROBE_DEFAULT = 8          # IVF: lists visited; hash: bit flips explored


def _refuse_flags_for_other_indexes(a):
    """An index flag given with an index it does not set is refused (one sentence naming the
    flags and the index each is for), as ``gluon-dml index --add`` refuses settings that do not
    apply; then ``--nprobe``'s default is applied."""
    wants = [(flag, getattr(a, dest), kinds) for flag, dest, kinds in _FLAG_INDEXES
             if getattr(a, dest) is not None and a.index not in kinds]
    if wants:
        raise cli.UserError('%s do%s not apply with --index %s (%s); leave %s out with --index %s.'
                            % (', '.join('%s %d' % (f, v) for f, v, _ in wants),
                               'es' if len(wants) == 1 else '', a.index,
                               ', '.join('%s is for --index %s' % (f, ' and '.join(k))
                                         for f, _, k in wants),
                               'it' if len(wants) == 1 else 'them', a.index))
    if a.nprobe is None and a.index != 'flat':
        a.nprobe = NPROBE_DEFAULT


def _check_index_flags(a, n_db, bits):
    """The index flags against the database: one sentence each instead of a faiss error
    (``n_db`` None: before the database is encoded, the checks that need no count)."""
    if a.nlist is not None and a.nlist < 1:
        raise cli.UserError('--nlist must be a positive number of lists, got %d.' % a.nlist)
    if n_db is not None and a.k > n_db:
        # the result arrays are (queries, k): --k 1000000000 was "unexpected MemoryError:
        # Unable to allocate 1.09 TiB"; past the database, the columns are only -1 anyway
        raise cli.UserError('--k %d is more neighbours than the %d database codes hold; use at '
                            'most %d.' % (a.k, n_db, n_db))
    if a.index == 'ivf':
        if a.nlist is not None and n_db is not None and a.nlist > n_db:
            raise cli.UserError('--nlist %d is more lists than the %d database codes: the IVF index '
                                'trains one centroid per list on them (use at most %d; about '
                                '4 sqrt(N) is usual).' % (a.nlist, n_db, n_db))
        if a.nprobe < 1:
            raise cli.UserError('--nprobe must be at least 1 for --index ivf (lists visited), got %d.'
                                % a.nprobe)
    if a.index == 'hash':
        if a.nprobe < 0:
            raise cli.UserError('--nprobe must be 0 or more for --index hash (bit flips explored), '
                                'got %d.' % a.nprobe)
        if a.hash_bits is not None and not 1 <= a.hash_bits <= min(bits, 64):
            raise cli.UserError('--hash-bits must lie in 1..%d (the bits of the bucket key), got %d.'
                                % (min(bits, 64), a.hash_bits))


def _refuse_output_over_input(a):
    """``--out`` (neighbour ids and distances) must not replace what the command reads: the
    ``--db`` / ``--queries`` codes file, the run's own ``codes.npz`` or its record (``--out
    RUN/codes.npz`` replaced the run's codes with the hits, and the next search said the file
    "holds no query_codes")."""
    if not a.out:
        return
    cli.refuse_run_file(a.run_dir, a.out)
    real = os.path.realpath(a.out)
    for flag, value in (('--db', a.db), ('--queries', a.queries)):
        if value.endswith('.npz') and os.path.realpath(value) == real:
            raise cli.UserError('--out %s is the %s file this search reads; choose another name.'
                                % (a.out, flag))
    if real == os.path.realpath(os.path.join(a.run_dir, 'codes.npz')):
        raise cli.UserError('--out %s is the run\'s own codes file (written by train-hash); '
                            'choose another name.' % a.out)


@cli.interrupted_means('Interrupted (Ctrl-C) before the search was done; nothing was written.')
def main(argv=None):
    p = argparse.ArgumentParser(prog='gluon-dml search-codes', description=__doc__.splitlines()[0])
    cli.add_threads_flag(p)
    p.add_argument('run_dir', help='a run folder written by gluon-dml train-hash')
    p.add_argument('--db', default='database',
                   help='the database split (database, query, train) or a codes .npz (db_codes)')
    p.add_argument('--queries', default='query',
                   help='a split name, a codes .npz (query_codes) or images (folder / list file)')
    p.add_argument('--index', choices=['flat', 'ivf', 'hash'], default='flat')
    p.add_argument('--k', type=int, default=100, help='neighbours per query')
    p.add_argument('--nlist', type=int, default=None,
                   help='--index ivf: lists (default ~ 4 sqrt(N))')
    p.add_argument('--nprobe', type=int, default=None,
                   help='--index ivf: lists visited; --index hash: bit flips explored around each '
                        'query (default %d)' % NPROBE_DEFAULT)
    p.add_argument('--hash-bits', '--hash_bits', type=int, default=None,
                   help='--index hash: bits of the bucket key (default min(bits, 16))')
    cli.add_trained_run_flags(p)
    p.add_argument('--data-path', '--data_path', default=None)
    p.add_argument('--out', default=None, metavar='FILE.npz', help='write ids and distances')
    a = p.parse_args(argv)
    _refuse_flags_for_other_indexes(a)        # before the run is opened and anything encoded
    if a.k < 1:
        raise cli.UserError('--k must be a positive integer, got %d.' % a.k)
    a.out = cli.output_path(a.out, '.npz')    # settled before the encoding and the search
    _refuse_output_over_input(a)

    ctx = get_contexts(a.gpus)
    trained = open_run(a.run_dir, ctx, a.checkpoint, method='hash', fuse=not a.no_fusion)
    args, net = trained.args, trained.net
    splits = get_hash_splits(args['data'], a.data_path or args.get('data_path'))
    # what can be refused is refused before the database is encoded (minutes on a large split)
    _check_index_flags(a, None, args['bits'])
    for flag, value in (('--db', a.db), ('--queries', a.queries)):
        if value.endswith('.npz'):
            if not os.path.isfile(value):
                raise cli.UserError('%s does not exist (%s: a codes .npz written by gluon-dml '
                                    'evaluate --save-codes).' % (value, flag))
        elif value not in splits and (flag == '--db' or not os.path.exists(value)):
            raise cli.UserError('%s %s is not a split of %s (%s), a codes .npz%s.'
                                % (flag, value, args['data'], ', '.join(splits),
                                   '' if flag == '--db' else ', an image, a folder or a list file'))
    # the codes files are read and checked (length, run) before anything is encoded too
    files = {}
    for value in (a.db, a.queries):
        if value.endswith('.npz') and value not in files:
            files[value] = _load_codes(value, args['bits'])
            _check_codes_record(value, files[value], trained)
    if a.db.endswith('.npz'):
        c = files[a.db]
        db_codes, db_labels = to_pm1(c['db_codes'], c['bits']), c.get('db_labels')
    else:
        db_codes, db_labels = _encode_split(net, splits, a.db, ctx, a.batch_size)
    _check_index_flags(a, len(db_codes), args['bits'])
    q_paths = None
    if a.queries.endswith('.npz'):
        c = files[a.queries]
        q_codes, q_labels = to_pm1(c['query_codes'], c['bits']), c.get('query_labels')
    elif a.queries in splits:
        q_codes, q_labels = _encode_split(net, splits, a.queries, ctx, a.batch_size)
    else:
        q_codes, q_paths = _encode_images(trained, a.queries, a.batch_size)
        q_labels = None

    t0 = time.time()
    index = build_binary_index(db_codes, a.index, nlist=a.nlist, nprobe=a.nprobe, hash_bits=a.hash_bits)
    build = time.time() - t0
    t0 = time.time()
    dist, ids = search(index, q_codes, a.k)
    took = time.time() - t0
    print('%s index over %d %d-bit codes: %.1f MB (float32 vectors: %.1f MB), built in %.2f s'
          % (a.index, len(db_codes), args['bits'], index_bytes(index) / 2 ** 20,
             len(db_codes) * args['bits'] * 4 / 2 ** 20, build))
    print('%d queries, k=%d: %.4f s, %.0f queries/s' % (len(q_codes), a.k, took, len(q_codes) / max(took, 1e-9)))
    if q_labels is not None and db_labels is not None:
        found = ids >= 0
        hits = np.zeros(ids.shape, bool)
        for i in range(len(ids)):
            hits[i, found[i]] = relevance(q_labels[i:i + 1], db_labels[ids[i][found[i]]])[0]
        cum = np.cumsum(hits, axis=1)
        ap = (hits * cum / np.arange(1, a.k + 1)).sum(1) / np.maximum(cum[:, -1], 1)
        print('precision@%d %.4f  mAP@%d %.4f  queries with fewer than k results: %d'
              % (a.k, hits.mean(), a.k, ap.mean(), int((~found).any(axis=1).sum())))
    if q_paths is not None:           # image queries: their nearest codes (all of them: --out)
        shown = min(a.k, 5)
        for path, row, drow in zip(q_paths, ids, dist):
            print('%s: %s' % (path, ', '.join(
                '%d (%d bits%s)' % (i, d, '' if db_labels is None else ', label %s' % db_labels[i])
                for i, d in zip(row[:shown], drow[:shown]) if i >= 0)))
    if a.out:
        atomic_savez(a.out, ids=ids, distances=dist)
        print('written: %s' % a.out)
    return dist, ids

