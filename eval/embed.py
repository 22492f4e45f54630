#!/usr/bin/env python
"""Embed your own images with a trained run (its test-time preprocessing for its dataset).

    python eval/embed.py runs/margin-omniglot --images my_drawings/ --out emb.npz
    python eval/embed.py RUN_DIR --images list.txt --out emb.npz     # one image path per line
"""
import argparse
import os
import sys

import _path  # noqa: F401  (source-checkout imports)
import numpy as np

from gluon_dml import cli

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm', '.pgm')


def list_images(source):
    """Image paths of a folder (recursively, sorted) or of a list file (one path per line; a
    relative path is taken relative to the list file's folder; '#' starts a comment)."""
    if os.path.isdir(source):
        paths = []
        for root, _, files in os.walk(source):
            paths.extend(os.path.join(root, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS))
        paths.sort()
    elif os.path.isfile(source):
        base = os.path.dirname(os.path.abspath(source))
        with open(source) as f:
            lines = [ln.split('#', 1)[0].strip() for ln in f]
        paths = [p if os.path.isabs(p) else os.path.join(base, p) for p in lines if p]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError('%d image(s) listed in %s do not exist, first: %s.'
                                    % (len(missing), source, missing[0]))
    else:
        raise FileNotFoundError('--images %s is neither a folder nor a list file.' % source)
    if not paths:
        raise ValueError('No images found in %s (looked for %s).' % (source, ', '.join(IMAGE_EXTENSIONS)))
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('run_dir')
    p.add_argument('--images', required=True, help='a folder (searched recursively) or a list file')
    p.add_argument('--out', required=True, metavar='FILE.npz')
    cli.add_trained_run_flags(p)
    a = p.parse_args(argv)

    import mxnet as mx
    from tqdm import tqdm

    from gluon_dml.data import get_transform
    from gluon_dml.engine import get_contexts, load_trained_net

    paths = list_images(a.images)
    ctx = get_contexts(a.gpus)
    args, net, _ = load_trained_net(a.run_dir, ctx, a.checkpoint)
    opts = cli.dataset_options(args, augment=False)
    transform = get_transform(args['data'], **{k: opts[k] for k in ('image_size', 'resize') if k in opts})
    embs = []
    for start in tqdm(range(0, len(paths), a.batch_size), desc='embed', leave=False):
        batch = np.stack([transform(pth) for pth in paths[start:start + a.batch_size]])
        embs.append(net(mx.nd.array(batch, ctx=ctx[0])).asnumpy())
    emb = np.concatenate(embs).astype(np.float32)
    np.savez(a.out, embeddings=emb, paths=np.array(paths))
    print('embedded %d images (dimension %d) with %s: %s' % (len(paths), emb.shape[1], a.run_dir, a.out))
    return emb, paths


if __name__ == '__main__':
    cli.main_guard(main, sys.argv[1:])
