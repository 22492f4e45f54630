"""Few-shot episodes and accuracy: the sampler's guarantees, hand-made cases (perfect clusters,
random embeddings, a worked 2-way example) and agreement with a slow one-query-at-a-time reference."""
import numpy as np
import pytest

from gluon_dml.metrics.fewshot import (DEFAULTS, classify_episode, few_shot_accuracy,
                                       sample_episodes)

from .reference_fewshot import episode_accuracy, few_shot


def _clusters(n_classes, per_class, dim=8, spread=0.05, seed=0, shuffle=True):
    rng = np.random.RandomState(seed)
    centres = rng.normal(size=(n_classes, dim)) * 3
    labels = np.repeat(np.arange(n_classes), per_class)
    emb = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    if shuffle:
        perm = rng.permutation(len(labels))
        emb, labels = emb[perm], labels[perm]
    return emb.astype(np.float32), labels


def test_defaults_are_the_omniglot_benchmark():
    assert DEFAULTS == dict(way=20, shot=1, queries=5, episodes=1000)
    emb, labels = _clusters(25, 20, seed=1)
    res = few_shot_accuracy(emb, labels)
    assert (res['way'], res['shot'], res['queries'], res['episodes']) == (20, 1, 5, 1000)
    assert res['episode_accuracies'].shape == (1000,)


def test_sampler_guarantees():
    labels = np.repeat(np.arange(12), 7)
    labels[:3] = 99                                    # class 99: 3 images; class 0: 4 images
    support, query, skipped = sample_episodes(labels, way=5, shot=2, queries=3, episodes=200, seed=3)
    assert support.shape == (200, 5, 2) and query.shape == (200, 5, 3)
    assert skipped == 2                                # classes 99 and 0 have fewer than 5 images
    for s, q in zip(support, query):
        classes = [labels[s[c, 0]] for c in range(5)]
        assert len(set(classes)) == 5
        assert not {0, 99} & set(classes)
        for c in range(5):
            rows = list(s[c]) + list(q[c])
            assert len(set(rows)) == 5                 # support and queries are distinct images
            assert all(labels[r] == classes[c] for r in rows)
    # every usable class appears, in every class position
    seen = {labels[support[e, c, 0]] for e in range(200) for c in range(5)}
    assert seen == set(range(1, 12))
    assert {labels[support[e, 0, 0]] for e in range(200)} == set(range(1, 12))


def test_sampler_is_deterministic_for_a_seed():
    labels = np.repeat(np.arange(30), 6)
    a = sample_episodes(labels, 5, 1, 2, 50, seed=7)
    b = sample_episodes(labels, 5, 1, 2, 50, seed=7)
    c = sample_episodes(labels, 5, 1, 2, 50, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a[:2], b[:2]))
    assert not np.array_equal(a[0], c[0])


def test_small_classes_skip_or_refuse():
    labels = np.concatenate([np.repeat(np.arange(6), 4), [6, 6]])     # class 6 has 2 images
    res = few_shot_accuracy(np.eye(26, 8), labels, way=3, shot=1, queries=2, episodes=5)
    assert res['skipped_classes'] == 1 and res['num_classes'] == 6
    with pytest.raises(ValueError, match='fewer than shot \\+ queries = 3'):
        few_shot_accuracy(np.eye(26, 8), labels, way=3, shot=1, queries=2, episodes=5,
                          small_classes='refuse')
    with pytest.raises(ValueError, match='needs 7 classes'):
        few_shot_accuracy(np.eye(26, 8), labels, way=7, shot=1, queries=2, episodes=5)
    with pytest.raises(ValueError, match='method'):
        few_shot_accuracy(np.eye(26, 8), labels, way=3, method='svm')
    with pytest.raises(ValueError, match='way'):
        few_shot_accuracy(np.eye(26, 8), labels, way=0)
    with pytest.raises(ValueError, match='rows'):
        few_shot_accuracy(np.eye(25, 8), labels, way=3)


@pytest.mark.parametrize('method', ['prototype', 'nearest'])
@pytest.mark.parametrize('metric', ['euclidean', 'cosine'])
def test_perfect_clusters_give_one(method, metric):
    emb, labels = _clusters(30, 20, spread=0.01)
    res = few_shot_accuracy(emb, labels, shot=3, queries=5, episodes=100, method=method,
                            metric=metric)
    assert res['accuracy'] == 1.0 and res['ci95'] == 0.0 and res['std'] == 0.0


