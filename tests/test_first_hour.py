"""The first hour of a new user: --help a person can read, a warning for every flag that has no
effect, loss options typed by their loss, fresh run folders, one image to embed, and the default
run that shows learning (slow)."""
import io
import json
import os
import re
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from gluon_dml import cli
from gluon_dml.data import list_datasets

from .helpers import REPO, loss_from_args, parse, run_script, script_env


def _help(method):
    return cli.build_parser(method).format_help()


# ---------------------------------------------------------------------------------------------
# --help
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize('method', ['margin', 'npair', 'hash', 'vse'])
def test_every_flag_has_a_help_line_and_no_default_none(method):
    parser = cli.build_parser(method)
    for action in parser._actions:
        assert action.help and action.help.strip(), action.option_strings
    text = _help(method)
    assert '(default: None)' not in text
    assert text.splitlines()[0] == 'usage: %s [options]' % parser.prog      # no 40-line usage block
    # each flag listed once: the "_" twins are accepted but not shown
    assert not re.search(r'^\s+--batch_size', text, re.M) and '  --batch-size N' in text


def test_help_groups_in_order_and_the_first_forty_lines_show_usage_and_the_first_groups():
    text = _help('margin')
    heads = [ln.rstrip(':') for ln in text.splitlines() if re.match(r'^[a-z][a-zA-Z +]*:$', ln)]
    assert heads == ['options', 'data', 'model', 'loss', 'optimisation', 'evaluation',
                     'run folder', 'dashboard']
    proc = subprocess.run('%s train_margin.py --help | head -40' % sys.executable, shell=True,
                          capture_output=True, text=True, cwd=REPO, env=script_env())
    first = proc.stdout.splitlines()
    assert len(first) == 40 and first[0] == 'usage: train_margin.py [options]'
    assert 'data:' in first and any(ln.startswith('  --data NAME') for ln in first)
    assert 'model:' in first
    # the same parser under the name the user typed
    proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'train-margin', '--help'],
                          capture_output=True, text=True, cwd=REPO, env=script_env())
    assert proc.stdout.splitlines()[0] == 'usage: gluon-dml train-margin [options]'


def test_help_states_real_defaults_and_recipe_rules():
    text = ' '.join(_help('margin').split())
    assert 'training epochs (default omniglot: 30, digits: 10, fashion-mnist: 5, photo datasets: 20)' in text
    assert 'images per batch (default omniglot: 128, digits: 60, fashion-mnist: 125, photo datasets: 70)' in text
    assert 'seed of every random draw (default 123)' in text
    for name in list_datasets():                       # --data lists every dataset name
        assert name in text
    npair = ' '.join(_help('npair').split())
    assert 'default omniglot: 0.002' in npair            # N-pair's own learning rate on Omniglot
    hashing = ' '.join(_help('hash').split())
    assert 'dataset: digits, fashion-mnist (default fashion-mnist)' in hashing
    assert '--loss NAME one of: dch, dsh, hashnet (default hashnet)' in hashing


# ---------------------------------------------------------------------------------------------
# flags without effect, loss options
# ---------------------------------------------------------------------------------------------

def _warnings(method, *argv):
    stream = io.StringIO()
    cli.parse(method, [str(a) for a in argv], stream=stream)
    return [ln[len('warning: '):] for ln in stream.getvalue().splitlines()]


