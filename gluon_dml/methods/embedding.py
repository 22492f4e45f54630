"""Embedding methods: ``train_margin.py`` (the margin loss, or any loss of the zoo) and
``train_npair.py`` (multi-class N-pair batches).

Open-set data (the test classes are never seen in training), P x K class-balanced batches, a
backbone with an embedding head, the chosen loss, and every epoch Recall@K, NMI, R-precision
and MAP@R on the evaluation split (the test classes, or with ``--val-classes`` held-out training
classes, where the best epoch is then chosen).
"""
import argparse
import copy
import sys

import numpy as np

from .. import config
from ..data.augment import augment_training_set
from ..data import (BalancedBatchSampler, ImageFileDataset, SuperClassBatchSampler,
                    dataset_sampling, get_dataset, get_transform, has_query_split, split_validation)
from ..engine import reuse_embeddings
from ..engine.evaluation import RetrievalEvaluator
from ..errors import UserError
from ..fileio import atomic_savez, atomic_write_json
from ..losses import get_loss_class
from ..losses.factory import build_loss
from ..losses.members import MemberLoss
from ..metrics import evaluate_embeddings, few_shot_metrics
from ..metrics.fewshot import sample_episodes
from ..models import get_model, with_tta
from .base import Encoders, Method

__all__ = ['EmbeddingMethod', 'NPairMethod', 'make_sampler', 'validation_split',
           'embeddings_normalized']


def make_sampler(args, train_set):
    """P x K class-balanced batches; for ``--data EbayInClass`` every batch from one SOP
    super-class (hard negatives), as the original scripts sampled it."""
    if dataset_sampling(args.data) == 'in-superclass':
        if getattr(train_set, 'super_labels', None) is None:
            raise UserError('--data %s samples within super-classes, but this dataset has none.'
                            % args.data)
        return SuperClassBatchSampler(train_set.labels, train_set.super_labels, args.batch_size,
                                      args.batch_k, num_batches=args.batches_per_epoch, seed=args.seed)
    return BalancedBatchSampler(train_set.labels, args.batch_size, args.batch_k,
                                num_batches=args.batches_per_epoch, seed=args.seed)


def validation_split(val_classes, train_set):
    """``--val-classes``: (training classes kept, held-out classes read with the test-time
    transform); the test split is not read at all."""
    source = None
    if isinstance(train_set, ImageFileDataset):   # image files: the same items, test transform
        source = copy.copy(train_set)
        source.transform = train_set.transform.for_testing()
    try:
        return split_validation(train_set, val_classes, source)
    except ValueError as err:
        raise UserError(str(err)) from None


def embeddings_normalized(args):
    """Whether the run's network L2-normalises its output: ``args.json`` says so; runs made
    before it did are answered by their loss (lifted structure, NCA and N-pair train
    unnormalised embeddings)."""
    if args.get('normalize_embeddings') is not None:
        return bool(args['normalize_embeddings'])
    try:
        return bool(getattr(get_loss_class(args.get('loss') or 'margin'), 'normalize_embeddings',
                            True))
    except ValueError:
        return True


def _as_numpy(x):
    return x.asnumpy() if hasattr(x, 'asnumpy') else x


NETVLAD_INIT_IMAGES = 256


def init_netvlad(net, train, ctx, num_workers=0, seed=0, images=NETVLAD_INIT_IMAGES):
    """``--pool netvlad``: the head's clusters initialised as the paper does, from k-means of the
    local descriptors of ``images`` training images drawn with ``seed`` (a resumed run loads
    its own instead)."""
    from ..engine.loop import load_batches
    from ..models.pooling import init_netvlad_from_features
    spatial, vlad = net.backbone[0], net.backbone[1]
    pick = np.sort(np.random.RandomState(seed).choice(len(train), min(images, len(train)),
                                                      replace=False))
    chunks = [pick[i:i + 32] for i in range(0, len(pick), 32)]
    batches = (data.as_in_context(ctx) for data, _ in load_batches(train, chunks, num_workers))
    init_netvlad_from_features(vlad, batches, spatial, seed=seed)


