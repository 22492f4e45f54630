"""A run folder records what it is and refuses to become something else: --resume takes the
recorded settings, refuses a flag that would change the run, appends the allowed changes as a
segment; a folder holding a run is never written by a new run without --resume or --overwrite."""
import fcntl
import json
import os

import pytest

from gluon_dml.engine.rundir import load_run_args

from .conftest import STD, files_of
from .harness import (TINY, assert_same_params, final_params, gluon_dml, log_rows, record,
                      same_rows, train)

error = pytest.mark.fault('error')
handled = pytest.mark.fault('handled')


def _original(rec):
    return {k: v for k, v in rec.items() if k != 'resumes'}


@pytest.fixture(scope='session')
def seed3(tmp_path_factory):
    """An uninterrupted run made with --seed 3 --epochs 2."""
    path = str(tmp_path_factory.mktemp('seed3') / 'run')
    assert train(path, '--seed', '3', '--epochs', '2').code == 0
    return path


@handled
def test_resume_takes_the_recorded_settings_not_the_defaults(seed3, tmp_path):
    """The issue's first case: a run made with --seed 3 --epochs 6 resumed with a bare --resume
    trained on with the default seed and epochs, and args.json then said seed 123."""
    run = str(tmp_path / 'run')
    stopped = train(run, '--seed', '3', '--epochs', '2', env={'GLUON_DML_FAULTS': 'step@4:term'})
    assert stopped.code == 143 and 'SIGTERM received: checkpoint saved' in stopped.err
    before = record(run)
    r = gluon_dml('train-margin', '--save-dir', run, '--resume')
    assert r.code == 0, r
    assert 'Traceback' not in r.err
    rec = record(run)
    assert _original(rec) == _original(before) and rec['seed'] == 3 and rec['epochs'] == 2
    assert len(rec['resumes']) == 1 and rec['resumes'][0]['changed'] == {}
    assert rec['resumes'][0]['command'].endswith('--resume')
    assert_same_params(final_params(seed3), final_params(run))
    same_rows(log_rows(seed3), log_rows(run))


# flags that would change the run: refused with one sentence naming the flag; nothing written
CHANGES = [
    ('--seed', '4'), ('--data', 'omniglot'), ('--model', 'resnet18_v2'), ('--embed-dim', '32'),
    ('--loss', 'triplet'), ('--margin', '0.3'), ('--beta', '1.0'), ('--batch-size', '36'),
    ('--batch-k', '6'), ('--batches-per-epoch', '5'), ('--optimizer', 'sgd'), ('--lr', '0.01'),
    ('--wd', '0.001'), ('--factor', '0.1'), ('--loss-lr', '0.1'), ('--loss-optimizer', 'sgd'),
    ('--beta-per-class', 'true'), ('--init', 'fan-in'), ('--use-pretrained', None),
    ('--val-classes', '0.4'), ('--disable-hybridize', None), ('--momentum', '0.5'),
]


@error
@pytest.mark.parametrize('flag,value', CHANGES, ids=[c[0] for c in CHANGES])
def test_a_flag_that_would_change_the_run_is_refused_on_resume(two_epochs, flag, value):
    before = files_of(two_epochs)
    argv = [flag] + ([value] if value is not None else [])
    r = gluon_dml('train-margin', '--save-dir', two_epochs, '--resume', *argv)
    assert r.code == 2, r
    assert r.error_lines == [r.err.strip().splitlines()[-1]] and len(r.error_lines) == 1
    line = r.error_lines[0]
    assert line.startswith('error: %s ' % flag) and 'would change the run in %s' % two_epochs in line
    assert 'recorded:' in line and 'Traceback' not in r.err
    assert files_of(two_epochs) == before                      # nothing written


@handled
def test_more_epochs_on_resume_are_a_new_segment(partial, reference):
    before = _original(record(partial))
    r = gluon_dml('train-margin', '--save-dir', partial, '--resume', '--epochs', '3')
    assert r.code == 0, r
    rec = record(partial)
    assert _original(rec) == before and rec['epochs'] == 2          # the original is kept
    assert rec['resumes'][-1]['changed'] == {'epochs': 3}
    assert rec['resumes'][-1]['from_checkpoint'] == 'e0003-b00000'
    assert load_run_args(partial)['epochs'] == 3                     # the settings in force
    assert_same_params(final_params(reference), final_params(partial))
    same_rows(log_rows(reference), log_rows(partial))


