#!/usr/bin/env python
"""The Omniglot margin-loss protocol in PyTorch with pytorch-metric-learning (PML), for comparison.

Not part of the toolkit: a yardstick. It trains the issue's small conv net with PML's
``MarginLoss`` + ``DistanceWeightedMiner`` + ``MPerClassSampler`` and evaluates with PML's
``AccuracyCalculator`` (precision@1 = Recall@1, NMI, MAP@R), on the very image arrays our loader
makes, so that the two libraries differ only in their training code.

    # 1. in gluon-dml's environment: the protocol's arrays (28x28, inverted, [0, 1])
    python scripts/pml_reference.py export --out omniglot.npz
    # 2. in an environment with torch and pytorch-metric-learning (and faiss-cpu, scikit-learn)
    python scripts/pml_reference.py train omniglot.npz --seed 1 [--beta-per-class] \
        --save-embeddings pml-s1.npz
    # 3. in gluon-dml's environment: our metrics (NMI: the mean of ten k-means runs) on them;
    #    with --pml, in the torch environment: the library's own evaluation of any embeddings
    python scripts/pml_reference.py score pml-s1.npz

Protocol (README, Protocols): batch 128 = 32 classes x 4, Adam lr 1e-3 for the net, beta 1.2
learned with lr 1e-2 (Adam; ``--beta-optimizer sgd`` for plain SGD), margin 0.2, nu 0, cutoff 0.5,
nonzero-loss cutoff 1.4, 30 epochs of 28 batches, no augmentation; PyTorch's default
initialisation. One thread by default (``--threads N`` for more), seeded: a seed gives the same
run again. bench/compare_pml.py times this step against ``train_margin.py --data omniglot``.
"""
import argparse
import json
import random
import sys
import time


def export(a):
    import numpy as np
    from gluon_dml.data import get_dataset
    out = {}
    for split, key in (('train', 'tr'), ('test', 'te')):
        ds = get_dataset('omniglot', root=a.data_path, split=split)
        out['X' + key] = np.stack([ds[i][0] for i in range(len(ds))]).astype(np.float32)
        out['y' + key] = np.array([ds[i][1] for i in range(len(ds))], dtype=np.int64)
    np.savez(a.out, **out)
    print('wrote %s: train %s, test %s' % (a.out, out['Xtr'].shape, out['Xte'].shape))


def score(a):
    import numpy as np
    for path in a.embeddings:
        with np.load(path) as z:
            x, y = z['embeddings'], z['labels']
        if a.pml:   # the library's own evaluation (torch environment)
            try:
                import torch
                from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
            except ImportError as err:
                sys.exit('error: score --pml needs torch, pytorch-metric-learning and faiss-cpu '
                         '(%s); run it in the torch environment.' % err)
            calc = AccuracyCalculator(include=('precision_at_1', 'NMI',
                                               'mean_average_precision_at_r'))
            r = calc.get_accuracy(torch.tensor(x), torch.tensor(y))
            print('%s: Recall@1 %.4f NMI %.4f (pytorch-metric-learning, one k-means run) MAP@R %.4f'
                  % (path, r['precision_at_1'], r['NMI'], r['mean_average_precision_at_r']))
            continue
        from gluon_dml.metrics import evaluate_embeddings
        m = evaluate_embeddings(x, y)
        print('%s: Recall@1 %.4f NMI %.4f (mean of %d k-means runs) MAP@R %.4f'
              % (path, m['recall@1'], m['nmi'], m['num_nmi_runs'], m['map@r']))


