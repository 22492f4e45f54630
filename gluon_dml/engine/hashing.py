"""The composition of ``train_hash.py``: HashNet-style deep hashing (Cao et al., ICCV 2017).

Data of a closed-set hashing protocol (train, database, queries), plain shuffled batches, a
backbone with the hash head ``tanh(scale * Dense(bits))``, a pairwise hashing loss (``hashnet``,
``dsh``, ``dch``), the continuation schedule of ``scale`` per iteration, and every epoch the
database and the queries encoded to binary codes and the hashing metrics (mAP over the whole
database, mAP@top-K, precision within Hamming radius 2, bit balance) through the one Engine.
"""
import json
import os

import mxnet as mx
import numpy as np

from .. import cli
from .context import get_contexts, seed_everything
from .logger import Logger
from .loop import Engine, embed_dataset

__all__ = ['run_hash', 'HashEngine', 'HashEvaluator', 'encode', 'load_hash_net', 'HASH_LOSSES',
           'hash_defaults']

HASH_LOSSES = ('hashnet', 'dsh', 'dch')

# train_hash.py's own settings per dataset (the closed-set protocols of gluon_dml.data.hashing).
_HASH_RECIPES = {
    'fashion-mnist': dict(model='smallconv', batch_size=128, batch_k=1, epochs=10, optimizer='adam',
                          lr=1e-3, wd=0.0, steps='', loss_lr=1e-2),
    'digits': dict(model='smallconv', batch_size=100, batch_k=1, epochs=10, optimizer='adam',
                   lr=1e-3, wd=0.0, steps='', loss_lr=1e-2),
}


def hash_defaults(data):
    """``parse_args`` method defaults of train_hash.py for ``data`` (batch_k 1: plain batches)."""
    return dict(_HASH_RECIPES.get(data, dict(batch_k=1, batch_size=64)))


def encode(net, dataset, ctx, batch_size=256, num_workers=0, progress=False, desc='encode'):
    """The head's continuous outputs (N, bits) float32 and the labels of ``dataset``; the codes
    are their sign (:func:`gluon_dml.models.hashing.binarize`)."""
    return embed_dataset(net, dataset, ctx, batch_size, num_workers, progress=progress, desc=desc)


class HashEvaluator:
    """``evaluator(net, ctx, epoch) -> {'map', 'map@K', 'precision@r2', 'bit_balance', ...}``:
    the queries' codes searched in the database's codes by Hamming ranking."""

    def __init__(self, database, query, topk=(1000,), batch_size=256, logger=None, num_workers=0,
                 progress=False, interval=1, last_epoch=None):
        self.database, self.query, self.topk = database, query, tuple(topk)
        self.batch_size, self.logger = batch_size, logger
        self.num_workers, self.progress = num_workers, progress
        self.interval, self.last_epoch = max(1, int(interval)), last_epoch

    def __call__(self, net, ctx, epoch=None):
        if epoch and epoch % self.interval and epoch != self.last_epoch:
            return {}                 # --eval-interval: not this epoch (the last one always)
        from ..metrics.hashing import hashing_metrics
        from ..models.hashing import binarize
        db_out, db_labels = encode(net, self.database, ctx, self.batch_size, self.num_workers,
                                   self.progress, 'encode database')
        q_out, q_labels = encode(net, self.query, ctx, self.batch_size, self.num_workers,
                                 self.progress, 'encode queries')
        metrics = hashing_metrics(binarize(q_out), binarize(db_out), q_labels, db_labels,
                                  topk=self.topk)
        # how far the outputs are from binary: mean |h| (1 = saturated tanh)
        metrics['mean_abs_output'] = float(np.abs(db_out).mean())
        if self.logger is not None:
            self.logger.log_embeddings(epoch, q_out, q_labels, getattr(self.query, 'images', None))
        return metrics


