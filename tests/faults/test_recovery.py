"""Recovery: a damaged newest checkpoint falls back to the previous one with a warning naming
both; ``latest`` is a hint, the checkpoints are scanned; leftovers of interrupted writes are
completed or removed; a cut last line of log.jsonl is dropped; resuming before the first
checkpoint and mid-epoch keeps the log exact (one row per epoch, each loss over all its
batches). Every resumed run ends with the parameters of the uninterrupted run."""
import json
import os
import shutil

import pytest

from gluon_dml.engine import CheckpointManager

from .conftest import STD
from .harness import (assert_same_params, checkpoints, final_params, gluon_dml, log_rows,
                      same_rows, train)

error = pytest.mark.fault('error')
handled = pytest.mark.fault('handled')

NEWEST, OLDER = 'e0003-b00000', 'e0002-b00000'


def resume(run, *argv):
    r = gluon_dml('train-margin', '--save-dir', run, '--resume', '--epochs', '3', *argv)
    assert 'Traceback' not in r.err, r
    return r


def ends_like(reference, run):
    assert_same_params(final_params(reference), final_params(run))
    same_rows(log_rows(reference), log_rows(run))


def _truncate(path, keep=0.5):
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(int(size * keep))


def _flip(path):
    with open(path, 'r+b') as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xff]))


DAMAGE = {
    'net.params truncated': lambda d: _truncate(os.path.join(d, 'net.params')),
    'net.params empty': lambda d: _truncate(os.path.join(d, 'net.params'), 0),
    'net.params flipped': lambda d: _flip(os.path.join(d, 'net.params')),
    'trainer.states truncated': lambda d: _truncate(os.path.join(d, 'trainer.states')),
    'loss.params truncated': lambda d: _truncate(os.path.join(d, 'loss.params')),
    'loss_trainer.states deleted': lambda d: os.remove(os.path.join(d, 'loss_trainer.states')),
    'meta.json garbled': lambda d: open(os.path.join(d, 'meta.json'), 'w').write('{"epoch": 3,'),
    'meta.json deleted': lambda d: os.remove(os.path.join(d, 'meta.json')),
    'meta.json of another checkpoint': lambda d: shutil.copy(
        os.path.join(os.path.dirname(d), OLDER, 'meta.json'), os.path.join(d, 'meta.json')),
    # a copy or sync tool that left an empty file in the folder's place: it was skipped as if
    # absent, and the run resumed from the older checkpoint without a word
    'folder replaced by an empty file': lambda d: (shutil.rmtree(d), open(d, 'wb').close()),
}
REASONS = {
    'net.params truncated': 'net.params has', 'net.params empty': 'net.params has 0 bytes',
    'net.params flipped': 'net.params does not match its checksum',
    'trainer.states truncated': 'trainer.states has', 'loss.params truncated': 'loss.params has',
    'loss_trainer.states deleted': 'loss_trainer.states is missing',
    'meta.json garbled': 'meta.json is not valid JSON', 'meta.json deleted': 'no meta.json',
    'meta.json of another checkpoint': 'meta.json says epoch 2, batch 0',
    'folder replaced by an empty file': 'it is a file of 0 bytes, not a checkpoint folder',
}


@handled
@pytest.mark.parametrize('damage', sorted(DAMAGE))
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(partial, reference, damage):
    newest = os.path.join(partial, 'checkpoints', NEWEST)
    DAMAGE[damage](newest)
    r = resume(partial)
    assert r.code == 0, r
    warning = [ln for ln in r.err.splitlines() if ln.startswith('warning: the newest checkpoint')]
    assert len(warning) == 1, r.err
    assert newest in warning[0] and REASONS[damage] in warning[0]
    assert 'resuming from the previous one, %s' % os.path.join(partial, 'checkpoints', OLDER) in warning[0]
    assert 'Resumed from %s' % os.path.join(partial, 'checkpoints', OLDER) in r.out
    ends_like(reference, partial)
    assert checkpoints(partial) == ['e0003-b00000', 'e0004-b00000']      # the damaged one is gone


