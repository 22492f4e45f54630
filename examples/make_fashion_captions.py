#!/usr/bin/env python
"""Build the fashion3 image-caption set (alias of ``gluon-dml make-fashion3``; the code is
:mod:`gluon_dml.data.fashion3`).

    python examples/make_fashion_captions.py OUT_DIR [--train 10000] [--seed 0]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluon_dml.data.fashion3 import main  # noqa: E402

if __name__ == '__main__':
    main(sys.argv[1:])
