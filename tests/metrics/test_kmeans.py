"""kmeans_assign (our Lloyd iterations, assignment on a BLAS GEMM) against faiss's k-means, which it
reimplements draw for draw: the same clusterings on small and medium problems, empty-cluster splits
included, and the pieces one by one (random stream, nearest centroid, centroid update)."""
import faiss
import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from gluon_dml.metrics import clustering
from gluon_dml.metrics.clustering import _faiss_kmeans_assign, kmeans_assign


def clustered(n, dim, classes, noise, seed, sizes=None):
    """L2-normalised points around random unit centres (the shape of trained embeddings)."""
    rng = np.random.RandomState(seed)
    centres = rng.randn(classes, dim)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.repeat(np.arange(classes), sizes) if sizes else rng.randint(0, classes, size=n)
    x = centres[y] + noise * rng.randn(y.size, dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), y


@pytest.mark.parametrize("n,dim,k,noise", [(1100, 64, 55, 0.2),        # Omniglot test split's shape
                                           (1100, 64, 55, 0.6),
                                           (3000, 16, 1000, 0.3),      # ~3 points per cluster
                                           (6000, 128, 1100, 0.085)])  # SOP's shape, scaled down
def test_same_clustering_as_faiss(n, dim, k, noise):
    x, y = clustered(n, dim, k, noise, seed=n + k)
    for seed in (0, 1, 7):
        ours = kmeans_assign(x, k, seed=seed)
        ref = _faiss_kmeans_assign(x, k, seed=seed)
        assert (ours == ref).mean() >= 0.999, seed
        assert abs(normalized_mutual_info_score(y, ours)
                   - normalized_mutual_info_score(y, ref)) <= 0.002


@pytest.mark.parametrize("k", [48, 64, 96])
def test_splits_like_faiss_with_duplicates(k):
    # Many identical points: initial centroids coincide, all but the first of equal ones stay
    # empty, and faiss's rule re-seeds them (its draws, its perturbation). One iteration of ours
    # gives faiss's centroids exactly. (Not the later assignments: the points of a split cluster
    # are then exactly equidistant from its two halves, and such ties go either way.) Which of
    # several equal centroids a point joins is a tie that faiss's SIMD kernels break by the
    # machine (its AVX2 and AVX-512 builds differ), so the assignment compared is faiss's own
    # search over the initial centroids; ours agrees with it wherever there is no tie.
    rng = np.random.RandomState(3)
    base = rng.randn(40, 8).astype(np.float32)
    x = base[rng.randint(0, 40, size=400)]
    for seed in (0, 5):
        perm = np.empty(400, np.int32)
        faiss.rand_perm(faiss.swig_ptr(perm), 400, seed + 1)
        init = x[perm[:k]]
        index = faiss.IndexFlatL2(8)
        index.add(init)
        assign = index.search(x, 1)[1].ravel()
        mine = clustering._nearest_centroid(x, init)
        np.testing.assert_array_equal(init[mine], init[assign])    # the same centroid, or its twin
        ours, counts = clustering._centroids(x, assign, k)
        splits = clustering._split_empty_clusters(ours, counts.copy(), 400)
        clus = faiss.Clustering(8, k)
        clus.niter, clus.seed, clus.max_points_per_centroid = 1, seed, 1000
        clus.train(x, faiss.IndexFlatL2(8))
        ref = faiss.vector_to_array(clus.centroids).reshape(k, 8)
        assert splits >= 15
        np.testing.assert_array_equal(ours, ref)


def test_random_stream_is_faiss_random_generator():
    ours = clustering._Uniform32(1234, chunk=1000)._take(2500)
    rg = faiss.RandomGenerator(1234)
    np.testing.assert_array_equal(ours, np.array([rg.rand_float() for _ in range(2500)], np.float32))


def test_first_below_scans_cyclically():
    # With prob = 1 only at j = 3, the scan stops at the first draw at a place = 3 (mod k).
    u = clustering._Uniform32(7, chunk=5)
    prob = np.zeros(4, np.float32)
    prob[3] = 1.0
    assert u.first_below(prob) == 3
    stream = clustering._Uniform32(7, chunk=5)._take(12)
    assert np.array_equal(u._take(4), stream[4:8])     # 4 draws consumed, the rest kept in order
    assert u.first_below(np.full(4, 2.0, np.float32)) == 0


def test_nearest_centroid_is_exact():
    rng = np.random.RandomState(0)
    x = rng.randn(1000, 24).astype(np.float32)
    c = rng.randn(300, 24).astype(np.float32)
    d = ((x[:, None, :].astype(np.float64) - c[None].astype(np.float64)) ** 2).sum(-1)
    best = d.argmin(1)
    srt = np.sort(d, 1)
    clear = srt[:, 1] - srt[:, 0] > 1e-3            # not a near tie
    assert clear.mean() > 0.95
    for rows in (None, 7, 256, 1000):
        got = clustering._nearest_centroid(x, c, block_rows=rows)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got[clear], best[clear])
    # exact ties go to the first centroid, as faiss's strict comparison does
    assert np.array_equal(clustering._nearest_centroid(x[:5], np.concatenate([c, c])),
                          clustering._nearest_centroid(x[:5], c))