@handled
def test_an_older_checkpoint_of_an_older_format_without_checksums_still_loads(partial, reference):
    for name in checkpoints(partial):
        meta_path = os.path.join(partial, 'checkpoints', name, 'meta.json')
        meta = json.load(open(meta_path))
        del meta['files']
        json.dump(meta, open(meta_path, 'w'))
    _truncate(os.path.join(partial, 'checkpoints', NEWEST, 'trainer.states'))
    r = resume(partial)
    assert r.code == 0, r
    assert 'is damaged (it cannot be loaded:' in r.err
    ends_like(reference, partial)


@error
def test_every_checkpoint_damaged_is_one_sentence(partial):
    for name in checkpoints(partial):
        _truncate(os.path.join(partial, 'checkpoints', name, 'net.params'))
    r = resume(partial)
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert r.error_lines[0].startswith('error: Every checkpoint in %s is damaged (%s: net.params has'
                                       % (os.path.join(partial, 'checkpoints'), NEWEST))
    assert '--overwrite' in r.error_lines[0]
    assert checkpoints(partial) == [OLDER, NEWEST]                   # nothing removed


POINTERS = {
    'garbled': ('\x00\x17garbage', 'is garbled'),
    'empty': ('', 'is garbled'),
    'missing': (None, 'is missing'),
    'dangling': ('e0009-b00000\n', 'names e0009-b00000, which does not exist'),
    'stale': (OLDER + '\n', None),
}


@handled
@pytest.mark.parametrize('case', sorted(POINTERS))
def test_latest_is_a_hint_the_checkpoints_are_scanned(partial, reference, case):
    """The issue: a garbled checkpoints/latest silently restarted the run from scratch and
    overwrote the good checkpoints."""
    content, said = POINTERS[case]
    pointer = os.path.join(partial, 'checkpoints', 'latest')
    if content is None:
        os.remove(pointer)
    else:
        open(pointer, 'w').write(content)
    r = resume(partial)
    assert r.code == 0, r
    assert 'Resumed from %s' % os.path.join(partial, 'checkpoints', NEWEST) in r.out
    if said:
        assert ('warning: %s/latest %s' % (os.path.join(partial, 'checkpoints'), said)) in r.err
    ends_like(reference, partial)


def _kill_between_renames(partial, complete_tmp=True):
    """What a kill between the two renames of a re-saved checkpoint leaves: the old one moved
    aside, the new one under its temporary name (whole or not), ``latest`` naming nothing."""
    d = os.path.join(partial, 'checkpoints')
    os.replace(os.path.join(d, NEWEST), os.path.join(d, '.old-%s-777' % NEWEST))
    shutil.copytree(os.path.join(d, '.old-%s-777' % NEWEST), os.path.join(d, '.tmp-%s-777' % NEWEST))
    if not complete_tmp:
        os.remove(os.path.join(d, '.tmp-%s-777' % NEWEST, 'meta.json'))


@handled
@pytest.mark.parametrize('complete', [True, False], ids=['new-one-whole', 'new-one-partial'])
def test_a_kill_between_the_two_renames_loses_nothing(partial, reference, complete):
    _kill_between_renames(partial, complete)
    r = resume(partial)
    assert r.code == 0, r
    source = '.tmp-' if complete else '.old-'
    assert 'completed the checkpoint %s from %s%s-777' % (NEWEST, source, NEWEST) in r.err
    assert 'Resumed from %s' % os.path.join(partial, 'checkpoints', NEWEST) in r.out
    ends_like(reference, partial)
    assert not [n for n in os.listdir(os.path.join(partial, 'checkpoints')) if n.startswith('.')]


@handled
def test_leftover_temporaries_are_removed(partial, reference):
    d = os.path.join(partial, 'checkpoints')
    os.makedirs(os.path.join(d, '.tmp-e0004-b00000-555'))
    open(os.path.join(d, '.tmp-e0004-b00000-555', 'net.params'), 'wb').write(b'half')
    for name in ('best.params.tmp-123', 'args.json.tmp-99'):
        open(os.path.join(partial, name), 'w').write('half')
    open(os.path.join(d, 'latest.tmp-4'), 'w').write('half')
    r = resume(partial)
    assert r.code == 0, r
    assert 'removed .tmp-e0004-b00000-555, the leftover of an interrupted write' in r.err
    left = [n for n in os.listdir(partial) + os.listdir(d) if '.tmp-' in n or n.startswith('.tmp')]
    assert left == []
    ends_like(reference, partial)


