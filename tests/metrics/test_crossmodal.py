"""Cross-modal recall, median rank, rsum and COCO 1K / 5K on hand-built similarity matrices."""
import numpy as np
import pytest

from gluon_dml.metrics.crossmodal import (coco_1k_5k, i2t_ranks, i2t_t2i_recall, recall_summary,
                                          t2i_ranks)


def _from_sims(S):
    """Embeddings whose image x caption dot products are exactly S (N x 5N)."""
    S = np.asarray(S, dtype=np.float32)
    return np.eye(S.shape[0], dtype=np.float32), S.T.copy()


def _sims_2x10():
    # image 0 owns captions 0-4, image 1 owns captions 5-9
    return np.array([
        # c0   c1   c2   c3   c4   c5   c6   c7   c8   c9
        [0.1, 0.9, 0.2, 0.3, 0.05, 0.5, 0.95, 0.4, 0.0, 0.0],   # image 0: best own 0.9, one other above
        [0.8, 0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.7, 0.6],    # image 1: best own 0.7, one other above
    ])


def test_i2t_ranks_best_of_five_by_hand():
    img, cap = _from_sims(_sims_2x10())
    # image 0: best own caption scores 0.9; only c6 (0.95, image 1's) is above -> rank 1
    # image 1: best own caption c8 scores 0.7; only c0 (0.8) is above -> rank 1
    assert i2t_ranks(img, cap).tolist() == [1, 1]
    S = _sims_2x10()
    S[0, 6] = 0.0
    img, cap = _from_sims(S)
    assert i2t_ranks(img, cap).tolist() == [0, 1]


def test_t2i_ranks_by_hand():
    img, cap = _from_sims(_sims_2x10())
    # caption j: own image j // 5; rank = other images scoring >= own
    S = _sims_2x10()
    expected = [int(S[1 - j // 5, j] >= S[j // 5, j]) for j in range(10)]
    assert expected == [1, 0, 0, 0, 0, 1, 1, 1, 0, 0]
    assert t2i_ranks(img, cap).tolist() == expected


def test_recall_and_rsum_by_hand():
    img, cap = _from_sims(_sims_2x10())
    m = i2t_t2i_recall(img, cap)
    assert m['i2t_r1'] == 0.0 and m['i2t_r5'] == 100.0 and m['i2t_r10'] == 100.0
    assert m['i2t_medr'] == 2.0
    assert m['t2i_r1'] == pytest.approx(60.0) and m['t2i_r5'] == 100.0
    assert m['t2i_medr'] == 1.0 + np.floor(np.median([1, 0, 0, 0, 0, 1, 1, 1, 0, 0]))
    assert m['rsum'] == pytest.approx(0 + 100 + 100 + 60 + 100 + 100)


def test_recall_summary_percentages_and_median():
    s = recall_summary(np.array([0, 0, 3, 7, 12]), ks=(1, 5, 10))
    assert s['r1'] == pytest.approx(40.0) and s['r5'] == pytest.approx(60.0)
    assert s['r10'] == pytest.approx(80.0) and s['medr'] == 4.0 and s['meanr'] == pytest.approx(5.4)


def test_ties_count_against_the_query():
    # a collapsed embedding (every score equal) must score chance level, not full marks
    img, cap = np.ones((20, 4), np.float32), np.ones((100, 4), np.float32)
    assert (i2t_ranks(img, cap) == 95).all()
    assert (t2i_ranks(img, cap) == 19).all()
    assert i2t_t2i_recall(img, cap)['i2t_r10'] == 0.0


def _argsort_reference(S):
    """The VSE++ authors' evaluation written with argsort (valid without ties)."""
    n = S.shape[0]
    i2t = np.array([min(np.where(np.argsort(-S[i]) == j)[0][0] for j in range(5 * i, 5 * i + 5))
                    for i in range(n)])
    t2i = np.array([np.where(np.argsort(-S[:, j]) == j // 5)[0][0] for j in range(5 * n)])
    return i2t, t2i


def test_agrees_with_argsort_reference_and_blocks():
    rng = np.random.RandomState(0)
    img = rng.randn(37, 6).astype(np.float32)
    cap = (np.repeat(img, 5, 0) + rng.randn(185, 6)).astype(np.float32)
    ref_i2t, ref_t2i = _argsort_reference(img @ cap.T)
    assert np.array_equal(i2t_ranks(img, cap, block=7), ref_i2t)
    assert np.array_equal(t2i_ranks(img, cap, block=11), ref_t2i)
    assert np.array_equal(i2t_ranks(img, cap), ref_i2t)


def test_coco_1k_is_the_mean_of_five_folds_and_5k_the_whole():
    rng = np.random.RandomState(1)
    img = rng.randn(5000, 8).astype(np.float32)
    cap = (np.repeat(img, 5, 0) + 1.2 * rng.randn(25000, 8)).astype(np.float32)
    m = coco_1k_5k(img, cap)
    folds = [i2t_t2i_recall(img[a:a + 1000], cap[5 * a:5 * a + 5000]) for a in range(0, 5000, 1000)]
    for k in ('i2t_r1', 't2i_r5', 'rsum', 'i2t_medr'):
        assert m['1k_' + k] == pytest.approx(np.mean([f[k] for f in folds]))
    assert m['rsum'] == pytest.approx(i2t_t2i_recall(img, cap)['rsum'])
    assert m['1k_rsum'] > m['rsum']          # 1,000 candidates are easier than 5,000


def test_wrong_caption_count_is_a_clear_error():
    with pytest.raises(ValueError, match='need 50 captions'):
        i2t_ranks(np.ones((10, 3)), np.ones((49, 3)))
