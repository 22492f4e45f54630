#!/usr/bin/env python
"""HashNet deep hashing (Cao, Long, Wang, Yu, "HashNet: Deep Learning to Hash by Continuation", ICCV 2017).

Learns compact binary codes, stores them packed, and searches them in Hamming space:

    python train_hash.py --data fashion-mnist --bits 48            # the README's protocol
    python train_hash.py --data fashion-mnist --bits 48 --loss dsh # or dch (Cao et al. 2018)
    python eval/search.py runs/hash-fashion-mnist-48 --index ivf   # faiss binary search
"""
import sys

from gluon_dml import cli


def _hash_flags(p):
    g = p.add_argument_group('hashing')
    cli._flag(g, '--bits', type=int, default=48, help='code length')
    cli._flag(g, '--init-scale', type=float, default=1.0, help='HashNet continuation: initial scale')
    cli._flag(g, '--scale-gamma', type=float, default=0.005,
              help='continuation: scale = init_scale * (1 + gamma * iter) ^ power')
    cli._flag(g, '--scale-power', type=float, default=0.5, help='continuation power')
    cli._flag(g, '--scale-step', type=int, default=200, help='iterations between scale updates')
    cli._flag(g, '--topk', default='1000', help='the K of mAP@top-K (comma-separated)')
    cli._flag(g, '--eval-interval', type=int, default=1,
              help='epochs between evaluations (encoding the database); the last is always evaluated')


def main(argv=None):
    from gluon_dml.engine.hashing import hash_defaults, run_hash
    parser = cli.build_parser(__doc__.splitlines()[0], method_flags=_hash_flags, default_loss='hashnet')
    args = cli.parse_args(parser, 'hash', argv, method_defaults=hash_defaults)
    if args.bits < 1:
        raise cli.UserError('--bits must be a positive integer, got %d.' % args.bits)
    args.topk_list = cli.parse_int_list(args.topk, '--topk', '1000')
    given = {a.split('=')[0].replace('_', '-') for a in (argv if argv is not None else sys.argv[1:])}
    if not given & {'--name', '--save-dir'}:          # one folder per loss and code length
        args.name = 'hash-%s-%s-%d' % (args.data, args.loss, args.bits)
        args.save_dir = 'runs/' + args.name
    return run_hash(args)[1]


if __name__ == '__main__':
    cli.main_guard(main, sys.argv[1:])