class EmbeddingMethod(Method):
    name = 'margin'
    script = 'train_margin.py'
    description = ('Margin loss with distance-weighted sampling (Wu, Manmatha, Smola, '
                   'Kraehenbuehl, ICCV 2017), or any loss of the zoo with --loss.')
    default_loss = 'margin'

    def selects_on_validation(self, args):
        return bool(getattr(args, 'val_classes', None))

    def build_data(self, args, logger):
        options = config.dataset_options(args)
        train = get_dataset(args.data, args.data_path, 'train', **options)
        query = None
        if getattr(args, 'val_classes', None):
            train, evaluation = validation_split(args.val_classes, train)
        else:
            evaluation = get_dataset(args.data, args.data_path, 'test', **options)
            if has_query_split(args.data, args.data_path):
                query = get_dataset(args.data, args.data_path, 'query', **options)
        rotations, shift = getattr(args, 'rotations', 1) or 1, getattr(args, 'shift', 0) or 0
        train = augment_training_set(train, rotations, shift, args.seed,
                                     getattr(args, 'tilt', 0.0) or 0.0,
                                     getattr(args, 'zoom', 0.0) or 0.0)
        turned = ' (x%d turns)' % rotations if rotations > 1 else ''
        logger.info('%s: %d training images in %d classes%s, %d %s images in %d unseen classes%s; '
                    'loss %s; run folder %s'
                    % (args.data, len(train), train.num_classes, turned, len(evaluation),
                       evaluation.split, evaluation.num_classes, ' searched by %d query images'
                       % len(query) if query is not None else '', args.loss, args.save_dir))
        return {'train': train, 'eval': evaluation, 'query': query}

    def build_sampler(self, args, data):
        return make_sampler(args, data['train'])

    def build_loss(self, args, data):
        def one():
            return build_loss(args.loss, getattr(args, '_loss_kwargs', {}),
                              num_classes=data['train'].num_classes, embed_dim=args.embed_dim,
                              batch_k=args.batch_k, beta_per_class=args.beta_per_class,
                              family=self.loss_family)
        loss, args.loss_options = one()
        members = getattr(args, 'members', 1) or 1
        if members > 1:                 # --members N: a copy of the loss for each member
            loss = MemberLoss([loss] + [one()[0] for _ in range(members - 1)])
        args.normalize_embeddings = bool(getattr(loss, 'normalize_embeddings', True))
        return loss

    def build_network(self, args, data, ctx):
        net = get_model(args.model, args.embed_dim, pretrained=args.use_pretrained, ctx=ctx,
                        init_name=getattr(args, 'init', None) or 'xavier',
                        normalize=args.normalize_embeddings, pool=args.pool,
                        members=getattr(args, 'members', 1) or 1)
        if args.pool == 'netvlad' and not getattr(args, 'resume', False):
            for i, member in enumerate(getattr(net, 'members', [net])):
                init_netvlad(member, data['train'], ctx[0], args.num_workers, args.seed + i)
        return net

    def build_evaluator(self, args, data, logger):
        labels = getattr(data['eval'], 'labels', None)
        if args.few_shot and labels is not None:
            # the episodes' requirements, checked before anything of the run is written (one
            # episode drawn: the same check, and the same error, as every evaluation's)
            sample_episodes(labels, **dict(args.few_shot, episodes=1))
        return RetrievalEvaluator(data['eval'], batch_size=args.eval_batch_size, logger=logger,
                                  num_workers=args.num_workers, query_set=data['query'],
                                  nmi_runs=getattr(args, 'nmi_runs', None),
                                  epoch_nmi_runs=getattr(args, 'eval_nmi_runs', None),
                                  final_epoch=args.epochs,
                                  few_shot=args.few_shot,
                                  inference=lambda net: self.inference_network(args, net),
                                  fuse=not (getattr(args, 'no_fusion', False)
                                            or getattr(args, 'disable_hybridize', False)))

    # -- a trained run ----------------------------------------------------------------------------
    takes_tta = True

    def inference_network(self, args, net):
        """``--tta-shift PX``: ``net`` inside :class:`gluon_dml.models.ShiftAveraged`."""
        get = args.get if isinstance(args, dict) else (lambda k, d=None: getattr(args, k, d))
        normalize = (embeddings_normalized(args) if isinstance(args, dict)
                     else bool(getattr(args, 'normalize_embeddings', True)))
        return with_tta(net, get('tta_shift') or 0, normalize)

    def network_for_run(self, args, ctx):
        return self.inference_network(args, self._network_for_run(args, ctx))

    def _network_for_run(self, args, ctx):
        return get_model(args['model'], args['embed_dim'], pretrained=False, ctx=ctx,
                         normalize=embeddings_normalized(args), pool=args.get('pool') or 'avg',
                         members=args.get('members') or 1)

    def preprocess(self, args):
        """The run's test-time preprocessing of one image (a path or a PIL image)."""
        opts = config.dataset_options(args, augment=False)
        return get_transform(args['data'], **{k: opts[k] for k in ('image_size', 'resize') if k in opts})

    def encoders(self, trained):
        import mxnet as mx
        net, ctx = trained.net, trained.ctx

        def image(batch):
            return net(mx.nd.array(batch, ctx=ctx[0])).asnumpy().astype(np.float32)
        return Encoders(image, self.preprocess(trained.args), trained.args['embed_dim'],
                        normalized=embeddings_normalized(trained.args), ctx=ctx)

    def calibration_images(self, trained, count, data_path=None):
        """``count`` images of the run's training split (all of it when smaller), drawn with a
        fixed seed, with the test-time preprocessing: INT8 calibration never sees the
        evaluation split."""
        args = trained.args
        path = data_path or args.get('data_path')
        try:
            train = get_dataset(args['data'], path, 'train',
                                **config.dataset_options(args, augment=False))
        except (OSError, ValueError) as err:
            raise UserError('--int8 calibrates on training images of %s, which cannot be read '
                            'from %s (%s); point --data-path at the dataset.'
                            % (args['data'], path or 'its default place', err)) from None
        n = min(int(count), len(train))
        picks = np.sort(np.random.RandomState(0).choice(len(train), n, replace=False))
        return np.stack([np.asarray(_as_numpy(train[int(i)][0]), dtype=np.float32)
                         for i in picks])

    def check_evaluation(self, args, a):
        super().check_evaluation(args, a)
        if a.save_codes:
            raise UserError('--save-codes is for train-hash runs; %s is not one (use '
                            '--save-embeddings).' % a.run_dir)
        if a.split == 'val' and not args.get('val_classes'):
            raise UserError('%s was not trained with --val-classes, so it has no val split; use '
                            '--split test or train.' % a.run_dir)

    def evaluate_run(self, trained, a):
        """Recall@K, NMI, R-precision, MAP@R of a split; ``--save-embeddings`` writes them."""
        args = trained.args
        data_path = a.data_path or args.get('data_path')
        options = config.dataset_options(args, augment=False)
        if a.split == 'val':
            train = get_dataset(args['data'], data_path, 'train', **options)
            dataset = split_validation(train, args['val_classes'])[1]
        else:
            dataset = get_dataset(args['data'], data_path, a.split, **options)
        if a.few_shot and getattr(dataset, 'labels', None) is not None:
            # the episodes' requirements, checked before the embedding (one episode drawn)
            sample_episodes(dataset.labels, **dict(a.few_shot, episodes=1))
        emb, labels = trained.embed(dataset, a.batch_size, progress=not a.no_progress)
        q_emb = q_labels = query = None
        if a.split in ('test', 'gallery') and has_query_split(args['data'], data_path):
            # In-Shop style: the query images are searched among the gallery images
            query = get_dataset(args['data'], data_path, 'query', **options)
            q_emb, q_labels = trained.embed(query, a.batch_size, progress=not a.no_progress)
        ks = config.parse_int_list(a.ks if a.ks is not None else '1,2,4,8', '--ks', '1,2,4,8')
        searched = len(labels) if q_emb is not None else len(labels) - 1
        if max(ks) >= searched:
            print('warning: --ks %d: each query is searched among %d images, so Recall@%d counts '
                  'every one of them (1.0 for every query with a same-class image).'
                  % (max(ks), searched, max(ks)), file=sys.stderr)
        nmi_runs = a.nmi_runs if a.nmi_runs is not None else args.get('nmi_runs')
        metrics = evaluate_embeddings(emb, labels, ks=ks, query_embeddings=q_emb,
                                      query_labels=q_labels, nmi_runs=nmi_runs)
        if a.few_shot:
            metrics.update(few_shot_metrics(emb, labels, **a.few_shot))
        if type(self).build_evaluator is not EmbeddingMethod.build_evaluator:
            # a method with its own evaluator (extending.md's nearest-centroid accuracy): its
            # metrics too, from the same network and split, whose embeddings it is given
            # (embed_dataset of this net and dataset answers them) instead of embedding again
            settings = argparse.Namespace(**dict(args, eval_batch_size=a.batch_size,
                                                 nmi_runs=nmi_runs, few_shot=None))
            evaluator = self.build_evaluator(settings, {'eval': dataset, 'query': query}, None)
            with reuse_embeddings(trained.net, dataset, emb, labels), \
                    reuse_embeddings(trained.net, query, q_emb, q_labels):
                extra = evaluator(trained.net, trained.ctx)
            metrics.update((k, v) for k, v in extra.items() if k not in metrics)
        metrics.update(run_dir=a.run_dir, split=a.split, params=trained.params,
                       network=trained.params_label, precision=trained.precision, data=args['data'],
                       num_images=int(len(labels)), num_classes=int(len(np.unique(labels))))
        written = [a.out or trained.eval_path(a.split)]
        atomic_write_json(written[0], metrics, indent=1, sort_keys=False)
        if a.save_embeddings:
            arrays = dict(embeddings=emb.astype(np.float32), labels=labels.astype(np.int64),
                          **trained.saved_with())
            if q_emb is not None:
                arrays.update(query_embeddings=q_emb.astype(np.float32),
                              query_labels=q_labels.astype(np.int64))
            atomic_savez(a.save_embeddings, **arrays)
            written.append(a.save_embeddings)
        return metrics, written, 4


