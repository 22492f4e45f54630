"""Signals and kill -9, on a real child process: SIGTERM / SIGINT are answered within seconds,
even during an evaluation or while a batch is read; a second Ctrl-C stops at once; kill -9 at
any point (mid-step, mid-checkpoint, between two renames, mid-log, mid-evaluation) and then
--resume ends with the parameters and the log of the uninterrupted run."""
import os
import signal
import time

import pytest

from .conftest import STD
from .harness import (TINY, assert_same_params, checkpoints, child, final_params, finish,
                      gluon_dml, log_rows, same_rows, trace_lines, wait_for)

error = pytest.mark.fault('error')
handled = pytest.mark.fault('handled')


def start(run, trace, plan='', *argv):
    env = {'GLUON_DML_TRACE': str(trace)}
    if plan:
        env['GLUON_DML_FAULTS'] = plan
    return child('train-margin', *TINY, *STD, '--save-dir', run, *argv, env=env)


def reached(trace, point, n=1):
    return lambda: any(ln[0] == point and ln[1] == 'n=%d' % n for ln in trace_lines(trace))


def resume_and_compare(run, reference):
    r = gluon_dml('train-margin', '--save-dir', run, '--resume')
    assert r.code == 0, r
    assert 'Traceback' not in r.err
    assert_same_params(final_params(reference), final_params(run))
    same_rows(log_rows(reference), log_rows(run))
    assert not [n for n in os.listdir(os.path.join(run, 'checkpoints')) if n.startswith('.')]
    return r


@handled
def test_sigterm_during_an_evaluation_is_answered_at_once(tmp_path, reference):
    """The issue: SIGTERM during a long evaluation waited for the evaluation to end."""
    run, trace = str(tmp_path / 'run'), tmp_path / 'trace'
    proc = start(run, trace, 'eval@2:pause=120')                # the epoch-1 evaluation hangs
    assert wait_for(reached(trace, 'eval', 2), proc, timeout=240)
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    r = finish(proc)
    assert time.time() - t0 < 15, 'took %.1f s' % (time.time() - t0)
    assert r.code == 143 and 'Traceback' not in r.err, r
    assert 'SIGTERM received: checkpoint saved in %s' % os.path.join(run, 'checkpoints', 'e0001-b00003') in r.err
    assert checkpoints(run) == ['e0001-b00003'] and [row['epoch'] for row in log_rows(run)] == [0]
    resume_and_compare(run, reference)


@handled
def test_sigint_during_the_untrained_evaluation_saves_nothing_and_resumes(tmp_path, reference):
    """The issue: SIGINT during the epoch-0 evaluation ended in a traceback."""
    run, trace = str(tmp_path / 'run'), tmp_path / 'trace'
    proc = start(run, trace, 'eval@1:pause=120')
    assert wait_for(reached(trace, 'eval', 1), proc, timeout=240)
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    r = finish(proc)
    assert time.time() - t0 < 15
    assert r.code == 130 and 'Traceback' not in r.err, r
    assert 'SIGINT received before the first training step: nothing to save; --resume starts the ' \
           'run from the beginning.' in r.err
    assert checkpoints(run) == [] and log_rows(run) == []
    resume_and_compare(run, reference)


@handled
def test_sigterm_while_a_batch_is_read_is_answered_at_once(tmp_path, reference):
    run, trace = str(tmp_path / 'run'), tmp_path / 'trace'
    proc = start(run, trace, 'load@6:pause=120')                 # epoch 2, batch 2
    assert wait_for(reached(trace, 'load', 6), proc, timeout=240)
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    r = finish(proc)
    assert time.time() - t0 < 15
    assert r.code == 143 and 'checkpoint saved in %s' % os.path.join(run, 'checkpoints', 'e0002-b00001') in r.err, r
    resume_and_compare(run, reference)