class HashEngine(Engine):
    """The Engine with HashNet's continuation: before each step the head's scale is set to
    ``schedule(iteration)``; the iteration count is checkpointed (a resumed run continues the
    schedule where it stopped). Class-index labels become one-hot for the hashing losses."""

    def __init__(self, *args, schedule=None, num_classes=None, **kwargs):
        self.schedule, self.num_classes, self.iteration = schedule, num_classes, 0
        kwargs.setdefault('extra_state', lambda: {'hash_iteration': self.iteration})
        super().__init__(*args, **kwargs)

    def loss_inputs(self, embeddings, labels):
        if labels.ndim == 1:
            labels = mx.nd.one_hot(labels, self.num_classes)
        return (embeddings, labels)

    def _step(self, data, label):
        if self.schedule is not None:
            self.net.set_scale(self.schedule(self.iteration))
        value = super()._step(data, label)
        self.iteration += 1
        return value

    def _load_checkpoint(self, path):
        meta = super()._load_checkpoint(path)
        self.iteration = int(meta.get('hash_iteration', 0))
        return meta

    def _loss_param_summary(self):
        out = super()._loss_param_summary()
        out['scale'] = self.net.get_scale()
        return out


def run_hash(args):
    """Train (or resume) the hashing run described by ``args``; returns (engine, last metrics)."""
    from ..data.hashing import ShuffledBatchSampler, get_hash_splits
    from ..models.hashing import ScaleSchedule, get_hash_model

    if args.loss.lower() not in HASH_LOSSES:
        raise cli.UserError('train_hash.py trains a hashing loss: --loss %s; got %r.'
                            % (' / '.join(HASH_LOSSES), args.loss))
    args.embed_dim = args.bits
    splits = get_hash_splits(args.data, args.data_path)
    run_dir = cli.prepare_run(args)
    logger = Logger(run_dir, sinks=cli.viz_sinks(args))
    ctx = get_contexts(args.gpus)
    seed_everything(args.seed)
    train, database, query = splits['train'], splits['database'], splits['query']
    logger.info('%s hashing protocol: train %d, database %d, queries %d, %d classes; %s, %d bits; '
                'run folder %s' % (args.data, len(train), len(database), len(query),
                                   train.num_classes, args.loss, args.bits, run_dir))
    sampler = ShuffledBatchSampler(len(train), args.batch_size, args.batches_per_epoch, seed=args.seed)
    loss = cli.build_loss(args, train.num_classes, args.bits)
    schedule = ScaleSchedule(args.init_scale, args.scale_gamma, args.scale_power, args.scale_step)
    args.normalize_embeddings = False
    cli.write_args(args)
    net = get_hash_model(args.model, args.bits, pretrained=args.use_pretrained, ctx=ctx)
    loss.initialize(ctx=ctx[0])
    evaluator = HashEvaluator(database, query, topk=args.topk_list, batch_size=args.eval_batch_size,
                              logger=logger, num_workers=args.num_workers,
                              interval=args.eval_interval, last_epoch=args.epochs)
    engine = HashEngine(net, loss, train, sampler, evaluator, run_dir, ctx, args.epochs,
                        optimizer=args.optimizer, lr=args.lr, wd=args.wd, momentum=args.momentum,
                        steps=args.steps_list, factor=args.factor, loss_lr=args.loss_lr,
                        seed=args.seed, logger=logger, best_metric='map',
                        hybridize=not args.disable_hybridize, num_workers=args.num_workers,
                        log_interval=args.log_interval, progress=not args.no_progress,
                        export_prefix=args.save_model_prefix, schedule=schedule,
                        num_classes=train.num_classes)
    metrics = engine.fit(resume=args.resume)
    logger.close()            # the dashboard's plotter thread finishes before more MXNet work
    path = save_run_codes(engine.net, run_dir, database, query, ctx, args.eval_batch_size,
                          progress=not args.no_progress)
    logger.info('packed codes of the best network: %s' % path)
    logger.info('done: best mAP = %.4f; run folder %s' % (engine.best, run_dir))
    return engine, metrics