@pytest.mark.parametrize('method,argv,expected', [
    ('margin', ['--data', 'digits', '--data-path', '/x'],
     '--data-path has no effect with --data digits'),
    ('margin', ['--loss', 'triplet', '--beta', '1.5'],
     '--beta has no effect with --loss triplet (it is an option of binomial, margin, multi_similarity'),
    ('margin', ['--loss', 'contrastive', '--mining', 'semihard'],
     '--mining has no effect with --loss contrastive'),
    ('hash', ['--data', 'digits', '--batch-k', '4'], '--batch-k has no effect with gluon-dml train-hash'),
    ('hash', ['--data', 'digits', '--embed-dim', '32'],
     '--embed-dim has no effect with gluon-dml train-hash: the code length --bits is the output size'),
    ('margin', ['--data', 'omniglot', '--image-size', '64'],
     '--image-size has no effect with --data omniglot'),
    ('margin', ['--viz-port', '9000'], '--viz-port has no effect without --use_viz'),
    ('margin', ['--momentum', '0.5'], '--momentum has no effect with --optimizer adam'),
    ('margin', ['--factor', '0.1'], '--factor has no effect without --steps'),
    ('margin', ['--data', 'CUB_200_2011', '--data-path', '/x', '--split-classes', '0.5'],
     '--split-classes has no effect with --data cub-200-2011'),
])
def test_a_flag_without_effect_gets_one_warning_naming_it(tmp_path, monkeypatch, method, argv, expected):
    monkeypatch.chdir(tmp_path)
    lines = _warnings(method, *argv)
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_vse_ignores_batch_k_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / 'f30k'
    root.mkdir()
    lines = _warnings('vse', '--data', 'f30k_precomp', '--data-path', root, '--batch-k', '3')
    assert lines == ['--batch-k has no effect with gluon-dml train-vse: VSE batches are image-caption '
                     'pairs, not P classes x K images.']


def test_flags_that_matter_give_no_warning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _warnings('margin', '--data', 'omniglot', '--loss', 'triplet', '--mining', 'semihard',
                     '--margin', '0.2', '--optimizer', 'sgd', '--momentum', '0.8', '--steps', '10',
                     '--factor', '0.1') == []


