"""``train_hash.py``: deep hashing, HashNet (Cao, Long, Wang, Yu, ICCV 2017), DSH and DCH.

Data of a closed-set hashing protocol (train, database, queries), plain shuffled batches, a
backbone with the hash head ``tanh(scale * Dense(bits))``, a pairwise hashing loss, the
continuation schedule of ``scale`` per iteration, and every epoch the database and the queries
encoded to binary codes and the hashing metrics (mAP over the whole database, mAP@top-K,
precision within Hamming radius 2, bit balance). The evaluation searches the queries, so the
reported network is the final one; after training the codes are written packed
(``RUN_DIR/codes.npz``).
"""
import os
import sys

import mxnet as mx
import numpy as np

from ..config import check_float, parse_int_list
from ..data import ShuffledBatchSampler, dataset_splits, get_transform
from ..data.hashing import get_hash_splits
from ..engine.loop import Engine, embed_dataset
from ..engine.rundir import trained_params_path
from ..errors import UserError
from ..fileio import atomic_write_json
from ..index import save_codes
from ..losses.factory import build_loss
from ..metrics.hashing import hashing_metrics, pr_curve
from ..models.hashing import ScaleSchedule, binarize, get_hash_model
from .base import Encoders, Method, network_record

__all__ = ['HashMethod', 'HashEngine', 'HashEvaluator', 'encode', 'save_run_codes']


def encode(net, dataset, ctx, batch_size=256, num_workers=0, progress=False, desc='encode'):
    """The head's continuous outputs (N, bits) float32 and the labels of ``dataset``; the codes
    are their sign (:func:`gluon_dml.models.hashing.binarize`)."""
    return embed_dataset(net, dataset, ctx, batch_size, num_workers, progress=progress, desc=desc)


