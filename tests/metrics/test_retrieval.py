"""Tests of gluon_dml.metrics retrieval metrics and the faiss kNN helper (real faiss)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from gluon_dml.metrics import knn, map_at_r, r_precision, recall_at_k, retrieval_metrics


# ---------------------------------------------------------------------------
# brute-force reference (full distance matrix; only for small N in tests)
# ---------------------------------------------------------------------------
def brute_force(emb, lab, ks, q_emb=None, q_lab=None):
    emb = np.asarray(emb, np.float64)
    lab = np.asarray(lab)
    self_search = q_emb is None
    if self_search:
        q_emb, q_lab = emb, lab
    q_emb = np.asarray(q_emb, np.float64)
    q_lab = np.asarray(q_lab)
    dist = ((q_emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    if self_search:
        np.fill_diagonal(dist, np.inf)
    order = np.argsort(dist, axis=1, kind="stable")
    if self_search:
        order = order[:, :-1]  # the query itself sorts last (inf)
    recall = dict((k, []) for k in ks)
    rp, ap = [], []
    skipped = 0
    for i in range(q_emb.shape[0]):
        r = int((lab == q_lab[i]).sum()) - (1 if self_search else 0)
        if r == 0:
            skipped += 1
            continue
        rel = lab[order[i]] == q_lab[i]
        for k in ks:
            recall[k].append(rel[:k].any())
        rp.append(rel[:r].sum() / float(r))
        prec = np.cumsum(rel[:r]) / np.arange(1, r + 1)
        ap.append((prec * rel[:r]).sum() / float(r))
    out = dict(("recall@%d" % k, float(np.mean(recall[k]))) for k in ks)
    out.update({"r_precision": float(np.mean(rp)), "map@r": float(np.mean(ap)),
                "num_queries": len(rp), "num_skipped_queries": skipped})
    return out


def assert_metrics_equal(got, expected, tol=1e-12):
    assert set(got) == set(expected)
    for key, val in expected.items():
        assert got[key] == pytest.approx(val, abs=tol), key


# ---------------------------------------------------------------------------
# hand-computed cases
# ---------------------------------------------------------------------------
# Points on a line (D = 1), two classes A=0 and B=1:
#   item:   0    1    2    3    4    5
#   x:     0.0  1.0  2.4  4.5  5.0  9.5
#   label:  A    A    B    A    B    B
# Neighbour order (self excluded) and same-class flags:
#   q0 (A): 1 A, 2 B, 3 A, 4 B, 5 B   -> 1 0 1 0 0
#   q1 (A): 0 A, 2 B, 3 A, 4 B, 5 B   -> 1 0 1 0 0   (dists 1.0, 1.4, 3.5, 4.0, 8.5)
#   q2 (B): 1 A, 3 A, 0 A, 4 B, 5 B   -> 0 0 0 1 1   (dists 1.4, 2.1, 2.4, 2.6, 7.1)
#   q3 (A): 4 B, 2 B, 1 A, 0 A, 5 B   -> 0 0 1 1 0   (dists 0.5, 2.1, 3.5, 4.5, 5.0)
#   q4 (B): 3 A, 2 B, 1 A, 5 B, 0 A   -> 0 1 0 1 0   (dists 0.5, 2.6, 4.0, 4.5, 5.0)
#   q5 (B): 4 B, 3 A, 2 B, 1 A, 0 A   -> 1 0 1 0 0   (dists 4.5, 5.0, 7.1, 8.5, 9.5)
# Every class has 3 items, so R = 2 for every query.
# Recall@1 = q0,q1,q5 = 3/6; Recall@2 = +q4 = 4/6; Recall@4 = all 6 = 1; Recall@8 -> k clipped
#   to 5, still 1.
# R-precision (first 2): 1/2, 1/2, 0, 0, 1/2, 1/2 -> 2/6 = 1/3.
# MAP@R (R = 2): q0: (1/2)(1/1) = 1/2; q1: 1/2; q2: 0; q3: 0; q4: (1/2)(P(2)=1/2) = 1/4;
#   q5: 1/2 -> (0.5 + 0.5 + 0.25 + 0.5) / 6 = 1.75 / 6.
LINE_X = np.array([[0.0], [1.0], [2.4], [4.5], [5.0], [9.5]], np.float32)
LINE_Y = np.array([0, 0, 1, 0, 1, 1])
LINE_EXPECTED = {"recall@1": 3 / 6.0, "recall@2": 4 / 6.0, "recall@4": 1.0, "recall@8": 1.0,
                 "r_precision": 1 / 3.0, "map@r": 1.75 / 6.0,
                 "num_queries": 6, "num_skipped_queries": 0}


def test_line_hand_computed():
    assert_metrics_equal(retrieval_metrics(LINE_X, LINE_Y), LINE_EXPECTED)


def test_line_per_metric_functions():
    rec = recall_at_k(LINE_X, LINE_Y, ks=(1, 2, 4, 8))
    assert rec == pytest.approx({1: 0.5, 2: 4 / 6.0, 4: 1.0, 8: 1.0})
    assert r_precision(LINE_X, LINE_Y) == pytest.approx(1 / 3.0)
    assert map_at_r(LINE_X, LINE_Y) == pytest.approx(1.75 / 6.0)
    # a single int is accepted for ks
    assert recall_at_k(LINE_X, LINE_Y, ks=2) == pytest.approx({2: 4 / 6.0})


def test_line_blocked_matches_unblocked():
    for block_size in (1, 2, 5):
        assert_metrics_equal(retrieval_metrics(LINE_X, LINE_Y, block_size=block_size),
                             LINE_EXPECTED)


def test_line_knn_order():
    idx, dist = knn(LINE_X, 5)
    assert idx.dtype == np.int64 and dist.dtype == np.float32
    np.testing.assert_array_equal(idx, [[1, 2, 3, 4, 5],
                                        [0, 2, 3, 4, 5],
                                        [1, 3, 0, 4, 5],
                                        [4, 2, 1, 0, 5],
                                        [3, 2, 1, 5, 0],
                                        [4, 3, 2, 1, 0]])
    # squared L2 distances of q3: 0.5^2, 2.1^2, 3.5^2, 4.5^2, 5.0^2
    np.testing.assert_allclose(dist[3], [0.25, 4.41, 12.25, 20.25, 25.0], rtol=1e-5)
    # k larger than what exists is clipped: 5 others per query (self excluded)
    assert knn(LINE_X, 100)[0].shape == (6, 5)
    # without self-exclusion the query itself comes first, and k clips to 6
    idx_all, dist_all = knn(LINE_X, 100, exclude_self=False)
    assert idx_all.shape == (6, 6)
    np.testing.assert_array_equal(idx_all[:, 0], np.arange(6))
    np.testing.assert_allclose(dist_all[:, 0], 0.0, atol=1e-6)


def test_singleton_class_query_is_skipped_and_counted():
    # Item 6 (x=20, label C) is the only one of its class: R = 0, so it is no query.
    # It lies beyond every other point's 5 nearest neighbours, so the six other
    # queries score exactly as in LINE_EXPECTED.
    x = np.vstack([LINE_X, [[20.0]]])
    y = np.append(LINE_Y, 2)
    expected = dict(LINE_EXPECTED, num_queries=6, num_skipped_queries=1)
    assert_metrics_equal(retrieval_metrics(x, y), expected)


def test_identical_embeddings_self_excluded_by_index():
    # Ten identical points: every query's 9 neighbours must be exactly the 9 others,
    # whatever order faiss gives to the ties (removing "position 0" would fail).
    x = np.zeros((10, 3), np.float32)
    idx, dist = knn(x, 9)
    for i in range(10):
        assert sorted(idx[i].tolist()) == [j for j in range(10) if j != i]
    np.testing.assert_array_equal(dist, 0.0)
    # blocked path too
    idx, _ = knn(x, 4, block_size=3)
    for i in range(10):
        assert i not in idx[i]


def test_identical_embeddings_with_different_labels():
    # Two pairs of duplicates with DIFFERENT labels:
    #   item: 0      1      2       3
    #   x:    0 (A)  0 (B)  10 (A)  10 (B)
    # Self excluded, each query's nearest item is its twin (distance 0), of the other
    # class; the two items at distance 10 tie. R = 1 for every query.
    # Recall@1 = 0 (if the query itself were kept it would hit), Recall@3 = 1,
    # R-precision = 0, MAP@R = 0.
    x = np.array([[0.0], [0.0], [10.0], [10.0]], np.float32)
    y = np.array([0, 1, 0, 1])
    res = retrieval_metrics(x, y, ks=(1, 3))
    assert_metrics_equal(res, {"recall@1": 0.0, "recall@3": 1.0, "r_precision": 0.0,
                               "map@r": 0.0, "num_queries": 4, "num_skipped_queries": 0})


def test_query_gallery_mode_hand_computed():
    # Gallery: g0 x=0 (A), g1 x=2 (B), g2 x=3 (A), g3 x=7 (B).  R = 2 for A and B.
    # Queries (no self-exclusion):
    #   q0 x=1.8 (A): g1 B 0.2, g2 A 1.2, g0 A 1.8, g3 B 5.2 -> 0 1 1 0
    #   q1 x=6   (B): g3 B 1,   g2 A 3,   g1 B 4,   g0 A 6   -> 1 0 1 0
    #   q2 x=0   (A): g0 A 0 (an identical point is kept), g1 B 2, g2 A 3 -> 1 0 1 0
    #   q3 x=5.5 (C): no C in the gallery -> skipped (its neighbours: g3 1.5, g2 2.5)
    # Recall@1 = (0+1+1)/3; Recall@2 = 3/3; R-precision = (1/2+1/2+1/2)/3 = 1/2
    # MAP@R: q0 (1/2)(0 + 1/2) = 1/4; q1 (1/2)(1) = 1/2; q2 1/2 -> 1.25 / 3
    g = np.array([[0.0], [2.0], [3.0], [7.0]], np.float32)
    gy = np.array([0, 1, 0, 1])
    q = np.array([[1.8], [6.0], [0.0], [5.5]], np.float32)
    qy = np.array([0, 1, 0, 2])
    expected = {"recall@1": 2 / 3.0, "recall@2": 1.0, "r_precision": 0.5,
                "map@r": 1.25 / 3.0, "num_queries": 3, "num_skipped_queries": 1}
    res = retrieval_metrics(g, gy, ks=(1, 2), query_embeddings=q, query_labels=qy)
    assert_metrics_equal(res, expected)
    assert recall_at_k(g, gy, ks=(1, 2), query_embeddings=q, query_labels=qy) == \
        pytest.approx({1: 2 / 3.0, 2: 1.0})
    assert map_at_r(g, gy, query_embeddings=q, query_labels=qy) == pytest.approx(1.25 / 3)
    idx, dist = knn(q, 2, gallery=g)
    np.testing.assert_array_equal(idx, [[1, 2], [3, 2], [0, 1], [3, 2]])


def test_map_at_r_paper_example():
    # Musgrave et al. 2020: R = 10, relevant items at ranks 1 and 3 of the first 10:
    # MAP@R = (1/10) (1/1 + 2/3) = 0.1667 and R-precision = 2/10.
    # Query at x=0 (label 0); gallery item at x=i has rank i (i = 1..18).
    # Relevant (label 0): ranks 1, 3 and 11..18 (10 in all, so R = 10);
    # ranks 2 and 4..10 are label 1.
    ranks = np.arange(1, 19)
    gallery = ranks.astype(np.float32)[:, None]
    gallery_labels = np.where(np.isin(ranks, [1, 3] + list(range(11, 19))), 0, 1)
    assert (gallery_labels == 0).sum() == 10
    q, qy = np.zeros((1, 1), np.float32), np.array([0])
    res = retrieval_metrics(gallery, gallery_labels, ks=(1, 2),
                            query_embeddings=q, query_labels=qy)
    assert res["map@r"] == pytest.approx((1 / 1.0 + 2 / 3.0) / 10)
    assert round(res["map@r"], 4) == 0.1667
    assert res["r_precision"] == pytest.approx(0.2)
    assert res["recall@1"] == 1.0


# ---------------------------------------------------------------------------
# agreement with brute force on random data
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("block_size", [4096, 7, 1])
def test_random_matches_brute_force(block_size):
    rng = np.random.RandomState(0)
    x = rng.randn(300, 8).astype(np.float32)
    y = rng.randint(0, 40, size=300)  # sizes ~7.5 on average, a few singletons possible
    y[:3] = 1000  # at least one class of size 3 ...
    y[3] = 1001  # ... and one singleton (skipped)
    ks = (1, 2, 4, 8, 16)
    expected = brute_force(x, y, ks)
    assert expected["num_skipped_queries"] >= 1
    assert_metrics_equal(retrieval_metrics(x, y, ks=ks, block_size=block_size), expected)
    rec = recall_at_k(x, y, ks=ks, block_size=block_size)
    assert rec == pytest.approx(dict((k, expected["recall@%d" % k]) for k in ks))
    assert r_precision(x, y, block_size=block_size) == pytest.approx(expected["r_precision"])
    assert map_at_r(x, y, block_size=block_size) == pytest.approx(expected["map@r"])


@pytest.mark.parametrize("block_size,rank_entries", [(4096, None), (3, None), (4096, 1000)])
def test_random_large_k_matches_brute_force(block_size, rank_entries, monkeypatch):
    # Recall@K for K beyond the first, shallow search depth (16): for the queries with
    # no same-class item among their 16 nearest it comes from the number of items nearer
    # than their nearest same-class item (in blocks of 3 queries, or of 2 when only
    # 1000 distances may be held at once).
    from gluon_dml.metrics import retrieval
    assert retrieval._SHALLOW_K == 16
    if rank_entries:
        monkeypatch.setattr(retrieval, "_RANK_ENTRIES", rank_entries)
    rng = np.random.RandomState(8)
    x = rng.randn(400, 8).astype(np.float32)
    y = rng.randint(0, 60, size=400)
    ks = (1, 16, 17, 50, 64, 65, 200, 1000)  # 1000 > 399 items: clipped to all of them
    expected = brute_force(x, y, ks)
    assert expected["recall@16"] < expected["recall@17"]  # K = 17 needs the ranks
    assert expected["recall@64"] < expected["recall@200"] < 1.0
    assert expected["recall@1000"] == 1.0
    assert_metrics_equal(retrieval_metrics(x, y, ks=ks, block_size=block_size), expected)
    assert recall_at_k(x, y, ks=ks, block_size=block_size) == pytest.approx(
        dict((k, expected["recall@%d" % k]) for k in ks), abs=1e-12)


def test_random_large_class_matches_brute_force():
    # One class of 400 items (R = 399 > the per-row element budget of a block of
    # size 1), mixed with small classes: exercises the grouping by R / small blocks.
    rng = np.random.RandomState(1)
    x = rng.randn(700, 6).astype(np.float32)
    y = np.concatenate([np.zeros(400, int), rng.randint(1, 60, size=300)])
    perm = rng.permutation(700)
    x, y = x[perm], y[perm]
    ks = (1, 10, 100)
    expected = brute_force(x, y, ks)
    for block_size in (4096, 1):
        # 399 neighbours deep, a few distances differ by ~4e-8 relatively (e.g.
        # 14.2353163 vs 14.2353169 in float64), below float32 resolution, so faiss and
        # the float64 reference order 4 such pairs of different classes differently.
        # Each swap, far down the list, moves the mean MAP@R by less than 1e-8.
        assert_metrics_equal(retrieval_metrics(x, y, ks=ks, block_size=block_size), expected,
                             tol=1e-7)


def test_random_query_gallery_matches_brute_force():
    rng = np.random.RandomState(2)
    g = rng.randn(250, 5).astype(np.float32)
    gy = rng.randint(0, 20, size=250)
    q = rng.randn(120, 5).astype(np.float32)
    qy = rng.randint(0, 22, size=120)  # labels 20, 21 are absent from the gallery
    ks = (1, 3, 5)
    expected = brute_force(g, gy, ks, q, qy)
    assert expected["num_skipped_queries"] > 0
    for block_size in (4096, 4):
        res = retrieval_metrics(g, gy, ks=ks, query_embeddings=q, query_labels=qy,
                                block_size=block_size)
        assert_metrics_equal(res, expected)


def test_query_gallery_large_k_matches_brute_force():
    # A separate query set (no self-exclusion) with K beyond the first search's depth,
    # and gallery duplicates of other classes at distance 0 from some queries: they are
    # nearer than any same-class item, so they count in the rank.
    rng = np.random.RandomState(5)
    g = rng.randn(300, 6).astype(np.float32)
    gy = rng.randint(0, 30, size=300)
    q = rng.randn(150, 6).astype(np.float32)
    qy = rng.randint(0, 30, size=150)
    g[:10] = q[:10]
    gy[:10] = qy[:10] + 1  # exact copies of the first 10 queries, of another class
    ks = (1, 5, 20, 40, 100)
    expected = brute_force(g, gy, ks, q, qy)
    assert expected["recall@5"] < expected["recall@20"] < expected["recall@100"]
    for block_size in (4096, 7):
        res = retrieval_metrics(g, gy, ks=ks, query_embeddings=q, query_labels=qy,
                                block_size=block_size)
        assert_metrics_equal(res, expected)


def test_knn_matches_brute_force():
    rng = np.random.RandomState(3)
    x = rng.randn(200, 10).astype(np.float32)
    d = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    ref = np.argsort(d, axis=1)[:, :6]
    for block_size in (4096, 9):
        idx, dist = knn(x, 6, block_size=block_size)
        np.testing.assert_array_equal(idx, ref)
        np.testing.assert_allclose(dist, np.take_along_axis(d, ref, 1), rtol=1e-4, atol=1e-5)
    g = rng.randn(50, 10).astype(np.float32)
    dg = ((x[:, None, :].astype(np.float64) - g[None, :, :]) ** 2).sum(-1)
    idx, _ = knn(x, 4, gallery=g, block_size=13)
    np.testing.assert_array_equal(idx, np.argsort(dg, axis=1)[:, :4])


def test_accepts_float64_and_float_labels():
    res = retrieval_metrics(LINE_X.astype(np.float64), LINE_Y.astype(np.float32))
    assert_metrics_equal(res, LINE_EXPECTED)


def test_no_mxnet_import():
    # in a fresh interpreter: other tests of the suite may import MXNet themselves
    code = ("import sys, gluon_dml.metrics; "
            "assert 'mxnet' not in sys.modules, 'gluon_dml.metrics imported mxnet'")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.check_call([sys.executable, "-c", code], cwd=root)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
def test_mismatched_lengths():
    with pytest.raises(ValueError, match="labels has length 5 but embeddings has 6 rows"):
        retrieval_metrics(LINE_X, LINE_Y[:5])
    with pytest.raises(ValueError, match="query_labels has length 1 but query_embeddings"):
        retrieval_metrics(LINE_X, LINE_Y, query_embeddings=LINE_X[:2], query_labels=[0])
    with pytest.raises(ValueError, match="dimension 2 but embeddings has dimension 1"):
        retrieval_metrics(LINE_X, LINE_Y, query_embeddings=np.zeros((2, 2)),
                          query_labels=[0, 1])
    with pytest.raises(ValueError, match="query has dimension 1 but gallery has dimension 2"):
        knn(LINE_X, 1, gallery=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="must be given together"):
        recall_at_k(LINE_X, LINE_Y, query_embeddings=LINE_X)


def test_empty_input():
    with pytest.raises(ValueError, match="embeddings is empty"):
        retrieval_metrics(np.zeros((0, 4), np.float32), np.zeros(0, int))
    with pytest.raises(ValueError, match="query_embeddings is empty"):
        map_at_r(LINE_X, LINE_Y, query_embeddings=np.zeros((0, 1)), query_labels=[])
    with pytest.raises(ValueError, match="2-D array"):
        r_precision(np.zeros(5), np.zeros(5, int))
    with pytest.raises(ValueError, match="query is empty"):
        knn(np.zeros((0, 3)), 1)


def test_nan_and_inf():
    x = LINE_X.copy()
    x[2, 0] = np.nan
    with pytest.raises(ValueError, match="embeddings contain NaN or infinite values"):
        retrieval_metrics(x, LINE_Y)
    x[2, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        recall_at_k(x, LINE_Y)
    with pytest.raises(ValueError, match="query contain NaN"):
        knn(x, 1)


def test_bad_ks_and_k():
    for bad in (0, [1, 0], [2, -1], [1.5], [], "a", True):
        with pytest.raises(ValueError, match="ks must"):
            retrieval_metrics(LINE_X, LINE_Y, ks=bad)
    with pytest.raises(ValueError, match="ks must contain only positive integers, got 0"):
        recall_at_k(LINE_X, LINE_Y, ks=0)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        knn(LINE_X, 0)
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        retrieval_metrics(LINE_X, LINE_Y, block_size=0)


def test_bad_labels():
    with pytest.raises(ValueError, match="labels must be integers"):
        retrieval_metrics(LINE_X, LINE_Y + 0.5)
    with pytest.raises(ValueError, match="labels must be integers"):
        retrieval_metrics(LINE_X, np.array(list("abcdef")))


def test_all_queries_skipped():
    with pytest.raises(ValueError, match="No query has another item of its class"):
        retrieval_metrics(LINE_X, np.arange(6))


def test_sharded_index_matches_single_index(monkeypatch, two_faiss_threads):
    # Large galleries are split into one flat index per OpenMP thread (IndexShards).
    # Lower the size threshold so a small gallery takes that path, and check it
    # against the single-index path and against numpy.
    import faiss
    from gluon_dml.metrics import neighbors
    rng = np.random.RandomState(6)
    x = rng.randn(500, 6).astype(np.float32)
    y = rng.randint(0, 50, size=500)
    monkeypatch.setattr(neighbors, "_MIN_ROWS_PER_SHARD", 64)
    assert isinstance(neighbors._build_index(x), faiss.IndexShards)
    idx_sharded, dist_sharded = knn(x, 20, block_size=77)
    res_sharded = retrieval_metrics(x, y, ks=(1, 5), block_size=77)
    monkeypatch.setattr(neighbors, "PARALLEL_SHARDS", False)
    assert isinstance(neighbors._build_index(x), faiss.IndexFlatL2)
    idx_single, dist_single = knn(x, 20, block_size=77)
    np.testing.assert_array_equal(idx_sharded, idx_single)
    np.testing.assert_allclose(dist_sharded, dist_single, rtol=1e-6)
    assert_metrics_equal(res_sharded, retrieval_metrics(x, y, ks=(1, 5)))
    assert_metrics_equal(res_sharded, brute_force(x, y, (1, 5)))
