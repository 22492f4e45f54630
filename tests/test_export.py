"""Export for deployment (gluon_dml/export.py, gluon-dml export): real runs' exported networks
reloaded as SymbolBlocks, and converted to ONNX and run by onnxruntime, give the run's own
embeddings on its test images; the errors are one sentence.

Tolerances: the SymbolBlock runs the same symbol with the same parameters on the same
operators, so it must agree to 1e-5 (it agrees exactly on the CPU); onnxruntime computes the
same float32 arithmetic in other kernels, 1e-5 (measured: about 1e-7). The ONNX tests need the
onnx extra (pip install -e ".[onnx]") and are skipped without it.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from .helpers import REPO, run_script, script_env

TOL = 1e-5


def _train(tmp_dir, script, *args):
    """A real run of ``script`` (train_margin.py / train_hash.py) on the digits, in a folder."""
    run_dir = os.path.join(tmp_dir, '-'.join([script[len('train_'):-len('.py')]] + [
        a.strip('-') for a in args]))
    argv = ['--data', 'digits', '--epochs', '1', '--batches-per-epoch', '3', '--no-progress',
            '--save-dir', run_dir] + list(args)
    if script == 'train_hash.py':
        from gluon_dml.methods.hashing import HashEngine, HashMethod
        if HashMethod.engine_class is not HashEngine:
            # HashMethod does not name its engine (train_hash.py stops with "Engine.__init__()
            # got an unexpected keyword argument 'schedule'"): train through the same command
            # with the engine the method means, until hashing.py sets engine_class.
            code = ('import sys; from gluon_dml.methods.hashing import HashEngine, HashMethod; '
                    'HashMethod.engine_class = HashEngine; from gluon_dml.commands import main; '
                    'sys.exit(main(["train-hash"] + sys.argv[1:]))')
            proc = subprocess.run([sys.executable, '-c', code] + argv, capture_output=True,
                                  text=True, timeout=600, env=script_env(OMP_NUM_THREADS='1'),
                                  cwd=REPO)
            assert proc.returncode == 0, proc.stderr[-3000:]
            return run_dir
    run_script(script, *argv, check=True, env=script_env(OMP_NUM_THREADS='1'))
    return run_dir


@pytest.fixture(scope='module')
def runs_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp('export-runs'))


@pytest.fixture(scope='module')
def margin_run(runs_dir):
    return _train(runs_dir, 'train_margin.py')


@pytest.fixture(scope='module')
def hash_run(runs_dir):
    return _train(runs_dir, 'train_hash.py', '--bits', '16')


def _gluon(run_dir, images):
    import mxnet as mx
    from gluon_dml.methods import open_run
    return open_run(run_dir, [mx.cpu()]).net(mx.nd.array(images)).asnumpy()


def _need_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        pytest.skip('the onnx extra is not installed (pip install -e ".[onnx]"): %s' % err)


# ---------------------------------------------------------------------------------------------
# the exported symbol and parameters, reloaded
# ---------------------------------------------------------------------------------------------

def test_symbolblock_gives_the_runs_embeddings(margin_run):
    import mxnet as mx
    from mxnet import gluon
    from gluon_dml.export import load_exported, sample_images
    images = sample_images(margin_run, 32)
    assert images.shape == (32, 1, 8, 8) and len(np.unique(images.reshape(32, -1), axis=0)) > 1
    net = load_exported(margin_run)
    assert isinstance(net, gluon.SymbolBlock)
    out = net(mx.nd.array(images)).asnumpy()
    ref = _gluon(margin_run, images)
    assert out.shape == (32, 64)
    assert np.abs(out - ref).max() <= TOL
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    # the reference is the trained network, not any network: an untrained one differs
    from gluon_dml.models import get_model
    other = get_model('smallconv', 64, ctx=[mx.cpu()])
    assert np.abs(other(mx.nd.array(images)).asnumpy() - out).max() > 1e-2


def test_symbolblock_of_a_hashing_run_gives_the_same_codes(hash_run):
    import mxnet as mx
    from gluon_dml.export import load_exported, sample_images
    from gluon_dml.models.hashing import binarize
    images = sample_images(hash_run, 32)
    out = load_exported(hash_run)(mx.nd.array(images)).asnumpy()
    ref = _gluon(hash_run, images)
    assert out.shape == (32, 16)
    assert np.abs(out - ref).max() <= TOL
    assert (binarize(out) == binarize(ref)).all()


def test_a_changed_export_is_caught(margin_run, tmp_path, capsys):
    """verify() and gluon-dml export --check see an export that does not match the run."""
    import mxnet as mx
    from gluon_dml.cli import main_guard
    from gluon_dml.commands.export import main
    from gluon_dml.export import verify
    run = str(tmp_path / 'changed')
    shutil.copytree(margin_run, run)
    params = mx.nd.load(os.path.join(run, 'model-0000.params'))
    key = next(k for k in params if k.endswith('dense0_weight'))
    params[key] = params[key] * 1.5 + 0.01
    mx.nd.save(os.path.join(run, 'model-0000.params'), params)
    res = verify(run, check_onnx=False)
    assert res['symbolblock'] > 1e-3 and res['onnxruntime'] is None
    with pytest.raises(SystemExit) as exit_:
        main_guard(main, [run, '--check'])
    assert exit_.value.code == 1
    assert 'MISMATCH' in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# ONNX, run by onnxruntime
# ---------------------------------------------------------------------------------------------

def test_onnx_gives_the_runs_embeddings(margin_run, tmp_path):
    _need_onnx()
    import onnx
    from gluon_dml.export import export_onnx, onnx_session, run_onnx, sample_images
    path = export_onnx(margin_run, str(tmp_path / 'margin.onnx'))
    model = onnx.load(path)
    assert [i.name for i in model.graph.input] == ['data']       # the weights are not inputs
    assert [o.name for o in model.graph.output] == ['embedding']
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == 'N' and [d.dim_value for d in dims[1:]] == [1, 8, 8]
    assert model.opset_import[0].version == 13
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta['gluon_dml.kind'] == 'float' and 'L2-normalised' in meta['gluon_dml.output']
    images = sample_images(margin_run, 32)
    ref = _gluon(margin_run, images)
    sess = onnx_session(path)
    for n in (1, 5, 32):                              # any batch size
        out = run_onnx(sess, images[:n])
        assert out.shape == (n, 64)
        assert np.abs(out - ref[:n]).max() <= TOL, np.abs(out - ref[:n]).max()
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_onnx_of_a_hashing_run_gives_the_same_outputs_and_codes(hash_run, tmp_path):
    _need_onnx()
    import onnx
    from gluon_dml.export import export_onnx, run_onnx, sample_images, verify
    from gluon_dml.models.hashing import binarize
    images = sample_images(hash_run, 32)
    ref = _gluon(hash_run, images)
    path = export_onnx(hash_run, str(tmp_path / 'hash.onnx'))
    out = run_onnx(path, images)
    assert out.shape == (32, 16)
    assert np.abs(out - ref).max() <= TOL
    assert (binarize(out) == binarize(ref)).all()
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert meta['gluon_dml.kind'] == 'binary' and 'sign' in meta['gluon_dml.output']
    # a fixed batch size
    fixed = export_onnx(hash_run, str(tmp_path / 'hash8.onnx'), batch_size=8)
    dims = onnx.load(fixed).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [8, 1, 8, 8]
    assert np.abs(run_onnx(fixed, images[:8]) - ref[:8]).max() <= TOL
    res = verify(hash_run, images, onnx_path=path)
    assert res['symbolblock'] <= TOL and res['onnxruntime'] <= TOL and res['code_bits_differ'] == 0


def test_gluon_dml_export_writes_onnx_and_prints_the_differences(margin_run, tmp_path, capsys):
    _need_onnx()
    from gluon_dml.cli import main_guard
    from gluon_dml.commands.export import main
    out_path = str(tmp_path / 'sub' / 'emb.onnx')
    main_guard(main, [margin_run, '--onnx', out_path, '--check', '--images', '12'])
    text = capsys.readouterr().out
    assert os.path.isfile(out_path)
    assert 'check on 12 test images of digits' in text and 'OK: within --tol' in text
    values = {line.split('|')[1].strip(): float(line.rsplit('=', 1)[1])
              for line in text.splitlines() if line.strip().startswith('max |')}
    assert set(values) == {'Gluon - SymbolBlock', 'Gluon - onnxruntime'}
    assert max(values.values()) <= TOL


def test_an_input_shape_other_than_the_runs_images_is_exported_and_named(margin_run, tmp_path):
    """--input-shape is for a run whose dataset is not here; a shape other than the readable
    test images' (a digits run is 1x8x8) is a likely slip: exported as asked, with a warning."""
    _need_onnx()
    from gluon_dml.export import export_onnx, run_onnx
    with pytest.warns(UserWarning, match=r"--input-shape 1,28,28 differs from the shape of the "
                      r"run's test images \(1,8,8\): the ONNX model takes 1x28x28 inputs"):
        path = export_onnx(margin_run, str(tmp_path / 'big.onnx'), input_shape=(1, 28, 28))
    assert run_onnx(path, np.zeros((2, 1, 28, 28), np.float32)).shape[0] == 2
    import warnings
    with warnings.catch_warnings(record=True) as seen:      # the right shape: no word
        warnings.simplefilter('always')
        export_onnx(margin_run, str(tmp_path / 'ok.onnx'), input_shape=(1, 8, 8))
    assert not [w for w in seen if '--input-shape' in str(w.message)]