@handled
def test_a_cut_last_line_of_the_log_is_dropped_with_a_warning(partial, reference):
    """The issue: a half-written last line in log.jsonl blocked resuming until edited by hand."""
    with open(os.path.join(partial, 'log.jsonl'), 'a') as f:
        f.write('{"epoch": 3, "loss": 0.12')
    r = resume(partial)
    assert r.code == 0, r
    assert ('warning: %s: its last line (line 4) is incomplete' % os.path.join(partial, 'log.jsonl')) in r.err
    ends_like(reference, partial)


@error
def test_a_garbled_line_inside_the_log_is_named(partial):
    path = os.path.join(partial, 'log.jsonl')
    lines = open(path).read().splitlines()
    lines[1] = lines[1][:20]
    open(path, 'w').write('\n'.join(lines) + '\n')
    r = resume(partial)
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert r.error_lines[0].startswith('error: %s, line 2 is not a JSON row' % path)


@handled
def test_resuming_a_run_killed_before_its_first_checkpoint_logs_epoch_0_once(partial, reference):
    shutil.rmtree(os.path.join(partial, 'checkpoints'))
    with open(os.path.join(partial, 'log.jsonl')) as f:
        first = f.readline()
    open(os.path.join(partial, 'log.jsonl'), 'w').write(first)     # epoch 0 only
    r = resume(partial)
    assert r.code == 0, r
    assert 'no checkpoint in %s yet (a new run folder, or a run stopped before its first checkpoint), ' \
        'starting from the beginning' % os.path.join(partial, 'checkpoints') in r.out
    assert [row['epoch'] for row in log_rows(partial)] == [0, 1, 2, 3]
    ends_like(reference, partial)


@handled
def test_deleted_checkpoints_start_the_run_over_without_mixing_the_log(partial, reference):
    shutil.rmtree(os.path.join(partial, 'checkpoints'))              # log rows 0..2 stay
    r = resume(partial)
    assert r.code == 0, r
    ends_like(reference, partial)


@handled
@pytest.mark.parametrize('stop_at', [1, 2, 4, 5, 6, 9])
def test_resuming_mid_epoch_logs_each_epoch_over_all_its_batches(tmp_path, reference, stop_at):
    run = str(tmp_path / 'run')
    r = train(run, *STD, env={'GLUON_DML_FAULTS': 'step@%d:term' % stop_at})
    assert r.code == 143 and 'SIGTERM received: checkpoint saved in' in r.err, r
    r = resume(run)
    assert r.code == 0, r
    ends_like(reference, run)                     # the loss of the cut epoch over all 3 batches


@handled
def test_sigint_mid_epoch_saves_and_resumes_exactly(tmp_path, reference):
    run = str(tmp_path / 'run')
    r = train(run, *STD, env={'GLUON_DML_FAULTS': 'step@7:int'})
    assert r.code == 130 and 'SIGINT received: checkpoint saved in %s' % os.path.join(
        run, 'checkpoints', 'e0003-b00001') in r.err, r
    r = resume(run)
    assert r.code == 0, r
    ends_like(reference, run)


@handled
@pytest.mark.parametrize('every', ['1', '2', '0.001m'])
def test_checkpoint_every_changes_nothing_but_the_checkpoints(tmp_path, reference, every):
    run = str(tmp_path / 'run')
    r = train(run, *STD, '--checkpoint-every', every, env={'GLUON_DML_TRACE': str(tmp_path / 'trace')})
    assert r.code == 0, r
    ends_like(reference, run)
    saved = [ln.split() for ln in open(str(tmp_path / 'trace')) if ln.startswith('checkpoint-done')]
    if every == '1':
        assert len(saved) == 9                    # after batches 1 and 2 of each epoch, and its end
    elif every == '2':
        assert len(saved) == 6
    assert len(checkpoints(run)) == 2


VAL = ['--val-classes', '0.4', '--batch-size', '36', '--batch-k', '12']


@pytest.fixture(scope='session')
def val_reference(tmp_path_factory):
    ref = str(tmp_path_factory.mktemp('valref') / 'run')
    assert train(ref, *STD, *VAL).code == 0
    return ref


def _best(run):
    info = json.load(open(os.path.join(run, 'best.json')))
    return {k: v for k, v in info.items() if k not in ('train_time', 'eval_time', 'images_per_sec')}