@handled
@pytest.mark.parametrize('flag,value,stored', [
    ('--eval-batch-size', '128', 128), ('--nmi-runs', '2', 2), ('--log-interval', '5', 5),
    ('--checkpoint-every', '2', '2'), ('--num-workers', '1', 1), ('--eval-interval', '2', 2),
])
def test_evaluation_and_logging_flags_may_change_on_resume(partial, flag, value, stored):
    before = _original(record(partial))
    r = gluon_dml('train-margin', '--save-dir', partial, '--resume', flag, value)
    assert r.code == 0, r
    rec = record(partial)
    assert _original(rec) == before
    assert rec['resumes'][-1]['changed'] == {flag[2:].replace('-', '_'): stored}


@handled
def test_a_later_step_may_be_added_on_resume_and_takes_effect(partial):
    r = gluon_dml('train-margin', '--save-dir', partial, '--resume', '--epochs', '3', '--steps', '2')
    assert r.code == 0, r
    assert record(partial)['resumes'][-1]['changed'] == {'epochs': 3, 'steps': '2'}
    assert [row['lr'] for row in log_rows(partial)[1:]] == [1e-3, 1e-3, 5e-4]


@error
def test_a_step_in_the_past_is_refused_on_resume(partial):
    before = files_of(partial)
    r = gluon_dml('train-margin', '--save-dir', partial, '--resume', '--epochs', '3', '--steps', '1')
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert ('--steps 1 would change the learning rate of epochs the run in %s has already trained'
            % partial) in r.error_lines[0]
    assert files_of(partial) == before


@error
def test_fewer_epochs_than_trained_are_refused(partial):
    before = files_of(partial)
    r = gluon_dml('train-margin', '--save-dir', partial, '--resume', '--epochs', '1')
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert 'error: --epochs 1 is fewer than the 2 epoch(s) the run in %s has already trained' \
        % partial in r.err
    assert files_of(partial) == before


@error
def test_resuming_with_the_script_of_another_method_is_refused(two_epochs):
    r = gluon_dml('train-hash', '--save-dir', two_epochs, '--resume', '--data', 'digits')
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert 'holds a margin run (made with train_margin.py); resume it with that command, not ' \
           'gluon-dml train-hash' in r.err


@error
def test_checkpoints_without_args_json_cannot_be_resumed(partial):
    os.remove(os.path.join(partial, 'args.json'))
    before = files_of(partial)
    r = gluon_dml('train-margin', '--save-dir', partial, '--resume')
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert 'holds files of a run (log.jsonl, checkpoints' in r.err and 'but no args.json' in r.err
    assert files_of(partial) == before


@error
@pytest.mark.parametrize('content', ['', '{"seed": 3', 'not json at all', '[1, 2]'])
def test_a_garbled_args_json_is_named(partial, content):
    with open(os.path.join(partial, 'args.json'), 'w') as f:
        f.write(content)
    r = gluon_dml('train-margin', '--save-dir', partial, '--resume')
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert os.path.join(partial, 'args.json') in r.error_lines[0] and 'Cannot resume' in r.err


@error
@pytest.mark.parametrize('kept', ['args.json', 'log.jsonl', 'checkpoints', 'best.params',
                                  'model-0000.params', 'eval-test.json', 'best.params.tmp-123'])
def test_a_folder_holding_a_run_file_is_not_reused_by_a_new_run(partial, kept):
    """The issue's third case: a folder without checkpoints/latest was silently reused."""
    for name in os.listdir(partial):
        if name not in (kept, '.lock'):
            path = os.path.join(partial, name)
            if os.path.isdir(path):
                import shutil
                shutil.rmtree(path)
            else:
                os.remove(path)
    if not os.path.exists(os.path.join(partial, kept)):
        with open(os.path.join(partial, kept), 'w') as f:
            f.write('x')
    before = files_of(partial)
    r = train(partial, '--epochs', '1')
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert 'already holds a run; pass --resume to continue it, --overwrite to replace it' in r.err
    assert kept in r.err
    assert files_of(partial) == before


@handled
def test_overwrite_replaces_the_run_and_keeps_other_files(partial, reference):
    with open(os.path.join(partial, 'notes.txt'), 'w') as f:
        f.write('mine')
    with open(os.path.join(partial, 'best.params'), 'w') as f:
        f.write('stale')
    r = train(partial, *STD, '--overwrite')
    assert r.code == 0, r
    assert '--overwrite: removed the previous run in %s' % partial in r.err
    assert not os.path.exists(os.path.join(partial, 'best.params'))
    assert open(os.path.join(partial, 'notes.txt')).read() == 'mine'
    assert 'resumes' not in record(partial) and record(partial)['epochs'] == 3
    same_rows(log_rows(reference), log_rows(partial))                 # one row per epoch
    assert_same_params(final_params(reference), final_params(partial))