def _fake_run(folder, net, shape, method='margin', **args):
    """A run folder holding ``net``'s export (for conversions no training run makes)."""
    import mxnet as mx
    os.makedirs(folder, exist_ok=True)
    net.hybridize()
    net(mx.nd.zeros((1,) + shape))
    net.export(os.path.join(folder, 'model'))
    record = dict(method=method, data='digits', model='custom', save_model_prefix='model',
                  save_dir=folder, disable_hybridize=False, normalize_embeddings=True)
    record.update(args)
    with open(os.path.join(folder, 'args.json'), 'w') as f:
        json.dump(record, f)
    return folder


def test_l2normalization_converts_with_its_eps(tmp_path):
    """instance mode (MXNet's exporter refuses it) on 4-D input, and channel mode, exactly as
    MXNet computes them, zero vectors included (x / sqrt(sum x^2 + eps), not x / |x|)."""
    _need_onnx()
    import mxnet as mx
    from mxnet import gluon
    from gluon_dml.export import export_onnx, run_onnx

    class Norms(gluon.HybridBlock):
        def hybrid_forward(self, F, x):
            a = F.L2Normalization(x, mode='instance', eps=1e-10)
            b = F.L2Normalization(x, mode='channel', eps=1e-3)
            return F.concat(F.flatten(a), F.flatten(b), dim=1)

    x = np.random.RandomState(0).randn(4, 3, 2, 2).astype(np.float32)
    x[1] = 0                                         # a zero vector: 0, not NaN
    x[2] *= 1e-3                                     # small norms, where eps matters
    net = Norms()
    ref = net(mx.nd.array(x)).asnumpy()
    run = _fake_run(str(tmp_path / 'norms'), net, (3, 2, 2))
    out = run_onnx(export_onnx(run, input_shape=(3, 2, 2)), x)
    assert np.isfinite(out).all()
    assert np.abs(out - ref).max() <= TOL, np.abs(out - ref).max()


