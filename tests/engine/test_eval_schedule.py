"""How often and how fully a run evaluates: ``--eval-interval`` (every N epochs, the untrained and
the last epoch always) and ``--eval-nmi-runs`` (NMI's k-means runs before the last epoch; the last
epoch always gets ``--nmi-runs``)."""
import json

import pytest

from gluon_dml import cli
from gluon_dml.engine.evaluation import RetrievalEvaluator
from gluon_dml.errors import UserError
from gluon_dml.methods import get_method, run


def test_the_final_epoch_gets_the_full_nmi_runs_and_the_others_the_epoch_runs():
    ev = RetrievalEvaluator(dataset=None, nmi_runs=10, epoch_nmi_runs=1, final_epoch=5)
    assert [ev.nmi_runs_at(e) for e in (0, 1, 4, 5)] == [1, 1, 1, 10]
    assert RetrievalEvaluator(dataset=None, nmi_runs=3).nmi_runs_at(0) == 3      # not asked: same


def _run(tmp_path, *extra):
    args = cli.parse('margin', ['--data', 'digits', '--epochs', '3', '--batches-per-epoch', '2',
                                '--no-progress', '--save-dir', str(tmp_path / 'run')] + list(extra))
    run(get_method('margin'), args)
    return [json.loads(line) for line in open(tmp_path / 'run' / 'log.jsonl')]


def test_eval_interval_and_eval_nmi_runs_on_a_real_run(tmp_path):
    rows = _run(tmp_path, '--eval-interval', '2', '--eval-nmi-runs', '0', '--nmi-runs', '2')
    assert [r['epoch'] for r in rows] == [0, 1, 2, 3]
    evaluated = [r['epoch'] for r in rows if 'recall@1' in r]
    assert evaluated == [0, 2, 3]                          # untrained, every 2nd, the last
    assert [r['num_nmi_runs'] for r in rows if 'recall@1' in r] == [0, 0, 2]
    assert 'nmi' not in rows[0] and 'nmi' not in rows[2] and 0 < rows[3]['nmi'] <= 1


def test_eval_nmi_runs_below_zero_is_refused(tmp_path):
    with pytest.raises(UserError, match='--eval-nmi-runs must be 0'):
        cli.parse('margin', ['--data', 'digits', '--eval-nmi-runs', '-1',
                             '--save-dir', str(tmp_path / 'run')])
