"""Embed a collection of images with a trained run and index it: a catalogue to search and serve.

    gluon-dml index runs/faces --images photos/ --out catalog/             # faiss, chosen by size
    gluon-dml index runs/faces --images more/ --out catalog/ --add         # add to it
    gluon-dml index runs/faces --images photos/ --out catalog/ --backend milvus          # Milvus Lite
    gluon-dml index runs/faces --images photos/ --out catalog/ --backend milvus --uri http://milvus-host:19530
    gluon-dml index runs/hash-fashion-mnist-hashnet-48 --images pics/ --out codes/  # binary codes

``--images``: one image, a folder (searched recursively; the name of the folder an image sits
in becomes its label) or a list file (``path`` or ``path label [split]`` per line). Embedding
goes in batches with a progress bar and is resumable: run the same command again after an
interruption and the parts already embedded are reused. Unreadable images are skipped and
counted. Prints the catalogue's size, memory and build time.
"""
import argparse
import os
import signal

from .. import cli
from ..catalog import build_catalog, read_record
from ..engine import get_contexts
from ..engine.rundir import check_folder_path

__all__ = ['main']


class _Stopped(KeyboardInterrupt):
    """SIGTERM, answered as Ctrl-C is: :func:`build_catalog` reports what it kept."""

    signame = 'SIGTERM'


def _on_sigterm(signum, frame):
    raise _Stopped()

INDEX_TYPES = ('auto', 'flat', 'ivf_flat', 'ivf_pq', 'hnsw', 'ivf', 'hash')


def build_parser():
    p = argparse.ArgumentParser(prog='gluon-dml index', description=__doc__.splitlines()[0])
    cli.add_threads_flag(p)
    p.add_argument('run_dir', help='the run folder whose network embeds the images')
    p.add_argument('--images', required=True, help='one image, a folder or a list file')
    p.add_argument('--out', required=True, help='the catalogue folder')
    p.add_argument('--add', action='store_true', help='add to the existing catalogue --out')
    p.add_argument('--backend', choices=['faiss', 'milvus'], default=None,
                   help='faiss (files in the catalogue folder) or Milvus (default faiss)')
    p.add_argument('--uri', default=None,
                   help='Milvus: a server or cluster, http://host:19530 (default: Milvus Lite, a '
                        '.db file in the catalogue folder)')
    p.add_argument('--index-type', '--index_type', default='auto', metavar='TYPE',
                   help='auto (by catalogue size), flat, ivf_flat, ivf_pq, hnsw; binary codes: '
                        'flat, ivf, hash; or factory:SPEC (a faiss index_factory string) '
                        '(default auto)')
    p.add_argument('--nlist', type=int, default=None, help='IVF lists (default ~ 4 sqrt(N))')
    p.add_argument('--nprobe', type=int, default=None, help='IVF lists searched per query')
    p.add_argument('--chunk', type=int, default=2048,
                   help='images per saved part of the resumable embedding (default 2048)')
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    cli.add_trained_run_flags(p)
    cli.add_int8_flags(p)
    p.set_defaults(batch_size=64)
    return p


def _refuse_index_settings_for_add(a, params):
    """``--add`` adds to the catalogue's own index: a --backend, --index-type, --nlist or
    --nprobe that would build another was ignored in silence (``--add --backend milvus`` on a
    faiss catalogue added to its faiss index and said so only in the summary line)."""
    manifest = read_record(a.out)[1]
    if manifest is None:
        return                                  # build_catalog says what is wrong with it
    have = (manifest.get('backend'), manifest.get('index_type'))
    wants = []
    if a.backend is not None and a.backend != have[0]:
        wants.append('--backend %s' % a.backend)
    if a.index_type not in ('auto', have[1], manifest.get('requested_type')):
        wants.append('--index-type %s' % a.index_type)
    wants += ['--%s %d' % (k, v) for k, v in sorted(params.items())]
    if wants:
        raise cli.UserError('%s do%s not apply with --add: %s is a %s %s catalogue, and --add '
                            'adds to its own index (to change it, build a new catalogue).'
                            % (', '.join(wants), 'es' if len(wants) == 1 else '', a.out,
                               have[0], have[1]))