# ---------------------------------------------------------------------------------------------
# the errors
# ---------------------------------------------------------------------------------------------

def test_a_run_trained_without_hybridize_has_no_export(runs_dir):
    from gluon_dml.errors import UserError
    from gluon_dml.export import export_onnx, load_exported
    run = os.path.join(runs_dir, 'margin-disable-hybridize')
    proc = run_script('train_margin.py', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '3',
                      '--no-progress', '--save-dir', run, '--disable-hybridize', check=True,
                      env=script_env(OMP_NUM_THREADS='1'))
    assert 'Not exported: --disable-hybridize trains without a symbol graph' in proc.stdout + proc.stderr
    assert not os.path.exists(os.path.join(run, 'model-symbol.json'))
    for call in (lambda: load_exported(run), lambda: export_onnx(run, 'x.onnx')):
        with pytest.raises(UserError, match='trained with --disable-hybridize'):
            call()


def test_an_unfinished_run_and_a_wrong_folder(margin_run, tmp_path):
    from gluon_dml.errors import UserError
    from gluon_dml.export import load_exported
    run = str(tmp_path / 'unfinished')
    shutil.copytree(margin_run, run)
    os.remove(os.path.join(run, 'model-symbol.json'))
    # a finished run whose export went missing ('has not finished' said of a finished run)
    with pytest.raises(UserError, match='though the run finished: the files were moved or deleted; '
                                        'write them again by resuming the finished run with --resume'):
        load_exported(run)
    log = os.path.join(run, 'log.jsonl')
    with open(log) as f:
        rows = f.read().splitlines(True)
    with open(log, 'w') as f:
        f.writelines(rows[:-1])                 # the log of a run stopped before its last epoch
    with pytest.raises(UserError, match='has not finished'):
        load_exported(run)
    with pytest.raises(UserError, match='not a folder'):
        load_exported(str(tmp_path / 'nothing'))
    with pytest.raises(FileNotFoundError, match='not a run folder'):
        load_exported(str(tmp_path))
    with pytest.raises(UserError, match='Only VSE runs export parts'):
        load_exported(margin_run, part='image')