def save_run_codes(net, run_dir, database, query, ctx, batch_size=256, progress=False):
    """Encode the database and the queries with the (best) network and write them packed
    (``np.packbits``) with their ids: ``RUN_DIR/codes.npz``."""
    from ..index import save_codes
    from ..models.hashing import binarize
    db_out, db_labels = encode(net, database, ctx, batch_size, progress=progress, desc='encode database')
    q_out, q_labels = encode(net, query, ctx, batch_size, progress=progress, desc='encode queries')
    path = os.path.join(run_dir, 'codes.npz')
    save_codes(path, binarize(q_out), q_labels, binarize(db_out), db_labels)
    return path


def load_hash_net(run_dir, ctx, which='best'):
    """The HashNet of a ``train_hash.py`` run folder with its ``best`` (or ``last``) parameters.
    Returns (args dict, net, path of the parameters)."""
    from .run import load_trained_net
    from ..models.hashing import get_hash_model
    return load_trained_net(run_dir, ctx, which, method='hash', build=lambda args, ctx: (
        get_hash_model(args['model'], args['bits'], pretrained=False, ctx=ctx)))


def evaluate_hash_run(run_dir, ctx, which='best', data_path=None, batch_size=256, topk=(1000,),
                      save_codes_to=None, out=None, progress=True):
    """Encode the database and the queries of a ``train_hash.py`` run with its network, compute
    mAP (whole database), mAP@top-K, precision within Hamming radius 2 and the precision-recall
    points, write them to ``out`` (default ``RUN_DIR/eval-hash.json``), and with
    ``save_codes_to`` the packed codes (``query_codes``, ``query_labels``, ``db_codes``,
    ``db_labels``, ids). Returns the metrics."""
    from ..data.hashing import get_hash_splits
    from ..index import save_codes
    from ..metrics.hashing import hashing_metrics, pr_curve
    from ..models.hashing import binarize
    args, net, params = load_hash_net(run_dir, ctx, which)
    splits = get_hash_splits(args['data'], data_path or args.get('data_path'))
    db_out, db_labels = encode(net, splits['database'], ctx, batch_size, progress=progress,
                               desc='encode database')
    q_out, q_labels = encode(net, splits['query'], ctx, batch_size, progress=progress,
                             desc='encode queries')
    q_codes, db_codes = binarize(q_out), binarize(db_out)
    metrics = hashing_metrics(q_codes, db_codes, q_labels, db_labels, topk=topk)
    radii, prec, rec = pr_curve(q_codes, db_codes, q_labels, db_labels)
    metrics.update(run_dir=run_dir, params=params, data=args['data'], loss=args.get('loss'),
                   bits=int(args['bits']), num_queries=int(len(q_labels)),
                   num_database=int(len(db_labels)),
                   pr_curve={'radius': radii.tolist(), 'precision': prec.tolist(),
                             'recall': rec.tolist()})
    out = out or os.path.join(run_dir, 'eval-hash.json')
    with open(out, 'w') as f:
        json.dump(metrics, f, indent=1)
    metrics['written'] = [out]
    if save_codes_to:
        save_codes(save_codes_to, q_codes, q_labels, db_codes, db_labels)
        metrics['written'].append(save_codes_to)
    return metrics


def evaluate_hash_main(a):
    """``eval/evaluate.py`` on a hashing run (``a``: its parsed flags)."""
    from .context import get_contexts
    if a.save_embeddings:
        raise cli.UserError('%s is a hashing run: use --save-codes FILE.npz.' % a.run_dir)
    metrics = evaluate_hash_run(a.run_dir, get_contexts(a.gpus), a.checkpoint, a.data_path,
                                a.batch_size, save_codes_to=a.save_codes, out=a.out)
    cli.print_metrics(metrics, skip=('pr_curve', 'written'))
    for path in metrics['written']:
        print('written: %s' % path)
    return metrics
