"""scripts/pml_reference.py: the export step writes the protocol's arrays, exactly our loader's."""
import importlib.util
import os

import numpy as np
import pytest

from gluon_dml.data import get_dataset

from .helpers import OMNIGLOT, run_script


@pytest.mark.skipif(not os.path.isdir(OMNIGLOT), reason='../shared/data/omniglot is not here')
def test_export_writes_the_loaders_arrays(tmp_path):
    out = tmp_path / 'omniglot.npz'
    run_script('scripts/pml_reference.py', 'export', '--data-path', OMNIGLOT, '--out', out,
               check=True)
    with np.load(str(out)) as z:
        assert z['Xtr'].shape == (3660, 1, 28, 28) and z['Xte'].shape == (1180, 1, 28, 28)
        assert z['Xtr'].dtype == np.float32 and z['ytr'].dtype == np.int64
        assert len(np.unique(z['ytr'])) == 183 and len(np.unique(z['yte'])) == 59
        test = get_dataset('omniglot', root=OMNIGLOT, split='test')
        for i in (0, 517, 1179):
            np.testing.assert_array_equal(z['Xte'][i], test[i][0])
            assert z['yte'][i] == test[i][1]
    if importlib.util.find_spec('torch') is None:
        proc = run_script('scripts/pml_reference.py', 'train', out)
        assert proc.returncode == 1 and 'needs torch' in proc.stderr, proc.stderr[-500:]


def test_score_gives_our_metrics_of_saved_embeddings(tmp_path):
    from gluon_dml.metrics import evaluate_embeddings
    rng = np.random.RandomState(0)
    y = np.repeat(np.arange(6), 10)
    x = (rng.randn(6, 8)[y] + 0.7 * rng.randn(60, 8)).astype(np.float32)
    np.savez(str(tmp_path / 'e.npz'), embeddings=x, labels=y)
    proc = run_script('scripts/pml_reference.py', 'score', tmp_path / 'e.npz', check=True)
    m = evaluate_embeddings(x, y)
    assert 'Recall@1 %.4f NMI %.4f (mean of 10 k-means runs) MAP@R %.4f' % (
        m['recall@1'], m['nmi'], m['map@r']) in proc.stdout, proc.stdout
    if importlib.util.find_spec('torch') is None:
        proc = run_script('scripts/pml_reference.py', 'score', '--pml', tmp_path / 'e.npz')
        assert proc.returncode == 1 and 'needs torch' in proc.stderr, proc.stderr[-500:]
