"""A t-SNE map (PNG) of a trained run's embeddings of one split, coloured by class.

    gluon-dml tsne runs/margin-digits                        # test split -> RUN/plots/tsne_test.png
    gluon-dml tsne runs/margin-omniglot --split train --points 2000 --out train.png
    gluon-dml tsne runs/margin-digits --thumbnails           # images instead of dots
"""
import argparse
import os

import numpy as np

from .. import cli
from .. import config
from ..data import get_dataset, split_validation
from ..engine import embed_dataset, get_contexts, load_run_args
from ..methods import open_run
from ..viz import plots, views


def main(argv=None):
    p = argparse.ArgumentParser(prog='gluon-dml tsne', description=__doc__.splitlines()[0])
    cli.add_threads_flag(p)
    p.add_argument('run_dir')
    p.add_argument('--split', default='test', help='train, test, or val (the held-out classes of a --val-classes run) (default: test)')
    p.add_argument('--out', default=None, metavar='PNG',
                   help='output file, in the format its extension names (.png, .svg, .pdf ...) '
                        '(default: RUN_DIR/plots/tsne_SPLIT.png)')
    p.add_argument('--thumbnails', action='store_true',
                   help='draw a framed image thumbnail for (up to 300 of) the points')
    p.add_argument('--points', type=int, default=1000,
                   help='embed and map at most this many images (class-balanced sample)')
    cli.add_trained_run_flags(p)
    p.add_argument('--perplexity', type=float, default=30.0)
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    if a.points < 3:
        raise cli.UserError('--points must be at least 3, got %d.' % a.points)
    if not a.perplexity > 0 or a.perplexity == float('inf'):
        raise cli.UserError('--perplexity must be a positive number (about the neighbours each '
                            'point keeps; 5 to 50 is usual), got %s.' % a.perplexity)
    if not 0 <= a.seed < 2 ** 32:           # numpy's 'Seed must be between 0 and 2**32 - 1'
        raise cli.UserError('--seed must lie in 0 .. 2^32 - 1, got %d.' % a.seed)
    a.out = cli.output_path(a.out)          # settled before the embedding and the t-SNE
    if a.out:                               # its format is its extension's (.svg, .pdf, .png)
        plots.check_image_path(a.out)
    else:
        cli.default_output_folder(os.path.join(a.run_dir, 'plots'), 'the map')
    if load_run_args(a.run_dir).get('method') == 'vse':
        raise cli.UserError('%s is a train-vse run: tsne maps the images of a split coloured by '
                            'class, which an image-caption set has not; evaluate --save-embeddings '
                            'writes its embeddings.' % a.run_dir)

    ctx = get_contexts(a.gpus)
    trained = open_run(a.run_dir, ctx, a.checkpoint, fuse=not a.no_fusion)
    args, net, params = trained.args, trained.net, trained.params
    # the images as the run's evaluation sees them: its preprocessing options, and for 'val'
    # the classes a --val-classes run held out of its training split
    options = config.dataset_options(args, augment=False)
    if a.split == 'val':
        if not args.get('val_classes'):
            raise cli.UserError('%s holds out no validation classes (it trained without '
                                '--val-classes), so it has no val split.' % a.run_dir)
        train = get_dataset(args['data'], args.get('data_path'), 'train', **options)
        dataset = split_validation(train, args['val_classes'])[1]
    else:
        dataset = get_dataset(args['data'], args.get('data_path'), a.split, **options)
    idx = views.sample_indices(dataset.labels, a.points, a.seed)
    if not hasattr(dataset, 'images'):
        # image files (the photo datasets), decoded on access: it said 'unexpected AttributeError'
        subset, images = _Items(dataset, idx), None
    elif len(idx) == len(dataset):
        subset, images = dataset, dataset.images
    else:
        from mxnet.gluon.data import ArrayDataset
        images = dataset.images[idx]
        subset = ArrayDataset(images, dataset.labels[idx])
    emb, labels = embed_dataset(net, subset, ctx, a.batch_size)
    xy = views.tsne_2d(emb, seed=a.seed, perplexity=a.perplexity)
    if not a.thumbnails:
        images = None
    elif images is None:
        images = _thumbnails(dataset, idx)
    names = getattr(dataset, 'class_names', None)
    out = a.out or os.path.join(a.run_dir, 'plots', 'tsne_%s.png' % a.split)
    title = 't-SNE of %d %s embeddings - %s (%s)' % (len(xy), a.split, args.get('name', a.run_dir),
                                                     os.path.basename(params))
    plots.plot_tsne(xy, labels, out, title=title, class_names=names, images=images)
    print('t-SNE of %d %s images of %s (%d classes): %s'
          % (len(xy), a.split, a.run_dir, len(np.unique(labels)), out))
    return out


class _Items(object):
    """Items ``idx`` of an image-file dataset, in that order (what embed_dataset reads)."""

    def __init__(self, dataset, idx):
        self.dataset, self.idx = dataset, np.asarray(idx)

    def __len__(self):
        return len(self.idx)

    def __getitem__(self, i):
        return self.dataset[int(self.idx[i])]


def _thumbnails(dataset, idx, size=32):
    """(N, 3, size, size) float32 in [0, 1]: items ``idx`` of an image-file dataset, decoded and
    shrunk (the map draws them about 24 pixels wide), for --thumbnails."""
    out = np.zeros((len(idx), 3, size, size), np.float32)
    for j, i in enumerate(idx):
        img = dataset.load(int(i)).resize((size, size))
        out[j] = np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0
    return out
