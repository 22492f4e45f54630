"""A run folder whose trained parameters were emptied (0 bytes: a disk that filled, a copy that
was cut) is named as damaged by every command that reads them, never taken for a run without a
checkpoint: ``evaluate``, ``export --check``, ``index`` and ``search`` (through
``methods.open_run``), and ``train --resume``. When only the newest checkpoint is damaged, the
previous whole one is used, as ``--resume`` does, and the damaged one is named. Real runs, real
processes."""
import json
import os
import shutil

import pytest

from .helpers import run_command, run_script, write_digit_folder

NEWEST, OLDER = 'e0003-b00000', 'e0002-b00000'


@pytest.fixture(scope='module')
def two_epoch_run(tmp_path_factory):
    """A real margin run on digits, two short epochs: checkpoints e0002 and e0003 (the final
    network), and, trained with validation classes, best.params. Tests change copies."""
    root = tmp_path_factory.mktemp('damaged')
    run = root / 'r'
    run_script('train_margin.py', '--data', 'digits', '--epochs', '2', '--batches-per-epoch', '4',
               '--batch-size', '36', '--val-classes', '0.4', '--no-progress', '--nmi-runs', '1',
               '--save-dir', run, check=True)
    assert sorted(os.listdir(run / 'checkpoints')) == [OLDER, NEWEST, 'latest']
    assert (run / 'best.params').is_file()
    return run


@pytest.fixture
def run(two_epoch_run, tmp_path):
    copy = tmp_path / 'run'
    shutil.copytree(two_epoch_run, copy, ignore=shutil.ignore_patterns('.lock'))
    return copy


def _empty(path):
    open(path, 'w').close()


def _error_lines(proc):
    return [ln for ln in proc.stderr.splitlines() if ln.startswith('error:')]


def _net(run, name):
    return os.path.join(str(run), 'checkpoints', name, 'net.params')


def test_evaluate_names_an_emptied_newest_checkpoint_and_uses_the_previous(run, tmp_path):
    """It took the previous checkpoint for the final network without a word."""
    _empty(_net(run, NEWEST))
    size = os.path.getsize(_net(run, OLDER))
    proc = run_command('evaluate', run, '--checkpoint', 'last', '--nmi-runs', '1', '--out',
                       tmp_path / 'e.json')
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith('warning:')]
    assert ('warning: the newest checkpoint of %s, %s, is damaged (net.params has 0 bytes, %d were '
            'written), so its final network is lost; using the previous one, %s (--resume trains '
            'the run again from it).' % (run, NEWEST, size, OLDER)) in warnings, proc.stderr
    assert 'network: checkpoint %s: the newest, %s, is damaged (%s)' % (
        OLDER, NEWEST, _net(run, OLDER)) in proc.stdout


def test_every_checkpoint_emptied_is_damaged_not_absent_for_each_reader(run, tmp_path):
    """evaluate, export --check and index said '... holds no trained parameters yet (no
    checkpoint)'."""
    for name in (OLDER, NEWEST):
        _empty(_net(run, name))
    for name in ('best.params', 'best.json', 'best.loss.params'):    # the final network is reported
        os.remove(os.path.join(str(run), name))
    images = write_digit_folder(tmp_path / 'images', count=20)
    want = ('error: Every checkpoint in %s is damaged (%s: net.params has 0 bytes, '
            % (os.path.join(str(run), 'checkpoints'), NEWEST))
    for argv in (['evaluate', run, '--out', tmp_path / 'e.json'],
                 ['export', run, '--check', '--images', '2'],
                 ['index', run, '--images', images, '--out', tmp_path / 'cat', '--no-progress']):
        proc = run_command(*argv)
        assert proc.returncode == 2, (argv, proc.stdout, proc.stderr)
        lines = _error_lines(proc)
        assert len(lines) == 1 and lines[0].startswith(want), (argv, proc.stderr)
        assert lines[0].endswith('so the run holds no trained network; train it again with '
                                 '--overwrite.'), lines
        assert 'no checkpoint' not in proc.stderr and 'Traceback' not in proc.stderr
    assert not (tmp_path / 'cat').exists()