@error
def test_a_second_ctrl_c_stops_at_once_and_leaves_the_last_checkpoint(tmp_path, reference):
    """The issue: a second Ctrl-C ended in a traceback."""
    run, trace = str(tmp_path / 'run'), tmp_path / 'trace'
    # the first Ctrl-C after batch 5 (epoch 2); its checkpoint write hangs; the second arrives
    proc = start(run, trace, 'step@5:int,checkpoint-files@2:pause=120')
    assert wait_for(reached(trace, 'checkpoint-files', 2), proc, timeout=240)
    proc.send_signal(signal.SIGINT)
    r = finish(proc)
    assert r.code == 130 and 'Traceback' not in r.err, r
    assert ('SIGINT received again: stopped at once without saving; the last checkpoint is %s; '
            'continue with --resume.' % os.path.join(run, 'checkpoints', 'e0002-b00000')) in r.err
    assert checkpoints(run) == ['e0002-b00000']
    assert not [n for n in os.listdir(os.path.join(run, 'checkpoints')) if n.startswith('.')]
    resume_and_compare(run, reference)


KILL_POINTS = [
    'step@4',                      # mid-epoch 2, after a step
    'load@2',                      # while reading a batch of epoch 1 (before any checkpoint)
    'eval@1',                      # during the untrained evaluation
    'eval@3',                      # during the epoch-2 evaluation
    'log@3',                       # the epoch-2 row written, its checkpoint not
    'checkpoint-files@2',          # the second checkpoint half written
    'checkpoint-meta@2',           # every file but meta.json written
    'checkpoint-rename@2',         # whole, under its temporary name
    'checkpoint-pointer@2',        # renamed, latest not updated
    'checkpoint-done@1',           # just after the first checkpoint
]


@handled
@pytest.mark.parametrize('point', [
    pytest.param(p, marks=() if p in ('checkpoint-meta@2', 'log@3') else pytest.mark.slow)
    for p in KILL_POINTS])
def test_kill_9_at_a_chosen_point_then_resume_ends_like_the_uninterrupted_run(tmp_path, reference, point):
    run, trace = str(tmp_path / 'run'), tmp_path / 'trace'
    proc = start(run, trace, point + ':kill')
    r = finish(proc)
    assert r.code == -signal.SIGKILL, r
    resume_and_compare(run, reference)


@handled
@pytest.mark.slow
def test_kill_9_between_the_two_renames_of_a_re_saved_checkpoint(tmp_path, reference):
    """The issue: a kill between the two renames of a re-saved checkpoint left latest pointing at
    nothing. A SIGTERM while batch 1 of epoch 2 is read re-saves e0002-b00000; the kill lands
    between moving the old one aside and putting the new one in place."""
    run, trace = str(tmp_path / 'run'), tmp_path / 'trace'
    proc = start(run, trace, 'load@5:term,checkpoint-between-renames@1:kill')
    r = finish(proc)
    assert r.code == -signal.SIGKILL, r
    left = sorted(os.listdir(os.path.join(run, 'checkpoints')))
    assert 'e0002-b00000' not in left and any(n.startswith('.old-e0002-b00000') for n in left)
    r = resume_and_compare(run, reference)
    assert 'completed the checkpoint e0002-b00000 from .tmp-e0002-b00000' in r.err


@handled
def test_checkpoint_every_bounds_the_work_a_kill_loses(tmp_path, reference):
    run, trace = str(tmp_path / 'run'), tmp_path / 'trace'
    proc = start(run, trace, 'step@8:kill', '--checkpoint-every', '1')    # epoch 3, batch 2
    assert finish(proc).code == -signal.SIGKILL
    r = resume_and_compare(run, reference)
    assert 'Resumed from %s (epoch 3, batch 1)' % os.path.join(run, 'checkpoints', 'e0003-b00001') in r.out


@handled
@pytest.mark.slow
def test_ten_kill_9_at_random_moments_end_like_the_uninterrupted_run(tmp_path):
    """scripts/kill9.py: ten kills of one run (half at random steps, half inside checkpoint
    writes and evaluations), --resume after each; bitwise the same parameters and log."""
    import subprocess
    import sys
    from ..helpers import REPO
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'scripts', 'kill9.py'), '--kills', '10',
                           '--seed', '1', '--workdir', str(tmp_path / 'k9')], capture_output=True,
                          text=True, timeout=1500, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '10 kills of one run of 36 steps' in proc.stdout
    assert 'bitwise equal to the uninterrupted run: yes; log equal (timing fields aside): yes' in proc.stdout