class NPairMethod(EmbeddingMethod):
    """Multi-class N-pair loss (Sohn, NeurIPS 2016): each batch holds N classes with an anchor
    and a positive each (``--batch-k 2``); the other N - 1 positives are the negatives of every
    anchor. Embeddings are not L2-normalised (the paper's setting); the loss adds its L2 penalty
    on the embedding norms (``--l2-reg``, 0.002)."""
    name = 'npair'
    script = 'train_npair.py'
    description = ('Multi-class N-pair loss (Sohn, "Improved Deep Metric Learning with '
                   'Multi-class N-pair Loss Objective", NeurIPS 2016).')
    default_loss = 'npair'

    def recipe(self, data):
        """N pairs per batch (batch-k 2; N = every class on the five-class datasets), and the loss
        of Sohn's eq. 3 exactly: each class's first image is the anchor, the other classes'
        second images its negatives (``--pairs all`` uses every pair instead).

        On Omniglot the learning rate is 2e-3, not the protocol's 1e-3: chosen on validation
        classes (``--val-classes Korean,Early_Aramaic``, seeds 1-5: Recall@1 0.896 against 0.886
        at 1e-3, MAP@R 0.644 against 0.628); the unnormalised N-pair embedding is still learning
        at epoch 30 at 1e-3."""
        defaults = {'batch_k': 2, 'pairs': 'paper'}
        if data in ('digits', 'fashion-mnist'):
            defaults['batch_size'] = 10
        if data == 'omniglot':
            defaults['lr'] = 2e-3
        return defaults