def _same_file_params(a, b):
    import mxnet as mx
    x, y = mx.nd.load(a), mx.nd.load(b)
    return sorted(x) == sorted(y) and all((x[k].asnumpy() == y[k].asnumpy()).all() for k in x)


@handled
@pytest.mark.parametrize('lost', ['e0004-b00000', 'e0003-b00000,e0004-b00000'])
def test_best_params_stay_the_best_network_evaluated_after_a_resume(val_reference, copy_of, lost):
    run = copy_of(val_reference)
    for name in lost.split(','):
        shutil.rmtree(os.path.join(run, 'checkpoints', name))
    r = resume(run)
    assert r.code == 0, r
    assert json.load(open(os.path.join(run, 'best.json'))) == \
        json.load(open(os.path.join(val_reference, 'best.json')))
    assert _same_file_params(os.path.join(run, 'best.params'), os.path.join(val_reference, 'best.params'))
    ends_like(val_reference, run)


BEST_DAMAGE = {
    'best.json cut': (lambda run: open(os.path.join(run, 'best.json'), 'w').write('{"epoch": 2'),
                      'damaged or incomplete;'),
    # best.json records each file's size and CRC-32: a truncated best.params was adopted (its
    # size was not 0) and the resumed run reported a network that failed to load
    'best.params truncated': (lambda run: _truncate(os.path.join(run, 'best.params')),
                              'damaged or incomplete (best.params has '),
    'best.loss.params flipped': (lambda run: _flip(os.path.join(run, 'best.loss.params')),
                                 'damaged or incomplete (best.loss.params does not match its '
                                 'checksum);'),
}


@handled
@pytest.mark.parametrize('damage', sorted(BEST_DAMAGE))
def test_damaged_best_files_are_removed_with_a_warning_and_rebuilt(val_reference, copy_of, damage):
    run = copy_of(val_reference)
    shutil.rmtree(os.path.join(run, 'checkpoints'))          # starts over
    hurt, reason = BEST_DAMAGE[damage]
    hurt(run)
    r = resume(run)
    assert r.code == 0, r
    assert 'best.params / best.json in %s are %s' % (run, reason) in r.err, r.err
    assert _best(run) == _best(val_reference)
    assert _same_file_params(os.path.join(run, 'best.params'), os.path.join(val_reference, 'best.params'))
    ends_like(val_reference, run)


@handled
def test_resuming_a_finished_run_trains_nothing_and_says_so(copy_of, reference):
    run = copy_of(reference)
    r = resume(run)
    assert r.code == 0, r
    assert 'The run has trained all its 3 epochs: nothing left to train' in r.out
    assert 'summary: untrained -> trained' in r.out and 'Recall@1 ' in r.out
    ends_like(reference, run)


@error
def test_a_full_disk_while_checkpointing_is_one_sentence_and_keeps_the_previous(partial, reference):
    r = resume_with(partial, 'checkpoint-files@1:enospc')
    assert r.code == 2 and len(r.error_lines) == 1, r
    line = r.error_lines[0]
    assert ('error: Could not write the checkpoint e0004-b00000 in %s (No space left on device); '
            'the previous checkpoint (e0003-b00000) is intact' % os.path.join(partial, 'checkpoints')) in line
    assert checkpoints(partial) == [OLDER, NEWEST]
    assert not [n for n in os.listdir(os.path.join(partial, 'checkpoints')) if n.startswith('.tmp')]
    r = resume(partial)                          # space freed: it goes on, and ends as if nothing
    assert r.code == 0, r
    ends_like(reference, partial)


def resume_with(run, plan):
    r = gluon_dml('train-margin', '--save-dir', run, '--resume', '--epochs', '3',
                  env={'GLUON_DML_FAULTS': plan})
    assert 'Traceback' not in r.err, r
    return r


@error
def test_a_full_disk_at_the_first_checkpoint_is_one_sentence(tmp_path):
    run = str(tmp_path / 'run')
    r = train(run, *STD, env={'GLUON_DML_FAULTS': 'checkpoint-meta@1:enospc'})
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert ('Could not write the checkpoint e0002-b00000 in %s (No space left on device); there is '
            'no earlier checkpoint' % os.path.join(run, 'checkpoints')) in r.err
    assert checkpoints(run) == []
