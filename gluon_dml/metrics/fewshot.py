"""Few-shot classification over embeddings: N-way K-shot episodes (numpy only; no MXNet).

The Omniglot benchmark protocol (Vinyals et al., "Matching Networks for One Shot Learning",
NeurIPS 2016; Snell, Swersky, Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS
2017): from the test classes draw ``episodes`` episodes; each picks ``way`` classes and, from each,
``shot`` support images and ``queries`` query images (all distinct); every query is classified
among the episode's ``way`` classes from the support embeddings alone; an episode's accuracy is
the fraction of its ``way * queries`` queries classified correctly. The result is the mean over
episodes with the 95% confidence interval ``1.96 * std / sqrt(episodes)`` (``std`` the population
standard deviation of the per-episode accuracies, as in Snell et al.'s evaluation).

Classifiers (``method``):

- ``'prototype'``: Snell et al. 2017, eq. 1-2: each class's prototype is the mean of its support
  embeddings; a query takes the class of the nearest prototype.
- ``'nearest'``: 1-nearest-neighbour among all support embeddings (the same as ``'prototype'``
  when ``shot`` = 1).

``metric``: ``'euclidean'`` (nearest = smallest Euclidean distance; Snell et al. use its square,
which ranks the same) or ``'cosine'`` (largest cosine similarity; for prototypes, the cosine to the
mean support vector). Distances are computed in float64. Exact ties go to the class drawn first in
the episode (the order of an episode's classes is random).

Classes with fewer than ``shot + queries`` images cannot fill an episode: ``small_classes='skip'``
(default) leaves them out and reports how many in ``skipped_classes``; ``'refuse'`` raises
ValueError. Fewer than ``way`` usable classes always raises ValueError.

Everything is determined by ``seed`` (numpy ``RandomState``): the same seed gives the same
episodes and the same accuracies.
"""
import numpy as np

from .neighbors import _as_embeddings, _as_labels, _positive_int

__all__ = ['sample_episodes', 'classify_episode', 'few_shot_accuracy', 'few_shot_metrics', 'METHODS',
           'METRICS']

METHODS = ('prototype', 'nearest')
METRICS = ('euclidean', 'cosine')
# Snell et al. 2017, Sec. 3.1 (Omniglot): 20-way 1-shot test episodes, 5 query points per class,
# accuracy averaged over 1,000 episodes.
DEFAULTS = dict(way=20, shot=1, queries=5, episodes=1000)


def _usable_classes(labels, need, small_classes):
    classes, counts = np.unique(labels, return_counts=True)
    small = counts < need
    if small.any() and small_classes == 'refuse':
        raise ValueError('%d classes have fewer than shot + queries = %d images (e.g. class %r with '
                         '%d); use small_classes="skip" to leave them out.'
                         % (small.sum(), need, classes[small][0].item(), counts[small][0]))
    return classes[~small], int(small.sum())


def sample_episodes(labels, way=20, shot=1, queries=5, episodes=1000, seed=0, small_classes='skip'):
    """Draw the episodes: ``(support, query, skipped)``.

    ``support`` int64 (episodes, way, shot) and ``query`` (episodes, way, queries) hold row indices
    into ``labels``; row ``[e, c]`` of both belongs to the ``c``-th class of episode ``e``, and the
    ``way`` classes of an episode are distinct and in random order. ``skipped`` is the number of
    classes left out for having fewer than ``shot + queries`` images.
    """
    way = _positive_int(way, 'way')
    shot = _positive_int(shot, 'shot')
    queries = _positive_int(queries, 'queries')
    episodes = _positive_int(episodes, 'episodes')
    if small_classes not in ('skip', 'refuse'):
        raise ValueError("small_classes must be 'skip' or 'refuse', got %r." % (small_classes,))
    if hasattr(labels, 'asnumpy'):
        labels = labels.asnumpy()
    labels = np.asarray(labels)
    labels = _as_labels(labels, labels.shape[0] if labels.ndim else -1)
    need = shot + queries
    classes, skipped = _usable_classes(labels, need, small_classes)
    if len(classes) < way:
        raise ValueError('A %d-way episode needs %d classes with at least shot + queries = %d images '
                         'each; these labels have %d (%d others too small).'
                         % (way, way, need, len(classes), skipped))
    members = {c: np.flatnonzero(labels == c) for c in classes.tolist()}
    rng = np.random.RandomState(seed)
    support = np.empty((episodes, way, shot), np.int64)
    query = np.empty((episodes, way, queries), np.int64)
    for e in range(episodes):
        for c, cls in enumerate(rng.choice(len(classes), way, replace=False)):
            rows = members[classes[cls].item()]
            pick = rows[rng.choice(len(rows), need, replace=False)]
            support[e, c], query[e, c] = pick[:shot], pick[shot:]
    return support, query, skipped


