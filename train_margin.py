#!/usr/bin/env python
"""Margin loss with distance-weighted sampling (Wu, Manmatha, Smola, Kraehenbuehl, ICCV 2017).

    python train_margin.py                                   # Omniglot open-set, a few minutes
    python train_margin.py --data digits                     # the one-minute smoke test
    nohup python train_margin.py --gpus=0 --batch-k=5 --use_viz &
    python train_margin.py --loss triplet --mining semihard  # any other loss of the zoo
"""
from gluon_dml.commands import alias

if __name__ == '__main__':
    alias('train-margin')
