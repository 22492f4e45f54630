#!/usr/bin/env python
"""Margin loss with distance-weighted sampling (Wu, Manmatha, Smola, Kraehenbuehl, ICCV 2017).

    python train_margin.py                                   # digits, open-set, about a minute
    python train_margin.py --data omniglot --data-path ../shared/data/omniglot
    nohup python train_margin.py --gpus=0 --batch-k=5 --use_viz &
    python train_margin.py --data omniglot --loss triplet --mining semihard    # any other loss
"""
import sys

from gluon_dml import cli


def main(argv=None):
    parser = cli.build_parser(__doc__.splitlines()[0], default_loss='margin')
    args = cli.parse_args(parser, 'margin', argv)
    from gluon_dml.engine.embedding import run_embedding
    return run_embedding(args)[1]


if __name__ == '__main__':
    cli.main_guard(main, sys.argv[1:])