def test_loss_options_are_typed_by_the_chosen_loss(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = parse('margin', '--loss', 'multi_similarity', '--mining', 'false')
    assert a.mining is False and a._loss_kwargs == {'mining': False}
    a = parse('margin', '--loss', 'multi_similarity', '--mining', 'yes')
    assert a.mining is True
    a = parse('margin', '--loss', 'triplet', '--mining', 'semihard')
    assert a.mining == 'semihard'
    with pytest.raises(cli.UserError, match='--mining for the triplet loss: expected one of all/semihard'):
        parse('margin', '--loss', 'triplet', '--mining', 'false')
    with pytest.raises(cli.UserError, match='--mining for the multi_similarity loss: expected true or false'):
        parse('margin', '--loss', 'multi_similarity', '--mining', 'semihard')
    a = parse('margin', '--loss', 'binomial', '--mining', 'none')
    assert a._loss_kwargs == {'mining': None}


def test_mining_false_turns_multi_similarity_mining_off(tmp_path, monkeypatch):
    """--mining false reaches the loss as False: on a batch where mining drops pairs, the loss
    with it off equals the loss over every pair, and differs from the mined one."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.RandomState(0)
    x = mx.nd.array(rng.randn(16, 8))
    y = mx.nd.array(np.repeat(np.arange(4), 4))
    off = loss_from_args(parse('margin', '--loss', 'multi_similarity', '--mining', 'false'), 4, 8)
    on = loss_from_args(parse('margin', '--loss', 'multi_similarity'), 4, 8)
    assert off._mining is False and on._mining is True
    from .losses.reference_proxy_ms_face import multi_similarity_loss as reference
    v_off, v_on = off(x, y).asscalar(), on(x, y).asscalar()
    assert v_off == pytest.approx(reference(x.asnumpy(), y.asnumpy(), mining=False), rel=1e-4)
    assert v_on == pytest.approx(reference(x.asnumpy(), y.asnumpy(), mining=True), rel=1e-4)
    assert abs(v_off - v_on) > 1e-3


# ---------------------------------------------------------------------------------------------
# run folders
# ---------------------------------------------------------------------------------------------

def test_each_new_run_gets_a_fresh_folder_and_resume_continues_the_newest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = parse('margin')
    assert (a.save_dir, a.name) == (os.path.join('runs', 'margin-omniglot'), 'margin-omniglot')
    os.makedirs('runs/margin-omniglot')
    open('runs/margin-omniglot/args.json', 'w').write('{}')
    assert parse('margin').save_dir == os.path.join('runs', 'margin-omniglot-2')
    os.makedirs('runs/margin-omniglot-2/checkpoints')
    os.makedirs('runs/margin-omniglot-7')                 # empty: holds no run
    assert parse('margin').save_dir == os.path.join('runs', 'margin-omniglot-3')
    assert parse('margin', '--resume').save_dir == os.path.join('runs', 'margin-omniglot-2')
    # an explicit choice is kept as it is
    assert parse('margin', '--name', 'mine').save_dir == os.path.join('runs', 'mine')
    assert parse('margin', '--save-dir', 'runs/margin-omniglot').save_dir == 'runs/margin-omniglot'


def test_the_same_command_twice_trains_twice(tmp_path):
    env = script_env()
    for _ in range(2):
        proc = subprocess.run([sys.executable, os.path.join(REPO, 'train_margin.py'), '--data', 'digits',
                               '--epochs', '1', '--batches-per-epoch', '2', '--no-progress'],
                              capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(tmp_path / 'runs')) == ['margin-digits', 'margin-digits-2']
    assert 'run folder runs/margin-digits-2' in proc.stdout.splitlines()[-1]


# ---------------------------------------------------------------------------------------------
# embed: one image, a folder, a list file in either format
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def digits_run(tiny_digits_run, tmp_path_factory):
    import shutil
    run = tmp_path_factory.mktemp('run') / 'r'           # a copy: a test here changes the folder
    shutil.copytree(tiny_digits_run, run)
    return run


def test_embed_one_image_a_folder_and_both_list_formats(digits_run, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits
    d = load_digits()
    folder = tmp_path / 'my images'
    folder.mkdir()
    for i in range(4):
        img = (255 - d.images[i] * 16).clip(0, 255).astype('uint8')
        Image.fromarray(img).resize((48, 48)).save(folder / ('%d.pgm' % i))    # binary PGM
    out = tmp_path / 'e.npz'
    run_script('eval/embed.py', digits_run, '--images', folder / '0.pgm', '--out', out, check=True)
    one = np.load(out)
    assert one['embeddings'].shape == (1, 64) and one['paths'][0].endswith('0.pgm')
    run_script('eval/embed.py', digits_run, '--images', folder, '--out', out, check=True)
    every = np.load(out)
    assert every['embeddings'].shape == (4, 64)
    np.testing.assert_allclose(every['embeddings'][0], one['embeddings'][0], rtol=1e-5, atol=1e-6)
    plain = tmp_path / 'paths.txt'               # a path per line (with a space in it)
    plain.write_text('# my list\nmy images/2.pgm\nmy images/3.pgm\n')
    run_script('eval/embed.py', digits_run, '--images', plain, '--out', out, check=True)
    z = np.load(out)
    assert z['embeddings'].shape == (2, 64) and 'labels' not in z.files
    np.testing.assert_allclose(z['embeddings'], every['embeddings'][2:], rtol=1e-5, atol=1e-6)
    (tmp_path / 'imgs').mkdir()
    for i in range(2):
        os.link(folder / ('%d.pgm' % i), tmp_path / 'imgs' / ('%d.pgm' % i))
    training = tmp_path / 'train.txt'             # the training list format: path label [split]
    training.write_text('imgs/0.pgm 7 train\nimgs/1.pgm 9 test\n')
    run_script('eval/embed.py', digits_run, '--images', training, '--out', out, check=True)
    z = np.load(out)
    assert list(z['labels']) == ['7', '9']
    np.testing.assert_allclose(z['embeddings'], every['embeddings'][:2], rtol=1e-5, atol=1e-6)
    garbage = tmp_path / 'garbage.bin'
    garbage.write_bytes(b'\x83\x00\xff' * 10)
    bad = run_script('eval/embed.py', digits_run, '--images', garbage, '--out', out)
    assert bad.returncode == 2 and 'neither an image PIL can read nor a UTF-8 list file' in bad.stderr


# ---------------------------------------------------------------------------------------------
# model selection that does not peek
# ---------------------------------------------------------------------------------------------

def test_best_epoch_is_chosen_on_validation_classes_only(tmp_path, digits_run):
    assert not (digits_run / 'best.params').exists()      # no validation classes: the final net
    run = tmp_path / 'val'
    proc = run_script('train_margin.py', '--data', 'digits', '--epochs', '2', '--batches-per-epoch',
                      '3', '--val-classes', '0.4', '--batch-size', '36', '--no-progress',
                      '--save-dir', run, check=True)
    best = json.load(open(run / 'best.json'))
    assert best['selected_on'] == 'validation' and best['selected_by'] == 'recall@1'
    log = [json.loads(ln) for ln in open(run / 'log.jsonl')]
    assert best['recall@1'] == max(r['recall@1'] for r in log[1:])
    assert 'on the validation classes (digits, best-on-validation network)' in proc.stdout
    ev = run_script('eval/evaluate.py', run, '--split', 'val', check=True)
    assert 'network: best epoch, chosen on the validation classes' in ev.stdout
    # a run folder of an older version, whose best.params was chosen on the test split
    (digits_run / 'best.json').write_text(json.dumps({'epoch': 1, 'recall@1': 0.5}))
    import shutil
    latest = open(digits_run / 'checkpoints' / 'latest').read().strip()
    shutil.copy(digits_run / 'checkpoints' / latest / 'net.params', digits_run / 'best.params')
    ev = run_script('eval/evaluate.py', digits_run, check=True)
    assert 'network: final network' in ev.stdout             # the default never takes it
    ev = run_script('eval/evaluate.py', digits_run, '--checkpoint', 'best', check=True)
    assert 'CHOSEN ON THE TEST SPLIT (optimistic)' in ev.stdout
    assert 'CHOSEN ON THE TEST SPLIT' in json.load(open(digits_run / 'eval-test-best.json'))['network']
    assert json.load(open(digits_run / 'eval-test.json'))['network'] == 'final network'   # kept


# ---------------------------------------------------------------------------------------------
# the README's first command on a fresh clone (slow)
# ---------------------------------------------------------------------------------------------

def _readme_commands():
    lines = open(os.path.join(REPO, 'README.md'), encoding='utf-8').read().splitlines()
    return [ln.strip() for ln in lines[:30] if ln.startswith('    ') and 'bootstrap.sh' in ln]


def test_readme_starts_with_the_two_commands():
    first, second = _readme_commands()[:2]
    assert first in ('bash scripts/bootstrap.sh && .venv/bin/gluon-dml train-margin',
                     'bash scripts/bootstrap.sh && .venv/bin/python train_margin.py')
    assert second == ('bash scripts/bootstrap.sh --test && '
                      '.venv/bin/python -m pytest -q -rs -m "not slow" tests')
    # .ci/run: the README's test command, then the slow runs it leaves out
    ci = ' '.join(open(os.path.join(REPO, '.ci', 'run')).read().replace('\\\n', ' ').split())
    assert ci.endswith(second + ' && .venv/bin/python -m pytest -q -rs -m slow tests'), ci[-300:]


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(os.path.join(REPO, '.git')), reason='not a git checkout')
def test_readme_first_command_on_a_fresh_clone_with_an_empty_pip_cache(tmp_path):
    """A new clone, a new virtual environment, an empty pip cache: the README's first command
    installs everything and trains the default run, which ends with the summary line and shows
    learning (Recall@1 at least 40 points above the untrained net on the unseen alphabets)."""
    clone = tmp_path / 'clone'
    subprocess.run(['git', 'clone', '-q', REPO, str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(('PYTHON', 'VIRTUAL_ENV', 'PIP_'))}
    env.update(PIP_CACHE_DIR=str(tmp_path / 'empty-pip-cache'), PATH=os.environ['PATH'])
    if os.path.isdir(os.path.join(REPO, '.venv')):     # the interpreter the venv was made from
        env['PYTHON'] = os.path.realpath(os.path.join(REPO, '.venv', 'bin', 'python'))
    command = _readme_commands()[0]
    proc = subprocess.run(command, shell=True, cwd=str(clone), env=env, capture_output=True,
                          text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    m = re.match(r'summary: untrained -> trained on the unseen test classes \(omniglot, final '
                 r'network\): Recall@1 ([\d.]+) -> ([\d.]+), MAP@R ([\d.]+) -> ([\d.]+), NMI '
                 r'([\d.]+) -> ([\d.]+); run folder (\S+)$', last)
    assert m, last
    before, after = float(m.group(1)), float(m.group(2))
    assert after >= before + 0.40, last
    log = [json.loads(ln) for ln in open(clone / m.group(7) / 'log.jsonl')]
    assert log[0]['epoch'] == 0 and log[0]['recall@1'] == pytest.approx(before, abs=5e-4)
    assert log[-1]['epoch'] == 30 and log[-1]['recall@1'] == pytest.approx(after, abs=5e-4)
