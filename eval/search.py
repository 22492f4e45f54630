#!/usr/bin/env python
"""Alias of ``gluon-dml search-codes`` (the code: gluon_dml/commands/search_codes.py)."""
import _path  # noqa: F401  (source-checkout imports)

from gluon_dml.commands import alias

if __name__ == '__main__':
    alias('search-codes')