class HashEvaluator:
    """``evaluator(net, ctx, epoch) -> {'map', 'map@K', 'precision@r2', 'bit_balance', ...}``:
    the queries' codes searched in the database's codes by Hamming ranking."""

    def __init__(self, database, query, topk=(1000,), batch_size=256, logger=None, num_workers=0,
                 progress=False):
        self.database, self.query, self.topk = database, query, tuple(topk)
        self.batch_size, self.logger = batch_size, logger
        self.num_workers, self.progress = num_workers, progress

    def __call__(self, net, ctx, epoch=None):
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
    """The engine with HashNet's continuation: before each step the head's scale is set to
    ``schedule(iteration)`` (the iteration count is checkpointed, so a resumed run continues the
    schedule where it stopped). Class-index labels become one-hot for the hashing losses."""

    def __init__(self, *args, schedule=None, num_classes=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.schedule, self.num_classes = schedule, num_classes

    def forward_batch(self, data, label):
        if self.schedule is not None:
            self.net.set_scale(self.schedule(self.iteration))
        return super().forward_batch(data, label)

    def compute_loss(self, outputs, label):
        label = label.as_in_context(self.ctx[0])
        if label.ndim == 1:
            label = mx.nd.one_hot(label, self.num_classes)
        return self.loss(outputs, label)

    def load_state(self, meta):
        super().load_state(meta)
        if 'iteration' not in meta:                     # checkpoints of older versions
            self.iteration = int(meta.get('hash_iteration', 0))

    def extra_metrics(self):
        out = super().extra_metrics()
        out['scale'] = self.net.get_scale()
        return out


def save_run_codes(net, run_dir, database, query, ctx, batch_size=256, progress=False):
    """Encode the database and the queries with the network and write them packed
    (``np.packbits``) with their ids: ``RUN_DIR/codes.npz``."""
    db_out, db_labels = encode(net, database, ctx, batch_size, progress=progress, desc='encode database')
    q_out, q_labels = encode(net, query, ctx, batch_size, progress=progress, desc='encode queries')
    path = os.path.join(run_dir, 'codes.npz')
    # the codes of the final network: the newest checkpoint's parameters (saved at the end of
    # the last epoch) are the ones recorded, for search-codes to check
    try:
        params = trained_params_path(run_dir, 'last')[0]
    except FileNotFoundError:
        params = None
    save_codes(path, binarize(q_out), q_labels, binarize(db_out), db_labels,
               **network_record(run_dir, params))
    return path


class HashMethod(Method):
    name = 'hash'
    script = 'train_hash.py'
    description = ('HashNet deep hashing (Cao, Long, Wang, Yu, "HashNet: Deep Learning to Hash by '
                   'Continuation", ICCV 2017), DSH and DCH: compact binary codes searched in '
                   'Hamming space.')
    default_loss = 'hashnet'
    loss_family = 'hashing'
    default_data = 'fashion-mnist'
    protocol = 'hashing'
    help_datasets = (('fashion-mnist', 'fashion-mnist'), ('digits', 'digits'))
    ignored_flags = {
        'batch_k': 'hashing batches are plain shuffled batches, not P classes x K images',
        'embed_dim': 'the code length --bits is the output size',
        'val_classes': 'the hashing protocols are closed-set (queries of the training classes)',
        'rotations': 'rotated classes are for the embedding methods (train-margin, train-npair)',
        'shift': 'shift augmentation is for the embedding methods (train-margin, train-npair)',
        'tilt': 'tilt augmentation is for the embedding methods (train-margin, train-npair)',
        'zoom': 'zoom augmentation is for the embedding methods (train-margin, train-npair)',
        'nmi_runs': 'hashing runs report mAP, not NMI',
        'eval_nmi_runs': 'hashing runs report mAP, not NMI',
        'episodes': 'few-shot episodes need open-set classes; hashing protocols are closed-set',
        'pool': 'the hash head takes the backbone\'s own pooling',
        'members': 'ensembles (--members) are for the embedding methods',
        'tta_shift': 'test-time moves (--tta-shift) are for the embedding methods',
        'beta_per_class': 'it is an option of the margin loss',
    }
    best_metric = 'map'
    summary_metrics = ('map', 'precision@r2')
    engine_class = HashEngine
    flag_group = 'hashing'
    data_path_help = ('fashion-mnist: /usr/share/datasets/fashion-mnist or '
                      '$MXNET_HOME/datasets/fashion-mnist; digits: none')
    name_help = 'hash-DATA-LOSS-BITS'
    flags = (
        ('--bits', dict(type=int, default=48, help='code length (default 48)')),
        ('--init-scale', dict(type=float, default=1.0,
                              help='HashNet continuation: initial scale (default 1)')),
        ('--scale-gamma', dict(type=float, default=0.005,
                               help='continuation: scale = init_scale * (1 + gamma * iter) ^ power '
                                    '(default 0.005)')),
        ('--scale-power', dict(type=float, default=0.5, help='continuation power (default 0.5)')),
        ('--scale-step', dict(type=int, default=200,
                              help='iterations between scale updates (default 200)')),
        ('--topk', dict(default='1000', metavar='K[,K]',
                        help='the K of mAP@top-K, comma-separated (default 1000)')),
    )

    def recipe(self, data):
        """Plain batches (batch_k 1) and the small-net settings on the built-in protocols."""
        small = dict(model='smallconv', batch_k=1, epochs=10, optimizer='adam', lr=1e-3, wd=0.0,
                     steps='', loss_lr=1e-2)
        recipes = {'fashion-mnist': dict(small, batch_size=128), 'digits': dict(small, batch_size=100)}
        return dict(recipes.get(data, dict(batch_k=1, batch_size=64)))

    def default_name(self, args):
        return 'hash-%s-%s-%d' % (args.data, args.loss, args.bits)

    def setup(self, args):
        try:
            dataset_splits(args.data, self.protocol)
        except ValueError as err:
            raise UserError(str(err)) from None
        if args.bits < 1:
            raise UserError('--bits must be a positive integer, got %d.' % args.bits)
        for key in ('init_scale', 'scale_gamma', 'scale_power'):
            check_float(getattr(args, key), '--' + key.replace('_', '-'))
        try:
            ScaleSchedule(args.init_scale, args.scale_gamma, args.scale_power, args.scale_step)
        except ValueError as err:
            raise UserError(str(err)) from None
        args.topk_list = parse_int_list(args.topk, '--topk', '1000')
        if not args.topk_list or min(args.topk_list) < 1:
            raise UserError('--topk takes the K of mAP@top-K, positive integers such as "1000", '
                            'got %r.' % args.topk)
        if args.batch_size < 2:
            raise UserError('--batch-size %d: the hashing losses learn from the pairs of a batch, '
                            'so it needs at least 2 images.' % args.batch_size)
        args.loss = args.loss.lower().replace('-', '_')
        args.embed_dim = args.bits

    def evaluation_split(self, args):
        return 'queries searched in the database'

    def build_data(self, args, logger):
        splits = get_hash_splits(args.data, args.data_path)
        train, database, query = splits['train'], splits['database'], splits['query']
        logger.info('%s hashing protocol: train %d, database %d, queries %d, %d classes; %s, %d bits; '
                    'run folder %s' % (args.data, len(train), len(database), len(query),
                                       train.num_classes, args.loss, args.bits, args.save_dir))
        largest = max(args.topk_list)
        if largest > len(database):
            print('warning: --topk %d: the database holds %d images, so mAP@top-%d is the mAP over '
                  'the whole database.' % (largest, len(database), largest), file=sys.stderr)
        return splits

    def build_sampler(self, args, data):
        return ShuffledBatchSampler(len(data['train']), args.batch_size, args.batches_per_epoch,
                                    seed=args.seed)

    def build_loss(self, args, data):
        loss, args.loss_options = build_loss(
            args.loss, getattr(args, '_loss_kwargs', {}), num_classes=data['train'].num_classes,
            embed_dim=args.bits, batch_k=args.batch_k, family=self.loss_family)
        args.normalize_embeddings = False
        return loss

    def build_network(self, args, data, ctx):
        return get_hash_model(args.model, args.bits, pretrained=args.use_pretrained, ctx=ctx)

    def build_evaluator(self, args, data, logger):
        return HashEvaluator(data['database'], data['query'], topk=args.topk_list,
                             batch_size=args.eval_batch_size, logger=logger,
                             num_workers=args.num_workers)

    def engine_options(self, args, data):
        return dict(schedule=ScaleSchedule(args.init_scale, args.scale_gamma, args.scale_power,
                                           args.scale_step),
                    num_classes=data['train'].num_classes)

    def finish(self, args, engine, data, ctx, logger):
        path = save_run_codes(engine.net, args.save_dir, data['database'], data['query'], ctx,
                              args.eval_batch_size, progress=not args.no_progress)
        logger.info('packed codes of the final network: %s' % path)
        return None

    # -- a trained run ----------------------------------------------------------------------------
    def network_for_run(self, args, ctx):
        return get_hash_model(args['model'], args['bits'], pretrained=False, ctx=ctx)

    def encoders(self, trained):
        net, ctx = trained.net, trained.ctx

        def image(batch):
            return binarize(net(mx.nd.array(batch, ctx=ctx[0])).asnumpy())
        return Encoders(image, get_transform(trained.args['data']), trained.args['bits'],
                        kind='binary', normalized=False, ctx=ctx)

    def check_evaluation(self, args, a):
        super().check_evaluation(args, a)
        if a.save_embeddings:
            raise UserError('%s is a hashing run: use --save-codes FILE.npz.' % a.run_dir)
        if getattr(a, 'split', 'test') != 'test':
            raise UserError('--split %s: a hashing run is evaluated on its protocol, the query '
                            'images searched in the database (the test split); leave --split out.'
                            % a.split)
        self.refuse_embedding_flags(a, 'a hashing run, evaluated by mAP and mAP@top-K (its '
                                       '--topk: %s)' % (args.get('topk') or '1000'))

    def evaluate_run(self, trained, a):
        """mAP (whole database), mAP@top-K, precision within Hamming radius 2 and the
        precision-recall points of the protocol's queries; ``--save-codes`` writes the packed
        codes."""
        args = trained.args
        splits = get_hash_splits(args['data'], a.data_path or args.get('data_path'))
        progress = not a.no_progress
        db_out, db_labels = trained.embed(splits['database'], a.batch_size, progress=progress,
                                          desc='encode database')
        q_out, q_labels = trained.embed(splits['query'], a.batch_size, progress=progress,
                                        desc='encode queries')
        q_codes, db_codes = binarize(q_out), binarize(db_out)
        # the run's own K (train-hash --topk): the log's mAP@top-K and this one are comparable
        topk = parse_int_list(args.get('topk') or '1000', '--topk', '1000') or [1000]
        metrics = hashing_metrics(q_codes, db_codes, q_labels, db_labels, topk=topk)
        radii, prec, rec = pr_curve(q_codes, db_codes, q_labels, db_labels)
        metrics.update(run_dir=a.run_dir, params=trained.params, network=trained.params_label,
                       precision=trained.precision, data=args['data'], loss=args.get('loss'), bits=int(args['bits']),
                       num_queries=int(len(q_labels)), num_database=int(len(db_labels)),
                       pr_curve={'radius': radii.tolist(), 'precision': prec.tolist(),
                                 'recall': rec.tolist()})
        written = [a.out or trained.eval_path('hash')]
        atomic_write_json(written[0], metrics, indent=1, sort_keys=False)
        if a.save_codes:
            save_codes(a.save_codes, q_codes, q_labels, db_codes, db_labels,
                       **network_record(trained.run_dir, trained.params))
            written.append(a.save_codes)
        return metrics, written, 4
