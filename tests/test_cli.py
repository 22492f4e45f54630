"""train_margin.py as a user runs it: the embedded default, recipes, and every bad input giving
one clear sentence instead of a traceback."""
import json
import os
import subprocess
import sys

import pytest

from gluon_dml import cli
from gluon_dml.errors import UserError

from .helpers import OMNIGLOT, loss_from_args, parse, run_script, script_env


def _parse(*argv):
    return parse('margin', *argv)


def test_recipes_and_overrides():
    a = _parse('--data', 'omniglot')
    assert (a.batch_size, a.batch_k, a.epochs, a.lr, a.wd, a.model, a.embed_dim) == \
        (128, 4, 30, 1e-3, 0.0, 'smallconv', 64)
    a = _parse('--data', 'omniglot', '--batch-size', '64', '--lr', '0.01')
    assert (a.batch_size, a.batch_k, a.lr) == (64, 4, 0.01)
    a = _parse('--data', 'Fashion_MNIST')
    assert (a.data, a.batch_size, a.batch_k, a.epochs) == ('fashion-mnist', 125, 25, 5)
    a = _parse('--data', 'CUB_200_2011', '--data_path', '/x')
    assert (a.model, a.batch_size, a.batch_k, a.steps_list) == ('resnet50_v2', 70, 5, [12, 14, 16, 18])
    assert a.data_path == '/x'
    a = _parse('--use_pretrained', '--use-viz', '--save_dir', 'r')
    assert a.use_pretrained and a.use_viz and a.save_dir == 'r'


def test_a_plugin_recipe_under_any_spelling_and_a_missing_one_said(capsys):
    # extending.md: a registered in-memory dataset takes config.RECIPES under the name it was
    # given (RECIPES['my_glyphs'] served --data my_glyphs only as 'my-glyphs' before: the run
    # silently took resnet50_v2 and 20 epochs); one with no recipe at all is warned
    import numpy as np
    from gluon_dml import config
    from gluon_dml.data import ArrayDataset, register_dataset
    from gluon_dml.data import registry

    def tiny(root=None, split='train'):
        return ArrayDataset(np.zeros((4, 1, 8, 8)), [0, 1, 0, 1], ['a', 'b'], 'tiny', split)
    register_dataset('my_glyphs', tiny)
    register_dataset('no_recipe_set', tiny)
    config.RECIPES['my_glyphs'] = dict(model='smallconv', embed_dim=32, batch_size=40,
                                       batch_k=4, epochs=4)
    try:
        a = cli.parse('margin', ['--data', 'my_glyphs', '--save-dir', 'unused'])
        assert (a.data, a.model, a.embed_dim, a.batch_size, a.epochs) == \
            ('my-glyphs', 'smallconv', 32, 40, 4)
        assert 'recipe' not in capsys.readouterr().err
        a = cli.parse('margin', ['--data', 'no_recipe_set', '--epochs', '2', '--save-dir', 'unused'])
        assert (a.model, a.epochs) == ('resnet50_v2', 2)
        err = capsys.readouterr().err
        assert "warning: --data no-recipe-set has no recipe (config.RECIPES['no-recipe-set']): " \
            '--model, --batch-size, --lr come from the defaults made for photos (--model ' \
            'resnet50_v2, --batch-size 70, --lr 0.0001).' in err, err
        cli.parse('margin', ['--data', 'omniglot', '--save-dir', 'unused'])
        assert 'recipe' not in capsys.readouterr().err
    finally:
        config.RECIPES.pop('my_glyphs')
        for key in ('myglyphs', 'norecipeset'):
            registry._DATASETS.pop(('open-set', key), None)


