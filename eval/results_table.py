#!/usr/bin/env python
"""Alias of ``gluon-dml results-table`` (the code: gluon_dml/commands/results_table.py)."""
import _path  # noqa: F401  (source-checkout imports)

from gluon_dml.commands import alias

if __name__ == '__main__':
    alias('results-table')
