"""Search a catalogue: by image, by vector, by text (VSE runs), or by an item's id.

    gluon-dml search catalog/ --image query.jpg -k 10
    gluon-dml search catalog/ --text "a red bag on the left" -k 10        # a VSE run's catalogue
    gluon-dml search catalog/ --vector q.npy --json                       # (D,) or (n, D) floats
    gluon-dml search catalog/ --id 42 --filter label=Sandal

Prints the hits nearest first (id, score, label, path); ``--json`` prints them as a JSON list
(one list per query when several are given), each hit with ``id``, ``path``, ``score``,
``distance``, ``label`` and its ``metadata``. Reports the query time.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from .. import cli
from ..catalog import hit_record, open_catalog
from ..data.captions import tokenize
from ..data.transforms import BadImageError
from ..engine import get_contexts

__all__ = ['main']


def build_parser():
    p = argparse.ArgumentParser(prog='gluon-dml search', description=__doc__.splitlines()[0])
    cli.add_threads_flag(p)
    p.add_argument('catalog', help='a catalogue folder made by gluon-dml index')
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument('--image', nargs='+', help='query image file(s)')
    q.add_argument('--vector', help='a .npy file: one (D,) vector or (n, D) vectors')
    q.add_argument('--text', nargs='+', help='query sentence(s) (catalogues of VSE runs)')
    q.add_argument('--id', type=int, help='the id of an item in the catalogue')
    p.add_argument('-k', '--k', type=int, default=10, help='hits per query (default 10)')
    p.add_argument('--filter', action='append', default=[], metavar='FIELD=VALUE',
                   help='only items whose metadata FIELD equals VALUE (repeatable)')
    p.add_argument('--json', action='store_true', help='print the hits as JSON')
    p.add_argument('--uri', default=None, help='Milvus: reach the collection at this address')
    p.add_argument('--gpus', default='', help='GPU ids, "" for the CPU')
    return p


def _fields(cat, sample=200):
    """The metadata fields of (the first ``sample``) items of the catalogue, sorted."""
    fields = set()
    for i in cat.index.ids()[:sample]:
        fields.update(cat.index.get(int(i)))
    return sorted(fields)


def parse_filter(items):
    """``['label=3', 'shop=A']`` -> ``{'label': [3, '3'], 'shop': 'A'}``: a value that reads as
    a number or true/false matches it typed or as text (labels from folder names are text)."""
    out = {}
    for item in items:
        key, text = item.split('=', 1) if '=' in item else ('', '')
        if not key.strip():         # '=3' matched no item, and said only "no item matches"
            raise cli.UserError('--filter takes FIELD=VALUE, got %r.' % item)
        value = text
        for cast in (int, float):
            try:
                value = [cast(text), text]
                break
            except ValueError:
                continue
        if text in ('true', 'false'):
            value = [text == 'true', text]
        out[key.strip()] = value
    return out or None


@cli.interrupted_means('Interrupted (Ctrl-C) before the search was done; nothing was written.')
def main(argv=None):
    a = build_parser().parse_args(argv)
    if a.k < 1:
        raise cli.UserError('-k must be a positive integer, got %d.' % a.k)
    for path in a.image or []:
        if os.path.isdir(path):
            raise cli.UserError('--image %s is a folder; --image takes image files (to search '
                                'with every image of a folder: --image %s/*).'
                                % (path, path.rstrip('/')))
        if not os.path.exists(path):
            raise cli.UserError('The query image %s does not exist.' % path)
    for sentence in a.text or []:
        if not tokenize(sentence):      # it was embedded as an empty caption: hits at random
            raise cli.UserError('The sentence %r has no words to search with.' % sentence)
    cat = open_catalog(a.catalog, get_contexts(a.gpus), a.uri)
    flt = parse_filter(a.filter)
    queries = a.image or a.text or ([a.vector] if a.vector else ['id %d' % a.id])
    if a.image:
        try:
            vectors = cat.embed_images(a.image)        # embedding is not counted as query time
        except BadImageError as err:                   # its advice (--skip-bad-images) is not ours
            if err.reason is None:
                raise
            raise cli.UserError('The query image %s cannot be read (%s).'
                                % (err.path, err.reason)) from None
    elif a.text:
        vectors = cat.embed_text(a.text)
    elif a.vector:
        try:
            vectors = np.load(a.vector, allow_pickle=False)
        except (OSError, ValueError) as err:
            why = ('numpy cannot read it: %s' % err if not str(err).startswith('Cannot load file '
                   'containing pickled data') else 'it is no file written by numpy.save')
            raise cli.UserError('--vector %s is not a .npy array (%s); to search with an image, '
                                'use --image.' % (a.vector, why)) from None
        if isinstance(vectors, np.lib.npyio.NpzFile):     # np.load opens a .npz as an archive
            names = ', '.join(vectors.files) or 'none'
            vectors.close()
            raise cli.UserError('--vector %s is a .npz archive (arrays: %s); give a .npy file of '
                                'one array (numpy.save).' % (a.vector, names))
        try:
            vectors = cat.check_vectors(vectors)
        except ValueError as err:
            why = str(err)
            raise cli.UserError('--vector %s: %s%s' % (a.vector, why[:1].lower(), why[1:])) from None
        if not len(vectors):
            raise cli.UserError('--vector %s holds no vector (shape %s).'
                                % (a.vector, vectors.shape))
        queries = ['%s[%d]' % (a.vector, i) for i in range(len(vectors))]
    t0 = time.perf_counter()
    if a.id is not None:
        results = [cat.search_id(a.id, a.k, flt)]
    else:
        results = cat.search_vectors(vectors, a.k, flt)
    took = time.perf_counter() - t0
    records = [[hit_record(h) for h in hits] for hits in results]
    if a.json:
        print(json.dumps(records[0] if len(records) == 1 else records, indent=1))
    else:
        for query, hits in zip(queries, records):
            print('query: %s' % query)
            for rank, h in enumerate(hits, 1):
                print('%3d. id %-8d score %.4f  label %-12s %s'
                      % (rank, h['id'], h['score'], h['label'] if h['label'] is not None else '-',
                         h['path']))
    print('%d quer%s, k=%d, %d items: %.2f ms search' % (
        len(records), 'y' if len(records) == 1 else 'ies', a.k, len(cat.index), 1000 * took),
        file=sys.stderr if a.json else sys.stdout)
    if flt and not any(records):
        print('note: no item matches --filter %s (the catalogue\'s fields: %s).'
              % (' '.join(a.filter), ', '.join(_fields(cat)) or 'none'), file=sys.stderr)
    cat.close()
    return records
