"""The composition every embedding method shares: data, sampler, network, loss, evaluation, loop.

``train_margin.py`` and ``train_npair.py`` parse their flags and call :func:`run_embedding`; a
method differs only in its default loss and batch shape.
"""
from .. import cli
from .context import get_contexts, seed_everything
from .evaluation import RetrievalEvaluator
from .logger import Logger
from .loop import Engine

__all__ = ['run_embedding']


def run_embedding(args):
    """Train (or resume) the run described by ``args``; returns (engine, last epoch's metrics)."""
    from ..data import BalancedBatchSampler, get_dataset
    from ..models import get_model

    run_dir = cli.prepare_run(args)
    logger = Logger(run_dir, sinks=cli.viz_sinks(args))
    ctx = get_contexts(args.gpus)
    seed_everything(args.seed)

    train_set = get_dataset(args.data, args.data_path, 'train')
    test_set = get_dataset(args.data, args.data_path, 'test')
    logger.info('%s: %d training images in %d classes, %d test images in %d unseen classes; '
                'loss %s; run folder %s' % (args.data, len(train_set), train_set.num_classes,
                                            len(test_set), test_set.num_classes, args.loss, run_dir))
    sampler = BalancedBatchSampler(train_set.labels, args.batch_size, args.batch_k,
                                   num_batches=args.batches_per_epoch, seed=args.seed)
    loss = cli.build_loss(args, train_set.num_classes, args.embed_dim)
    args.normalize_embeddings = bool(getattr(loss, 'normalize_embeddings', True))
    cli.write_args(args)
    net = get_model(args.model, args.embed_dim, pretrained=args.use_pretrained, ctx=ctx,
                    normalize=args.normalize_embeddings)
    loss.initialize(ctx=ctx[0])
    evaluator = RetrievalEvaluator(test_set, batch_size=args.eval_batch_size, logger=logger,
                                   num_workers=args.num_workers)
    engine = Engine(net, loss, train_set, sampler, evaluator, run_dir, ctx, args.epochs,
                    optimizer=args.optimizer, lr=args.lr, wd=args.wd, momentum=args.momentum,
                    steps=args.steps_list, factor=args.factor, loss_lr=args.loss_lr,
                    seed=args.seed, logger=logger, hybridize=not args.disable_hybridize,
                    num_workers=args.num_workers, log_interval=args.log_interval,
                    progress=not args.no_progress, export_prefix=args.save_model_prefix)
    metrics = engine.fit(resume=args.resume)
    logger.close()
    logger.info('done: best %s = %.4f; run folder %s' % (engine.best_metric, engine.best, run_dir))
    return engine, metrics
