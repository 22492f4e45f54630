#!/usr/bin/env python
"""Multi-class N-pair loss (Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss
Objective", NeurIPS 2016).

Each batch holds N classes with an anchor and a positive each (``--batch-k 2``); the other N - 1
positives are the negatives of every anchor. Embeddings are not L2-normalised (the paper's
setting); the loss adds its L2 penalty on the embedding norms (``--l2-reg``, 0.002).

    python train_npair.py --data omniglot --data-path ../shared/data/omniglot
"""
import sys

from gluon_dml import cli


def npair_defaults(data):
    """N pairs per batch (batch-k 2; N = every class on the five-class datasets), and the loss of
    Sohn's eq. 3 exactly: each class's first image is the anchor, the other classes' second images
    its negatives (``--pairs all`` uses every pair and every other-class image instead).

    On Omniglot the learning rate is 2e-3, not the protocol's 1e-3: chosen on validation classes
    (``--val-classes Korean,Early_Aramaic``, seeds 1-5: Recall@1 0.896 against 0.886 at 1e-3, MAP@R
    0.644 against 0.628); the unnormalised N-pair embedding is still learning at epoch 30 at 1e-3."""
    defaults = {'batch_k': 2, 'pairs': 'paper'}       # eq. 3: anchors vs the other classes' positives
    if data in ('digits', 'fashion-mnist'):
        defaults['batch_size'] = 10
    if data == 'omniglot':
        defaults['lr'] = 2e-3
    return defaults


def main(argv=None):
    parser = cli.build_parser(__doc__.splitlines()[0], default_loss='npair')
    args = cli.parse_args(parser, 'npair', argv, method_defaults=npair_defaults)
    from gluon_dml.engine.embedding import run_embedding
    return run_embedding(args)[1]


if __name__ == '__main__':
    cli.main_guard(main, sys.argv[1:])