def main(argv=None):
    a = build_parser().parse_args(argv)
    if not (a.index_type in INDEX_TYPES or a.index_type.startswith('factory:')):
        raise cli.UserError('--index-type must be one of %s or factory:SPEC, got %r.'
                            % (', '.join(INDEX_TYPES), a.index_type))
    if a.batch_size < 1 or a.chunk < 1:
        raise cli.UserError('--batch-size and --chunk must be positive.')
    # before the embedding: --nprobe -3 failed after it ("unexpected OverflowError" from faiss),
    # and 0 was taken as "not given" and silently replaced by the default
    for flag, value, what in (('--nlist', a.nlist, 'IVF lists'),
                              ('--nprobe', a.nprobe, 'IVF lists searched per query')):
        if value is not None and value < 1:
            raise cli.UserError('%s must be a positive number of %s, got %d.' % (flag, what, value))
    # the catalogue folder, before the run is opened (the OS's "Not a directory (PATH)" came
    # from the first write, naming no flag)
    if not a.out.strip():
        raise cli.UserError('--out is empty; give the catalogue folder.')
    check_folder_path(a.out, '--out')
    if os.path.realpath(a.out) == os.path.realpath(a.run_dir):
        # the catalogue's files went among the run's, and its .lock is the run's own: a training
        # run resumed there was refused while a service held the catalogue, and the reverse
        raise cli.UserError('--out %s is the run folder itself; a catalogue goes in a folder of '
                            'its own (e.g. --out %s/catalog).' % (a.out, a.out.rstrip('/')))
    if not a.images.strip():
        raise cli.UserError('--images is empty; give an image, a folder of images or a list file.')
    # a folder that takes no file (a read-only disk, /proc) failed at the first write with the
    # OS's "[Errno 2] No such file or directory: PATH", naming no flag
    existing = os.path.abspath(a.out)
    while not os.path.isdir(existing):
        existing = os.path.dirname(existing)
    why = cli._takes_no_file(existing)
    if why:
        raise cli.UserError('--out %s cannot be written: %s takes no file (%s).'
                            % (a.out, existing, why))
    params = {k: getattr(a, k) for k in ('nlist', 'nprobe') if getattr(a, k) is not None}
    if a.add:
        _refuse_index_settings_for_add(a, params)
    elif a.uri is not None and a.backend != 'milvus':
        # it was the index layer's "Unknown faiss index parameter(s): uri; known: ..."
        raise cli.UserError('--uri %s is a Milvus address: give --backend milvus with it (the '
                            'faiss backend keeps the index in the catalogue folder).' % a.uri)
    # SIGTERM stops the build as Ctrl-C does (the embedded parts are kept; the message says so).
    # SIGINT too when the process started with it ignored (a background job of a shell script:
    # `kill -INT` did nothing), as the training commands' own handler does.
    with cli.stop_signals({signal.SIGTERM: _on_sigterm}):
        cat, report = build_catalog(a.run_dir, a.images, a.out, backend=a.backend or 'faiss',
                                    index_type=a.index_type, uri=a.uri, add=a.add,
                                    batch_size=a.batch_size, chunk=a.chunk, which=a.checkpoint,
                                    ctx=get_contexts(a.gpus), progress=not a.no_progress,
                                    log=lambda msg: print(msg, flush=True), fuse=not a.no_fusion,
                                    int8=cli.int8_setting(a), **params)
    info = cat.info()
    for path, why in report['unreadable']:
        print('skipped: %s (%s)' % (path, why))
    more = report['skipped_unreadable'] - len(report['unreadable'])
    if more > 0:          # the report keeps the first 10: the rest were dropped without a word
        print('skipped: %d more unreadable image(s), not listed' % more)
    print('%s %s index (%s, %d x %s): %d items (%d added, %d unreadable skipped%s); %.1f MB; '
          'embedded in %.1f s, indexed in %.2f s; catalogue %s'
          % (info['backend'], info['index_type'], info['metric'], info['dim'],
             'bits' if info['kind'] == 'binary' else 'floats', report['count'], report['added'],
             report['skipped_unreadable'], ', %d already there' % report['skipped_already_there']
             if a.add else '', (report['memory_bytes'] or 0) / 2 ** 20, report['embed_seconds'],
             report['index_seconds'], a.out))
    cat.close()
    return report
