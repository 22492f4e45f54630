#!/usr/bin/env python
"""HashNet deep hashing (Cao et al., ICCV 2017), DSH and DCH: binary codes, Hamming search.

    python train_hash.py --data fashion-mnist --bits 48            # the protocol of docs/hashing.md
    python train_hash.py --data fashion-mnist --bits 48 --loss dsh # or dch
"""
from gluon_dml.commands import alias

if __name__ == '__main__':
    alias('train-hash')
