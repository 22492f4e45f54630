"""MKLDNN operator fusion and INT8 inference (gluon_dml/engine/inference.py): real MXNet, a real
trained run, no mocks."""
import json
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from gluon_dml.engine.inference import (fusion_enabled, hybridize_for_inference, inference_view,
                                        quantization_available, quantize)
from gluon_dml.errors import UserError
from gluon_dml.models import get_model

from ..helpers import run_script, script_env

needs_mkldnn = pytest.mark.skipif(not fusion_enabled(), reason='MXNet without MKLDNN')


def _ops(block):
    """The operators of the graph a hybridized block runs (after its first call)."""
    return {n['op'] for n in json.loads(block._cached_graph[1].tojson())['nodes']}


def _random_batch_norm(net, seed=0):
    """Batch-norm statistics and affine parameters far from their initial 0 / 1, so that folding
    them into the convolutions is not a no-op."""
    rng = np.random.RandomState(seed)
    for name, p in net.collect_params().items():
        if name.endswith(('running_mean', 'beta')):
            p.set_data(mx.nd.array(rng.uniform(-0.5, 0.5, p.shape)))
        elif name.endswith(('running_var', 'gamma')):
            p.set_data(mx.nd.array(rng.uniform(0.5, 2.0, p.shape)))


def _pair(backbone, shape=(2, 1, 28, 28), seed=0):
    """Two copies of one randomly initialised embedding network (inputs of ``shape``)."""
    mx.random.seed(seed)
    a, b = get_model(backbone, 32), get_model(backbone, 32)
    for net in (a, b):
        net(mx.nd.zeros((1,) + tuple(shape[1:])))           # the deferred shapes
    _random_batch_norm(a, seed)
    for (_, pa), (_, pb) in zip(sorted(a.collect_params().items()), sorted(b.collect_params().items())):
        pb.set_data(pa.data())
    return a, b


@needs_mkldnn
@pytest.mark.parametrize('backbone,shape', [('smallconv', (64, 1, 28, 28)),
                                            ('resnet18_v1', (8, 3, 64, 64))])
def test_fused_network_gives_the_same_embeddings(backbone, shape):
    plain, fused = _pair(backbone, shape)
    plain.hybridize(static_alloc=True)
    assert hybridize_for_inference(fused) is True
    rng = np.random.RandomState(1)
    for n in (shape[0], shape[0] // 2 + 3):          # a full batch, then a shorter last batch
        x = mx.nd.array(rng.uniform(-1, 1, (n,) + shape[1:]))
        diff = np.abs(fused(x).asnumpy() - plain(x).asnumpy()).max()
        assert diff < 1e-5, (backbone, n, diff)
    ops = _ops(fused)
    assert '_sg_mkldnn_conv' in ops and 'BatchNorm' not in ops, ops      # really fused
    assert 'BatchNorm' in _ops(plain)


@needs_mkldnn
def test_fusion_is_switched_off_by_the_environment_and_by_the_argument(monkeypatch):
    net, _ = _pair('smallconv')
    assert hybridize_for_inference(net, fuse=False) is False
    net(mx.nd.ones((2, 1, 28, 28)))
    assert '_sg_mkldnn_conv' not in _ops(net) and 'BatchNorm' in _ops(net)
    monkeypatch.setenv('GLUON_DML_FUSION', '0')
    assert fusion_enabled() is False and hybridize_for_inference(net) is False
    assert inference_view(net) is net


@needs_mkldnn
def test_the_evaluation_view_follows_training_and_leaves_its_graph_alone():
    net, _ = _pair('smallconv')
    net.hybridize(static_alloc=True)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.5})
    x = mx.nd.array(np.random.RandomState(2).uniform(-1, 1, (16, 1, 28, 28)))

    def step():
        with autograd.record():
            loss = (net(x) * mx.nd.arange(32).reshape((1, 32))).sum()
        loss.backward()
        trainer.step(16)

    step()
    before = net(x).asnumpy()
    view = inference_view(net)
    assert view is not net and '_sg_mkldnn_conv' in (view(x), _ops(view))[1]
    assert np.abs(view(x).asnumpy() - before).max() < 1e-5
    assert '_sg_mkldnn_conv' not in _ops(net)                 # the training graph is untouched
    step()                                                    # training goes on after evaluating
    after = net(x).asnumpy()
    assert np.abs(after - before).max() > 1e-3               # the step changed the network ...
    assert np.abs(inference_view(net)(x).asnumpy() - after).max() < 1e-5   # ... a new view too


def test_quantize_refuses_what_it_cannot_calibrate_on():
    net, _ = _pair('smallconv')
    with pytest.raises(UserError, match='calib-mode'):
        quantize(net, np.zeros((4, 1, 28, 28), np.float32), calib_mode='minmax')
    with pytest.raises(UserError, match='N, C, H, W'):
        quantize(net, np.zeros((4, 28, 28), np.float32))
    # a calibration whose INT8 network strays from the float one is refused, not used
    # (entropy did so on the Omniglot small conv net: mean cosine -0.27)
    calib = np.random.RandomState(3).uniform(-1, 1, (32, 1, 28, 28)).astype(np.float32)
    qnet = quantize(net, calib)
    assert 0.98 < qnet.calibration_cosine <= 1.0 + 1e-6
    with pytest.raises(UserError, match='does not reproduce the float32 one'):
        quantize(net, calib, min_cosine=1.01)


# -- INT8 on a real trained run ---------------------------------------------------------------