def test_the_names_of_one_dataset_make_one_run(tmp_path, monkeypatch):
    """--data CUB and --data CUB_200_2011 are one dataset: one recorded name, one default run
    folder, and --resume takes either spelling (also against a record that says 'cub')."""
    monkeypatch.chdir(tmp_path)
    a = cli.parse('margin', ['--data', 'CUB', '--data-path', '/x'])
    b = cli.parse('margin', ['--data', 'cub_200_2011', '--data-path', '/x'])
    assert a.data == b.data == 'cub-200-2011' and a.name == b.name == 'margin-cub-200-2011'
    for name in ('Stanford_Online_Products', 'EbayCrossClass', 'SOP'):
        assert cli.parse('margin', ['--data', name, '--data-path', '/x']).data == 'sop'
    assert cli.parse('margin', ['--data', 'EbayInClass', '--data-path', '/x']).data == 'ebayinclass'
    run = tmp_path / 'old-cub-run'
    run.mkdir()
    record = {k: v for k, v in vars(a).items() if not k.startswith('_')}
    record.update(data='cub', method='margin', save_dir=str(run), name='old-cub-run')
    (run / 'args.json').write_text(json.dumps(record))
    again = cli.parse('margin', ['--data', 'CUB_200_2011', '--data-path', '/x', '--save-dir', str(run),
                                 '--resume'])
    assert again.resume and again.data == 'cub-200-2011'
    with pytest.raises(UserError, match='--data cars196 would change the run'):
        cli.parse('margin', ['--data', 'Cars', '--data-path', '/x', '--save-dir', str(run), '--resume'])


def test_beta_per_class_is_the_omniglot_margin_default_only():
    _parse_margin = _parse

    assert _parse_margin('--data', 'omniglot').beta_per_class is True
    assert _parse_margin('--data', 'omniglot', '--beta-per-class', 'false').beta_per_class is False
    assert _parse_margin('--data', 'fashion-mnist').beta_per_class is False
    assert _parse_margin('--data', 'fashion-mnist', '--beta-per-class').beta_per_class is True
    # other losses have no beta: the recipe's setting does not reach them, an explicit flag errors
    a = _parse_margin('--data', 'omniglot', '--loss', 'contrastive')
    assert a.beta_per_class is False
    loss_from_args(a, 183, 64)
    with pytest.raises(cli.UserError, match='--beta-per-class is an option of the margin loss'):
        _parse_margin('--data', 'omniglot', '--loss', 'contrastive', '--beta-per-class')
    # the margin loss gets one beta per training class
    loss = loss_from_args(_parse_margin('--data', 'omniglot'), 183, 64)
    assert loss.beta.shape == (183,)
    assert loss_from_args(_parse_margin('--data', 'fashion-mnist'), 5, 64).beta.shape == (1,)


def test_batch_k_alone_fits_the_default_batch_size(capsys):
    # the usage line `train_margin.py --gpus=0 --batch-k=5 --use_viz`: 128 images are no multiple
    # of 5, so the batch takes the nearest multiple and the command line says so
    a = cli.parse('margin', ['--data', 'omniglot', '--batch-k', '5', '--save-dir', 'unused'])
    assert (a.batch_size, a.batch_k) == (130, 5)
    assert 'note: --batch-k 5: the batch takes 130 images (26 classes x 5)' in capsys.readouterr().err
    assert _parse('--data', 'omniglot', '--batch-k', '3').batch_size == 129
    assert _parse('--data', 'digits', '--batch-k', '7').batch_size == 63      # 60 / 7 = 8.6
    assert _parse('--data', 'digits', '--batch-k', '40').batch_size == 80     # at least two classes
    # a multiple already, or both flags given: nothing changes
    assert _parse('--data', 'omniglot', '--batch-k', '8').batch_size == 128
    assert _parse('--data', 'omniglot', '--batch-k', '5', '--batch-size', '125').batch_size == 125
    with pytest.raises(cli.UserError, match=r'--batch-size \(128\) must be a multiple'):
        _parse('--data', 'omniglot', '--batch-k', '5', '--batch-size', '128')


def test_npair_method_defaults_over_the_recipe():
    def _npair(*argv):
        return parse('npair', *argv)
    a = _npair('--data', 'omniglot')         # N-pair batches; lr chosen on validation classes
    assert (a.batch_size, a.batch_k, a.pairs, a.lr, a.epochs) == (128, 2, 'paper', 2e-3, 30)
    assert _npair('--data', 'omniglot', '--lr', '1e-3').lr == 1e-3
    a = _npair('--data', 'fashion-mnist')
    assert (a.batch_size, a.batch_k, a.lr) == (10, 2, 1e-3)