def test_a_vse_run_names_its_part(tmp_path):
    from gluon_dml.errors import UserError
    from gluon_dml.export import exported_files
    run = tmp_path / 'vse'
    run.mkdir()
    (run / 'args.json').write_text(json.dumps({'method': 'vse', 'save_model_prefix': 'model'}))
    for name in ('model-image-symbol.json', 'model-image-0000.params'):
        (run / name).write_text('')
    with pytest.raises(UserError, match='part="image" or part="text"'):
        exported_files(str(run))
    assert exported_files(str(run), 'image')[0].endswith('model-image-symbol.json')
    with pytest.raises(UserError, match='has not finished'):
        exported_files(str(run), 'text')


def test_missing_onnx_names_the_extra(margin_run, monkeypatch):
    from gluon_dml.errors import UserError
    from gluon_dml.export import export_onnx, onnx_session, verify
    monkeypatch.setitem(sys.modules, 'onnx', None)            # import onnx fails
    with pytest.raises(UserError, match=r'needs the onnx package.*"\.\[onnx\]"'):
        export_onnx(margin_run, 'x.onnx')
    monkeypatch.undo()
    try:
        import onnx  # noqa: F401
    except ImportError:
        return                                   # onnx is missing indeed: checked above
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(UserError, match=r'needs onnxruntime.*"\.\[onnx\]"'):
        onnx_session('x.onnx')
    with pytest.raises(UserError, match='needs onnxruntime'):
        verify(margin_run)
    assert verify(margin_run, check_onnx=False, count=2)['symbolblock'] <= TOL


def test_an_operator_without_converter_is_named(tmp_path):
    _need_onnx()
    from mxnet import gluon
    from gluon_dml.errors import UserError
    from gluon_dml.export import export_onnx

    class SignCodes(gluon.HybridBlock):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            with self.name_scope():
                self.dense = gluon.nn.Dense(8)

        def hybrid_forward(self, F, x):
            return F.sign(self.dense(x))

    net = SignCodes()
    net.initialize()
    run = _fake_run(str(tmp_path / 'sign'), net, (1, 8, 8), method='hash')
    with pytest.raises(UserError,
                       match=r'no converter for operator sign \(node signcodes0_sign0\)'):
        export_onnx(run, input_shape=(1, 8, 8))
    assert not os.path.exists(os.path.join(run, 'model.onnx'))


