"""Hashing metrics on hand-computed cases, and against scikit-learn where one exists."""
import numpy as np
import pytest

from gluon_dml.metrics.hashing import (bit_balance, hamming_distances, hamming_map, pack_codes,
                                       pr_curve, precision_within_radius, to_pm1, unpack_codes)


def _hand_case():
    q = np.array([[1, 1, 1, 1]])
    db = np.array([[1, 1, 1, 1],       # distance 0, relevant
                   [1, 1, 1, -1],      # distance 1, not relevant
                   [1, 1, -1, -1],     # distance 2, relevant
                   [-1, -1, -1, -1]])  # distance 4, not relevant
    return q, db, np.array([0]), np.array([0, 1, 0, 2])


def test_hamming_distances_by_hand():
    q, db, _, _ = _hand_case()
    np.testing.assert_array_equal(hamming_distances(q, db), [[0, 1, 2, 4]])


def test_map_by_hand():
    q, db, ql, dl = _hand_case()
    # ranking: rel, non, rel, non -> AP = (1/1 + 2/3) / 2
    assert hamming_map(q, db, ql, dl) == pytest.approx((1 + 2 / 3) / 2)
    # top-2: one relevant at rank 1, found 1 -> 1.0; top-3: (1 + 2/3) / 2
    assert hamming_map(q, db, ql, dl, topk=2) == pytest.approx(1.0)
    assert hamming_map(q, db, ql, dl, topk=3) == pytest.approx((1 + 2 / 3) / 2)
    # a query with no relevant item scores 0
    assert hamming_map(q, db, np.array([5]), dl) == 0.0


def test_map_ties_broken_by_database_order():
    q = np.array([[1, 1]])
    db = np.array([[1, -1], [-1, 1]])          # both at distance 1
    assert hamming_map(q, db, [0], [1, 0]) == pytest.approx(0.5)   # relevant second
    assert hamming_map(q, db, [0], [0, 1]) == pytest.approx(1.0)   # relevant first


def test_precision_within_radius_by_hand():
    q, db, ql, dl = _hand_case()
    assert precision_within_radius(q, db, ql, dl, radius=2) == pytest.approx(2 / 3)
    assert precision_within_radius(q, db, ql, dl, radius=0) == pytest.approx(1.0)
    assert precision_within_radius(q, db, ql, dl, radius=1) == pytest.approx(1 / 2)
    # an empty ball counts 0: query at distance 3 from everything but the all -1 code
    q2 = np.array([[-1, -1, -1, 1]])
    assert precision_within_radius(q2, db[:1], ql, dl[:1], radius=2) == 0.0
    # averaged over queries: (2/3 + 0) / 2
    qq = np.vstack([q, [[-1, 1, -1, 1]]])       # distances 2, 3, 2, 2 to the four codes
    d = hamming_distances(qq, db)
    np.testing.assert_array_equal(d[1], [2, 3, 2, 2])
    # second query (label 1): ball of radius 2 = items 0, 2, 3, none of class 1 -> 0
    assert precision_within_radius(qq, db, [0, 1], dl) == pytest.approx((2 / 3 + 0) / 2)


def test_pr_curve_by_hand():
    q, db, ql, dl = _hand_case()
    radii, prec, rec = pr_curve(q, db, ql, dl)
    np.testing.assert_array_equal(radii, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(prec, [1, 1 / 2, 2 / 3, 2 / 3, 2 / 4])
    np.testing.assert_allclose(rec, [1 / 2, 1 / 2, 1, 1, 1])


def test_map_agrees_with_sklearn_without_ties():
    from sklearn.metrics import average_precision_score
    rng = np.random.RandomState(0)
    bits = 12
    # a database at distinct distances 0..12 from the query (13 items), random relevance
    q = np.ones((1, bits), int)
    db = np.array([[-1] * k + [1] * (bits - k) for k in range(bits + 1)])
    perm = rng.permutation(len(db))
    db = db[perm]
    dl = rng.randint(0, 3, len(db))
    dl[0] = 0
    ours = hamming_map(q, db, [0], dl)
    dist = hamming_distances(q, db)[0]
    assert ours == pytest.approx(average_precision_score(dl == 0, -dist))


@pytest.mark.parametrize('block', [1, 7, 1000])
def test_blocks_do_not_change_results(block):
    rng = np.random.RandomState(1)
    q, db = rng.randn(23, 16), rng.randn(300, 16)
    ql, dl = rng.randint(0, 4, 23), rng.randint(0, 4, 300)
    ref = (hamming_map(q, db, ql, dl, block=5), precision_within_radius(q, db, ql, dl, block=5))
    assert hamming_map(q, db, ql, dl, block=block) == pytest.approx(ref[0])
    assert precision_within_radius(q, db, ql, dl, block=block) == pytest.approx(ref[1])
    r = pr_curve(q, db, ql, dl, block=5)
    r2 = pr_curve(q, db, ql, dl, block=block)
    np.testing.assert_allclose(r[1], r2[1])
    np.testing.assert_allclose(r[2], r2[2])


def test_multi_label_relevance():
    q = np.array([[1, 1]])
    db = np.array([[1, 1], [-1, -1], [1, -1]])
    ql = np.array([[1, 0, 1]])
    dl = np.array([[0, 1, 0], [0, 0, 1], [1, 1, 0]])   # shares none, shares 2, shares 0
    # ranking by distance: item 0 (d 0, not), item 2 (d 1, rel), item 1 (d 2, rel)
    assert hamming_map(q, db, ql, dl) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_packed_codes_give_the_same_metrics():
    rng = np.random.RandomState(2)
    q, db = to_pm1(rng.randn(10, 48)), to_pm1(rng.randn(100, 48))
    ql, dl = rng.randint(0, 3, 10), rng.randint(0, 3, 100)
    packed_q, packed_db = pack_codes(q), pack_codes(db)
    assert packed_q.shape == (10, 6) and packed_q.dtype == np.uint8
    np.testing.assert_array_equal(unpack_codes(packed_db, 48), db)
    assert hamming_map(packed_q, packed_db, ql, dl, bits=48) == pytest.approx(hamming_map(q, db, ql, dl))


def test_bit_balance():
    codes = np.array([[1, 1, -1], [-1, 1, -1]])
    summary, ones = bit_balance(codes)
    np.testing.assert_allclose(ones, [0.5, 1.0, 0.0])
    assert summary['bit_balance'] == pytest.approx((0 + 1 + 1) / 3)
    assert summary['bit_ones_min'] == 0.0 and summary['bit_ones_max'] == 1.0
