"""Settings that cannot train are refused with one sentence saying why, before anything is
written; the ones that can train but probably should not get a warning. The batch is checked
against what the chosen loss needs (positives, negatives, classes per batch)."""
import os

import pytest

from .harness import TINY, gluon_dml

error = pytest.mark.fault('error')
handled = pytest.mark.fault('handled')

REFUSED = [
    # (flags, the sentence's start) -- the list first
    (['--batch-k', '1', '--batch-size', '60'],
     '--batch-k 1 leaves the margin loss no positive pairs'),
    (['--batch-k', '1', '--batch-size', '60', '--loss', 'triplet'],
     '--batch-k 1 leaves the triplet loss no positive pairs'),
    (['--batch-k', '1', '--batch-size', '60', '--loss', 'multi_similarity'],
     '--batch-k 1 leaves the multi_similarity loss no positive pairs'),
    (['--batch-k', '200', '--batch-size', '200'],
     '--batch-size 200 with --batch-k 200 puts 1 class in each batch, so the margin loss has no negatives'),
    (['--batch-k', '30', '--batch-size', '30', '--loss', 'contrastive'],
     '--batch-size 30 with --batch-k 30 puts 1 class in each batch, so the contrastive loss has no negatives'),
    (['--factor', '-1', '--steps', '1'], '--factor must be positive, got -1: the learning rate is '
                                         'multiplied by it at each step, so it would become negative'),
    (['--factor', '0', '--steps', '1'], '--factor must be positive, got 0'),
    (['--steps=-1'], '--steps takes the epochs (1 or more) after which the learning rate drops, got -1.'),
    (['--steps', '0,2'], '--steps takes the epochs (1 or more) after which the learning rate drops, got 0.'),
    (['--steps', 'two'], '--steps takes comma-separated integers'),
    (['--wd', '-5'], '--wd must be 0 or more, got -5: a negative weight decay makes the weights grow'),
    (['--loss-lr', '1e30'], '--loss-lr 1e+30 cannot train: a learning rate above 10 sends'),
    (['--lr', '1e30'], '--lr 1e+30 cannot train'),
    (['--lr', 'nan'], '--lr must be a finite number, got nan.'),
    (['--lr', 'inf'], '--lr must be a finite number, got inf.'),
    (['--loss-lr', '-0.1'], "--loss-lr must be positive (the learning rate of the loss's own parameters)"),
    (['--lr', '0'], '--lr must be positive, got 0.'),
    (['--momentum', '1.5'], '--momentum must lie in [0, 1), got 1.5'),
    (['--eval-batch-size', '0'], '--eval-batch-size must be a positive integer, got 0.'),
    (['--batches-per-epoch', '0'], '--batches-per-epoch must be a positive integer, got 0.'),
    (['--epochs', '0'], '--epochs must be a positive integer, got 0.'),
    (['--embed-dim', '-4'], '--embed-dim must be a positive integer, got -4.'),
    (['--num-workers', '-1'], '--num-workers must be 0 or more, got -1.'),
    (['--log-interval', '-2'], '--log-interval must be 0 or more, got -2.'),
    (['--batch-size', '50', '--batch-k', '12'], '--batch-size (50) must be a multiple of --batch-k (12)'),
    (['--nmi-runs', '0'], '--nmi-runs must be at least 1'),
    (['--eval-interval', '0'], '--eval-interval must be at least 1'),
    (['--threads', '0'], '--threads must be at least 1, got 0.'),
    (['--checkpoint-every', 'often'], "--checkpoint-every takes a number of batches (500) or of "
                                      "minutes (30m), above 0, got 'often'."),
    (['--checkpoint-every', '-3'], '--checkpoint-every takes a number of batches'),
    (['--checkpoint-every', '0m'], '--checkpoint-every takes a number of batches'),
    (['--margin', 'nan'], '--margin for the margin loss must be a finite number, got nan.'),
    (['--wd', '1e39'], "--wd is 1e+39, beyond float32's range (|x| <= 3.403e+38), in which training "
                       "computes."),                                  # trained to NaN, blamed --lr
    (['--loss', 'no_such_loss'], "Unknown loss 'no_such_loss'"),
    (['--optimizer', 'nosuch'], '--optimizer nosuch is no MXNet optimizer; known: adadelta'),
    # refused once the data or the network is built: the folder is still given back as it was
    (['--model', 'nosuch'], "Unknown backbone 'nosuch'"),
    (['--episodes', '10'], 'A 20-way episode needs 20 classes with at least shot + queries = 6 images'),
]


