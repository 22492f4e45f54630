"""faiss binary indexes against a brute-force numpy Hamming search; packed codes on disk;
the LSH and ITQ baselines."""
import numpy as np
import pytest

from gluon_dml.index import build_binary_index, load_codes, save_codes, search
from gluon_dml.index.baselines import ITQ, LSH
from gluon_dml.metrics.hashing import hamming_map, pack_codes, to_pm1


def _brute_force(q, db):
    """Hamming distances by XOR and bit counts of the packed bytes (independent of the metrics)."""
    pq, pdb = pack_codes(q), pack_codes(db)
    x = np.bitwise_xor(pq[:, None, :], pdb[None, :, :])
    return np.unpackbits(x, axis=2).sum(axis=2)


def _check_neighbours(dist, ids, brute, k, exact=True):
    for i in range(len(dist)):
        valid = ids[i] >= 0
        # every returned id is at the distance the index reports
        np.testing.assert_array_equal(brute[i, ids[i][valid]], dist[i][valid])
        assert np.all(np.diff(dist[i][valid]) >= 0)
        if exact:
            # the same k smallest distances as the brute force (ids may differ only within ties)
            np.testing.assert_array_equal(dist[i], np.sort(brute[i])[:k])
            kth = np.sort(brute[i])[k - 1]
            strict = set(np.flatnonzero(brute[i] < kth))
            assert strict <= set(ids[i].tolist())


@pytest.fixture(scope='module')
def codes():
    rng = np.random.RandomState(0)
    centres = to_pm1(rng.randn(20, 64))
    flips = rng.rand(3000, 64) < 0.1
    db = centres[rng.randint(0, 20, 3000)] * np.where(flips, -1, 1)
    q = centres[rng.randint(0, 20, 50)] * np.where(rng.rand(50, 64) < 0.1, -1, 1)
    return q.astype(np.int8), db.astype(np.int8)


def test_flat_index_equals_brute_force(codes):
    q, db = codes
    index = build_binary_index(pack_codes(db), 'flat')
    dist, ids = search(index, q, k=10)
    _check_neighbours(dist, ids, _brute_force(q, db), 10)


def test_ivf_with_every_list_probed_is_exact(codes):
    q, db = codes
    index = build_binary_index(db, 'ivf', nlist=16, nprobe=16)
    dist, ids = search(index, q, k=10)
    _check_neighbours(dist, ids, _brute_force(q, db), 10)


def test_ivf_and_hash_indexes_return_true_distances(codes):
    q, db = codes
    brute = _brute_force(q, db)
    for kind, kw in [('ivf', dict(nlist=32, nprobe=4)), ('hash', dict(hash_bits=16, nprobe=2))]:
        index = build_binary_index(db, kind, **kw)
        dist, ids = search(index, q, k=5)
        _check_neighbours(dist, ids, brute, 5, exact=False)
        assert (ids >= 0).mean() > 0.5          # clustered data: most queries find neighbours


def test_index_with_ids(codes):
    q, db = codes
    ids_in = np.arange(len(db)) * 10 + 7
    index = build_binary_index(db, 'flat', ids=ids_in)
    dist, ids = search(index, q[:3], k=4)
    assert np.all((ids - 7) % 10 == 0)
    _check_neighbours(dist, (ids - 7) // 10, _brute_force(q[:3], db), 4)


def test_bad_index_kind_and_bits():
    with pytest.raises(ValueError, match='Unknown index'):
        build_binary_index(np.zeros((4, 2), np.uint8), 'lsh')
    with pytest.raises(ValueError, match='multiple of 8'):
        build_binary_index(np.zeros((4, 2), np.uint8), 'flat', bits=12)


def test_save_and_load_packed_codes(tmp_path, codes):
    q, db = codes
    path = str(tmp_path / 'codes.npz')
    save_codes(path, q, np.arange(len(q)) % 3, db, np.arange(len(db)) % 3)
    c = load_codes(path)
    assert c['bits'] == 64 and c['db_codes'].dtype == np.uint8 and c['db_codes'].shape == (3000, 8)
    np.testing.assert_array_equal(c['query_codes'], np.packbits(q > 0, axis=1))
    np.testing.assert_array_equal(c['db_ids'], np.arange(3000))
    assert hamming_map(c['query_codes'], c['db_codes'], c['query_labels'], c['db_labels'], bits=64) == \
        pytest.approx(hamming_map(q, db, np.arange(len(q)) % 3, np.arange(len(db)) % 3))
    np.savez(str(tmp_path / 'other.npz'), embeddings=np.zeros((2, 2)))
    with pytest.raises(ValueError, match='not a codes file'):
        load_codes(str(tmp_path / 'other.npz'))


def test_itq_reduces_quantisation_loss_and_rotation_is_orthogonal():
    rng = np.random.RandomState(0)
    x = rng.randn(500, 30) @ rng.randn(30, 30)
    itq = ITQ(16).fit(x)
    assert itq.losses[-1] < itq.losses[0]
    assert np.all(np.diff(itq.losses) <= 1e-6 * itq.losses[0])        # monotone (Gong & Lazebnik)
    np.testing.assert_allclose(itq.rotation @ itq.rotation.T, np.eye(16), atol=1e-8)
    codes = itq.encode(x)
    assert codes.shape == (500, 16) and set(np.unique(codes)) == {-1, 1}


def test_baselines_beat_chance_on_digits():
    from gluon_dml.data.hashing import get_hash_splits
    s = get_hash_splits('digits')
    db, q = s['database'], s['query']
    for model in (LSH(32, seed=0), ITQ(32)):
        model.fit(db.images)
        m = hamming_map(model.encode(q.images), model.encode(db.images), q.labels, db.labels)
        assert m > 0.3, type(model).__name__    # chance is about 0.1 (10 balanced classes)
