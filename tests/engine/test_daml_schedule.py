"""DAML's phased schedule (``--warmup-epochs``, ``--ramp-epochs``, ``--synthetic``): the training
loop sets the synthetic negatives' weight before every epoch (``loss.set_epoch``), the batches of
an epoch use it, a resumed run picks the schedule up where it was, and the metric never trains the
generator whatever the weight."""
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from gluon_dml import cli
from gluon_dml.engine import EngineConfig
from gluon_dml.engine.loop import Engine
from gluon_dml.losses.daml import DAMLTripletLoss
from gluon_dml.methods import get_method, run


class _RecordingDAML(DAMLTripletLoss):
    """DAML-triplet that records, at each batch, the weight w its graph reads."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def forward(self, x, labels):
        self.seen.append(self.synthetic_weight)
        return super().forward(x, labels)


class _Sampler(gluon.data.Sampler):
    def __init__(self, n_batches, batch):
        self.n_batches, self.batch = n_batches, batch

    def set_epoch(self, epoch):
        pass

    def __iter__(self):
        return iter([list(range(self.batch))] * self.n_batches)

    def __len__(self):
        return self.n_batches


def test_the_engine_switches_phase_at_the_right_epoch(tmp_path):
    # warm-up 2 epochs, ramp 2: w = 0, 0, 0.5, 1, 1 over epochs 1..5, each batch of an epoch
    # (3 batches) reading its epoch's w; the log records it.
    mx.random.seed(0)
    rng = np.random.RandomState(0)
    data = rng.normal(size=(12, 5)).astype(np.float32)
    labels = np.repeat(np.arange(4), 3).astype(np.float32)
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(8, in_units=5), gluon.nn.HybridLambda(
        lambda F, z: F.L2Normalization(z, mode='instance')))
    net.initialize(mx.init.Xavier())
    loss = _RecordingDAML(8, hidden=(16,), warmup_epochs=2, ramp_epochs=2)
    loss.initialize()

    class _Log(object):
        rows = []
        path = str(tmp_path / 'log.jsonl')

        def info(self, msg):
            pass

        def truncate(self, before):
            return []

        def log_iter(self, step, values):
            pass

        def log_epoch(self, epoch, values):
            self.rows.append(dict(values, epoch=epoch))

    log = _Log()
    config = EngineConfig(epochs=5, hybridize=False, progress=False, eval_untrained=False)
    engine = Engine(net, loss, gluon.data.ArrayDataset(data, labels), _Sampler(3, 12),
                    lambda n, c, e: {}, str(tmp_path / 'run'), mx.cpu(), config, logger=log)
    engine.fit()
    expected = [0.0, 0.0, 0.5, 1.0, 1.0]
    assert loss.seen == pytest.approx([w for w in expected for _ in range(3)])
    assert [r['daml_synthetic_weight'] for r in log.rows] == pytest.approx(expected)


def _run(tmp_path, *extra):
    args = cli.parse('margin', ['--data', 'digits', '--loss', 'daml_triplet', '--embed-dim', '16',
                                '--batches-per-epoch', '2', '--no-progress', '--nmi-runs', '1',
                                '--eval-nmi-runs', '0', '--save-dir', str(tmp_path / 'run')]
                     + list(extra))
    run(get_method('margin'), args)
    return [json.loads(line) for line in open(tmp_path / 'run' / 'log.jsonl')]


@pytest.mark.slow
def test_a_real_run_follows_the_schedule_and_resumes_it(tmp_path):
    # gluon-dml train-margin --loss daml_triplet --warmup-epochs 1 --ramp-epochs 2: the flags reach
    # the loss (args.json), the log says w per epoch, and a run stopped after epoch 2 and resumed
    # to epoch 4 carries on with the schedule (not from its start).
    flags = ['--warmup-epochs', '1', '--ramp-epochs', '2']
    rows = _run(tmp_path, '--epochs', '2', *flags)
    record = json.load(open(tmp_path / 'run' / 'args.json'))
    assert (record['loss_options']['warmup_epochs'], record['loss_options']['ramp_epochs'],
            record['loss_options']['synthetic'], record['loss_options']['synthetic_grad']) == \
        (1, 2, 1.0, 'negative')
    assert [(r['epoch'], r['daml_synthetic_weight']) for r in rows] == [(0, 0.0), (1, 0.0), (2, 0.5)]
    rows = _run(tmp_path, '--epochs', '4', '--resume', *flags)
    assert [(r['epoch'], r['daml_synthetic_weight']) for r in rows] == \
        [(0, 0.0), (1, 0.0), (2, 0.5), (3, 1.0), (4, 1.0)]
    assert all(np.isfinite(r['loss']) for r in rows[1:])


def test_the_generator_gets_no_metric_gradient_in_any_phase():
    # The generator's gradient is dJ_gen/dtheta_g alone: the same for w = 0, 0.5, 1 and for any
    # lambda, while the embeddings' gradient changes with w.
    D = 6
    rng = np.random.RandomState(1)
    x = rng.normal(size=(12, D))
    x = mx.nd.array(x / np.linalg.norm(x, axis=1, keepdims=True))
    y = mx.nd.array(np.repeat(np.arange(4), 3))
    gen, emb = [], []
    for w, lam in ((0.0, 1.0), (0.5, 1.0), (1.0, 1.0), (1.0, 7.0)):
        mx.random.seed(3)
        loss = DAMLTripletLoss(D, hidden=(8,), lambda_metric=lam, positive='hardest')
        loss.initialize(mx.init.Normal(0.5))
        loss.set_synthetic_weight(w)
        xs = x.copy()
        xs.attach_grad()
        with mx.autograd.record():
            out = loss(xs, y)
        out.backward()
        gen.append([p.grad().asnumpy().copy() for p in loss.generator.collect_params().values()])
        emb.append(xs.grad.asnumpy() / lam)
    for g in gen[1:]:
        for a, b in zip(gen[0], g):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    assert np.abs(gen[0][0]).sum() > 0
    assert np.abs(emb[0] - emb[2]).max() > 1e-4            # the metric does see the synthetic ones
