#!/usr/bin/env python
"""Margin loss with distance-weighted sampling (Wu, Manmatha, Smola, Kraehenbuehl, ICCV 2017).

    python train_margin.py                                   # digits, open-set, about a minute
    python train_margin.py --data omniglot --data-path ../shared/data/omniglot
    nohup python train_margin.py --gpus=0 --batch-k=5 --use_viz &
"""
import sys

from gluon_dml import cli


def margin_flags(parser):
    g = parser.add_argument_group('margin loss')
    cli._flag(g, '--margin', type=float, default=None, help='alpha, the margin around beta')
    cli._flag(g, '--beta', type=float, default=None, help='initial value of the learnable boundary beta')
    cli._flag(g, '--lr-beta', type=float, default=None, help='learning rate of beta')
    cli._flag(g, '--nu', type=float, default=None, help='regularisation of beta')
    cli._flag(g, '--cutoff', type=float, default=None,
              help='distances below this get the weight of the cutoff in sampling')
    cli._flag(g, '--nonzero-loss-cutoff', type=float, default=None,
              help='negatives farther than this are not sampled')
    cli._flag(g, '--beta-per-class', action='store_true', help='one beta per training class')


def main(argv=None):
    parser = cli.build_parser(__doc__.splitlines()[0], margin_flags)
    args = cli.parse_args(parser, 'margin', argv)

    from gluon_dml.data import BalancedBatchSampler, get_dataset
    from gluon_dml.engine import (Engine, Logger, RetrievalEvaluator, get_contexts,
                                  seed_everything)
    from gluon_dml.losses import MarginLoss
    from gluon_dml.models import get_model

    run_dir = cli.prepare_run(args)
    logger = Logger(run_dir, sinks=cli.viz_sinks(args))
    ctx = get_contexts(args.gpus)
    seed_everything(args.seed)

    train_set = get_dataset(args.data, args.data_path, 'train')
    test_set = get_dataset(args.data, args.data_path, 'test')
    logger.info('%s: %d training images in %d classes, %d test images in %d unseen classes; '
                'run folder %s' % (args.data, len(train_set), train_set.num_classes, len(test_set),
                                   test_set.num_classes, run_dir))
    sampler = BalancedBatchSampler(train_set.labels, args.batch_size, args.batch_k,
                                   num_batches=args.batches_per_epoch, seed=args.seed)
    net = get_model(args.model, args.embed_dim, pretrained=args.use_pretrained, ctx=ctx)
    loss = MarginLoss(margin=args.margin, beta=args.beta, nu=args.nu, cutoff=args.cutoff,
                      nonzero_loss_cutoff=args.nonzero_loss_cutoff,
                      num_classes=train_set.num_classes if args.beta_per_class else None,
                      negatives_per_anchor=max(1, args.batch_k - 1))
    loss.initialize(ctx=ctx[0])
    evaluator = RetrievalEvaluator(test_set, batch_size=args.eval_batch_size, logger=logger,
                                   num_workers=args.num_workers)
    engine = Engine(net, loss, train_set, sampler, evaluator, run_dir, ctx, args.epochs,
                    optimizer=args.optimizer, lr=args.lr, wd=args.wd, momentum=args.momentum,
                    steps=args.steps_list, factor=args.factor, loss_lr=args.lr_beta,
                    seed=args.seed, logger=logger, hybridize=not args.disable_hybridize,
                    num_workers=args.num_workers, log_interval=args.log_interval,
                    progress=not args.no_progress, export_prefix=args.save_model_prefix)
    metrics = engine.fit(resume=args.resume)
    logger.close()
    logger.info('done: best %s = %.4f; run folder %s' % (engine.best_metric, engine.best, run_dir))
    return metrics


if __name__ == '__main__':
    cli.main_guard(main, sys.argv[1:])