@error
def test_resume_and_overwrite_together_are_refused(two_epochs):
    r = gluon_dml('train-margin', '--save-dir', two_epochs, '--resume', '--overwrite')
    assert r.code == 2 and r.error_lines == ['error: --resume continues the run in the folder and '
                                             '--overwrite replaces it; give one of them.'], r


@handled
def test_resume_of_an_empty_folder_starts_the_run(tmp_path, reference):
    run = str(tmp_path / 'new')
    r = gluon_dml('train-margin', *TINY, *STD, '--save-dir', run, '--resume')
    assert r.code == 0, r
    assert ('--resume: no checkpoint in %s yet (a new run folder, or a run stopped before its first '
            'checkpoint), starting from the beginning.' % os.path.join(run, 'checkpoints')) in r.out
    assert_same_params(final_params(reference), final_params(run))


@error
def test_a_folder_in_use_by_another_process_is_refused(two_epochs):
    fd = os.open(os.path.join(two_epochs, '.lock'), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.pwrite(fd, b'4242', 0)
        r = gluon_dml('train-margin', '--save-dir', two_epochs, '--resume')
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert 'is in use by another training process (pid 4242)' in r.err


@handled
def test_a_resumed_run_reads_back_its_settings_in_force(partial):
    assert gluon_dml('train-margin', '--save-dir', partial, '--resume', '--epochs', '3',
                     '--eval-batch-size', '100').code == 0
    r = gluon_dml('train-margin', '--save-dir', partial, '--resume')
    assert r.code == 0, r
    rec = record(partial)
    assert [s['changed'] for s in rec['resumes']] == [{'epochs': 3, 'eval_batch_size': 100}, {}]
    settings = load_run_args(partial)
    assert settings['epochs'] == 3 and settings['eval_batch_size'] == 100 and rec['epochs'] == 2
    assert json.loads(json.dumps(settings))['seed'] == rec['seed']


@handled
def test_a_resumed_run_computes_with_its_recorded_threads(tmp_path):
    """A run trained with --threads 1 and resumed without the flag on a machine of more cores:
    the command starts again with one thread, as recorded, so it ends bitwise where the run
    without interruption ends (with the default count of every core it did not)."""
    import subprocess
    import sys
    from ..helpers import REPO, script_env
    if (os.cpu_count() or 1) < 2:
        pytest.skip('one core: the default thread count is the recorded one')
    env = script_env()
    env.pop('OMP_NUM_THREADS', None)

    def run(*argv):
        proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'train-margin'] + [str(a) for a in argv],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc
    ref, part = tmp_path / 'ref', tmp_path / 'part'
    run(*TINY, '--epochs', '2', '--threads', '1', '--save-dir', ref)
    run(*TINY, '--epochs', '1', '--threads', '1', '--save-dir', part)
    resumed = run('--save-dir', part, '--resume', '--epochs', '2')
    assert 'resuming with 1 threads, as recorded' in resumed.stderr
    assert record(part)['resumes'][-1]['changed'] == {'epochs': 2}
    assert_same_params(final_params(ref), final_params(part))


@handled
def test_a_command_started_again_for_its_threads_gets_the_environment_it_started_with(tmp_path):
    """The command that starts again passes on the environment it was started with, not what
    importing the package set in it: OPENBLAS_CORETYPE (set for faiss) reached MXNet's BLAS in the
    new process, and a resumed hashing run (dense layers) ended 1e-7 away from the run without
    interruption."""
    import subprocess
    import sys
    from ..helpers import REPO, script_env
    if (os.cpu_count() or 1) < 2:
        pytest.skip('one core: the default thread count is the recorded one')
    env = script_env()
    for name in ('OMP_NUM_THREADS', 'OPENBLAS_CORETYPE'):
        env.pop(name, None)

    def run(*argv):
        proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'train-hash'] + [str(a) for a in argv],
                              capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc
    flags = ['--data', 'digits', '--batches-per-epoch', '6', '--bits', '16', '--no-progress',
             '--threads', '1']
    ref, part = tmp_path / 'ref', tmp_path / 'part'
    run(*flags, '--epochs', '3', '--save-dir', ref)
    run(*flags, '--epochs', '1', '--save-dir', part)
    resumed = run('--save-dir', part, '--resume', '--epochs', '3')
    assert 'resuming with 1 threads, as recorded' in resumed.stderr
    assert_same_params(final_params(ref), final_params(part))
