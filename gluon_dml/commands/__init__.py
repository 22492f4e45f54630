"""``gluon-dml COMMAND ...``: every entry point of the toolkit, installed as one console script.

=================  ==========================================================================
command            what it does
=================  ==========================================================================
train-margin       train an embedding: margin loss + distance-weighted sampling, or any loss
train-npair        train an embedding with the multi-class N-pair loss
train-hash         train binary codes: HashNet, DSH, DCH
train-vse          train a joint image-caption embedding: VSE++ / VSE0
train              train METHOD: any registered method, a plug-in's too
evaluate           a run's metrics on a split
embed              embed images (one, a folder, a list file) or captions with a run
index              embed a collection with a run and index it: a catalogue (faiss or Milvus)
search             search a catalogue by image, vector, text or id
serve              an HTTP service and a web page over a catalogue
export             a run's network as ONNX, checked against the SymbolBlock and onnxruntime
tsne               a t-SNE map of a run's embeddings
results-table      a markdown table of finished runs (mean over seeds)
replay-viz         replay a run folder onto a Visdom dashboard
search-codes       Hamming search with faiss over a hashing run's codes
search-text        search a split's images with a sentence (VSE runs)
hash-baselines     LSH and ITQ codes on raw pixels
make-fashion3      build the fashion3 image-caption set
download           fetch a public dataset into its official layout
visdom-server      the Visdom server, offline
=================  ==========================================================================

The ``train_*.py`` scripts and the ``eval/`` scripts of a source checkout are aliases of these.
``GLUON_DML_PLUGINS=mod1,mod2`` imports those modules first: the losses, datasets and methods
they register are then known to every command (``docs/extending.md``).
"""
import importlib
import sys

__all__ = ['COMMANDS', 'main']

# command -> (module, function), imported only when run (so ``--threads`` reaches MXNet)
COMMANDS = {
    'train-margin': ('gluon_dml.commands.train', 'margin'),
    'train-npair': ('gluon_dml.commands.train', 'npair'),
    'train-hash': ('gluon_dml.commands.train', 'hash'),
    'train-vse': ('gluon_dml.commands.train', 'vse'),
    'train': ('gluon_dml.commands.train', 'any_method'),
    'evaluate': ('gluon_dml.commands.evaluate', 'main'),
    'embed': ('gluon_dml.commands.embed', 'main'),
    'index': ('gluon_dml.commands.index', 'main'),
    'search': ('gluon_dml.commands.search', 'main'),
    'serve': ('gluon_dml.commands.serve', 'main'),
    'export': ('gluon_dml.commands.export', 'main'),
    'tsne': ('gluon_dml.commands.tsne', 'main'),
    'results-table': ('gluon_dml.commands.results_table', 'main'),
    'replay-viz': ('gluon_dml.commands.replay_viz', 'main'),
    'search-codes': ('gluon_dml.commands.search_codes', 'main'),
    'search-text': ('gluon_dml.commands.search_text', 'main'),
    'hash-baselines': ('gluon_dml.commands.hash_baselines', 'main'),
    'make-fashion3': ('gluon_dml.data.fashion3', 'main'),
    'download': ('gluon_dml.data.download', 'main'),
    'visdom-server': ('gluon_dml.viz.server', 'main'),
}


def _usage():
    lines = __doc__.split('\n')
    return 'usage: gluon-dml COMMAND [options]   (gluon-dml COMMAND --help for its options)\n\n' + \
        '\n'.join(lines[2:lines.index('', 3) + 1 if '' in lines[3:] else None]).rstrip() + '\n'


def load_plugins():
    """Import the modules named in ``GLUON_DML_PLUGINS`` (comma-separated)."""
    import os
    from ..errors import UserError
    for name in filter(None, (n.strip() for n in os.environ.get('GLUON_DML_PLUGINS', '').split(','))):
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise UserError('GLUON_DML_PLUGINS names %s, which cannot be imported (%s).' % (name, err)) from None


def command(name):
    """The function behind command ``name`` (it takes argv)."""
    module, attr = COMMANDS[name]
    return getattr(importlib.import_module(module), attr)


def main(argv=None):
    """The ``gluon-dml`` console script."""
    from ..cli import main_guard
    top_level = argv is None                  # the process's own command line
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help', 'help'):
        print(_usage())
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print('error: unknown command %r; the commands are: %s.' % (name, ', '.join(COMMANDS)),
              file=sys.stderr)
        return 2
    return exit_code(main_guard(lambda rest: (load_plugins(), command(name)(rest))[1], argv[1:],
                                top_level))


def exit_code(result):
    """The process's exit status from a command's return value: an int is one (``download``
    and ``visdom-server`` return 2 / 1 on failure); anything else (metrics, a report) is 0."""
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def alias(name):
    """Run command ``name`` on ``sys.argv[1:]`` (the body of every script alias)."""
    from ..cli import main_guard
    code = exit_code(main_guard(lambda rest: (load_plugins(), command(name)(rest))[1],
                                sys.argv[1:], True))
    if code:
        sys.exit(code)