def train(a):
    try:
        import numpy as np
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
        from pytorch_metric_learning import losses, miners, samplers
        from pytorch_metric_learning.utils import common_functions as c_f
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    except ImportError as err:
        sys.exit('error: the train step needs torch, pytorch-metric-learning, faiss-cpu and '
                 'scikit-learn (%s); install them in a separate environment.' % err)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    random.seed(a.seed)
    c_f.NUMPY_RANDOM = np.random.RandomState(a.seed)   # PML's sampler and miner draw from it
    with np.load(a.arrays) as d:
        xtr, ytr, xte, yte = (torch.tensor(d[k]) for k in ('Xtr', 'ytr', 'Xte', 'yte'))

    def block(cin, cout, pool):
        layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        return layers + ([nn.MaxPool2d(2)] if pool else [])
    trunk = nn.Sequential(*block(1, 32, True), *block(32, 64, True), *block(64, 128, False),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, a.embed_dim))

    def embed(x):
        return F.normalize(trunk(x), dim=1)
    num_classes = int(ytr.max()) + 1
    loss_fn = losses.MarginLoss(margin=0.2, nu=0.0, beta=1.2, learn_beta=True,
                                num_classes=num_classes if a.beta_per_class else None)
    miner = miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)
    opt = torch.optim.Adam(trunk.parameters(), lr=1e-3)
    beta_cls = torch.optim.Adam if a.beta_optimizer == 'adam' else torch.optim.SGD
    beta_opt = beta_cls(loss_fn.parameters(), lr=1e-2)
    sampler = samplers.MPerClassSampler(ytr.numpy(), m=4, batch_size=128,
                                        length_before_new_iter=len(ytr))
    calc = AccuracyCalculator(include=('precision_at_1', 'NMI', 'mean_average_precision_at_r'))

    def embed_test():
        trunk.eval()
        with torch.no_grad():
            e = torch.cat([embed(xte[i:i + 256]) for i in range(0, len(xte), 256)])
        trunk.train()
        return e

    def evaluate():
        r = calc.get_accuracy(embed_test(), yte)
        return {'recall@1': r['precision_at_1'], 'nmi': r['NMI'],
                'map@r': r['mean_average_precision_at_r']}
    log = open(a.log, 'w') if a.log else None
    start = time.time()
    for epoch in range(1, a.epochs + 1):
        order = list(iter(sampler))
        starts = range(0, len(order) - 127, 128)
        for b in (starts[:a.batches_per_epoch] if a.batches_per_epoch else starts):
            idx = torch.tensor(order[b:b + 128])
            e = embed(xtr[idx])
            loss = loss_fn(e, ytr[idx], miner(e, ytr[idx]))
            opt.zero_grad()
            beta_opt.zero_grad()
            loss.backward()
            opt.step()
            beta_opt.step()
        row = dict(epoch=epoch, loss=float(loss), **evaluate())
        print(' '.join('%s=%.4f' % kv if isinstance(kv[1], float) else '%s=%s' % kv
                       for kv in row.items()), flush=True)
        if log:
            log.write(json.dumps(row) + '\n')
            log.flush()
    if a.save_embeddings:
        np.savez(a.save_embeddings, embeddings=embed_test().numpy().astype(np.float32),
                 labels=yte.numpy().astype(np.int64))
    print('seed %d, %s beta, %.0f s: Recall@1 %.3f NMI %.3f MAP@R %.3f'
          % (a.seed, 'per-class' if a.beta_per_class else 'global', time.time() - start,
             row['recall@1'], row['nmi'], row['map@r']))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest='step', required=True)
    e = sub.add_parser('export', help='write the protocol arrays (gluon-dml environment)')
    e.add_argument('--data-path', default=None, help='Omniglot archives (default: the copy in the package)')
    e.add_argument('--out', default='omniglot.npz')
    t = sub.add_parser('train', help='train and evaluate with PML (torch environment)')
    t.add_argument('arrays', help='the .npz written by the export step')
    t.add_argument('--seed', type=int, default=1)
    t.add_argument('--beta-per-class', action='store_true')
    t.add_argument('--beta-optimizer', choices=('adam', 'sgd'), default='adam')
    t.add_argument('--epochs', type=int, default=30)
    t.add_argument('--embed-dim', type=int, default=64)
    t.add_argument('--threads', type=int, default=1,
                   help='torch threads (default 1: a seed gives the same run again; '
                        'bench/compare_pml.py uses every core, as gluon-dml does)')
    t.add_argument('--batches-per-epoch', type=int, default=None, metavar='N',
                   help='only the first N batches of each epoch (default: all 28)')
    t.add_argument('--log', help='also write each epoch as a JSON line to this file')
    t.add_argument('--save-embeddings', metavar='FILE.npz',
                   help='write the final test embeddings and labels (eval/evaluate.py format)')
    s = sub.add_parser('score', help="our metrics on saved embeddings (gluon-dml environment)")
    s.add_argument('embeddings', nargs='+', help='.npz files with arrays embeddings and labels '
                   '(train --save-embeddings, eval/evaluate.py --save-embeddings)')
    s.add_argument('--pml', action='store_true',
                   help="score with the library's AccuracyCalculator instead (torch environment)")
    a = p.parse_args(argv)
    {'export': export, 'train': train, 'score': score}[a.step](a)


if __name__ == '__main__':
    main()
