#!/usr/bin/env python
"""VSE++ image-caption joint embedding and cross-modal retrieval (Faghri, Fleet, Kiros, Fidler, BMVC 2018).

    python train_vse.py --data fashion3                       # the built-in example, a few minutes
    python train_vse.py --data f30k --data-path DIR --use-pretrained          # frozen ResNet-152
    python train_vse.py --data coco --data-path DIR --use-pretrained --finetune
    python train_vse.py --data f30k_precomp --data-path DIR    # {split}_ims.npy + {split}_caps.txt
    python train_vse.py --data fashion3 --max-violation false  # VSE0 (sum over all negatives)
"""
import sys

from gluon_dml import cli


def _vse_flags(p):
    g = p.add_argument_group('VSE++')
    cli._flag(g, '--max-violation', type=cli._str2bool, nargs='?', const=True, default=None,
              help='VSE++: the hardest negative of the batch (default); "--max-violation false" '
                   'gives VSE0, the sum over all negatives')
    cli._flag(g, '--warmup-epochs', type=int, default=None,
              help='VSE++: use the sum over all negatives for these first epochs (default 0, as '
                   'the paper; fashion3: 1, from-scratch training collapses without it)')
    cli._flag(g, '--margin', type=float, default=0.2, help='hinge margin alpha')
    cli._flag(g, '--word-dim', type=int, default=300, help='word embedding size')
    cli._flag(g, '--num-layers', type=int, default=1, help='GRU layers')
    cli._flag(g, '--finetune', type=cli._str2bool, nargs='?', const=True, default=None,
              help='train the image backbone too (default: frozen; fashion3: trained)')
    cli._flag(g, '--grad-clip', type=float, default=2.0, help='clip the gradients\' global norm')
    cli._flag(g, '--min-word-count', type=int, default=4,
              help='vocabulary: training-caption words seen at least this often')
    cli._flag(g, '--max-len', type=int, default=None, help='cut longer captions (tokens)')
    cli._flag(g, '--val-split', default='val', help='split that chooses the best epoch (rsum)')
    cli._flag(g, '--test-split', default='test', help='split evaluated at the end ("" for none)')
    cli._flag(g, '--fashion3-train', type=int, default=10000,
              help='fashion3 without --data-path: training pictures of the built set')
    cli._flag(g, '--fashion3-seed', type=int, default=0, help='fashion3: seed of the built set')


def main(argv=None):
    from gluon_dml.engine.vse import vse_defaults
    parser = cli.build_parser(__doc__.splitlines()[0], method_flags=_vse_flags)
    given = parser.parse_args(argv)
    args = cli.parse_args(parser, 'vse', argv, method_defaults=vse_defaults)
    if given.name is None:                      # vsepp-DATA or vse0-DATA
        args.name = '%s-%s' % ('vsepp' if args.max_violation else 'vse0', args.data)
        if given.save_dir is None:
            import os
            args.save_dir = os.path.join('runs', args.name)
    from gluon_dml.engine.vse import run_vse
    return run_vse(args)[1]


if __name__ == '__main__':
    cli.main_guard(main, sys.argv[1:])
