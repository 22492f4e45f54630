#!/usr/bin/env python
"""Embed your own captions and images with a train_vse.py run, into its joint space.

    python eval/embed_vse.py runs/vsepp-fashion3 --captions my_captions.txt --out caps.npz
    python eval/embed_vse.py RUN_DIR --images photos/ --captions caps.txt --out both.npz

Writes ``caption_embeddings`` (one row per non-empty line of --captions) with ``captions``, and
``image_embeddings`` with ``image_files`` (the images of a folder or list file, preprocessed as
the run's dataset); rows are L2-normalised, so a dot product is the similarity the run learned.
"""
import argparse
import os
import sys

import _path  # noqa: F401  (source-checkout imports)
import numpy as np

from gluon_dml import cli


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('run_dir', help='a run folder written by train_vse.py')
    p.add_argument('--captions', default=None, help='a text file, one caption per line')
    p.add_argument('--images', default=None, help='a folder (searched recursively) or a list file')
    p.add_argument('--out', required=True, metavar='FILE.npz')
    cli.add_trained_run_flags(p)
    a = p.parse_args(argv)
    if not a.captions and not a.images:
        raise cli.UserError('Nothing to embed: pass --captions FILE and/or --images DIR.')

    from embed import list_images
    from gluon_dml.data.captions import CaptionSet, tokenize
    from gluon_dml.engine import get_contexts
    from gluon_dml.engine.vse import embed_captions, embed_images, image_transform, load_vse_run

    ctx = get_contexts(a.gpus)
    args, net, vocab, _ = load_vse_run(a.run_dir, ctx, a.checkpoint)
    out = {}
    if a.captions:
        if not os.path.isfile(a.captions):
            raise FileNotFoundError('--captions %s does not exist.' % a.captions)
        with open(a.captions, encoding='utf-8') as f:
            lines = [ln.strip() for ln in f if tokenize(ln)]
        if not lines:
            raise ValueError('%s holds no caption (no line with a word).' % a.captions)
        out['caption_embeddings'] = embed_captions(net, vocab, [tokenize(l) for l in lines], ctx,
                                                   a.batch_size, progress=True)
        out['captions'] = np.array(lines)
    if a.images:
        if args.get('precomputed'):
            raise cli.UserError('This run embeds precomputed CNN features, not image files.')
        paths = list_images(a.images)
        cset = CaptionSet(paths, [['x']] * (5 * len(paths)), transform=image_transform(args['data']))
        out['image_embeddings'] = embed_images(net, cset, ctx, a.batch_size, progress=True)
        out['image_files'] = np.array(paths)
    np.savez(a.out, **out)
    for k, v in out.items():
        print('%-20s %s' % (k, v.shape))
    print('written: %s' % a.out)
    return out


if __name__ == '__main__':
    cli.main_guard(main, sys.argv[1:])
