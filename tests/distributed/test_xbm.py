"""The cross-batch memory (gluon_dml/losses/xbm.py) against numpy: its memory terms, the FIFO
with its warm-up, hybridized and imperative alike, and a checkpoint of its memory."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluon_dml.losses import (BinomialDevianceLoss, ContrastiveLoss, LiftedStructureLoss,
                              MultiSimilarityLoss, TripletLoss)
from gluon_dml.losses.xbm import CrossBatchMemory, check_memory_loss, cross_loss

from . import reference_xbm as ref

CASES = [
    (ContrastiveLoss(), ref.contrastive),
    (MultiSimilarityLoss(), ref.multi_similarity),
    (BinomialDevianceLoss(), ref.binomial),
    (TripletLoss(mining='batch_hard'), ref.triplet_batch_hard),
    (LiftedStructureLoss(variant='modified'), ref.lifted_modified),
    (LiftedStructureLoss(), ref.lifted_smooth),
]


def _data(rng, n, classes, dim=8, unit=True):
    x = rng.normal(size=(n, dim)).astype(np.float32)
    if unit:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, rng.integers(0, classes, n).astype(np.float32)


@pytest.mark.parametrize('loss,reference', CASES, ids=lambda c: getattr(c, '__name__', type(c).__name__))
def test_memory_terms_match_numpy(loss, reference):
    rng = np.random.default_rng(0)
    x, y = _data(rng, 12, 4)
    m, my = _data(rng, 20, 5)
    valid = np.ones(20, np.float32)
    valid[15:] = 0                          # unfilled slots take no part
    got = cross_loss(mx.nd, loss, mx.nd.array(x), mx.nd.array(y), mx.nd.array(m),
                     mx.nd.array(my), mx.nd.array(valid)).asscalar()
    want = reference(x, y, m[:15], my[:15])
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize('loss,reference', CASES[:2], ids=['contrastive', 'multi_similarity'])
def test_an_empty_memory_adds_nothing(loss, reference):
    rng = np.random.default_rng(1)
    x, y = _data(rng, 6, 3)
    got = cross_loss(mx.nd, loss, mx.nd.array(x), mx.nd.array(y), mx.nd.zeros((5, 8)),
                     mx.nd.zeros((5,)), mx.nd.zeros((5,))).asscalar()
    assert got == 0


@pytest.mark.parametrize('hybridize', [False, True])
def test_fifo_warm_up_and_loss_follow_the_paper(hybridize):
    """Memory of 10, batches of 4, warm-up 2 steps: the memory term of step t pairs its batch
    with the batches of the steps before it (after the warm-up, the last 10 rows), and the batch
    is enqueued after the loss."""
    rng = np.random.default_rng(2)
    inner = ContrastiveLoss()
    xbm = CrossBatchMemory(inner, size=10, embed_dim=8, start=2, weight=0.5)
    xbm.initialize()
    if hybridize:
        xbm.hybridize(static_alloc=True)
    mem_x, mem_y = np.zeros((0, 8), np.float32), np.zeros((0,), np.float32)
    for step in range(7):
        x, y = _data(rng, 4, 3)
        xa = mx.nd.array(x)
        xa.attach_grad()
        with autograd.record():
            loss = xbm(xa, mx.nd.array(y))
        loss.backward()
        own = inner(mx.nd.array(x), mx.nd.array(y)).asscalar()
        memory = ref.contrastive(x, y, mem_x, mem_y) if len(mem_x) else 0.0
        np.testing.assert_allclose(loss.asscalar(), own + 0.5 * memory, rtol=1e-4, atol=1e-6,
                                   err_msg='step %d' % step)
        assert np.isfinite(xa.grad.asnumpy()).all()
        if step >= 2:                                   # after the warm-up: enqueued
            mem_x, mem_y = np.concatenate([mem_x, x])[-10:], np.concatenate([mem_y, y])[-10:]
        got_x, got_y = xbm.contents()
        np.testing.assert_allclose(got_x, mem_x, rtol=1e-6)
        np.testing.assert_array_equal(got_y, mem_y)
    assert xbm.filled() == 10


def test_the_gradient_flows_to_the_batch_only_and_matches_the_imperative_block():
    rng = np.random.default_rng(3)
    grads = []
    for hybridize in (False, True):
        xbm = CrossBatchMemory(MultiSimilarityLoss(), size=16, embed_dim=8)
        xbm.initialize()
        if hybridize:
            xbm.hybridize(static_alloc=True)
        rng = np.random.default_rng(3)
        for _ in range(3):
            x, y = _data(rng, 6, 3)
            xa = mx.nd.array(x)
            xa.attach_grad()
            with autograd.record():
                loss = xbm(xa, mx.nd.array(y))
            loss.backward()
        grads.append(xa.grad.asnumpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_a_checkpoint_keeps_the_memory(tmp_path):
    rng = np.random.default_rng(4)
    a = CrossBatchMemory(ContrastiveLoss(), size=8, embed_dim=8)
    a.initialize()
    for _ in range(3):
        x, y = _data(rng, 4, 3)
        with autograd.record():
            a(mx.nd.array(x), mx.nd.array(y))
    a.save_parameters(str(tmp_path / 'loss.params'))
    b = CrossBatchMemory(ContrastiveLoss(), size=8, embed_dim=8)
    b.load_parameters(str(tmp_path / 'loss.params'))
    for got, want in zip(b.contents(), a.contents()):
        np.testing.assert_array_equal(got, want)
    x, y = _data(rng, 4, 3)
    with autograd.record():
        la, lb = a(mx.nd.array(x), mx.nd.array(y)), b(mx.nd.array(x), mx.nd.array(y))
    assert la.asscalar() == lb.asscalar()


def test_losses_the_memory_cannot_take_are_refused():
    with pytest.raises(ValueError, match='pair-based loss'):
        check_memory_loss('margin')
    with pytest.raises(ValueError, match='batch_hard'):
        check_memory_loss('triplet', {'mining': 'semihard'})
    check_memory_loss('multi_similarity', {})
    with pytest.raises(ValueError, match='pair-based'):
        CrossBatchMemory(mx.gluon.nn.Dense(2), size=4, embed_dim=2)


@pytest.mark.slow
def test_a_resumed_run_continues_with_the_same_memory(tmp_path):
    """SIGTERM mid-run, then --resume: the same parameters and memory as an uninterrupted run."""
    import os
    import signal
    import time
    from gluon_dml.engine import CheckpointManager
    from ..helpers import popen_script, run_script
    args = ['--data', 'digits', '--epochs', '4', '--batches-per-epoch', '6', '--no-progress',
            '--loss', 'multi_similarity', '--xbm-size', '150', '--xbm-start', '3']

    def final(run_dir):
        latest = CheckpointManager(str(run_dir)).latest()
        return [{k: v.asnumpy() for k, v in mx.nd.load(os.path.join(latest, f)).items()}
                for f in ('net.params', 'loss.params')]

    run_script('train_margin.py', *args, '--save-dir', tmp_path / 'full', check=True)
    proc = popen_script('train_margin.py', *args, '--save-dir', tmp_path / 'part')
    pointer = tmp_path / 'part' / 'checkpoints' / 'latest'
    deadline = time.time() + 120
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode == 143
    run_script('train_margin.py', *args, '--save-dir', tmp_path / 'part', '--resume', check=True)
    for a, b in zip(final(tmp_path / 'full'), final(tmp_path / 'part')):
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_the_memory_flags():
    import io
    from gluon_dml import cli
    from gluon_dml.errors import UserError
    with pytest.raises(UserError, match='pair-based loss'):
        cli.parse('margin', ['--data', 'digits', '--xbm-size', '64'], stream=io.StringIO())
    with pytest.raises(UserError, match='batch_hard'):
        cli.parse('margin', ['--data', 'digits', '--loss', 'triplet', '--xbm-size', '64'],
                  stream=io.StringIO())
    out = io.StringIO()
    args = cli.parse('margin', ['--data', 'digits', '--xbm-start', '3'], stream=out)
    assert '--xbm-start has no effect without --xbm-size' in out.getvalue()
    args = cli.parse('margin', ['--data', 'digits', '--loss', 'contrastive', '--xbm-size', '64'],
                     stream=io.StringIO())
    assert (args.xbm_size, args.xbm_start, args.xbm_weight) == (64, 0, 1.0)
