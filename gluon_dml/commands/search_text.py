"""Search the images of a split with a sentence, using a train_vse.py run.

    gluon-dml search-text runs/vsepp-fashion3 "a bag, then a shirt, then a sandal"
    gluon-dml search-text RUN_DIR "a dog on a beach" --split test --top 10 --grid hits.png
"""
import argparse
import os

import numpy as np

from .. import cli
from ..data.captions import is_precomputed, tokenize
from ..engine import get_contexts, load_run_args
from ..fileio import atomic_save
from ..methods import open_run
from ..methods.vse import data_root, embed_captions, embed_images, load_split


def _grid_format(path, run_dir):
    """``--grid``'s image format: one PIL can write, for a file that is not one of the run (a name
    PIL knows no format for was "unknown file extension: .json" once the split was embedded and
    searched)."""
    from PIL import Image
    cli.refuse_run_file(run_dir, path, '--grid')
    Image.init()
    ext = os.path.splitext(path)[1].lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt not in Image.SAVE:                                       # .psd: PIL only reads it
        raise cli.UserError('--grid %s: %s is no image format PIL writes; give a .png (or .jpg) '
                            'file name.' % (path, "'%s'" % ext if ext else 'a name without an '
                                            'extension'))
    return fmt


def _no_pictures(a, args):
    """Why ``--grid`` cannot be drawn for the run's dataset, or None. A dataset of precomputed
    features (``{split}_ims.npy`` with ``{split}_caps.txt``: ``f30k_precomp``, ``coco_precomp``)
    holds one row of CNN features per image and no file name or id that leads to a picture, so
    there is nothing to draw (the grid was skipped in silence after the search)."""
    root = a.data_path or args.get('data_path')
    if not is_precomputed(root, args.get('data')):
        return None
    return ('--grid %s: the run %s searches precomputed image features (%s: the *_ims.npy rows '
            'of %s), which hold no pictures and no file names to find them by; leave --grid out '
            '(the hits are printed by rank and row).' % (a.grid, a.run_dir, args.get('data'), root))


@cli.interrupted_means('Interrupted (Ctrl-C) before the search was done; nothing was written.')
def main(argv=None):
    p = argparse.ArgumentParser(prog='gluon-dml search-text', description=__doc__.splitlines()[0])
    cli.add_threads_flag(p)
    p.add_argument('run_dir', help='a run folder written by gluon-dml train-vse')
    p.add_argument('sentence', help='the query, in words')
    p.add_argument('--split', default='test', help='the images searched: train, val or test')
    p.add_argument('--data-path', '--data_path', default=None,
                   help='where the dataset lives (default: the path the run used)')
    p.add_argument('--top', type=int, default=5, help='how many images to print')
    cli.add_trained_run_flags(p)
    p.add_argument('--grid', default=None, metavar='FILE.png',
                   help='also save the hits side by side (runs on pictures, not on precomputed '
                        'features)')
    a = p.parse_args(argv)
    if a.top < 1:
        raise cli.UserError('--top must be at least 1, got %d.' % a.top)
    a.grid = cli.output_path(a.grid, flag='--grid')     # settled before the embedding
    fmt = _grid_format(a.grid, a.run_dir) if a.grid else None

    run_args = load_run_args(a.run_dir)
    if run_args.get('method') != 'vse':
        raise cli.UserError('%s is not a train-vse run; text search needs an image-caption '
                            'embedding.' % a.run_dir)
    why = _no_pictures(a, run_args) if a.grid else None
    if why:                                           # before the run is opened and embedded
        raise cli.UserError(why)
    tokens = tokenize(a.sentence)
    if not tokens:
        raise cli.UserError('The sentence %r has no words to search with.' % a.sentence)
    ctx = get_contexts(a.gpus)
    trained = open_run(a.run_dir, ctx, a.checkpoint, method='vse', fuse=not a.no_fusion)
    args, net, vocab = trained.args, trained.net, trained.method.vocabulary(trained)
    unknown = [t for t in tokens if t not in vocab]
    if unknown:
        print('note: words the run never learned (read as <unk>): %s' % ', '.join(unknown))
    cset = load_split(args, a.data_path or data_root(args), a.split)
    img = embed_images(net, cset, ctx, a.batch_size, progress=True)
    query = embed_captions(net, vocab, [tokens], ctx)[0]
    scores = img @ query
    order = np.argsort(-scores)[:a.top]
    print('query: %s' % ' '.join(tokens))
    for rank, i in enumerate(order, 1):
        print('%2d. %.4f  %s  (captioned: "%s")' % (rank, scores[i], cset.image_ids[i],
                                                  cset.raw[5 * i]))
    if a.grid:                           # (precomputed features were refused above)
        from PIL import Image
        pics = [cset.image(int(i)) for i in order]
        pics = [np.clip(p * (0.229 if p.shape[0] == 3 else 1) + (0.45 if p.shape[0] == 3 else 0), 0, 1)
                for p in pics]
        row = np.concatenate([np.pad(p, ((0, 0), (2, 2), (2, 2)), constant_values=1) for p in pics], axis=2)
        arr = (row.transpose(1, 2, 0) * 255).astype(np.uint8)
        grid = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
        # through a temporary: PIL writes in place, and a format that refused the image
        # ("cannot write mode L as XBM") left the file that was there empty
        try:
            atomic_save(a.grid, lambda tmp: grid.save(tmp, format=fmt))
        except (OSError, ValueError, KeyError) as err:
            raise cli.UserError('--grid %s cannot be written as %s (%s); give a .png file name.'
                                % (a.grid, fmt, err)) from None
        print('written: %s' % a.grid)
    return [(cset.image_ids[i], float(scores[i])) for i in order]

