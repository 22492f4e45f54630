"""--members N: N embedding networks side by side (MemberEnsemble) with one loss copy each
(MemberLoss): their outputs, their loss against the copies run by hand, hybridization, the
gradients reaching every member, and a run that trains, exports and reloads."""
import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluon_dml.losses import MarginLoss, TripletLoss
from gluon_dml.losses.members import MemberLoss
from gluon_dml.models import EmbeddingNet, MemberEnsemble, get_model

from ..helpers import run_command, run_script


def _images(n=12, seed=0):
    return mx.nd.array(np.random.RandomState(seed).uniform(size=(n, 1, 28, 28)).astype(np.float32))


@pytest.mark.parametrize('members', [2, 3])
def test_the_ensemble_joins_its_members_normalised_outputs(members):
    mx.random.seed(1)
    net = get_model('smallconv', 16, members=members)
    assert isinstance(net, MemberEnsemble) and len(net.members) == members
    assert all(isinstance(m, EmbeddingNet) for m in net.members)
    x = _images()
    z = net(x).asnumpy()
    assert z.shape == (12, 16 * members)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)   # a unit vector
    for i, m in enumerate(net.members):           # slice i is member i's own embedding / sqrt(N)
        np.testing.assert_allclose(z[:, 16 * i:16 * (i + 1)] * np.sqrt(members), m(x).asnumpy(),
                                   rtol=1e-5, atol=1e-6)
    # the members start from different weights (else the ensemble is one network N times)
    w = [m.embed.weight.data().asnumpy() for m in net.members]
    assert not np.allclose(w[0], w[1])
    # dot products of the joined vectors: the mean of the members' cosine similarities
    sims = [m(x).asnumpy() @ m(x).asnumpy().T for m in net.members]
    np.testing.assert_allclose(z @ z.T, np.mean(sims, axis=0), atol=1e-5)
    net.hybridize()
    np.testing.assert_allclose(net(x).asnumpy(), z, rtol=1e-5, atol=1e-6)


def test_an_unnormalised_ensemble_is_not_rescaled():
    net = get_model('smallconv', 8, normalize=False, members=2)
    x = _images(4)
    z = net(x).asnumpy()
    np.testing.assert_allclose(z[:, :8], net.members[0](x).asnumpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='at least 2'):
        MemberEnsemble([get_model('smallconv', 8)])


def _margin_copies(n, num_classes=4):
    losses = [MarginLoss(num_classes=num_classes) for _ in range(n)]
    for i, loss in enumerate(losses):
        loss.initialize()
        loss.beta.set_data(mx.nd.array(np.linspace(0.9, 1.3, num_classes) + 0.1 * i))
    return losses


@pytest.mark.parametrize('hybridize', [False, True])
def test_the_loss_is_the_mean_of_each_members_own_loss(hybridize):
    rng = np.random.RandomState(3)
    emb = rng.normal(size=(12, 3, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=2, keepdims=True)              # three members' unit vectors
    joined = mx.nd.array(emb.reshape(12, 24) / np.sqrt(3))          # as MemberEnsemble joins them
    labels = mx.nd.array(np.repeat(np.arange(4), 3))
    copies = _margin_copies(3)
    loss = MemberLoss(copies)
    if hybridize:
        loss.hybridize()
    # the margin loss samples its negatives: the same seed for the copies run by hand
    mx.random.seed(7)
    got = loss(joined, labels).asscalar()
    mx.random.seed(7)
    want = np.mean([copies[i](mx.nd.array(emb[:, i]), labels).asscalar() for i in range(3)])
    assert got == pytest.approx(want, rel=1e-5)
    # each copy has its own betas, and all of them are the loss's parameters
    assert len([p for p in loss.collect_params() if p.endswith('beta')]) == 3


def test_triplet_copies_and_gradients_reach_every_member():
    mx.random.seed(2)
    net = get_model('smallconv', 8, members=2)
    loss = MemberLoss([TripletLoss(), TripletLoss()])
    x, labels = _images(8), mx.nd.array(np.repeat(np.arange(4), 2))
    with autograd.record():
        z = net(x)
        value = loss(z, labels)
    value.backward()
    emb = z.asnumpy() * np.sqrt(2)
    want = np.mean([TripletLoss()(mx.nd.array(emb[:, 8 * i:8 * (i + 1)]), labels).asnumpy()
                    for i in range(2)], axis=0)
    np.testing.assert_allclose(value.asnumpy(), want, rtol=1e-5, atol=1e-6)
    for m in net.members:
        g = m.embed.weight.grad().asnumpy()
        assert np.abs(g).sum() > 0


def test_a_members_run_trains_exports_and_reloads(tmp_path):
    run = tmp_path / 'm2'
    run_script('train_margin.py', '--data', 'digits', '--members', '2', '--embed-dim', '8',
               '--epochs', '1', '--batches-per-epoch', '3', '--no-progress', '--save-dir', run,
               check=True)
    assert json.load(open(run / 'args.json'))['members'] == 2
    final = [json.loads(ln) for ln in open(run / 'log.jsonl')][-1]
    run_command('evaluate', run, '--out', tmp_path / 'e.json', '--save-embeddings',
                tmp_path / 'e.npz', check=True)
    assert json.load(open(tmp_path / 'e.json'))['recall@1'] == pytest.approx(final['recall@1'],
                                                                          abs=1e-9)
    assert np.load(tmp_path / 'e.npz')['embeddings'].shape[1] == 16
    # the exported network holds both members, the checkpoint both loss copies
    params = mx.nd.load(str(run / 'model-0000.params'))
    last = sorted(p for p in (run / 'checkpoints').iterdir() if p.is_dir())[-1]
    assert sum(k.endswith('beta') for k in mx.nd.load(str(last / 'loss.params'))) == 2
    assert len([k for k in params if 'dense' in k and k.endswith('weight')]) == 2


@pytest.mark.parametrize('argv,message', [
    (['--members', '0'], '--members must be 1'),
    (['--members', '2', '--xbm-size', '64'], 'do not go together'),
])
def test_bad_members_settings_are_refused(tmp_path, argv, message):
    r = run_script('train_margin.py', '--data', 'digits', '--epochs', '1', '--no-progress',
                   '--save-dir', tmp_path / 'x', *argv)
    assert r.returncode != 0 and message in r.stderr + r.stdout


def test_hdc_refuses_members(tmp_path):
    r = run_command('train', 'hdc', '--data', 'digits', '--members', '2', '--epochs', '1',
                    '--save-dir', tmp_path / 'h')
    assert r.returncode != 0 and '--members' in r.stderr + r.stdout