@error
@pytest.mark.parametrize('flags,sentence', REFUSED, ids=[' '.join(f) for f, _ in REFUSED])
def test_a_setting_that_cannot_train_is_one_sentence_and_writes_nothing(tmp_path, flags, sentence):
    run = str(tmp_path / 'run')
    r = gluon_dml('train-margin', *TINY, '--save-dir', run, *flags)
    assert r.code == 2, r
    assert len(r.error_lines) == 1 and r.err.strip().splitlines()[-1] == r.error_lines[0], r
    assert r.error_lines[0].startswith('error: ' + sentence), r.error_lines[0]
    assert 'Traceback' not in r.err
    assert not os.path.exists(run)


# the other training commands: refused before the run folder (or a data set) is made
METHOD_REFUSED = [
    ('train-vse', ['--data', 'bogus'], 'Unknown --data bogus for gluon-dml train-vse; the caption sets are: coco,'),
    ('train-vse', ['--num-layers', '0'], '--num-layers must be a positive integer, got 0.'),
    ('train-vse', ['--word-dim', '0'], '--word-dim must be a positive integer, got 0.'),
    ('train-vse', ['--max-len', '0'], '--max-len must be a positive number of tokens'),
    ('train-vse', ['--min-word-count', '0'], '--min-word-count must be at least 1, got 0.'),
    ('train-vse', ['--batch-size', '1'], '--batch-size 1: VSE++ needs at least 2 image-caption pairs'),
    ('train-vse', ['--fashion3-train', '-5'], '--fashion3-train must be a positive number of training pictures'),
    ('train-vse', ['--margin', 'nan'], '--margin must be a finite number, got nan.'),     # trained to a NaN loss
    ('train-vse', ['--fashion3-seed', '-1'], '--fashion3-seed must lie in 0 .. 2^32 - 1, got -1.'),  # numpy's words
    ('train-vse', ['--val-split', 'test'], "--val-split and --test-split are both 'test': the best "
                                           "epoch would be chosen on the split it is then tested on"),
    ('train-hash', ['--topk', '0'], '--topk takes the K of mAP@top-K, positive integers'),
    ('train-hash', ['--batch-size', '1'], '--batch-size 1: the hashing losses learn from the pairs'),
    ('train-hash', ['--loss', 'nonsense'], "Unknown loss 'nonsense'; the hashing losses are: dch, dsh, hashnet."),
    ('train-hash', ['--alpha-bits', '0'], 'Bad options for the hashnet loss: HashNet needs bits >= 1 and '
                                          'alpha_bits > 0, got 48 and 0.0.'),
    ('train-hash', ['--init-scale', 'nan'], '--init-scale must be a finite number, got nan.'),  # trained to a NaN loss
    ('train-npair', ['--loss', 'nonsense'], "Unknown loss 'nonsense'; the embedding losses are: arcface,"),
    ('train-npair', ['--l2-reg', '1e308'], "--l2-reg for the npair loss is 1e+308, beyond float32's "
                                           "range (|x| <= 3.403e+38), in which training computes."),  # trained to an inf loss, blamed --lr
    # refused after the vocabulary was written: the run files it wrote go with the folder
    ('train-vse', ['--fashion3-train', '500', '--model', 'nosuch'], "Unknown backbone 'nosuch'"),
]


@error
@pytest.mark.parametrize('command,flags,sentence', METHOD_REFUSED,
                         ids=['%s %s' % (c, ' '.join(f)) for c, f, _ in METHOD_REFUSED])
def test_settings_other_commands_cannot_train_with_are_refused(tmp_path, command, flags, sentence):
    run = str(tmp_path / 'run')
    data = ['--data', 'fashion3'] if command == 'train-vse' else ['--data', 'digits']
    r = gluon_dml(command, *data, '--epochs', '1', '--save-dir', run, '--no-progress', *flags)
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert r.error_lines[0].startswith('error: ' + sentence), r.error_lines[0]
    assert not r.error_lines[0].endswith('..')
    assert not os.path.exists(run)