@pytest.mark.parametrize('method', ['prototype', 'nearest'])
@pytest.mark.parametrize('metric', ['euclidean', 'cosine'])
def test_random_embeddings_give_chance(method, metric):
    rng = np.random.RandomState(0)
    labels = np.repeat(np.arange(50), 20)
    emb = rng.normal(size=(len(labels), 16))
    res = few_shot_accuracy(emb, labels, way=5, shot=1, queries=5, episodes=1000, method=method,
                            metric=metric)
    # chance is 1/5; an episode of 25 queries has std about sqrt(0.2 * 0.8 / 25) = 0.08, so the
    # CI over 1,000 episodes is about 1.96 * 0.08 / sqrt(1000) = 0.005
    assert abs(res['accuracy'] - 0.2) < 3 * res['ci95']
    assert 0.003 < res['ci95'] < 0.008


def test_worked_two_way_example():
    # 1-D embeddings. Class A at 0, 1, 10 (rows 0-2); class B at 4, 5 (rows 3-4). 2-shot: support
    # A = {0, 10} -> prototype 5; support B = {4, 4} (row 3 twice) -> prototype 4. Queries 1 (A), 5 (B).
    #   prototype: query 1 -> |1-5| = 4 vs |1-4| = 3 -> B (wrong); query 5 -> |5-5| = 0 vs 1 -> A
    #              (wrong): predictions [B, A] = [1, 0], accuracy 0
    #   nearest:   query 1 -> supports at distance 1, 9 (A) and 3, 3 (B) -> A (right); query 5 ->
    #              5, 5 (A) and 1, 1 (B) -> B (right): [0, 1], accuracy 1
    emb = np.array([[0.], [1.], [10.], [4.], [5.]])
    s_emb = np.stack([emb[[0, 2]], emb[[3, 3]]])[None]                   # (1 episode, 2 way, 2 shot, 1)
    q_emb = emb[[1, 4]][None]
    assert classify_episode(s_emb, q_emb, 'prototype').tolist() == [[1, 0]]
    assert classify_episode(s_emb, q_emb, 'nearest').tolist() == [[0, 1]]


def test_confidence_interval_formula():
    emb, labels = _clusters(10, 6, spread=2.0, seed=4)
    res = few_shot_accuracy(emb, labels, way=5, shot=1, queries=2, episodes=300, seed=2)
    accs = res['episode_accuracies']
    assert res['accuracy'] == pytest.approx(accs.mean())
    assert res['ci95'] == pytest.approx(1.96 * accs.std() / np.sqrt(300))
    assert 0 < res['accuracy'] < 1


@pytest.mark.parametrize('method', ['prototype', 'nearest'])
@pytest.mark.parametrize('metric', ['euclidean', 'cosine'])
@pytest.mark.parametrize('shot,queries', [(1, 3), (3, 2)])
def test_matches_slow_reference(method, metric, shot, queries):
    emb, labels = _clusters(15, 8, dim=5, spread=2.5, seed=3)
    labels = labels * 7 + 3                             # labels need not be 0..C-1
    kw = dict(way=6, shot=shot, queries=queries, episodes=40, seed=11)
    res = few_shot_accuracy(emb, labels, method=method, metric=metric, chunk=7, **kw)
    support, query, _ = sample_episodes(labels, **kw)
    mean, ci, accs = few_shot(emb, labels, support, query, method, metric)
    np.testing.assert_allclose(res['episode_accuracies'], accs, atol=1e-12)
    assert res['accuracy'] == pytest.approx(mean) and res['ci95'] == pytest.approx(ci)
    assert 0.2 < mean < 0.95                            # neither trivial nor chance-only


def test_same_seed_same_result_different_seed_differs():
    emb, labels = _clusters(20, 10, spread=3.0, seed=5)
    a = few_shot_accuracy(emb, labels, way=5, episodes=100, seed=1)
    b = few_shot_accuracy(emb, labels, way=5, episodes=100, seed=1)
    c = few_shot_accuracy(emb, labels, way=5, episodes=100, seed=2)
    assert a['accuracy'] == b['accuracy']
    np.testing.assert_array_equal(a['episode_accuracies'], b['episode_accuracies'])
    assert not np.array_equal(a['episode_accuracies'], c['episode_accuracies'])


def test_reference_worked_example_agrees():
    emb = np.array([[0.], [1.], [10.], [4.], [5.]])
    labels = np.array([0, 0, 0, 1, 1])
    support = [[0, 2], [3]]
    query = [[1], [4]]
    assert episode_accuracy(emb, labels, support, query, 'prototype', 'euclidean') == 0.0
    assert episode_accuracy(emb, labels, support, query, 'nearest', 'euclidean') == 1.0
