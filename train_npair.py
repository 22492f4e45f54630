#!/usr/bin/env python
"""Multi-class N-pair loss (Sohn, NeurIPS 2016): N classes x 2 images per batch.

    python train_npair.py                                    # Omniglot open-set
"""
from gluon_dml.commands import alias

if __name__ == '__main__':
    alias('train-npair')
