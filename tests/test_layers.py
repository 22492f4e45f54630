"""The package's layers: imports only point down, and there is no cycle between its parts
(docs/design.md). Every import is counted, the ones inside functions too."""
import ast
import collections
import os

from .helpers import REPO

# rank of each part of gluon_dml: a part may import only parts of a lower rank
LAYERS = {
    'errors': 0, 'fileio': 0, 'amx': 0, 'progress': 0,
    'startup': 1, 'data': 1, 'models': 1, 'losses': 1, 'metrics': 1, 'viz': 1,
    'config': 2, 'engine': 2, 'index': 2,
    'methods': 3,
    'catalog': 4, 'export': 4, 'serve': 5, 'launch': 4,
    'cli': 6,
    'commands': 7,
    '__main__': 8,
}


def _imports():
    """{part: {imported part: [module, ...]}} over every module of gluon_dml."""
    edges = collections.defaultdict(lambda: collections.defaultdict(list))
    pkg_root = os.path.join(REPO, 'gluon_dml')
    for folder, _, files in os.walk(pkg_root):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = os.path.join(folder, name)
            module = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
            package = module.rsplit('.', 1)[0] if name != '__init__.py' else module[:-len('.__init__')]
            part = module.split('.')[1] if module.count('.') else '__init__'
            if part.startswith('__init__'):
                continue
            for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
                if isinstance(node, ast.ImportFrom) and node.level:
                    base = package.split('.')[:len(package.split('.')) - node.level + 1]
                    targets = ['.'.join(base + [node.module])] if node.module else \
                        ['.'.join(base + [a.name]) for a in node.names]
                elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('gluon_dml'):
                    targets = [node.module]
                elif isinstance(node, ast.Import):
                    targets = [a.name for a in node.names if a.name.startswith('gluon_dml')]
                else:
                    continue
                for t in targets:
                    other = t.split('.')[1] if t.count('.') else '__init__'
                    if other != part and other != '__init__':
                        edges[part][other].append(module)
    return edges


def test_every_part_has_a_layer():
    parts = {n[:-3] if n.endswith('.py') else n for n in os.listdir(os.path.join(REPO, 'gluon_dml'))
             if (n.endswith('.py') or os.path.isdir(os.path.join(REPO, 'gluon_dml', n)))
             and not n.startswith('__')}
    assert parts <= set(LAYERS), parts - set(LAYERS)


def test_imports_only_point_down():
    upward = ['%s -> %s (in %s)' % (part, other, ', '.join(sorted(set(mods))))
              for part, targets in _imports().items() for other, mods in targets.items()
              if LAYERS[other] >= LAYERS[part]]
    assert upward == [], upward


def test_the_engine_knows_no_method_and_no_command_line():
    engine = _imports()['engine']
    assert not set(engine) & {'cli', 'methods', 'commands', 'config'}, dict(engine)