@pytest.mark.parametrize('argv,message', [
    (['--batch-size', '50', '--batch-k', '12'], r'--batch-size \(50\) must be a multiple of --batch-k \(12\)'),
    (['--batch-size', '60', '--batch-k', '6'], r'fewer|classes'),
    (['--batch-k', '0'], r'--batch-k must be a positive integer, got 0'),   # alone: no ZeroDivisionError
    (['--data', 'nosuchset'], r'nosuchset'),
    (['--model', 'nosuchnet'], r'Unknown backbone .nosuchnet.'),
    (['--data', 'omniglot', '--data-path', '/nonexistent/omniglot'], r'/nonexistent/omniglot'),
    (['--steps', 'ten'], r'--steps takes comma-separated integers'),
    (['--gpus', 'zero'], r'--gpus takes comma-separated GPU ids'),
    (['--gpus', '-2'], r'--gpus takes comma-separated GPU ids .*got .-2.'),     # -1 alone is the CPU
    (['--gpus', '0,0'], r'--gpus takes comma-separated GPU ids .*each once'),
    (['--model', 'smallconv', '--use-pretrained'], r'smallconv has no pretrained weights'),
    (['--loss', 'hashnet'], r'hashing loss over binary codes; train it with gluon-dml train-hash'),
    (['--nmi-runs', '0'], r'--nmi-runs must be at least 1'),
    (['--margin', '-1'], r'--margin for the margin loss: must be at least 0, got -1'),   # trained nothing
    (['--loss', 'triplet', '--margin', '-0.5'], r'--margin for the triplet loss: must be at least 0'),
    (['--name', '../../etc'], r"--name '../../etc' is not a folder name under runs/"),  # wrote outside
])
def test_bad_input_gives_one_clear_sentence(tmp_path, argv, message):
    if '--data' not in argv:
        argv = ['--data', 'digits'] + argv
    proc = run_script('train_margin.py', *argv, '--epochs', '1', '--no-progress',
                      '--save-dir', tmp_path / 'run', timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith('error: ')]
    assert len(err) == 1, proc.stderr[-2000:]
    import re
    assert re.search(message, err[0]), err[0]


def test_an_empty_run_name_or_folder_is_refused():
    # both fell back to the default run folder without a word
    for flag in ('--name', '--save-dir'):
        with pytest.raises(UserError, match='%s .*empty' % flag if flag == '--save-dir' else
                           "--name '' is not a folder name"):
            cli.parse('margin', ['--data', 'digits', flag, ''])


def test_pretrained_weights_unreachable_names_the_cache(tmp_path):
    # No internet here: GluonCV's real download fails, and the user is told where to put the file.
    env = dict(os.environ, MXNET_HOME=str(tmp_path / 'mxhome'))
    from .helpers import script_env
    proc = run_script('train_margin.py', '--model', 'resnet18_v1', '--use-pretrained', '--epochs', '1',
                      '--no-progress', '--save-dir', tmp_path / 'run', timeout=300,
                      env=script_env(MXNET_HOME=env['MXNET_HOME']))
    assert proc.returncode == 2
    assert 'Traceback' not in proc.stderr
    assert os.path.join(str(tmp_path / 'mxhome'), 'models') in proc.stderr
    assert 'resnet18_v1-' in proc.stderr and '.params' in proc.stderr


