"""The numbers behind the plots, and the PNGs themselves (no server, no training)."""
import re

import numpy as np
import pytest

from gluon_dml.viz import plots, views
from gluon_dml.viz.server import ASSETS, missing_assets, static_dir
from gluon_dml.viz.sink import compute_views, save_views


def _blobs(n_per_class=20, classes=4, dim=8, seed=0):
    rng = np.random.RandomState(seed)
    centres = rng.randn(classes, dim) * 5
    emb = np.concatenate([c + rng.randn(n_per_class, dim) * 0.3 for c in centres]).astype(np.float32)
    labels = np.repeat(np.arange(classes), n_per_class)
    return emb, labels


def test_sample_is_bounded_class_balanced_and_seeded():
    labels = np.repeat(np.arange(5), [100, 100, 100, 100, 10])
    idx = views.sample_indices(labels, 50, seed=3)
    assert len(idx) == 50 and len(np.unique(idx)) == 50
    assert np.bincount(labels[idx], minlength=5).tolist() == [10, 10, 10, 10, 10]
    assert np.array_equal(idx, views.sample_indices(labels, 50, seed=3))
    assert np.array_equal(views.sample_indices(labels, 1000), np.arange(len(labels)))


def test_retrieval_examples_are_the_brute_force_neighbours():
    emb, labels = _blobs()
    queries, nb, correct = views.retrieval_examples(emb, labels, n_queries=6, k=3, seed=1)
    assert len(queries) == 6
    assert len(np.unique(labels[queries][:4])) == 4           # one query per class first
    for q, row, ok in zip(queries, nb, correct):
        d = ((emb - emb[q]) ** 2).sum(1)
        d[q] = np.inf
        assert row.tolist() == np.argsort(d, kind='stable')[:3].tolist()
        assert ok.tolist() == (labels[row] == labels[q]).tolist()
    assert correct.all()                                      # well separated blobs


def test_retrieval_grid_frames_show_right_and_wrong_neighbours():
    images = np.random.RandomState(0).rand(4, 1, 8, 8).astype(np.float32)
    grid = views.retrieval_grid(images, np.array([0]), np.array([[1, 2]]),
                                np.array([[True, False]]), cell=16, frame=2, gap=4)
    cw = 8 * 2 + 4                                            # scaled cell plus its frame
    assert grid.shape == (cw + 4, 3 * cw + 4 * 2 + 4, 3)
    top_left = lambda c: grid[2, 2 + c * (cw + 2) + (4 if c else 0)]  # noqa: E731
    assert np.allclose(top_left(0), views.QUERY_RGB)
    assert np.allclose(top_left(1), views.CORRECT_RGB)
    assert np.allclose(top_left(2), views.WRONG_RGB)


def test_distance_histograms_match_numpy():
    emb, labels = _blobs(n_per_class=6, classes=3)
    edges, pos, neg, stats = views.distance_histograms(emb, labels, bins=10)
    d, same = [], []
    for i in range(len(emb)):
        for j in range(i + 1, len(emb)):
            d.append(np.linalg.norm(emb[i] - emb[j]))
            same.append(labels[i] == labels[j])
    d, same = np.array(d), np.array(same)
    assert stats['positive_pairs'] == same.sum() == 3 * 15
    assert np.allclose(pos, np.histogram(d[same], edges, density=True)[0], atol=1e-5)
    assert np.allclose(neg, np.histogram(d[~same], edges, density=True)[0], atol=1e-5)
    assert stats['positive_mean'] == pytest.approx(d[same].mean(), rel=1e-5)
    assert stats['positive_mean'] < stats['negative_mean']


def test_tsne_keeps_separated_classes_apart():
    emb, labels = _blobs(n_per_class=15, classes=3, dim=16)
    xy = views.tsne_2d(emb, seed=0, max_iter=300)
    assert xy.shape == (45, 2) and np.isfinite(xy).all()
    centres = np.array([xy[labels == c].mean(0) for c in range(3)])
    spread = max(np.linalg.norm(xy[labels == c] - centres[c], axis=1).mean() for c in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > 2 * spread


def _png_size(path):
    from PIL import Image
    with Image.open(path) as im:
        return im.size, np.asarray(im.convert('RGB'))


def test_plots_are_written_with_content(tmp_path):
    emb, labels = _blobs(n_per_class=12, classes=3)
    images = np.random.RandomState(0).rand(len(emb), 1, 8, 8).astype(np.float32)
    v = compute_views(emb, labels, images, tsne_points=30, n_queries=3, k=4, tsne_iter=250)
    v['epoch'] = np.array(7)
    assert len(v['tsne_xy']) == 30 and v['grid'].shape[2] == 3
    save_views(v, str(tmp_path), 'unit')
    for name in ('tsne_epoch007.png', 'retrieval_epoch007.png', 'distances_epoch007.png',
                 'views_epoch007.npz'):
        assert (tmp_path / name).stat().st_size > 1000, name
    records = [{'epoch': 0, 'recall@1': 0.5, 'nmi': 0.3, 'num_queries': 36},
               {'epoch': 1, 'recall@1': 0.7, 'nmi': 0.4, 'loss': 0.3, 'lr': 1e-3, 'loss_beta': 1.1,
                'num_queries': 36}]
    assert plots.ordered_keys(records) == ['recall@1', 'nmi', 'loss', 'lr', 'loss_beta']
    plots.plot_epoch_curves(records, str(tmp_path / 'epochs.png'))
    plots.plot_loss_curve([2, 4, 6], [1.0, 0.8, 0.5], str(tmp_path / 'loss.png'), interval=2)
    plots.plot_tsne(v['tsne_xy'], v['tsne_labels'], str(tmp_path / 'thumbs.png'),
                    class_names=['a', 'b', 'c'], images=images[v['tsne_index']])
    for name in ('epochs.png', 'loss.png', 'thumbs.png'):
        (w, h), rgb = _png_size(tmp_path / name)
        assert w > 300 and h > 200
        assert (rgb.min(axis=2) < 200).mean() > 0.01, name      # something drawn, not blank
    # The t-SNE PNG uses the class colours (tab10) of the legend.
    _, rgb = _png_size(tmp_path / 'tsne_epoch007.png')
    for colour in plots.class_colours(3):
        target = np.array(colour[:3]) * 255
        assert (np.abs(rgb.astype(int) - target).max(axis=2) < 40).sum() > 20


def test_the_asset_list_covers_every_file_of_visdoms_page():
    """Every ``static_url(...)`` of the installed visdom's index.html is one of our assets."""
    with open(static_dir() + '/index.html') as f:
        page = f.read()
    wanted = set(re.findall(r"""static_url\(\s*["']([^"']+)["']\s*\)""", page)) - {'../user/style.css'}
    shipped = {'js/main.js', 'css/style.css', 'css/network.css'}
    ours = {dest for _, _, files in ASSETS for _, dest in files}
    assert wanted, 'no static_url found in index.html'
    assert wanted - shipped <= ours, sorted(wanted - shipped - ours)
    assert isinstance(missing_assets(), list)
