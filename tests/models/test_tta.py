"""--tta-shift PX: embeddings averaged over the image and its four moved copies (ShiftAveraged),
against a numpy reference of the views; in the per-epoch evaluation, the exported model and a
reopened run alike."""
import json

import mxnet as mx
import numpy as np
import pytest

from gluon_dml.models import ShiftAveraged, get_model, with_tta

from ..helpers import run_command, run_script


def _views(x, s):
    """The image and its copies moved down, up, right, left by s pixels, the border repeated."""
    h, w = x.shape[2:]
    p = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)), mode='edge')
    return [x, p[:, :, 0:h, s:s + w], p[:, :, 2 * s:2 * s + h, s:s + w],
            p[:, :, s:s + h, 0:w], p[:, :, s:s + h, 2 * s:2 * s + w]]


def test_a_view_is_the_image_moved():
    x = np.zeros((1, 1, 6, 6), np.float32)
    x[0, 0, 2, 3] = 1
    down, up, right, left = _views(x, 1)[1:]
    assert down[0, 0, 3, 3] == 1 and up[0, 0, 1, 3] == 1
    assert right[0, 0, 2, 4] == 1 and left[0, 0, 2, 2] == 1


@pytest.mark.parametrize('shift', [1, 2])
@pytest.mark.parametrize('normalize', [True, False])
def test_the_embedding_is_the_mean_over_the_five_views(shift, normalize):
    mx.random.seed(0)
    net = get_model('smallconv', 16, normalize=normalize)
    x = np.random.RandomState(1).uniform(size=(4, 1, 28, 28)).astype(np.float32)
    want = np.mean([net(mx.nd.array(v)).asnumpy() for v in _views(x, shift)], axis=0)
    if normalize:
        want /= np.linalg.norm(want, axis=1, keepdims=True)
    tta = ShiftAveraged(net, shift, normalize=normalize)
    got = tta(mx.nd.array(x)).asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, net(mx.nd.array(x)).asnumpy(), atol=1e-4)   # not the image alone
    tta.hybridize()
    np.testing.assert_allclose(tta(mx.nd.array(x)).asnumpy(), want, rtol=1e-5, atol=1e-6)


def test_parameters_load_into_the_wrapped_network(tmp_path):
    a, b = get_model('smallconv', 8), get_model('smallconv', 8)
    x = mx.nd.random.uniform(shape=(2, 1, 28, 28))
    a(x)                                          # the Dense layer's shape is known from here on
    a.save_parameters(str(tmp_path / 'a.params'))
    wrapped = with_tta(b, 1)
    wrapped.load_parameters(str(tmp_path / 'a.params'))
    np.testing.assert_allclose(wrapped(x).asnumpy(), ShiftAveraged(a, 1)(x).asnumpy(), atol=1e-6)
    assert with_tta(b, 0) is b
    with pytest.raises(ValueError, match='at least 1'):
        ShiftAveraged(b, 0)


def test_a_tta_run_evaluates_exports_and_reloads_with_the_moves(tmp_path):
    run = tmp_path / 'tta'
    run_script('train_margin.py', '--data', 'digits', '--tta-shift', '1', '--epochs', '1',
               '--batches-per-epoch', '3', '--no-progress', '--save-dir', run, check=True)
    assert json.load(open(run / 'args.json'))['tta_shift'] == 1
    final = [json.loads(ln) for ln in open(run / 'log.jsonl')][-1]
    run_command('evaluate', run, '--out', tmp_path / 'e.json', check=True)
    assert json.load(open(tmp_path / 'e.json'))['recall@1'] == pytest.approx(final['recall@1'],
                                                                          abs=1e-9)
    # the exported model is the averaged network: against the reopened run's, and not the plain one
    from gluon_dml.data import get_dataset
    from gluon_dml.methods import open_run
    x = mx.nd.array(get_dataset('digits', split='test').images[:16])
    trained = open_run(str(run), fuse=False)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        exported = mx.gluon.SymbolBlock.imports(str(run / 'model-symbol.json'), ['data'],
                                                str(run / 'model-0000.params'))
    np.testing.assert_allclose(exported(x).asnumpy(), trained.net(x).asnumpy(), atol=1e-5)
    assert isinstance(trained.net, ShiftAveraged)
    assert not np.allclose(trained.net.net(x).asnumpy(), trained.net(x).asnumpy(), atol=1e-4)


    # evaluate --tta-shift overrides the run's moves: 0 embeds with the plain network
    run_command('evaluate', run, '--tta-shift', '0', '--save-embeddings', tmp_path / 'p.npz',
                '--out', tmp_path / 'p.json', check=True)
    plain = np.load(tmp_path / 'p.npz')['embeddings'][:16]
    np.testing.assert_allclose(plain, trained.net.net(x).asnumpy(), atol=1e-5)
    r = run_command('evaluate', run, '--tta-shift', '-2')
    assert r.returncode != 0 and '--tta-shift must be 0' in r.stderr + r.stdout


def test_evaluate_tta_is_refused_for_runs_whose_network_does_not_take_it():
    from types import SimpleNamespace
    from gluon_dml.errors import UserError
    from gluon_dml.methods import get_method
    a = SimpleNamespace(tta_shift=1, run_dir='runs/x', save_codes=None, save_embeddings=None,
                        split='test')
    for name in ('hdc', 'hash', 'vse'):
        with pytest.raises(UserError, match='--tta-shift is for the single-head'):
            get_method(name).check_evaluation({}, a)
    get_method('margin').check_evaluation({}, a)            # an embedding run takes it


def test_a_negative_shift_is_refused(tmp_path):
    r = run_script('train_margin.py', '--data', 'digits', '--tta-shift', '-1', '--epochs', '1',
                   '--save-dir', tmp_path / 'x')
    assert r.returncode != 0 and '--tta-shift must be 0' in r.stderr + r.stdout