def test_centroids_are_means():
    rng = np.random.RandomState(1)
    x = rng.randn(50, 6).astype(np.float32)
    assign = rng.randint(0, 9, size=50)
    assign[assign == 4] = 5                          # cluster 4 empty
    cent, counts = clustering._centroids(x, assign, 9)
    assert cent.dtype == np.float32 and counts.dtype == np.float32
    for j in range(9):
        members = x[assign == j]
        assert counts[j] == len(members)
        expected = members.mean(0) if len(members) else np.zeros(6)
        np.testing.assert_allclose(cent[j], expected, rtol=1e-5, atol=1e-6)


def test_as_many_clusters_as_points_and_one_cluster():
    x, _ = clustered(40, 8, 10, 0.3, seed=2)
    np.testing.assert_array_equal(kmeans_assign(x, 40), _faiss_kmeans_assign(x, 40))
    assert set(kmeans_assign(x, 40)) == set(range(40))
    np.testing.assert_array_equal(kmeans_assign(x, 1), np.zeros(40, np.int64))


def test_seeds_give_different_runs():
    x, y = clustered(600, 16, 30, 0.5, seed=4)
    a, b = kmeans_assign(x, 30, seed=0), kmeans_assign(x, 30, seed=1)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, kmeans_assign(x, 30, seed=0))
    np.testing.assert_array_equal(kmeans_assign(x, 30, seed=2 ** 31 + 1), kmeans_assign(x, 30, seed=1))


@pytest.mark.parametrize("moved_fraction", [0.0, 0.02, 0.3, 0.9])
def test_reassign_equals_full_scoring(moved_fraction):
    # Move some centroids (a little, as Lloyd iterations do, or far), several times in a row:
    # the kept-up-to-date assignment equals a full scoring against all centroids every time.
    rng = np.random.RandomState(int(moved_fraction * 100))
    x = rng.randn(3000, 12).astype(np.float32)
    aug_x = clustering._augment_points(x)
    cent = rng.randn(400, 12).astype(np.float32)
    assign, best, second = clustering._score_all(aug_x, clustering._augment_centroids(cent))
    for step in range(5):
        new = cent.copy()
        pick = rng.rand(400) < moved_fraction
        scale = 0.05 if step % 2 else 1.0
        new[pick] += scale * rng.randn(pick.sum(), 12).astype(np.float32)
        clustering._reassign(aug_x, cent, new, assign, best, second, block_rows=700)
        cent = new
        ref_a, ref_b, ref_s = clustering._score_all(aug_x, clustering._augment_centroids(cent))
        np.testing.assert_array_equal(assign, ref_a)
        np.testing.assert_allclose(best, ref_b, rtol=1e-6, atol=1e-5)
        assert np.all(second <= ref_s + 1e-5)            # a lower bound of the second-best score
        assert np.all(best <= second + 1e-5)


def test_reassign_resolves_ties_to_the_first_centroid():
    # Centroid 5 moves onto centroid 2's place (an exact tie): the points go to 2, the first.
    rng = np.random.RandomState(2)
    x = rng.randn(500, 6).astype(np.float32)
    cent = rng.randn(10, 6).astype(np.float32)
    aug_x = clustering._augment_points(x)
    assign, best, second = clustering._score_all(aug_x, clustering._augment_centroids(cent))
    new = cent.copy()
    new[5] = cent[2]
    clustering._reassign(aug_x, cent, new, assign, best, second)
    assert not np.any(assign == 5) and np.any(assign == 2)
    np.testing.assert_array_equal(assign, clustering._nearest_centroid(x, new))
    # and the other way round: 2 moves onto 7, whose points it takes
    newer = new.copy()
    newer[2] = new[7]
    clustering._reassign(aug_x, new, newer, assign, best, second)
    np.testing.assert_array_equal(assign, clustering._nearest_centroid(x, newer))
    assert not np.any(assign == 7)


def test_iterations_stop_once_no_centroid_moves_with_the_same_clustering(monkeypatch):
    # Lloyd's iterations from a fixed point change nothing: kmeans_assign stops there. Its
    # result is that of the loop that runs all niter iterations (the pieces, run here).
    def every_iteration(x, k, seed, niter):
        perm = np.empty(x.shape[0], np.int32)
        faiss.rand_perm(faiss.swig_ptr(perm), x.shape[0], seed + 1)
        cent = x[perm[:k]].copy()
        aug_x = clustering._augment_points(x)
        assign, best, second = clustering._score_all(aug_x, clustering._augment_centroids(cent))
        for _ in range(niter):
            new, counts = clustering._centroids(x, assign, k)
            clustering._split_empty_clusters(new, counts, x.shape[0])
            clustering._reassign(aug_x, cent, new, assign, best, second)
            cent = new
        return assign

    x, _ = clustered(1180, 64, 59, 0.5, seed=11)
    reference = [every_iteration(x, 59, seed, 20) for seed in range(4)]
    calls = []
    original = clustering._reassign
    monkeypatch.setattr(clustering, '_reassign', lambda *a, **k: (calls.append(1), original(*a, **k)))
    for seed in range(4):
        np.testing.assert_array_equal(kmeans_assign(x, 59, seed=seed), reference[seed])
    assert len(calls) < 4 * 20                       # some run stopped early
    # and with empty clusters to re-seed (duplicated points): the same as every iteration
    rng = np.random.RandomState(3)
    dup = rng.randn(40, 8).astype(np.float32)[rng.randint(0, 40, size=400)]
    monkeypatch.setattr(clustering, '_reassign', original)
    for seed in (0, 5):
        np.testing.assert_array_equal(kmeans_assign(dup, 64, seed=seed), every_iteration(dup, 64, seed, 20))