@error
def test_a_run_refused_late_leaves_its_existing_folder_as_it_was(tmp_path):
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'notes.txt').write_text('mine')
    r = gluon_dml('train-margin', *TINY, '--save-dir', run, '--model', 'nosuch')
    assert r.code == 2 and "Unknown backbone 'nosuch'" in r.err, r
    assert sorted(os.listdir(run)) == ['notes.txt']
    assert gluon_dml('train-margin', *TINY, '--epochs', '1', '--save-dir', run).code == 0


PHOTO_REFUSED = [
    (['--image-size', '0'], '--image-size must be a positive number of pixels, got 0.'),
    (['--resize', '-1'], '--resize must be a positive number of pixels, got -1.'),
    (['--image-size', '64', '--resize', '32'], '--resize (32) must be at least --image-size (64)'),
    (['--color-jitter', '2'], '--color-jitter must lie in [0, 1], got 2.'),
    (['--color-jitter', 'nan'], '--color-jitter must be a finite number, got nan.'),
]


@error
@pytest.mark.parametrize('flags,sentence', PHOTO_REFUSED, ids=[' '.join(f) for f, _ in PHOTO_REFUSED])
def test_photo_settings_that_cannot_work_are_refused(tmp_path, flags, sentence):
    """The issue: --image-size 0 silently became 224."""
    run = str(tmp_path / 'run')
    r = gluon_dml('train-margin', '--data', 'folder', '--data-path', str(tmp_path), '--save-dir',
                  run, *flags)
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert r.error_lines[0].startswith('error: ' + sentence), r.error_lines[0]
    assert not os.path.exists(run)


@error
def test_batch_k_above_every_class_is_refused_with_the_largest_class(tmp_path):
    run = str(tmp_path / 'run')
    r = gluon_dml('train-margin', *TINY, '--save-dir', run, '--batch-k', '190', '--batch-size', '380')
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert r.error_lines[0].startswith('error: batch_k (--batch-k) 190 is above the size of every '
                                       'class (the largest has ')
    assert 'use --batch-k' in r.error_lines[0]
    assert not os.path.exists(run)               # the folder it made is gone: no run files


@error
def test_more_classes_per_batch_than_the_data_has_is_refused(tmp_path):
    run = str(tmp_path / 'runs' / 'margin' / 'run')
    r = gluon_dml('train-margin', *TINY, '--save-dir', run, '--batch-k', '2', '--batch-size', '20')
    assert r.code == 2 and len(r.error_lines) == 1, r
    assert 'needs 10 distinct classes, but the labels hold only 5' in r.error_lines[0]
    assert os.listdir(tmp_path) == []            # the folders it made are gone, parents too
    # a parent that held something before stays, with what it held
    (tmp_path / 'runs').mkdir()
    (tmp_path / 'runs' / 'notes.txt').write_text('mine')
    r = gluon_dml('train-margin', *TINY, '--save-dir', run, '--batch-k', '2', '--batch-size', '20')
    assert r.code == 2 and os.listdir(tmp_path / 'runs') == ['notes.txt']


@handled
@pytest.mark.parametrize('loss', ['proxy_nca', 'proxy_anchor', 'arcface', 'cosface', 'triplet_center'])
def test_a_proxy_loss_trains_with_one_image_per_class(tmp_path, loss):
    """Needs no positive pair in the batch: --batch-k 1 is accepted, and it learns."""
    run = str(tmp_path / 'run')
    r = gluon_dml('train-margin', *TINY, '--save-dir', run, '--loss', loss, '--batch-k', '1',
                  '--batch-size', '5', '--epochs', '1', '--batches-per-epoch', '2')
    assert r.code == 0, r
    assert 'error' not in r.err


WARNED = [
    (['--factor', '2', '--steps', '1'], '--factor 2 raises the learning rate at each step'),
    (['--steps', '5', '--epochs', '2'], '--steps 5 has no effect: the run ends after epoch 2'),
    (['--factor', '0.5'], '--factor has no effect without --steps'),
    (['--momentum', '0.5'], '--momentum has no effect with --optimizer adam'),
]


@handled
@pytest.mark.parametrize('flags,sentence', WARNED, ids=[' '.join(f) for f, _ in WARNED])
def test_a_setting_that_can_train_but_likely_should_not_is_a_warning(flags, sentence):
    from gluon_dml import cli
    import io
    stream = io.StringIO()
    cli.parse('margin', TINY + flags, stream=stream)
    assert ('warning: ' + sentence) in stream.getvalue()
