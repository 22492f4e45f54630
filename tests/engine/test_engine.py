"""The training loop: resuming is exact, signals save a checkpoint, NaN stops cleanly,
checkpoints are atomic, the learning-rate schedule."""
import json
import os
import signal
import time

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from gluon_dml.data import BalancedBatchSampler, get_dataset
from gluon_dml.engine import (CheckpointManager, Engine, EngineConfig, Logger, NaNLossError,
                              RetrievalEvaluator, embed_dataset, read_log)
from gluon_dml.losses import MarginLoss
from gluon_dml.models import get_model

from ..helpers import popen_script, run_script

TINY = ['--data', 'digits', '--epochs', '6', '--batches-per-epoch', '6', '--no-progress']


def _params(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(path).items()}


def _final_params(run_dir):
    latest = CheckpointManager(run_dir).latest()
    return _params(os.path.join(latest, 'net.params')), _params(os.path.join(latest, 'loss.params'))


def test_resume_after_sigterm_ends_with_the_same_parameters(tmp_path):
    full = tmp_path / 'full'
    run_script('train_margin.py', *TINY, '--save-dir', full, check=True)

    part = tmp_path / 'part'
    proc = popen_script('train_margin.py', *TINY, '--save-dir', part)
    pointer = part / 'checkpoints' / 'latest'
    deadline = time.time() + 120
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, 'the run ended before it could be interrupted'
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert 'SIGTERM received' in err and '--resume' in err
    meta = CheckpointManager.meta(CheckpointManager(str(part)).latest())
    assert meta.get('interrupted') == 'SIGTERM' and meta['epoch'] <= 6

    run_script('train_margin.py', *TINY, '--save-dir', part, '--resume', check=True)
    net_a, loss_a = _final_params(str(full))
    net_b, loss_b = _final_params(str(part))
    assert net_a.keys() == net_b.keys()
    for k in net_a:
        np.testing.assert_allclose(net_a[k], net_b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    for k in loss_a:
        np.testing.assert_allclose(loss_a[k], loss_b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    # the log has each epoch exactly once, 0 (untrained) to 6
    assert [r['epoch'] for r in read_log(str(part))] == list(range(7))
    assert [r['epoch'] for r in read_log(str(full))] == list(range(7))
    for name in ('model-symbol.json', 'model-0000.params', 'args.json'):
        assert (part / name).exists(), name


def test_existing_run_needs_resume(tmp_path):
    run_script('train_margin.py', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '2',
               '--no-progress', '--save-dir', tmp_path, check=True)
    proc = run_script('train_margin.py', '--data', 'digits', '--epochs', '1', '--no-progress',
                      '--save-dir', tmp_path)
    assert proc.returncode == 2
    assert 'already holds a run; pass --resume' in proc.stderr
    assert 'Traceback' not in proc.stderr


class _NaNAfter(MarginLoss):
    """The margin loss, poisoned with NaN from the ``n``-th call on."""

    def __init__(self, n, **kw):
        super().__init__(**kw)
        self.n, self.calls = n, 0

    def forward(self, x, y):
        self.calls += 1
        out = super().forward(x, y)
        return out * float('nan') if self.calls >= self.n else out


def _engine(tmp_path, loss, epochs=2, **kw):
    train = get_dataset('digits', split='train')
    test = get_dataset('digits', split='test')
    mx.random.seed(0)
    net = get_model('smallconv', 16)
    loss.initialize()
    sampler = BalancedBatchSampler(train.labels, 20, 4, num_batches=4, seed=0)
    config = EngineConfig(**dict(dict(epochs=epochs, lr=1e-3, progress=False), **kw))
    return Engine(net, loss, train, sampler, RetrievalEvaluator(test), str(tmp_path), mx.cpu(),
                  config, logger=Logger(str(tmp_path)))


def test_a_nan_loss_at_the_first_batch_does_not_blame_the_learning_rate(tmp_path):
    """The first batch's loss is computed before any update: a NaN there comes from the loss's
    settings or the data, and the message says so instead of "Lower --lr"."""
    engine = _engine(tmp_path, _NaNAfter(1), epochs=1, hybridize=False)
    with pytest.raises(NaNLossError, match=r'^The loss was nan at the first batch, before any '
                       r'update, so the learning rate is not the cause') as err:
        engine.fit()
    assert '--lr' not in str(err.value)


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    engine = _engine(tmp_path, _NaNAfter(7), epochs=3, hybridize=False)
    with pytest.raises(NaNLossError, match=r'became nan at epoch 2, batch 3.*last good checkpoint'):
        engine.fit()
    latest = CheckpointManager(str(tmp_path)).latest()
    meta = CheckpointManager.meta(latest)
    assert (meta['epoch'], meta['batch']) == (2, 0)        # the end of epoch 1, before the NaN
    for v in _params(os.path.join(latest, 'net.params')).values():
        assert np.all(np.isfinite(v))
    assert [r['epoch'] for r in read_log(str(tmp_path))] == [0, 1]


def test_checkpoint_write_killed_midway_leaves_previous_intact(tmp_path):
    mgr = CheckpointManager(str(tmp_path), keep=2)
    net = gluon.nn.Dense(3, in_units=2)
    net.initialize()
    mgr.save(1, 0, {'net.params': net.save_parameters}, {'note': 'good'})

    def dies(path):
        with open(path, 'wb') as f:
            f.write(b'half a file')
        raise KeyboardInterrupt('killed while writing')

    with pytest.raises(KeyboardInterrupt):
        mgr.save(2, 0, {'net.params': dies}, {})
    latest = mgr.latest()
    assert latest.endswith('e0001-b00000')
    net.load_parameters(os.path.join(latest, 'net.params'))
    assert CheckpointManager.meta(latest)['note'] == 'good'
    # the next good save cleans the leftovers and keeps only the newest two
    for e in (2, 3, 4):
        mgr.save(e, 0, {'net.params': net.save_parameters}, {})
    names = sorted(os.listdir(mgr.dir))
    assert names == ['e0003-b00000', 'e0004-b00000', 'latest'], names


def test_sigkill_during_training_leaves_a_loadable_checkpoint(tmp_path):
    proc = popen_script('train_margin.py', '--data', 'digits', '--epochs', '50', '--no-progress',
                        '--save-dir', tmp_path)
    pointer = tmp_path / 'checkpoints' / 'latest'
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if pointer.exists() and len(read_log(str(tmp_path))) >= 3:
            break
        time.sleep(0.01)
    proc.kill()
    proc.communicate()
    latest = CheckpointManager(str(tmp_path)).latest()
    assert latest is not None
    params = _params(os.path.join(latest, 'net.params'))
    assert params and all(np.all(np.isfinite(v)) for v in params.values())
    proc = run_script('train_margin.py', '--data', 'digits', '--epochs', '4', '--no-progress',
                      '--save-dir', tmp_path, '--resume', check=True)
    assert 'Resumed from' in proc.stdout


def test_learning_rate_steps(tmp_path):
    engine = _engine(tmp_path, MarginLoss(), epochs=1, steps=[2, 4], factor=0.5)
    assert [engine.lr_at(e) for e in (1, 2, 3, 4, 5)] == [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4]


def _one_step_of_beta(tmp_path, **kw):
    engine = _engine(tmp_path, MarginLoss(), epochs=1, hybridize=False, loss_lr=0.05, **kw)
    batch = next(iter(engine.sampler))
    data = mx.nd.array(engine.train_set.images[batch])
    label = mx.nd.array(engine.train_set.labels[batch])
    before = engine.loss.beta.data().asnumpy().copy()
    mx.random.seed(1)
    engine.train_step(data, label)
    grad = engine.loss.beta.grad().asnumpy()
    assert np.all(grad != 0)
    return engine, before, engine.loss.beta.data().asnumpy(), grad


def test_loss_parameters_get_the_loss_optimizer(tmp_path):
    # explicit SGD (momentum 0.9): the first step is -lr * grad
    engine, before, after, grad = _one_step_of_beta(tmp_path / 'sgd', loss_optimizer='sgd')
    assert type(engine.loss_trainer._optimizer).__name__ == 'SGD'
    assert engine.loss_trainer._optimizer.momentum == 0.9
    np.testing.assert_allclose(after - before, -0.05 * grad, rtol=1e-4)
    # the default follows the network's optimizer (Adam): the first step is about -lr * sign(grad)
    engine, before, after, grad = _one_step_of_beta(tmp_path / 'adam')
    assert type(engine.loss_trainer._optimizer).__name__ == 'Adam'
    np.testing.assert_allclose(after - before, -0.05 * np.sign(grad), rtol=1e-3)


def test_a_loss_can_name_the_optimizer_of_its_parameters(tmp_path):
    class SGDMargin(MarginLoss):
        param_optimizer = 'sgd'
    engine = _engine(tmp_path, SGDMargin(), epochs=1)
    assert type(engine.loss_trainer._optimizer).__name__ == 'SGD'
    engine = _engine(tmp_path / 'b', SGDMargin(), epochs=1, loss_optimizer='adam')
    assert type(engine.loss_trainer._optimizer).__name__ == 'Adam'


def test_open_run_checks_the_method_and_the_parameters(tmp_path):
    from gluon_dml.errors import UserError
    from gluon_dml.methods import open_run
    (tmp_path / 'args.json').write_text(json.dumps(
        {'method': 'margin', 'model': 'smallconv', 'embed_dim': 8}))
    with pytest.raises(UserError, match='is a margin run, not a hash run'):
        open_run(str(tmp_path), [mx.cpu()], method='hash')
    with pytest.raises(UserError, match='is a margin run, not a vse run'):
        open_run(str(tmp_path), [mx.cpu()], method='vse')
    with pytest.raises(FileNotFoundError, match='holds no trained parameters'):
        open_run(str(tmp_path), [mx.cpu()])


def test_runs_without_the_normalisation_setting_take_it_from_their_loss():
    from gluon_dml.methods.embedding import embeddings_normalized
    assert embeddings_normalized({'loss': 'lifted'}) is False        # trained unnormalised
    assert embeddings_normalized({'loss': 'npair'}) is False
    assert embeddings_normalized({'loss': 'margin'}) is True
    assert embeddings_normalized({}) is True                         # the first runs: margin
    assert embeddings_normalized({'loss': 'lifted', 'normalize_embeddings': True}) is True


def test_the_evaluator_adds_few_shot_accuracy_when_asked():
    from gluon_dml.metrics import few_shot_metrics
    test = get_dataset('digits', split='test')
    mx.random.seed(0)
    net = get_model('smallconv', 16)
    plain = RetrievalEvaluator(test)(net, [mx.cpu()])
    assert not any(k.startswith('fs_') for k in plain)
    setting = dict(way=5, shot=1, queries=3, episodes=50)
    got = RetrievalEvaluator(test, few_shot=setting)(net, [mx.cpu()])
    emb, labels = embed_dataset(net, test, [mx.cpu()])
    want = few_shot_metrics(emb, labels, **setting)
    assert got['fs_setting'] == '5-way 1-shot, 3 queries, 50 episodes'
    for key in ('fs_proto', 'fs_proto_ci95', 'fs_nn', 'fs_nn_ci95'):
        assert got[key] == pytest.approx(want[key], abs=1e-9)
    assert 0.2 < got['fs_proto'] <= 1.0          # well above chance (0.2) for five digit classes


def test_progress_bars_redraw_rarely_into_a_file(tmp_path, monkeypatch):
    """nohup python train_margin.py ... & sends stderr to nohup.out, which gained a redraw of the
    bar every half second (about 600 KB of carriage-return lines an hour): into a file or a pipe
    the bars redraw every 30 s; on a terminal, every 0.5 s."""
    import pty
    from gluon_dml.progress import progress_interval
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, 'w') as terminal:
            assert progress_interval(terminal) == 0.5
    finally:
        os.close(master)
    with open(str(tmp_path / 'nohup.out'), 'w') as f:
        assert progress_interval(f) == 30.0
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, 'w') as pipe:
        assert progress_interval(pipe) == 30.0
    os.close(read_end)
    assert progress_interval(f) == 30.0                  # closed: no terminal either
    # every bar of the package comes from progress_bar (training, evaluation, the image check of
    # a photo dataset, downloads): into a file, 30 s
    import sys
    from gluon_dml.progress import progress_bar
    with open(str(tmp_path / 'bar.txt'), 'w') as f:
        monkeypatch.setattr(sys, 'stderr', f)              # where the bars write
        bar = progress_bar(range(3))
        assert bar.mininterval == 30.0
        bar.close()
