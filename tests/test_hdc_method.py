"""``gluon-dml train hdc``: the cascade (models/hdc.py, losses/hdc.py) wired as a method of the
registry; a run folder of it evaluates, embeds and exports like any other."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from gluon_dml import cli
from gluon_dml.errors import UserError
from gluon_dml.methods import get_method, open_run, run

from .helpers import script_env


def _args(tmp_path, *extra):
    return cli.parse('hdc', ['--data', 'digits', '--epochs', '1', '--batches-per-epoch', '3',
                             '--embed-dim', '16', '--no-progress', '--nmi-runs', '1',
                             '--save-dir', str(tmp_path / 'run')] + list(extra))


def test_hdc_trains_three_levels_and_its_run_opens_with_the_concatenated_embedding(tmp_path):
    args = _args(tmp_path)
    engine, final = run(get_method('hdc'), args)
    record = json.load(open(tmp_path / 'run' / 'args.json'))
    assert (record['method'], record['loss'], record['hdc_levels']) == ('hdc', 'contrastive', 3)
    assert engine.net.dims == (16, 16, 16)
    trained = open_run(str(tmp_path / 'run'))
    enc = trained.encoders()
    emb = enc.image(np.random.RandomState(0).rand(2, 1, 8, 8).astype(np.float32))
    assert enc.dim == 48 and emb.shape == (2, 48)
    # each level is unit-length: the concatenation has norm sqrt(3)
    assert np.allclose(np.linalg.norm(emb, axis=1), np.sqrt(3), atol=1e-4)
    rows = [json.loads(line) for line in open(tmp_path / 'run' / 'log.jsonl')]
    assert [r['epoch'] for r in rows] == [0, 1] and np.isfinite(rows[-1]['loss'])
    assert final['recall@1'] == pytest.approx(rows[-1]['recall@1'])


@pytest.mark.parametrize('extra, words', [
    (['--loss', 'triplet'], 'cascades the contrastive loss'),
    (['--hdc-keep', '0'], '--hdc-keep must lie in (0, 1]'),
    (['--xbm-size', '128'], 'has no cross-batch memory'),
    (['--pool', 'gem'], 'pools each level by global average'),
])
def test_settings_the_cascade_cannot_take_are_refused(tmp_path, extra, words):
    with pytest.raises(UserError, match=re.escape(words)):
        _args(tmp_path, *extra)
    assert not os.path.exists(tmp_path / 'run')


def test_the_contrastive_options_reach_the_cascade(tmp_path):
    args = _args(tmp_path, '--neg-margin', '0.8', '--hdc-keep', '0.25')
    loss = get_method('hdc').build_loss(args, {})
    assert loss._neg_margin == 0.8 and loss._keep == [0.25, 0.25]


@pytest.mark.slow
def test_gluon_dml_train_hdc_and_evaluate_from_the_command_line(tmp_path):
    out = tmp_path / 'run'
    def gluon_dml(*argv):
        proc = subprocess.run([sys.executable, '-m', 'gluon_dml'] + list(argv), capture_output=True,
                              text=True, timeout=600, env=script_env(), cwd=str(tmp_path))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc
    gluon_dml('train', 'hdc', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '2',
              '--no-progress', '--save-dir', str(out))
    ev = gluon_dml('evaluate', str(out), '--nmi-runs', '1')
    last = [json.loads(line) for line in open(out / 'log.jsonl')][-1]
    assert 'recall@1' in ev.stdout
    assert json.load(open(out / 'eval-test.json'))['recall@1'] == pytest.approx(last['recall@1'])
