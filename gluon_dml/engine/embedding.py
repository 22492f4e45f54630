"""The composition every embedding method shares: data, sampler, network, loss, evaluation, loop.

``train_margin.py`` and ``train_npair.py`` parse their flags and call :func:`run_embedding`; a
method differs only in its default loss and batch shape.
"""
import copy

from .. import cli
from .context import get_contexts, seed_everything
from .evaluation import RetrievalEvaluator
from .logger import Logger
from .loop import Engine

__all__ = ['run_embedding', 'make_sampler']


def make_sampler(args, train_set):
    """P x K class-balanced batches; for ``--data EbayInClass`` every batch from one SOP
    super-class (hard negatives), as the original scripts sampled it."""
    from ..data import BalancedBatchSampler, SuperClassBatchSampler, dataset_sampling
    if dataset_sampling(args.data) == 'in-superclass':
        if getattr(train_set, 'super_labels', None) is None:
            raise cli.UserError('--data %s samples within super-classes, but this dataset has none.'
                                % args.data)
        return SuperClassBatchSampler(train_set.labels, train_set.super_labels, args.batch_size,
                                      args.batch_k, num_batches=args.batches_per_epoch, seed=args.seed)
    return BalancedBatchSampler(train_set.labels, args.batch_size, args.batch_k,
                                num_batches=args.batches_per_epoch, seed=args.seed)


def _validation_split(args, train_set):
    """``--val-classes``: (training classes kept, held-out classes read with the test-time
    transform); the test split is not read at all."""
    from ..data import ImageFileDataset, split_validation
    source = None
    if isinstance(train_set, ImageFileDataset):   # image files: the same items, test transform
        source = copy.copy(train_set)
        source.transform = train_set.transform.for_testing()
    try:
        return split_validation(train_set, args.val_classes, source)
    except ValueError as err:
        raise cli.UserError(str(err)) from None


def run_embedding(args):
    """Train (or resume) the run described by ``args``; returns (engine, last epoch's metrics)."""
    from ..data import get_dataset, has_query_split
    from ..models import get_model

    run_dir = cli.prepare_run(args)
    logger = Logger(run_dir, sinks=cli.viz_sinks(args))
    ctx = get_contexts(args.gpus)
    seed_everything(args.seed)

    options = cli.dataset_options(args)
    train_set = get_dataset(args.data, args.data_path, 'train', **options)
    query_set = None
    if getattr(args, 'val_classes', None):
        train_set, test_set = _validation_split(args, train_set)
    else:
        test_set = get_dataset(args.data, args.data_path, 'test', **options)
        if has_query_split(args.data, args.data_path):
            query_set = get_dataset(args.data, args.data_path, 'query', **options)
    logger.info('%s: %d training images in %d classes, %d %s images in %d unseen classes%s; '
                'loss %s; run folder %s'
                % (args.data, len(train_set), train_set.num_classes, len(test_set),
                   test_set.split, test_set.num_classes, ' searched by %d query images'
                   % len(query_set) if query_set is not None else '', args.loss, run_dir))
    for split, ds in (('train', train_set), ('test', test_set), ('query', query_set)):
        if getattr(ds, 'skipped', None):
            logger.info('--skip-bad-images: %d %s image(s) left out, first: %s (%s)'
                        % ((len(ds.skipped), split) + tuple(ds.skipped[0])))
    sampler = make_sampler(args, train_set)
    loss = cli.build_loss(args, train_set.num_classes, args.embed_dim)
    args.normalize_embeddings = bool(getattr(loss, 'normalize_embeddings', True))
    cli.write_args(args)
    net = get_model(args.model, args.embed_dim, pretrained=args.use_pretrained, ctx=ctx,
                    init_name=getattr(args, 'init', None) or 'xavier',
                    normalize=args.normalize_embeddings)
    loss.initialize(ctx=ctx[0])
    evaluator = RetrievalEvaluator(test_set, batch_size=args.eval_batch_size, logger=logger,
                                   num_workers=args.num_workers, query_set=query_set,
                                   nmi_runs=getattr(args, 'nmi_runs', None))
    engine = Engine(net, loss, train_set, sampler, evaluator, run_dir, ctx, args.epochs,
                    optimizer=args.optimizer, lr=args.lr, wd=args.wd, momentum=args.momentum,
                    steps=args.steps_list, factor=args.factor, loss_lr=args.loss_lr,
                    loss_optimizer=getattr(args, 'loss_optimizer', None), seed=args.seed,
                    logger=logger, hybridize=not args.disable_hybridize,
                    num_workers=args.num_workers, log_interval=args.log_interval,
                    progress=not args.no_progress, export_prefix=args.save_model_prefix)
    metrics = engine.fit(resume=args.resume)
    logger.close()
    logger.info('done: best %s = %.4f; run folder %s' % (engine.best_metric, engine.best, run_dir))
    return engine, metrics
