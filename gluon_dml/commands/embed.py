"""Embed your own images (and, with a VSE run, captions) with a trained run.

    gluon-dml embed runs/margin-omniglot --images my_drawings/ --out emb.npz   # a folder
    gluon-dml embed RUN_DIR --images one_image.png --out emb.npz              # one image
    gluon-dml embed RUN_DIR --images list.txt --out emb.npz                   # a list file
    gluon-dml embed runs/vsepp-fashion3 --captions caps.txt --images pics/ --out both.npz

``--images`` takes one image file, a folder (searched recursively) or a list file with one
image per line, either ``path`` or the training format ``path label [split]`` (labels are kept
when every line has one). Images get the run's test-time preprocessing. Writes ``embeddings``
(float32, N x D; hashing runs: ``codes`` in {-1, +1}, N x bits) and ``paths`` (and ``labels``);
VSE runs write ``image_embeddings`` / ``image_files`` and ``caption_embeddings`` / ``captions``
(one row per non-empty line of ``--captions``), rows L2-normalised.
"""
import argparse
import os
import warnings

import numpy as np

from .. import cli
from ..data.captions import tokenize
from ..data.sources import list_images
from ..engine import get_contexts
from ..errors import UserError
from ..fileio import atomic_savez
from ..methods import open_run

__all__ = ['main']


def build_parser():
    p = argparse.ArgumentParser(prog='gluon-dml embed', description=__doc__.splitlines()[0])
    cli.add_threads_flag(p)
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    p.add_argument('run_dir',
                   help='a run folder written by a training command (gluon-dml train-margin, ...)')
    p.add_argument('--images', default=None,
                   help='one image, a folder (searched recursively) or a list file')
    p.add_argument('--captions', default=None, help='VSE runs: a text file, one caption per line')
    p.add_argument('--out', required=True, metavar='FILE.npz')
    p.add_argument('--skip-bad-images', action='store_true',
                   help='leave out (and count) images that cannot be read instead of stopping')
    cli.add_trained_run_flags(p)
    cli.add_int8_flags(p)
    return p


def main(argv=None):
    a = build_parser().parse_args(argv)
    if not a.captions and not a.images:
        raise UserError('Nothing to embed: pass --images (an image, a folder or a list file) '
                        'and/or --captions FILE.')
    a.out = cli.output_path(a.out, '.npz')

    trained = open_run(a.run_dir, get_contexts(a.gpus), a.checkpoint, fuse=not a.no_fusion,
                       int8=cli.int8_setting(a))
    enc = trained.encoders()
    vse = enc.text is not None
    out = {}
    if a.captions:
        if not vse:
            raise UserError('--captions needs a train-vse run; %s is a %s run.'
                            % (a.run_dir, trained.args.get('method')))
        if os.path.isdir(a.captions):
            raise UserError('--captions %s is a folder; give a text file, one caption per line.'
                            % a.captions)
        if not os.path.isfile(a.captions):
            raise FileNotFoundError('--captions %s does not exist.' % a.captions)
        try:
            with open(a.captions, encoding='utf-8') as f:
                lines = [ln.strip() for ln in f if tokenize(ln)]
        except UnicodeDecodeError as err:
            raise UserError('--captions %s is not UTF-8 text (%s); give a text file, one caption '
                            'per line.' % (a.captions, err.reason)) from None
        if not lines:
            raise ValueError('%s holds no caption (no line with a word).' % a.captions)
        out['caption_embeddings'] = np.concatenate(
            [enc.text(lines[s:s + a.batch_size]) for s in range(0, len(lines), a.batch_size)])
        out['captions'] = np.array(lines)
    if a.images:
        if trained.args.get('precomputed'):
            raise UserError('This run embeds precomputed CNN features, not image files.')
        paths, labels = list_images(a.images)
        if labels is not None and None in labels:
            # one labels array: a list with unlabelled lines gives none (the catalogue of
            # gluon-dml index keeps each line's own)
            warnings.warn('%d of the %d lines of %s have no label (first: %s); the embeddings '
                          'are written without labels.' % (labels.count(None), len(labels),
                                                            a.images, paths[labels.index(None)]))
            labels = None
        emb, kept, bad = enc.embed_paths(paths, a.batch_size, progress=not a.no_progress,
                                         skip_bad=a.skip_bad_images)
        for path, why in bad:
            print('skipped: %s (%s)' % (path, why))
        if not kept:
            raise ValueError('None of the %d image(s) of %s could be read.' % (len(paths), a.images))
        key = 'image_embeddings' if vse else ('codes' if enc.kind == 'binary' else 'embeddings')
        out[key] = emb
        out['image_files' if vse else 'paths'] = np.array(kept)
        if labels is not None:
            keep = set(kept)
            out['labels'] = np.array([lab for p, lab in zip(paths, labels) if p in keep])
    atomic_savez(a.out, **out)
    for k, v in out.items():
        print('%-20s %s' % (k, v.shape))
    print('embedded with %s (%s%s): %s' % (a.run_dir, trained.params_label,
                                          cli.inference_note(trained, brief=True), a.out))
    return out
