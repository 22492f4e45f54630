#!/usr/bin/env python
"""VSE++ image-caption joint embedding and cross-modal retrieval (Faghri et al., BMVC 2018).

    python train_vse.py --data fashion3                       # the built-in example, a few minutes
    python train_vse.py --data f30k --data-path DIR --use-pretrained          # frozen ResNet-152
    python train_vse.py --data fashion3 --max-violation false  # VSE0 (sum over all negatives)
"""
from gluon_dml.commands import alias

if __name__ == '__main__':
    alias('train-vse')
