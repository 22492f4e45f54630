#!/usr/bin/env python
"""Alias of ``gluon-dml tsne`` (the code: gluon_dml/commands/tsne.py)."""
import _path  # noqa: F401  (source-checkout imports)

from gluon_dml.commands import alias

if __name__ == '__main__':
    alias('tsne')