def test_gpu_asked_on_cpu_machine_warns_and_trains(tmp_path):
    proc = run_script('train_margin.py', '--data', 'digits', '--gpus', '0', '--epochs', '1',
                      '--batches-per-epoch', '2', '--no-progress', '--save-dir', tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'TRAINING ON THE CPU INSTEAD' in proc.stderr
    assert (tmp_path / 'model-0000.params').exists()


def test_digits_run_prints_metrics_and_writes_the_run_folder(tmp_path):
    # The one-minute smoke test, shortened to 2 epochs, with the dashboard flag.
    import socket
    with socket.socket() as s:            # a free port where no dashboard listens
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    proc = run_script('train_margin.py', '--data', 'digits', '--epochs', '2', '--use_viz', '--viz-port', port,
                      '--save-dir', tmp_path, timeout=300, check=True)
    out = proc.stdout
    for key in ('loss=', 'recall@1=', 'recall@2=', 'recall@4=', 'recall@8=', 'nmi=', 'map@r='):
        assert key in out, key
    assert '[epoch 2]' in out
    assert 'epoch 1/2' in proc.stderr                     # the progress bar
    assert proc.stderr.count('cannot reach the Visdom server') == 1      # one warning, run goes on
    assert (tmp_path / 'plots' / 'epochs.png').exists()
    args = json.load(open(tmp_path / 'args.json'))
    assert args['data'] == 'digits' and args['batch_size'] == 60
    log = [json.loads(ln) for ln in open(tmp_path / 'log.jsonl')]
    assert [r['epoch'] for r in log] == [0, 1, 2]
    assert all(0 <= r['recall@1'] <= 1 and 0 <= r['nmi'] <= 1 and 0 <= r['map@r'] <= 1 for r in log)
    for name in ('model-symbol.json', 'model-0000.params'):
        assert (tmp_path / name).exists()
    # no validation classes: no epoch is chosen by a test metric, the final network is reported
    assert not (tmp_path / 'best.params').exists() and not (tmp_path / 'best.json').exists()
    assert 'summary: untrained -> trained on the unseen test classes' in out


def test_evaluate_and_embed_a_run(tmp_path):
    run = tmp_path / 'run'
    run_script('train_margin.py', '--data', 'digits', '--epochs', '1', '--no-progress',
               '--save-dir', run, check=True)
    npz = tmp_path / 'emb.npz'
    proc = run_script('eval/evaluate.py', run, '--split', 'test', '--save-embeddings', npz, check=True)
    metrics = json.load(open(run / 'eval-test.json'))
    best = [json.loads(ln) for ln in open(run / 'log.jsonl')][-1]      # the final network's row
    assert metrics['network'] == 'final network' and 'network: final network' in proc.stdout
    assert metrics['recall@1'] == pytest.approx(best['recall@1'], abs=1e-6)
    import numpy as np
    z = np.load(npz)
    assert z['embeddings'].dtype == np.float32 and z['embeddings'].shape == (896, 64)
    assert z['labels'].dtype == np.int64 and set(z['labels']) == set(range(5))
    np.testing.assert_allclose(np.linalg.norm(z['embeddings'], axis=1), 1, rtol=1e-4)
    # which network made them: the run, its parameters' SHA-256, the network and the precision
    import hashlib
    assert str(z['run']) == 'run' and str(z['network']) == 'final network'
    assert str(z['precision']) == 'float32'
    assert str(z['params_sha256']) == hashlib.sha256(open(metrics['params'], 'rb').read()).hexdigest()
    assert 'recall@1' in proc.stdout
    # NMI: the mean of ten k-means runs by default, as in the training log; --nmi-runs 1: one run
    assert metrics['num_nmi_runs'] == 10 and metrics['nmi'] == pytest.approx(best['nmi'], abs=1e-6)
    run_script('eval/evaluate.py', run, '--nmi-runs', '1', '--out', tmp_path / 'one.json', check=True)
    one = json.load(open(tmp_path / 'one.json'))
    from gluon_dml.metrics import nmi
    assert one['num_nmi_runs'] == 1
    assert one['nmi'] == pytest.approx(nmi(z['embeddings'], z['labels'], runs=1), abs=1e-9)
    bad = run_script('eval/evaluate.py', run, '--nmi-runs', '0')
    assert bad.returncode == 2 and '--nmi-runs must be at least 1' in bad.stderr

    # embed: a folder of images drawn dark-on-light, written as real PNG files
    from PIL import Image
    from sklearn.datasets import load_digits
    d = load_digits()
    folder = tmp_path / 'imgs' / 'sub'
    folder.mkdir(parents=True)
    for i in range(6):
        img = (255 - d.images[i] * 16).clip(0, 255).astype('uint8')
        Image.fromarray(img).resize((48, 48)).save(folder / ('%d.png' % i))
    out = tmp_path / 'mine.npz'
    run_script('eval/embed.py', run, '--images', tmp_path / 'imgs', '--out', out, check=True)
    z = np.load(out)
    assert z['embeddings'].shape == (6, 64) and len(z['paths']) == 6
    listfile = tmp_path / 'list.txt'
    listfile.write_text('\n'.join('imgs/sub/%d.png' % i for i in range(3)) + '\n')
    run_script('eval/embed.py', run, '--images', listfile, '--out', out, check=True)
    assert np.load(out)['embeddings'].shape == (3, 64)
    bad = run_script('eval/embed.py', run, '--images', tmp_path / 'nothing', '--out', out)
    assert bad.returncode == 2 and 'does not exist: give an image, a folder of images or a list' in bad.stderr
    notrun = run_script('eval/evaluate.py', tmp_path / 'imgs')
    assert notrun.returncode == 2 and 'is not a run folder' in notrun.stderr


def test_evaluate_gives_a_plugin_evaluator_the_split_it_has_embedded(tiny_digits_run, tmp_path):
    """A method with its own build_evaluator (extending.md's): evaluate reports its metrics too,
    and the split goes through the network once (the evaluator's embed_dataset is answered
    with the embeddings evaluate has made), not twice."""
    import argparse

    import numpy as np

    from gluon_dml.engine import embed_dataset
    from gluon_dml.methods import get_method, open_run

    class NormEvaluator:
        def __init__(self, dataset):
            self.dataset = dataset

        def __call__(self, net, ctx, epoch=None):
            emb, _ = embed_dataset(net, self.dataset, ctx, 64)
            return {'mean_norm': float(np.linalg.norm(emb, axis=1).mean()), 'recall@1': -1.0}

    class WithOwnEvaluator(type(get_method('margin'))):
        def build_evaluator(self, args, data, logger):
            return NormEvaluator(data['eval'])

    trained = open_run(str(tiny_digits_run))
    images = []
    trained.net.register_forward_hook(lambda block, inputs, output: images.append(inputs[0].shape[0]))
    a = argparse.Namespace(run_dir=str(tiny_digits_run), data_path=None, split='test', batch_size=64,
                           no_progress=True, ks='1,2', nmi_runs=1, few_shot=None,
                           out=str(tmp_path / 'm.json'), save_embeddings=None)
    metrics, _, _ = WithOwnEvaluator().evaluate_run(trained, a)
    assert metrics['num_images'] == 896 and sum(images) == 896
    assert metrics['mean_norm'] == pytest.approx(1, rel=1e-4)       # the evaluator's metric, reported
    assert metrics['recall@1'] > 0                                  # evaluate's own value kept


def test_npair_script_unnormalised_embeddings_evaluate_consistently(tmp_path):
    run = tmp_path / 'np'
    proc = run_script('train_npair.py', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '20',
                      '--no-progress', '--save-dir', run, check=True)
    args = json.load(open(run / 'args.json'))
    assert (args['loss'], args['batch_k'], args['batch_size'], args['normalize_embeddings']) == \
        ('npair', 2, 10, False)
    assert args['loss_options']['l2_reg'] == 0.002 and args['loss_options']['pairs'] == 'paper'
    assert 'loss npair' in proc.stdout
    run_script('eval/evaluate.py', run, '--save-embeddings', tmp_path / 'e.npz', check=True)
    import numpy as np
    norms = np.linalg.norm(np.load(tmp_path / 'e.npz')['embeddings'], axis=1)
    assert not np.allclose(norms, 1.0)               # the network's own (unnormalised) output
    metrics = json.load(open(run / 'eval-test.json'))
    final = [json.loads(ln) for ln in open(run / 'log.jsonl')][-1]
    assert metrics['recall@1'] == pytest.approx(final['recall@1'], abs=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(OMNIGLOT), reason='../shared/data/omniglot is not here')
def test_short_omniglot_run_improves_recall_by_10_points(tmp_path):
    run_script('train_margin.py', '--data', 'omniglot', '--data-path', OMNIGLOT, '--epochs', '4',
               '--seed', '0', '--no-progress', '--save-dir', tmp_path, timeout=600, check=True)
    log = [json.loads(ln) for ln in open(tmp_path / 'log.jsonl')]
    untrained, last = log[0], log[-1]
    assert untrained['epoch'] == 0 and last['epoch'] == 4
    assert last['recall@1'] >= untrained['recall@1'] + 0.10, (untrained['recall@1'], last['recall@1'])
    assert last['map@r'] > untrained['map@r']


@pytest.mark.parametrize('command', ['evaluate', 'embed', 'index', 'search', 'tsne', 'search-codes',
                                     'search-text', 'export', 'serve'])
def test_every_command_that_runs_a_network_takes_threads(command):
    proc = subprocess.run([sys.executable, '-m', 'gluon_dml', command, '--help'],
                          capture_output=True, text=True, timeout=120, env=script_env())
    assert proc.returncode == 0 and '--threads N' in proc.stdout, proc.stdout + proc.stderr


def test_evaluate_with_threads_runs_on_that_many_threads(tiny_digits_run, tmp_path):
    code = ('import os, sys; from gluon_dml.commands import main; '
            'main(["evaluate", sys.argv[1], "--threads", "1", "--nmi-runs", "1", "--out", sys.argv[2]]); '
            'print("OMP", os.environ["OMP_NUM_THREADS"])')
    env = dict(script_env(), OMP_NUM_THREADS='2')
    proc = subprocess.run([sys.executable, '-c', code, str(tiny_digits_run), str(tmp_path / 'e.json')],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'OMP 1' in proc.stdout and json.load(open(tmp_path / 'e.json'))['recall@1'] > 0


def test_evaluate_warns_of_a_k_that_reaches_every_image(tiny_digits_run, tmp_path):
    from .helpers import run_command
    proc = run_command('evaluate', tiny_digits_run, '--ks', '1,895', '--nmi-runs', '1', '--out',
                       tmp_path / 'e.json', '--no-progress')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'warning: --ks 895: each query is searched among 895 images, so Recall@895 counts every ' \
        'one of them' in proc.stderr, proc.stderr
    assert json.load(open(tmp_path / 'e.json'))['recall@895'] == 1.0
    proc = run_command('evaluate', tiny_digits_run, '--ks', '1,894', '--nmi-runs', '1', '--out',
                       tmp_path / 'f.json', '--no-progress')
    assert proc.returncode == 0 and 'warning' not in proc.stderr, proc.stderr


def test_importing_the_package_sets_every_core_serial_host_copies_and_a_short_blas_spin_unless_the_user_chose():
    names = ('OMP_NUM_THREADS', 'MXNET_CPU_PARALLEL_SIZE', 'OPENBLAS_THREAD_TIMEOUT')
    code = 'import os, gluon_dml, mxnet; print(*(os.environ[k] for k in %r))' % (names,)
    env = {k: v for k, v in script_env().items() if k not in names}
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(len(os.sched_getaffinity(0))), str(2 ** 31 - 1), '20']
    env.update(OMP_NUM_THREADS='1', MXNET_CPU_PARALLEL_SIZE='5000', OPENBLAS_THREAD_TIMEOUT='28')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.stdout.split() == ['1', '5000', '28'], proc.stderr[-2000:]


# 30 ms after NMI's k-means (SciPy's OpenBLAS) and a numpy product: the state
# (/proc/PID/task/TID/stat) of every thread but this one
_SPIN_PROBE = """
import os, time, gluon_dml, numpy as np
from gluon_dml.metrics import nmi
rng = np.random.RandomState(0)
labels = np.repeat(np.arange(59), 20)
nmi(rng.randn(1180, 64).astype(np.float32), labels, runs=2)
a = np.ones((1500, 1500))
a @ a
time.sleep(0.03)
states = []
for tid in os.listdir('/proc/self/task'):
    if int(tid) != os.getpid():
        stat = open('/proc/self/task/%s/stat' % tid).read()
        states.append(stat[stat.rindex(')') + 2])
print(''.join(sorted(states)))
"""


@pytest.mark.skipif(not os.path.isdir('/proc/self/task'), reason='needs Linux /proc')
def test_blas_threads_sleep_soon_after_the_kmeans_so_that_training_keeps_the_cores():
    """After an evaluation's k-means, SciPy's OpenBLAS worker spun for about 0.1 s (2**28
    cycles) and the next training step took twice as long (bench/bench_blas_spin.py). With the
    spin gluon_dml sets, 30 ms after the k-means and a numpy product no thread but the main one
    is running ('R'); with OpenBLAS's own (the user's choice, kept) the workers still are."""
    env = dict(script_env(), OMP_NUM_THREADS='2')        # each OpenBLAS: one worker thread
    env.pop('OPENBLAS_THREAD_TIMEOUT', None)
    ours = subprocess.run([sys.executable, '-c', _SPIN_PROBE], capture_output=True, text=True,
                          timeout=120, env=env)
    assert ours.returncode == 0, ours.stderr[-2000:]
    assert ours.stdout.strip() and 'R' not in ours.stdout, ours.stdout
    env['OPENBLAS_THREAD_TIMEOUT'] = '28'
    theirs = subprocess.run([sys.executable, '-c', _SPIN_PROBE], capture_output=True, text=True,
                            timeout=120, env=env)
    assert theirs.returncode == 0, theirs.stderr[-2000:]
    assert 'R' in theirs.stdout, theirs.stdout


def test_help_of_each_command_says_which_shared_flags_it_ignores():
    """--help gave train-hash's --batch-k a default (it is ignored, with a warning) and offered
    the few-shot recipes, which only train-margin takes; type placeholders read N / X."""
    hash_help = cli.build_parser('hash').format_help()
    assert '--recipe' not in hash_help
    assert '--batch-k K                 no effect with gluon-dml train-hash: hashing batches' in hash_help
    assert '--init-scale X' in hash_help and '--bits N' in hash_help
    margin_help = cli.build_parser('margin').format_help()
    assert '--recipe NAME' in margin_help and 'no effect with' not in margin_help


def test_a_distributed_setting_outside_a_job_names_the_launcher_and_the_command(monkeypatch):
    from argparse import Namespace
    from gluon_dml import config
    from gluon_dml.methods import get_method
    monkeypatch.delenv('DMLC_ROLE', raising=False)
    with pytest.raises(cli.UserError) as e:
        config.check_distributed(Namespace(kvstore='dist_sync'), get_method('hash'))
    assert str(e.value) == ('--kvstore dist_sync trains as one worker of a job: start the job with '
                            'python -m gluon_dml.launch -n WORKERS gluon-dml train-hash ... '
                            '--kvstore dist_sync.')
    # resumed without the launcher: the setting is the record's, not a flag the user typed
    with pytest.raises(cli.UserError) as e:
        config.check_distributed(Namespace(kvstore='dist_sync', resume=True, job_workers=2,
                                           save_dir='runs/x'), get_method('margin'))
    assert str(e.value) == ('runs/x was trained by a job of 2 workers (--kvstore dist_sync): '
                            'resume it with python -m gluon_dml.launch -n 2 gluon-dml '
                            'train-margin --resume ...')


def test_evaluate_and_embed_take_no_progress(tiny_digits_run, tmp_path):
    """evaluate and embed drew progress bars with no way to turn them off (they ran into the
    result lines); --no-progress, as the training commands and index have."""
    import numpy as np
    from PIL import Image
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(str(tmp_path / 'a.png'))
    for argv in (['evaluate', str(tiny_digits_run), '--nmi-runs', '1', '--out',
                  str(tmp_path / 'e.json')],
                 ['embed', str(tiny_digits_run), '--images', str(tmp_path / 'a.png'), '--out',
                  str(tmp_path / 'e.npz')]):
        bars = subprocess.run([sys.executable, '-m', 'gluon_dml'] + argv, capture_output=True,
                              text=True, timeout=300, env=script_env())
        quiet = subprocess.run([sys.executable, '-m', 'gluon_dml'] + argv + ['--no-progress'],
                               capture_output=True, text=True, timeout=300, env=script_env())
        assert bars.returncode == quiet.returncode == 0, bars.stderr + quiet.stderr
        assert 'embed' in bars.stderr and '%|' in bars.stderr, bars.stderr
        assert '%|' not in quiet.stderr, quiet.stderr


def test_ctrl_c_while_mxnet_loads_is_one_line(monkeypatch, capsys):
    """Ctrl-C in the first second of any command (MXNet loading, before the guard's try) ended in
    a traceback. The interrupt is raised where the import is, as a slow import is interrupted."""
    import types

    class Loading(types.ModuleType):
        def __getattr__(self, name):
            raise KeyboardInterrupt
    monkeypatch.setitem(sys.modules, 'gluon_dml.engine', Loading('gluon_dml.engine'))
    with pytest.raises(SystemExit) as e:
        cli.main_guard(lambda argv: pytest.fail('ran the command'), [])
    assert e.value.code == 130
    assert capsys.readouterr().err == '\nInterrupted (Ctrl-C) while starting; nothing was done.\n'


def test_a_tta_shift_of_half_the_image_or_more_is_warned(capsys):
    cli.parse('margin', ['--data', 'digits', '--tta-shift', '4', '--save-dir', 'unused'])
    assert ('warning: --tta-shift 4 moves the 8 x 8 images by half their side or more: the '
            'shifted copies are mostly padding') in capsys.readouterr().err
    cli.parse('margin', ['--data', 'omniglot', '--tta-shift', '1', '--save-dir', 'unused'])
    assert '--tta-shift' not in capsys.readouterr().err
