#!/usr/bin/env python
"""Print which parts of the package import which: the import graph of docs/design.md.

    python docs/examples/import_graph.py            # this checkout
    python docs/examples/import_graph.py ROOT       # another checkout (a folder holding gluon_dml/)

A part is a sub-package or a top-level module of ``gluon_dml`` (``cli``, ``config``, ``engine``,
``methods`` ...). Every ``import`` / ``from ... import`` of the package counts, at module level or
inside a function (the package imports heavy parts lazily, inside functions). Imports within a
part are left out. Reads the source with ``ast``; imports nothing of the package.
"""
import ast
import os
import sys
from collections import defaultdict

__all__ = ['import_graph', 'format_graph']


def _part(module):
    bits = module.split('.')
    return bits[1] if len(bits) > 1 else '__init__'


def import_graph(root):
    """``{part: set of parts it imports}`` for the package ``root/gluon_dml``."""
    package = os.path.join(root, 'gluon_dml')
    edges = defaultdict(set)
    for dirpath, _, files in os.walk(package):
        for name in sorted(files):
            if not name.endswith('.py'):
                continue
            path = os.path.join(dirpath, name)
            module = os.path.relpath(path, root)[:-3].replace(os.sep, '.')
            is_init = name == '__init__.py'
            if is_init:
                module = module[:-len('.__init__')]
            source = _part(module)
            with open(path, encoding='utf-8') as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                targets = []
                if isinstance(node, ast.ImportFrom):
                    if node.level:                      # relative: resolve against the module
                        base = module.split('.') if is_init else module.split('.')[:-1]
                        base = base[:len(base) - (node.level - 1)]
                        if node.module:
                            targets = ['.'.join(base + [node.module])]
                        else:
                            targets = ['.'.join(base + [a.name]) for a in node.names]
                    elif node.module and node.module.split('.')[0] == 'gluon_dml':
                        targets = [node.module]
                elif isinstance(node, ast.Import):
                    targets = [a.name for a in node.names if a.name.split('.')[0] == 'gluon_dml']
                for target in targets:
                    part = _part(target)
                    if part != source:
                        edges[source].add(part)
    return dict(edges)


def format_graph(edges):
    """One line per importing part: ``part -> a, b, c``."""
    return '\n'.join('%-9s -> %s' % (part, ', '.join(sorted(edges[part]))) for part in sorted(edges))


if __name__ == '__main__':
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    print(format_graph(import_graph(sys.argv[1] if len(sys.argv) > 1 else here)))