@pytest.fixture(scope='module')
def digits_run(tmp_path_factory):
    """A margin run on digits, two epochs (Recall@1 about 0.94 on the test classes)."""
    if quantization_available():
        pytest.skip(quantization_available())
    run = tmp_path_factory.mktemp('int8-run') / 'r'
    run_script('train_margin.py', '--data', 'digits', '--epochs', '2', '--seed', '1', '--threads',
               '1', '--no-progress', '--save-dir', run, check=True, timeout=300)
    return run


def _test_split(trained):
    from gluon_dml.data import get_dataset
    return get_dataset(trained.args['data'], None, 'test')


def test_int8_embeddings_are_close_to_float32_and_keep_recall(digits_run):
    from gluon_dml.methods import open_run
    from gluon_dml.metrics import evaluate_embeddings
    f32 = open_run(str(digits_run))
    int8 = open_run(str(digits_run), int8={'calib_images': 256, 'calib_mode': 'naive'})
    assert int8.precision == 'int8' and f32.precision == 'float32' and f32.fused
    assert '_contrib_quantize_v2' in (int8.net(mx.nd.zeros((2, 1, 8, 8))), _ops(int8.net))[1]
    test = _test_split(f32)
    a, labels = f32.embed(test)
    b, labels_b = int8.embed(test)
    assert (labels == labels_b).all() and a.shape == b.shape
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.mean() > 0.98 and cos.min() > 0.9, (cos.mean(), cos.min())
    assert np.abs(a - b).max() > 1e-4                  # it really computes in 8 bits
    ma = evaluate_embeddings(a, labels, ks=(1,), nmi_runs=1)
    mb = evaluate_embeddings(b, labels, ks=(1,), nmi_runs=1)
    assert abs(ma['recall@1'] - mb['recall@1']) < 0.03, (ma['recall@1'], mb['recall@1'])
    assert abs(ma['map@r'] - mb['map@r']) < 0.03, (ma['map@r'], mb['map@r'])
    # kept in the run folder and reused: the same network, the same embeddings
    kept = sorted(p.name for p in (digits_run / 'int8').iterdir())
    assert len(kept) == 3 and all(k.split('-naive-256')[1] in ('-0000.params', '-symbol.json', '.json')
                                  for k in kept), kept
    again = open_run(str(digits_run), int8={'calib_images': 256, 'calib_mode': 'naive'})
    assert again.int8_info['source'].startswith('reused')
    assert again.net.calibration_cosine == pytest.approx(int8.net.calibration_cosine)
    assert np.array_equal(again.embed(test)[0], b)


def test_int8_calibrates_on_training_images_only(digits_run):
    from gluon_dml.data import get_dataset
    from gluon_dml.methods import open_run
    trained = open_run(str(digits_run))
    calib = trained.method.calibration_images(trained, 100)
    train = get_dataset('digits', None, 'train')
    test = _test_split(trained)
    assert calib.shape == (100, 1, 8, 8) and calib.dtype == np.float32
    train_rows = {np.asarray(train[i][0]).tobytes() for i in range(len(train))}
    test_rows = {np.asarray(test[i][0]).tobytes() for i in range(len(test))}
    assert all(c.tobytes() in train_rows for c in calib)
    assert not any(c.tobytes() in test_rows for c in calib)
    assert len({c.tobytes() for c in calib}) > 90            # distinct images, not one repeated


@pytest.mark.slow
def test_evaluate_int8_and_no_fusion_from_the_command_line(digits_run, tmp_path):
    def evaluate(*flags):
        out = tmp_path / ('%s.json' % '_'.join(flags).replace('-', '') or 'default')
        proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'evaluate', str(digits_run),
                               '--threads', '1', '--nmi-runs', '1', '--out', str(out)] + list(flags),
                              capture_output=True, text=True, timeout=300, env=script_env())
        assert proc.returncode == 0, proc.stderr[-2000:]
        return json.load(open(out)), proc.stdout
    fused, out_fused = evaluate()
    plain, out_plain = evaluate('--no-fusion')
    int8, out_int8 = evaluate('--int8', '--calib-images', '128', '--calib-mode', 'entropy')
    assert 'MKLDNN fusion' in out_fused and 'MKLDNN fusion' not in out_plain
    assert 'INT8, entropy calibration' in out_int8
    from gluon_dml.amx import active                        # the same CPU and environment
    assert ('on Intel AMX' in out_int8) == active()
    for k in ('recall@1', 'recall@2', 'recall@4', 'recall@8', 'r_precision', 'map@r'):
        assert fused[k] == pytest.approx(plain[k], abs=1e-4), k        # the same numbers
    assert int8['recall@1'] == pytest.approx(fused['recall@1'], abs=0.03)


@needs_mkldnn
def test_a_graph_mxnet_cannot_run_fused_falls_back_to_the_plain_network():
    """resnet18_v1 on 8 x 8 images: MXNet's fused graph hands out MKLDNN-format outputs it cannot
    copy to numpy (from the second batch on); the view must embed every batch all the same."""
    from gluon_dml.data import ArrayDataset
    from gluon_dml.engine.loop import embed_dataset
    net = get_model('resnet18_v1', 16)
    net.hybridize(static_alloc=True)
    rng = np.random.RandomState(3)
    ds = ArrayDataset(rng.rand(70, 1, 8, 8), np.repeat(np.arange(7), 10), list('abcdefg'))
    plain, _ = embed_dataset(net, ds, mx.cpu(), batch_size=32)
    view = inference_view(net)
    emb, labels = embed_dataset(view, ds, mx.cpu(), batch_size=32)
    assert emb.shape == (70, 16) and np.array_equal(labels, ds.labels)
    assert np.abs(emb - plain).max() < 1e-4
