"""PNG plots of a run with matplotlib's Agg backend (no display needed, safe off the main thread).

Each function takes plain numpy data (see :mod:`gluon_dml.viz.views`) and writes one PNG with a
title, labelled axes, a legend and one colour per class; files are written atomically (a reader
never sees half a PNG).
"""
import math
import os

import numpy as np

from .views import CORRECT_RGB, QUERY_RGB, WRONG_RGB, to_rgb

__all__ = ['class_colours', 'plot_loss_curve', 'plot_epoch_curves', 'plot_tsne', 'plot_retrieval',
           'plot_distances', 'metric_title', 'ordered_keys', 'series']


def _figure(width, height):
    # The object-oriented API with an Agg canvas: no pyplot state, no GUI backend, thread safe.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def check_image_path(path, flag='--out'):
    """Refuse, before any work, a file name whose extension names no format matplotlib writes
    (the figure is written in the format of its extension; none: PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fmt = os.path.splitext(path)[1][1:].lower()
    known = FigureCanvasAgg.get_supported_filetypes()
    if fmt and fmt not in known:
        from ..errors import UserError
        raise UserError('%s %s: .%s is no image format the plot can be written in (%s).'
                        % (flag, path, fmt, ', '.join(sorted(known))))
    return path


def _save(fig, path):
    """Write the figure to ``path`` in the format its extension names (none: PNG), atomically:
    a failed write leaves neither a cut file nor a temporary (a full disk left PATH.part.png)."""
    from ..fileio import atomic_save
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fmt = os.path.splitext(path)[1][1:].lower() or 'png'
    atomic_save(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=100, bbox_inches='tight',
                                              facecolor='white'))
    return path


def class_colours(n):
    """``n`` distinct RGBA colours: tab10 up to 10 classes, tab20 up to 20, then a wide colormap."""
    from matplotlib import colormaps
    if n <= 10:
        return [colormaps['tab10'](i) for i in range(n)]
    if n <= 20:
        return [colormaps['tab20'](i) for i in range(n)]
    cmap = colormaps['turbo']
    return [cmap(i / max(1, n - 1)) for i in range(n)]


_TITLES = {'loss': 'training loss (epoch mean)', 'lr': 'learning rate', 'nmi': 'NMI',
           'map@r': 'MAP@R', 'r_precision': 'R-precision', 'train_time': 'training time (s)',
           'eval_time': 'evaluation time (s)', 'images_per_sec': 'training images / s'}


def metric_title(key):
    """A readable title for a ``log.jsonl`` key (``recall@1`` -> ``Recall@1``)."""
    if key in _TITLES:
        return _TITLES[key]
    if key.startswith('recall@'):
        return 'Recall@' + key.split('@', 1)[1]
    if key.startswith('loss_'):
        return 'loss parameter: ' + key[len('loss_'):]
    return key


def ordered_keys(records):
    """The numeric keys of ``records`` in dashboard order: retrieval and clustering metrics,
    then the training loss, the learning rate, the loss's learned parameters, then timings
    (``num_*`` bookkeeping counts such as ``num_queries`` are left out)."""
    keys = []
    for r in records:
        for k, v in r.items():
            if (k != 'epoch' and not k.startswith('num_') and k not in keys
                    and isinstance(v, (int, float)) and not isinstance(v, bool)):
                keys.append(k)

    def rank(k):
        if k in ('train_time', 'eval_time', 'images_per_sec'):
            return 4
        if k.startswith('loss_'):
            return 3
        if k == 'lr':
            return 2
        if k == 'loss':
            return 1
        return 0
    return sorted(keys, key=lambda k: (rank(k), keys.index(k)))


def series(records, key):
    """(epochs, values) of ``key`` over ``records``, skipping epochs without a finite value."""
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(r['epoch'])
            ys.append(float(v))
    return xs, ys


def plot_loss_curve(steps, values, path, title='training loss', interval=None):
    fig = _figure(8, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    label = 'mean of each %d iterations' % interval if interval else 'loss'
    ax.plot(steps, values, color='tab:blue', lw=1.5, marker='.' if len(steps) < 60 else None,
            label=label)
    ax.set_title(title)
    ax.set_xlabel('iteration')
    ax.set_ylabel('loss')
    ax.grid(alpha=0.3)
    if len(steps):
        ax.legend(loc='upper right')
    return _save(fig, path)


def plot_epoch_curves(records, path, title='per-epoch values'):
    """One small panel per ``log.jsonl`` key (metrics, loss, learning rate, loss parameters)."""
    from matplotlib.ticker import MaxNLocator
    keys = ordered_keys(records)
    cols = 3
    rows = max(1, int(math.ceil(len(keys) / float(cols))))
    fig = _figure(4.2 * cols, 2.8 * rows + 0.6)
    fig.suptitle(title)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        xs, ys = series(records, key)
        ax.plot(xs, ys, marker='o', ms=4, lw=1.5, color='tab:blue', label=key)
        ax.set_title(metric_title(key), fontsize=10)
        ax.set_xlabel('epoch')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc='best')
        if key == 'lr':
            ax.ticklabel_format(axis='y', style='sci', scilimits=(-3, 3))
    fig.tight_layout()
    return _save(fig, path)


def plot_tsne(xy, labels, path, title='t-SNE', class_names=None, images=None, max_thumbnails=300):
    """Scatter of t-SNE coordinates, one colour per class, with a legend (up to 30 classes).
    With ``images`` (N, C, H, W) a seeded subset of points is drawn as framed thumbnails."""
    xy = np.asarray(xy)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    colours = class_colours(len(classes))
    fig = _figure(9, 8)
    ax = fig.add_subplot(1, 1, 1)
    names = class_names or {}
    for colour, c in zip(colours, classes):
        m = labels == c
        name = names[c] if isinstance(names, dict) and c in names else (
            names[int(c)] if isinstance(names, (list, tuple)) and int(c) < len(names) else 'class %s' % c)
        ax.scatter(xy[m, 0], xy[m, 1], s=10 if images is None else 4, color=colour, alpha=0.8,
                   label='%s (%d)' % (name, m.sum()))
    if images is not None and len(xy):
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage
        rgb = to_rgb(images)
        pick = np.random.RandomState(0).permutation(len(xy))[:max_thumbnails]
        zoom = 24.0 / max(rgb.shape[1:3])
        colour_of = {c: colours[i] for i, c in enumerate(classes)}
        for i in pick:
            box = AnnotationBbox(OffsetImage(rgb[i], zoom=zoom, cmap=None), xy[i], frameon=True,
                                 pad=0.1, bboxprops=dict(edgecolor=colour_of[labels[i]], lw=1.5))
            ax.add_artist(box)
    ax.set_title(title)
    ax.set_xlabel('t-SNE dimension 1')
    ax.set_ylabel('t-SNE dimension 2')
    if len(classes) <= 30:
        ax.legend(title='class (points)', fontsize=8, markerscale=2, loc='center left',
                  bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.2)
    return _save(fig, path)


def plot_retrieval(grid, path, title='retrieval', n_queries=None, k=None, precision=None):
    """The grid of :func:`gluon_dml.viz.views.retrieval_grid` with a legend of its frames."""
    from matplotlib.patches import Patch
    h, w = grid.shape[:2]
    fig = _figure(max(5.0, w / 60.0), max(3.0, h / 60.0 + 0.8))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(grid, interpolation='nearest')
    ax.set_xticks([])
    ax.set_yticks([])
    sub = []
    if n_queries and k:
        sub.append('%d queries (first column), %d nearest neighbours each' % (n_queries, k))
    if precision is not None:
        sub.append('precision %.2f' % precision)
    ax.set_title(title + ('\n' + '; '.join(sub) if sub else ''))
    ax.set_xlabel('query | neighbours, nearest first')
    ax.legend(handles=[Patch(color=QUERY_RGB, label='query'),
                       Patch(color=CORRECT_RGB, label='same class as the query'),
                       Patch(color=WRONG_RGB, label='another class')],
              loc='upper center', bbox_to_anchor=(0.5, -0.08), ncol=3, fontsize=8)
    return _save(fig, path)


def plot_distances(edges, pos, neg, path, title='pair distances', stats=None):
    centres = 0.5 * (np.asarray(edges[:-1]) + np.asarray(edges[1:]))
    width = float(edges[1] - edges[0]) if len(edges) > 1 else 1.0
    fig = _figure(8, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    stats = stats or {}
    pl = 'positive pairs (same class)'
    nl = 'negative pairs (different classes)'
    if stats.get('positive_mean') is not None and math.isfinite(stats['positive_mean']):
        pl += ', mean %.3f' % stats['positive_mean']
    if stats.get('negative_mean') is not None and math.isfinite(stats['negative_mean']):
        nl += ', mean %.3f' % stats['negative_mean']
    ax.bar(centres, pos, width=width, color='tab:green', alpha=0.55, label=pl)
    ax.bar(centres, neg, width=width, color='tab:red', alpha=0.45, label=nl)
    ax.set_title(title)
    ax.set_xlabel('Euclidean distance between embeddings')
    ax.set_ylabel('density')
    ax.legend(loc='upper right', fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)
