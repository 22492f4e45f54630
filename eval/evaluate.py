#!/usr/bin/env python
"""Evaluate a run folder on a split: Recall@K, NMI, R-precision, MAP@R.

    python eval/evaluate.py runs/margin-omniglot --split test --data-path ../shared/data/omniglot
    python eval/evaluate.py RUN_DIR --save-embeddings emb.npz
    python eval/evaluate.py runs/hash-fashion-mnist-hashnet-48 --save-codes codes.npz   # hashing run
"""
import argparse
import json
import os
import sys

import _path  # noqa: F401  (source-checkout imports)
import numpy as np

from gluon_dml import cli


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('run_dir', help='a run folder written by train_*.py')
    p.add_argument('--split', default='test',
                   help='train or test (In-Shop and query/gallery folders: test = query vs '
                        'gallery); val = the classes a --val-classes run held out')
    p.add_argument('--data-path', '--data_path', default=None,
                   help='where the dataset lives (default: the path the run used)')
    cli.add_trained_run_flags(p)
    p.add_argument('--ks', default='1,2,4,8', help='the K of Recall@K')
    p.add_argument('--nmi-runs', type=int, default=None,
                   help="k-means runs averaged for NMI (default: the run's setting, else 10; 1 "
                        "when points x classes exceeds 1e7)")
    p.add_argument('--save-embeddings', '--save_embeddings', default=None, metavar='FILE.npz',
                   help='also write the embeddings (float32 N x D) and labels (int64 N)')
    p.add_argument('--out', default=None, help='metrics JSON (default RUN_DIR/eval-SPLIT.json)')
    p.add_argument('--save-codes', '--save_codes', default=None, metavar='FILE.npz',
                   help='train_hash.py runs: write the packed binary codes of queries and database')
    a = p.parse_args(argv)
    cli.check_nmi_runs(a.nmi_runs)
    from gluon_dml.engine import load_run_args
    run_args = load_run_args(a.run_dir)
    if run_args.get('method') == 'hash':
        from gluon_dml.engine.hashing import evaluate_hash_main
        return evaluate_hash_main(a)
    if a.save_codes:
        raise cli.UserError('--save-codes is for train_hash.py runs; %s is not one (use '
                            '--save-embeddings).' % a.run_dir)
    if run_args.get('method') == 'vse':     # train_vse.py runs: i2t / t2i recall
        from gluon_dml.engine.vse import evaluate_vse_run
        return evaluate_vse_run(a)

    from gluon_dml.data import get_dataset, has_query_split
    from gluon_dml.engine import embed_dataset, get_contexts, load_trained_net
    from gluon_dml.metrics import evaluate_embeddings

    if a.split == 'val' and not run_args.get('val_classes'):
        raise cli.UserError('%s was not trained with --val-classes, so it has no val split; use '
                            '--split test or train.' % a.run_dir)
    ctx = get_contexts(a.gpus)
    args, net, params = load_trained_net(a.run_dir, ctx, a.checkpoint)
    data_path = a.data_path or args.get('data_path')
    options = cli.dataset_options(args, augment=False)
    if a.split == 'val':
        from gluon_dml.data import split_validation
        train = get_dataset(args['data'], data_path, 'train', **options)
        dataset = split_validation(train, args['val_classes'])[1]
    else:
        dataset = get_dataset(args['data'], data_path, a.split, **options)
    emb, labels = embed_dataset(net, dataset, ctx, a.batch_size, progress=True)
    q_emb = q_labels = None
    if a.split in ('test', 'gallery') and has_query_split(args['data'], data_path):
        # In-Shop style: the query images are searched among the gallery images
        query = get_dataset(args['data'], data_path, 'query', **options)
        q_emb, q_labels = embed_dataset(net, query, ctx, a.batch_size, progress=True)
    ks = cli.parse_int_list(a.ks, '--ks', '1,2,4,8')
    nmi_runs = a.nmi_runs if a.nmi_runs is not None else args.get('nmi_runs')
    metrics = evaluate_embeddings(emb, labels, ks=ks, query_embeddings=q_emb, query_labels=q_labels,
                                  nmi_runs=nmi_runs)
    metrics.update(run_dir=a.run_dir, split=a.split, params=params, data=args['data'],
                   num_images=int(len(labels)), num_classes=int(len(np.unique(labels))))
    out = a.out or os.path.join(a.run_dir, 'eval-%s.json' % a.split)
    with open(out, 'w') as f:
        json.dump(metrics, f, indent=1)
    cli.print_metrics(metrics)
    print('written: %s' % out)
    if a.save_embeddings:
        arrays = dict(embeddings=emb.astype(np.float32), labels=labels.astype(np.int64))
        if q_emb is not None:
            arrays.update(query_embeddings=q_emb.astype(np.float32),
                          query_labels=q_labels.astype(np.int64))
        np.savez(a.save_embeddings, **arrays)
        print('written: %s' % a.save_embeddings)
    return metrics


if __name__ == '__main__':
    cli.main_guard(main, sys.argv[1:])