def test_the_command_refuses_what_it_cannot_do(margin_run, capsys, tmp_path):
    from gluon_dml.cli import main_guard
    from gluon_dml.commands.export import main
    (tmp_path / 'a-file').write_text('x')
    for argv, message in (([margin_run, '--onnx', 'x.onnx', '--input-shape', '1,8'],
                           '--input-shape takes three positive integers'),
                          ([margin_run, '--check', '--images', '0'],
                           '--images must be at least 1'),
                          ([margin_run, '--onnx', 'x.onnx', '--batch-size', '0'],
                           '--batch-size must be a positive integer'),
                          ([margin_run, '--onnx', str(tmp_path)], 'is a folder; give the ONNX file a name'),
                          ([margin_run, '--onnx', ''], 'error: --onnx is empty; give a file name.'),
                          ([margin_run, '--onnx', os.path.join(margin_run, 'model-0000.params')],
                           'model-0000.params is a file of the run itself; choose another name.'),
                          ([margin_run, '--part', 'text'],
                           '--part chooses an encoder of a VSE run; %s is a margin run' % margin_run),
                          ([margin_run, '--onnx', ' ', '--check'], '--onnx is empty; give a file name.'),
                          ([margin_run, '--onnx', str(tmp_path / 'a-file' / 'x.onnx')],
                           'cannot be written: %s is a file, not a folder.' % (tmp_path / 'a-file'))):
        with pytest.raises(SystemExit) as exit_:
            main_guard(main, argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_resnet_run_exports_to_onnx(runs_dir, tmp_path):
    """resnet18_v1 (GluonCV, untrained start) on the 8 x 8 digits."""
    _need_onnx()
    import mxnet as mx
    from gluon_dml.export import export_onnx, load_exported, run_onnx, sample_images
    run = _train(runs_dir, 'train_margin.py', '--model', 'resnet18_v1')
    images = sample_images(run, 16)
    ref = _gluon(run, images)
    assert np.abs(load_exported(run)(mx.nd.array(images)).asnumpy() - ref).max() <= TOL
    out = run_onnx(export_onnx(run, str(tmp_path / 'resnet.onnx')), images)
    assert np.abs(out - ref).max() <= TOL, np.abs(out - ref).max()


@pytest.mark.parametrize('damage', ['garbled symbol', 'cut params', "another run's params",
                                    'another shape'])
def test_a_damaged_or_foreign_export_is_one_sentence(margin_run, hash_run, tmp_path, capsys,
                                                     damage):
    # each was 'unexpected MXNetError / AssertionError ... (a bug?)' or utf-8 codec words (exit 1)
    import mxnet as mx
    from gluon_dml.cli import main_guard
    from gluon_dml.commands.export import main
    run = str(tmp_path / 'run')
    shutil.copytree(margin_run, run, ignore=shutil.ignore_patterns('.lock'))
    sym, params = (os.path.join(run, 'model-%s' % n) for n in ('symbol.json', '0000.params'))
    if damage == 'garbled symbol':
        open(sym, 'wb').write(b'{"nodes": \xff')
    elif damage == 'cut params':
        open(params, 'r+b').truncate(1000)
    elif damage == "another run's params":
        shutil.copy(os.path.join(hash_run, 'model-0000.params'), params)
    else:                                         # one weight of another --embed-dim
        arrays = mx.nd.load(params)
        name = [k for k in arrays if k.endswith('dense0_weight')][0]
        arrays[name] = mx.nd.zeros((7, arrays[name].shape[1]))
        mx.nd.save(params, arrays)
    with pytest.raises(SystemExit) as exit_:
        main_guard(main, [run, '--check', '--images', '2'])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith('error: %s is damaged or not this run\'s export' % (
        sym if damage == 'garbled symbol' else params)) and err.endswith('with --resume.'), err


def test_check_refuses_a_tol_of_nan_and_an_input_shape_it_cannot_run(margin_run, tmp_path,
                                                                       capsys):
    # --tol nan printed 'OK: within --tol nan.'; --input-shape 1,16,16 --check wrote the ONNX file,
    # then onnxruntime refused the 1x8x8 test images: 'unexpected InvalidArgument' (exit 1)
    from gluon_dml.cli import main_guard
    from gluon_dml.commands.export import main
    out = str(tmp_path / 'x.onnx')
    for argv, message in (([margin_run, '--check', '--tol', 'nan'], '--tol a number not negative'),
                          ([margin_run, '--onnx', out, '--input-shape', '1,16,16', '--check'],
                           "--check runs the ONNX model on the run's test images (1,8,8): leave "
                           "--input-shape 1,16,16 unset to check it.")):
        with pytest.raises(SystemExit) as exit_:
            main_guard(main, argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(out)


def test_an_export_that_computes_nan_fails_the_check(margin_run, tmp_path, capsys):
    # max |Gluon - SymbolBlock| = nan passed: 'OK: within --tol 0.0001.' (nan > tol is False)
    import mxnet as mx
    from gluon_dml.commands.export import main
    run = str(tmp_path / 'run')
    shutil.copytree(margin_run, run, ignore=shutil.ignore_patterns('.lock'))
    params = os.path.join(run, 'model-0000.params')
    arrays = mx.nd.load(params)
    arrays[[k for k in arrays if k.endswith('dense0_bias')][0]][:] = float('nan')
    mx.nd.save(params, arrays)
    with pytest.raises(SystemExit) as exit_:
        main([run, '--check', '--images', '2'])
    assert exit_.value.code == 1
    assert 'MISMATCH: a difference is NaN' in capsys.readouterr().out