def _check_choice(value, allowed, name):
    if value not in allowed:
        raise ValueError('%s must be one of %s, got %r.' % (name, ', '.join(allowed), value))


def classify_episode(support_emb, query_emb, method='prototype', metric='euclidean'):
    """Predicted class positions for a batch of episodes.

    ``support_emb`` (E, way, shot, D), ``query_emb`` (E, Q, D). Returns int64 (E, Q): for every
    query the position ``c`` (0..way-1) of the class it is assigned to.
    """
    _check_choice(method, METHODS, 'method')
    _check_choice(metric, METRICS, 'metric')
    s = np.asarray(support_emb, np.float64)
    q = np.asarray(query_emb, np.float64)
    E, way, shot, D = s.shape
    if metric == 'cosine':
        q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)
    if method == 'prototype':
        refs = s.mean(axis=2)                                            # (E, way, D)
        owner = np.arange(way)
    else:
        refs = s.reshape(E, way * shot, D)                               # class-major order
        owner = np.repeat(np.arange(way), shot)
    if metric == 'cosine':
        refs = refs / np.maximum(np.linalg.norm(refs, axis=-1, keepdims=True), 1e-12)
        score = -np.einsum('eqd,erd->eqr', q, refs)                      # smaller is nearer
    else:
        score = (np.sum(q * q, axis=-1)[:, :, None] + np.sum(refs * refs, axis=-1)[:, None, :]
                 - 2 * np.einsum('eqd,erd->eqr', q, refs))
    return owner[np.argmin(score, axis=2)]


def few_shot_accuracy(embeddings, labels, way=20, shot=1, queries=5, episodes=1000,
                      method='prototype', metric='euclidean', seed=0, small_classes='skip',
                      chunk=100):
    """N-way K-shot accuracy of ``embeddings`` (N, D) with class ``labels`` (N,) over episodes.

    Returns a dict: ``accuracy`` (mean over episodes, in [0, 1]), ``ci95`` (1.96 * std /
    sqrt(episodes)), ``std``, ``episode_accuracies`` (float64 (episodes,)), and the protocol:
    ``way``, ``shot``, ``queries``, ``episodes``, ``method``, ``metric``, ``seed``,
    ``num_classes`` (classes that could be drawn), ``skipped_classes``. ``chunk`` episodes are
    classified at a time (memory only).
    """
    _check_choice(method, METHODS, 'method')
    _check_choice(metric, METRICS, 'metric')
    emb = _as_embeddings(embeddings, 'embeddings')
    labels = _as_labels(labels, emb.shape[0], 'labels', 'embeddings')
    support, query, skipped = sample_episodes(labels, way, shot, queries, episodes, seed,
                                              small_classes)
    truth = np.repeat(np.arange(way), queries)                           # class-major queries
    acc = np.empty(episodes)
    for start in range(0, episodes, _positive_int(chunk, 'chunk')):
        sl = slice(start, start + chunk)
        s_emb = emb[support[sl]]                                         # (e, way, shot, D)
        q_emb = emb[query[sl]].reshape(-1, way * queries, emb.shape[1])  # (e, way*queries, D)
        pred = classify_episode(s_emb, q_emb, method, metric)
        acc[sl] = (pred == truth).mean(axis=1)
    std = float(acc.std())
    return {'accuracy': float(acc.mean()), 'ci95': 1.96 * std / np.sqrt(episodes), 'std': std,
            'episode_accuracies': acc, 'way': way, 'shot': shot, 'queries': queries,
            'episodes': episodes, 'method': method, 'metric': metric, 'seed': seed,
            'num_classes': int(len(np.unique(labels)) - skipped), 'skipped_classes': skipped}


def few_shot_metrics(embeddings, labels, way=20, shot=1, queries=5, episodes=1000, seed=0):
    """The values an evaluation logs: ``fs_proto`` / ``fs_nn`` (class-prototype and
    nearest-neighbour accuracy over the same seeded episodes), their ``_ci95`` half-widths, and
    ``fs_setting`` ("20-way 1-shot, 5 queries, 1000 episodes")."""
    out = {}
    for key, method in (('fs_proto', 'prototype'), ('fs_nn', 'nearest')):
        r = few_shot_accuracy(embeddings, labels, way=way, shot=shot, queries=queries,
                              episodes=episodes, method=method, seed=seed)
        out[key], out[key + '_ci95'] = r['accuracy'], float(r['ci95'])
    out['fs_setting'] = '%d-way %d-shot, %d queries, %d episodes' % (way, shot, queries, episodes)
    return out
