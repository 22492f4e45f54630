#!/usr/bin/env python
"""Alias of ``gluon-dml hash-baselines`` (the code: gluon_dml/commands/hash_baselines.py)."""
import _path  # noqa: F401  (source-checkout imports)

from gluon_dml.commands import alias

if __name__ == '__main__':
    alias('hash-baselines')