def test_an_emptied_best_params_is_named_and_the_final_network_offered(run, tmp_path):
    """An empty best.params failed to load with 'Traceback (most recent call last):' for a
    reason; a truncated one did the same."""
    best = os.path.join(str(run), 'best.params')
    size = os.path.getsize(best)
    shutil.copy(best, str(tmp_path / 'best.params'))
    _empty(best)
    proc = run_command('evaluate', run, '--out', tmp_path / 'e.json')
    assert proc.returncode == 2, proc.stderr
    assert _error_lines(proc) == [
        "error: %s is empty (0 bytes: damaged, e.g. by a full disk or a cut copy), so the best "
        "epoch's network is lost; --checkpoint last uses the final network (the newest "
        "checkpoint) instead." % best], proc.stderr
    proc = run_command('evaluate', run, '--checkpoint', 'last', '--nmi-runs', '1', '--out',
                       tmp_path / 'e.json')
    assert proc.returncode == 0 and 'network: final network' in proc.stdout, proc.stderr
    with open(str(tmp_path / 'best.params'), 'rb') as f:
        head = f.read(size // 2)
    with open(best, 'wb') as f:                      # cut in half: MXNet's own reason
        f.write(head)
    proc = run_command('evaluate', run, '--out', tmp_path / 'e.json')
    assert proc.returncode == 2, proc.stderr
    # named by best.json's record of it (it was MXNet's reason for a file it could not load)
    assert _error_lines(proc) == [
        "error: %s has %d bytes, %d were written (damaged, e.g. by a full disk or a cut copy), so "
        "the best epoch's network is lost; --checkpoint last uses the final network (the newest "
        "checkpoint) instead." % (best, size // 2, size)], proc.stderr
    record = json.loads((run / 'best.json').read_text())
    del record['files']                     # a run of an earlier version: MXNet's reason still
    (run / 'best.json').write_text(json.dumps(record))
    proc = run_command('evaluate', run, '--out', tmp_path / 'e.json')
    assert proc.returncode == 2, proc.stderr
    lines = _error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith('error: %s does not fit the network' % best), lines
    assert 'Traceback' not in lines[0] and 'the file is damaged' in lines[0], lines


def test_search_by_image_names_the_emptied_network_of_its_catalogue(run, tmp_path):
    """It said the run 'has changed since the catalogue was built (trained further, or trained
    again)'."""
    images = write_digit_folder(tmp_path / 'images', count=20)
    cat = tmp_path / 'cat'
    proc = run_command('index', run, '--checkpoint', 'last', '--images', images, '--out', cat,
                       '--no-progress')
    assert proc.returncode == 0, proc.stderr
    _empty(_net(run, NEWEST))
    query = sorted(images.rglob('*.png'))[0]
    proc = run_command('search', cat, '--image', query)
    assert proc.returncode == 2, proc.stderr
    assert _error_lines(proc) == [
        'error: The network that embedded the catalogue %s, %s, is damaged (net.params has 0 '
        'bytes, %d were written), so queries by image or text cannot be embedded as its vectors '
        'were (search by vector or id still works); resuming the run with --resume trains it '
        'again from its previous checkpoint.'
        % (cat, _net(run, NEWEST), os.path.getsize(_net(run, OLDER)))], proc.stderr
    proc = run_command('search', cat, '--id', '1')
    assert proc.returncode == 0, proc.stderr


def test_an_emptied_export_is_named_empty(run):
    params = os.path.join(str(run), 'model-0000.params')
    _empty(params)
    proc = run_command('export', run)
    assert proc.returncode == 2, proc.stderr
    assert _error_lines(proc) == [
        "error: %s is damaged or not this run's export (it is empty, 0 bytes): write the export "
        "again by resuming the finished run with --resume." % params], proc.stderr


def test_resume_over_emptied_checkpoints_never_starts_over(run):
    """--resume over an emptied newest checkpoint continues from the previous one and says so;
    over every checkpoint emptied it refuses (it never trains from the beginning)."""
    _empty(_net(run, NEWEST))
    proc = run_script('train_margin.py', '--resume', '--save-dir', run, '--no-progress')
    assert proc.returncode == 0, proc.stderr
    assert ('the newest checkpoint %s is damaged (net.params has 0 bytes'
            % os.path.join(str(run), 'checkpoints', NEWEST)) in proc.stderr
    assert 'Resumed from %s' % os.path.join(str(run), 'checkpoints', OLDER) in proc.stdout + proc.stderr
    assert 'starting from the beginning' not in proc.stdout + proc.stderr
    for name in (OLDER, NEWEST):
        _empty(_net(run, name))
    proc = run_script('train_margin.py', '--resume', '--save-dir', run, '--no-progress')
    assert proc.returncode == 2, proc.stderr
    lines = _error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith(
        'error: Every checkpoint in %s is damaged' % os.path.join(str(run), 'checkpoints')), lines
    assert 'starting from the beginning' not in proc.stdout + proc.stderr


def test_a_removed_best_params_is_named_not_replaced_by_the_final_network(run, tmp_path):
    """best.json says the run reports its best epoch, chosen on validation data, and best.params
    is gone: evaluate used the final network, labelled 'final network', and wrote eval-test.json
    as the run's own numbers. --checkpoint last still evaluates the final network, in its own
    file."""
    best = os.path.join(str(run), 'best.params')
    os.remove(best)
    want = ('error: %s is missing although best.json records the best epoch chosen on validation '
            'data, so the network the run reports is lost; --checkpoint last uses the final '
            'network (the newest checkpoint) instead.' % best)
    for extra in ([], ['--checkpoint', 'best']):
        proc = run_command('evaluate', run, '--nmi-runs', '1', *extra)
        assert proc.returncode == 2 and _error_lines(proc) == [want], proc.stderr
    assert not (run / 'eval-test.json').exists()
    proc = run_command('evaluate', run, '--checkpoint', 'last', '--nmi-runs', '1')
    assert proc.returncode == 0 and 'network: final network' in proc.stdout, proc.stderr
    assert (run / 'eval-test-last.json').is_file() and not (run / 'eval-test.json').exists()
