"""Every error a user can cause is one line naming the file or flag, exit code 2; no traceback
from MXNet, faiss, pickle or the OS without GLUON_DML_DEBUG=1."""
import errno
import json
import os

import numpy as np
import pytest

from .conftest import STD, files_of
from .harness import TINY, gluon_dml, train

error = pytest.mark.fault('error')
handled = pytest.mark.fault('handled')


def one_error(r, start):
    assert r.code == 2, r
    assert len(r.error_lines) == 1 and r.err.strip().splitlines()[-1] == r.error_lines[0], r
    assert r.error_lines[0].startswith('error: ' + start), r.error_lines[0]
    assert 'Traceback' not in r.err
    return r.error_lines[0]


@pytest.fixture(scope='session')
def hash_run(tmp_path_factory):
    run = str(tmp_path_factory.mktemp('hash') / 'run')
    r = gluon_dml('train-hash', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '2',
                  '--bits', '16', '--no-progress', '--save-dir', run)
    assert r.code == 0, r
    codes = os.path.join(run, 'codes.npz')
    assert os.path.exists(codes)
    return run


# -- the run folder ---------------------------------------------------------------------------

@error
def test_save_dir_that_is_a_file(tmp_path):
    path = tmp_path / 'afile'
    path.write_text('x')
    one_error(train(str(path)), '--save-dir %s is a file, not a folder; choose another --save-dir.' % path)
    assert path.read_text() == 'x'


@error
def test_save_dir_under_a_file(tmp_path):
    path = tmp_path / 'afile'
    path.write_text('x')
    one_error(train(str(path / 'run')), '--save-dir %s cannot be created: %s is a file, not a folder.'
              % (path / 'run', path))


@error
def test_save_dir_that_cannot_be_written(tmp_path, monkeypatch):
    run = tmp_path / 'ro'
    run.mkdir()
    real_open = open

    def refuse(path, *args, **kwargs):            # root passes every permission check: simulate
        if str(path).startswith(str(run)) and any(m in (args[0] if args else kwargs.get('mode', 'r'))
                                                 for m in 'wa'):
            raise PermissionError(errno.EACCES, 'Permission denied', str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr('builtins.open', refuse)
    one_error(train(str(run)), '--save-dir %s cannot be written: Permission denied.' % run)


@error
def test_a_full_disk_while_writing_the_log(tmp_path, monkeypatch):
    from gluon_dml.engine import logger
    run = str(tmp_path / 'run')

    def full(self, epoch, values):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(logger.Logger, 'log_epoch', full)
    one_error(train(run, '--epochs', '1'), 'Cannot write %s (No space left on device)'
              % os.path.join(run, 'log.jsonl'))


@handled
def test_a_topk_beyond_the_database_is_a_warning(tmp_path):
    """train-hash --topk larger than the database trains, and says that the mAP@top-K is then
    the mAP over the whole database (it was accepted without a word)."""
    run = str(tmp_path / 'run')
    r = gluon_dml('train-hash', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '1',
                  '--bits', '16', '--topk', '1000,100000', '--no-progress', '--save-dir', run)
    assert r.code == 0, r
    assert ('warning: --topk 100000: the database holds 1497 images, so mAP@top-100000 is the mAP '
            'over the whole database.') in r.err, r.err
    assert r.err.count('warning: --topk') == 1
    r = gluon_dml('train-hash', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '1',
                  '--bits', '16', '--no-progress', '--save-dir', str(tmp_path / 'run2'))
    assert r.code == 0 and 'warning: --topk' not in r.err, r


@handled
def test_debug_shows_the_traceback(tmp_path):
    path = tmp_path / 'afile'
    path.write_text('x')
    with pytest.raises(Exception, match='is a file, not a folder'):
        from gluon_dml.commands import main
        os.environ['GLUON_DML_DEBUG'] = '1'
        try:
            main(['train-margin', *TINY, '--save-dir', str(path)])
        finally:
            del os.environ['GLUON_DML_DEBUG']
            from gluon_dml.engine import rundir
            rundir.release_locks()


@error
def test_an_unexpected_error_is_one_line_that_says_it_is_a_bug(tmp_path, monkeypatch):
    from gluon_dml.methods import embedding

    def boom(self, args, data):
        raise RuntimeError('an internal failure\n  with a second line')
    monkeypatch.setattr(embedding.EmbeddingMethod, 'build_sampler', boom)
    r = train(str(tmp_path / 'run'))
    assert r.code == 1 and r.error_lines == [
        'error: unexpected RuntimeError: an internal failure (a bug? GLUON_DML_DEBUG=1 shows the '
        'traceback; please report it).'], r


# -- evaluate, embed ----------------------------------------------------------------------------

@error
def test_evaluate_a_run_whose_args_json_does_not_fit_its_parameters(reference, copy_of):
    run = copy_of(reference)
    args = json.load(open(os.path.join(run, 'args.json')))
    json.dump(dict(args, embed_dim=32), open(os.path.join(run, 'args.json'), 'w'))
    line = one_error(gluon_dml('evaluate', run), '%s' % os.path.join(run, 'checkpoints'))
    assert 'does not fit the network that %s/args.json describes (smallconv, embed_dim 32)' % run in line


@error
@pytest.mark.parametrize('content', ['', '{"model": ', '\x00\x00'])
def test_evaluate_a_run_with_a_garbled_args_json(reference, copy_of, content):
    run = copy_of(reference)
    open(os.path.join(run, 'args.json'), 'w').write(content)
    line = one_error(gluon_dml('evaluate', run), '%s/args.json is not valid JSON' % run)
    assert 'the run folder is damaged' in line


@error
def test_evaluate_a_run_whose_args_json_lacks_a_setting(reference, copy_of):
    run = copy_of(reference)
    args = json.load(open(os.path.join(run, 'args.json')))
    del args['embed_dim']
    json.dump(args, open(os.path.join(run, 'args.json'), 'w'))
    one_error(gluon_dml('evaluate', run), "%s/args.json lacks the setting 'embed_dim'" % run)


@handled
def test_evaluate_uses_the_newest_whole_checkpoint(reference, copy_of):
    run = copy_of(reference)
    newest = sorted(os.listdir(os.path.join(run, 'checkpoints')))[-2]   # e0004 (before 'latest')
    open(os.path.join(run, 'checkpoints', newest, 'meta.json'), 'w').write('garbled')
    r = gluon_dml('evaluate', run, '--nmi-runs', '1')
    assert r.code == 0, r
    assert os.path.join(run, 'checkpoints', 'e0003-b00000', 'net.params') in r.out


@error
@pytest.mark.parametrize('command', ['evaluate', 'embed'])
def test_a_batch_size_of_zero_is_refused(reference, command):
    r = gluon_dml(command, reference, '--batch-size', '0', '--out', 'x.npz', '--images', reference)
    assert r.code == 2 and 'argument --batch-size/--batch_size: expected a positive integer, got 0' in r.err
    assert 'Traceback' not in r.err


@error
@pytest.mark.parametrize('command,flag,given', [
    ('evaluate', '--out', 'folder'), ('evaluate', '--save-embeddings', 'folder'),
    ('embed', '--out', 'folder'), ('embed', '--out', 'empty'),
    ('tsne', '--out', 'folder'), ('tsne', '--out', 'under a file'),
    ('search-codes', '--out', 'folder'), ('search-codes', '--out', 'under a file'),
    ('search-text', '--grid', 'folder'), ('hash-baselines', '--out', 'folder'),
])
def test_an_output_file_that_cannot_be_one(reference, hash_run, tmp_path, monkeypatch, command,
                                           flag, given):
    # refused before any work, nothing written: --save-embeddings FOLDER wrote FOLDER.npz beside
    # it, embed --out '' a file ".npz"; tsne, search-codes, search-text --grid and hash-baselines
    # failed after the work with the OS's words ("Is a directory (FOLDER.part.png)"), or wrote
    # FOLDER.npz (search-codes)
    folder = tmp_path / 'outputs'
    folder.mkdir()
    monkeypatch.chdir(folder)                        # where a file '.npz' was written
    afile = tmp_path / 'afile'
    afile.write_text('x')
    path = {'folder': str(folder), 'empty': '', 'under a file': str(afile / ('out.npz' if command == 'search-codes' else 'out.png'))}[given]
    argv = {'embed': [reference, '--images', os.path.join(reference, 'args.json')],
            'search-codes': [hash_run, '--k', '3'], 'search-text': [reference, 'a shirt'],
            'hash-baselines': ['--data', 'digits', '--bits', '8']}.get(command, [reference])
    start = {'folder': '%s %s is a folder; give a file name.' % (flag, path),
             'empty': '%s is empty; give a file name.' % flag,
             'under a file': '%s %s: its folder %s cannot be made' % (flag, path, afile)}[given]
    r = gluon_dml(command, *argv, flag, path)
    one_error(r, start)
    assert sorted(os.listdir(tmp_path)) == ['afile', 'outputs'] and os.listdir(folder) == []
    assert 'written' not in r.out


@error
@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='no /proc (a folder taking no file)')
@pytest.mark.parametrize('command,flag', [('evaluate', '--out'), ('evaluate', '--save-embeddings'),
                                          ('tsne', '--out'), ('embed', '--out')])
def test_an_output_folder_that_takes_no_file(reference, command, flag):
    # root passes every permission check, so /proc stands for a read-only folder: the command
    # worked, then failed with the OS's words naming a temporary ('/proc/x.json.tmp-123')
    argv = [reference, '--images', os.path.join(reference, 'args.json')] if command == 'embed' \
        else [reference]
    r = gluon_dml(command, *argv, flag, '/proc/x.npz')
    one_error(r, '%s /proc/x.npz cannot be written: its folder /proc takes no file' % flag)
    assert 'num_queries' not in r.out and 'embed:' not in r.err


@error
@pytest.mark.parametrize('given,start', [
    ('a file', '--out {out} is a file, not a folder; choose another --out.'),
    ('under a file', '--out {out} cannot be created: {afile} is a file, not a folder.'),
    ('empty', '--out is empty; give the catalogue folder.'),
])
def test_index_out_that_cannot_be_a_catalogue(reference, tmp_path, monkeypatch, given, start):
    # the OS's words came from the first write after the run was opened: "Not a directory
    # (FILE/cat)", "File exists (FILE)", "[Errno 2] No such file or directory: ''"
    monkeypatch.chdir(tmp_path)
    afile = tmp_path / 'afile'
    afile.write_text('x')
    out = {'a file': str(afile), 'under a file': str(afile / 'cat'), 'empty': ''}[given]
    one_error(gluon_dml('index', reference, '--images', os.path.join(reference, 'args.json'),
                        '--out', out, '--no-progress'), start.format(out=out, afile=afile))
    assert sorted(os.listdir(tmp_path)) == ['afile'] and afile.read_text() == 'x'


@error
@pytest.mark.parametrize('flags,start', [
    (['--perplexity', '0'], '--perplexity must be a positive number'),
    (['--perplexity', 'nan'], '--perplexity must be a positive number'),
    (['--seed', '-1'], '--seed must lie in 0 .. 2^32 - 1, got -1.'),     # numpy's words, no flag
    (['--out', 'x.txt'], '--out x.txt: .txt is no image format'),  # matplotlib's, after the t-SNE
    (['--method', 'vse'], '%s is a train-vse run: tsne maps the images of a split coloured by class'),
])
def test_tsne_refuses_before_the_embedding(reference, copy_of, flags, start):
    # sklearn's "The 'perplexity' parameter of TSNE must be a float in the range (0.0, inf)" came
    # after the embedding; a VSE run gave "Unknown dataset 'fashion3'"
    run = reference
    if flags[0] == '--method':                       # a VSE run's record, as far as tsne reads it
        run = copy_of(reference)
        args = json.load(open(os.path.join(run, 'args.json')))
        json.dump(dict(args, method='vse', data='fashion3'), open(os.path.join(run, 'args.json'), 'w'))
        flags, start = [], start % run
    one_error(gluon_dml('tsne', run, '--points', '50', *flags), start)
    assert not os.path.exists(os.path.join(run, 'plots', 'tsne_test.png'))


@error
@pytest.mark.parametrize('flags,start', [
    (['--bits', '0'], '--bits takes code lengths of 1 bit or more'),
    (['--bits', '16,-8'], '--bits takes code lengths of 1 bit or more'),
    (['--methods', ''], '--methods names no baseline'),
    (['--methods', 'lsh,itqq'], "Unknown hashing baseline 'itqq'"),
])
def test_hash_baselines_refuses_before_fitting(flags, start):
    # --bits 0 gave numpy's "zero-size array to reduction operation", -8 "negative dimensions are
    # not allowed", --methods '' printed nothing and exited 0, an unknown name came after the others
    r = gluon_dml('hash-baselines', '--data', 'digits', *flags)
    one_error(r, start)
    assert 'mAP' not in r.out


@error
@pytest.mark.parametrize('ks', ['', '0', '1,-2'])
def test_evaluate_refuses_ks_that_are_not_positive_before_the_embedding(reference, ks):
    # after the embedding: 'max() arg is an empty sequence', 'ks must contain only positive ...'
    r = gluon_dml('evaluate', reference, '--ks', ks, '--no-progress')
    one_error(r, '--ks takes positive integers such as "1,2,4,8", got %r.' % ks)
    assert 'network:' not in r.out


@error
def test_evaluate_refuses_episodes_the_split_cannot_give_before_the_embedding(reference, monkeypatch):
    # refused only after the whole split was embedded (the same sentence)
    from gluon_dml.methods.base import TrainedRun
    embedded = []
    real = TrainedRun.embed
    monkeypatch.setattr(TrainedRun, 'embed', lambda self, *a, **k: embedded.append(1) or real(self, *a, **k))
    r = gluon_dml('evaluate', reference, '--episodes', '5', '--way', '50', '--no-progress')
    one_error(r, 'A 50-way episode needs 50 classes with at least shot + queries = 6 images')
    assert embedded == []


@error
@pytest.mark.parametrize('command', ['evaluate', 'embed'])
def test_a_full_disk_while_writing_embeddings_keeps_the_file_that_was_there(reference, tmp_path,
                                                                            command):
    # np.savez wrote the file in place: a full disk left a cut .npz (not a zip file) where the
    # previous one was. Files are limited to 64 KiB: the metrics JSON fits, the embeddings do not
    out = tmp_path / 'emb.npz'
    out.write_bytes(b'the previous embeddings')
    images = tmp_path / 'images.txt'       # the digits test images, as one image list
    argv = [reference, '--save-embeddings', out, '--out', tmp_path / 'm.json'] \
        if command == 'evaluate' else [reference, '--images', images, '--out', out]
    if command == 'embed':
        from PIL import Image
        for i in range(300):
            Image.fromarray(np.full((8, 8), i % 255, np.uint8)).save(str(tmp_path / ('%d.png' % i)))
        images.write_text(''.join('%s\n' % (tmp_path / ('%d.png' % i)) for i in range(300)))
    proc = _limited([command, '--no-progress'] + argv, 1 << 16)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == \
        'error: File too large (%s).' % out, proc.stderr
    assert 'Traceback' not in proc.stderr and 'Exception ignored' not in proc.stderr
    assert out.read_bytes() == b'the previous embeddings'
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith('emb.npz')][1:]


def _limited(argv, limit):
    """``python -m gluon_dml ARGV`` with files limited to ``limit`` bytes (RLIMIT_FSIZE: a real
    'File too large' from the OS; Python ignores SIGXFSZ), set by helpers.exec_after."""
    import subprocess
    import sys
    from ..helpers import REPO, exec_after, script_env
    return subprocess.run(exec_after('import resource; resource.setrlimit(resource.RLIMIT_FSIZE, '
                                     '(%d, %d))' % (limit, limit),
                                     [sys.executable, '-m', 'gluon_dml'] + list(argv)),
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env=script_env(OMP_NUM_THREADS='1'))


@error
@pytest.mark.parametrize('command', ['tsne', 'evaluate'])
def test_a_full_disk_while_writing_a_plot_or_the_metrics_names_the_file(reference, tmp_path,
                                                                        command):
    # 'error: File too large.' named no file, and tsne left OUT.part.png behind
    out = tmp_path / ('t.png' if command == 'tsne' else 'm.json')
    proc = _limited([command, reference, '--out', out] + (['--points', '50'] if command == 'tsne'
                                                          else ['--no-progress']), 256)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == \
        'error: File too large (%s).' % out, proc.stderr
    assert os.listdir(str(tmp_path)) == []


@error
@pytest.mark.parametrize('command', ['evaluate', 'tsne'])
def test_a_read_only_run_folder_is_refused_before_the_work_without_out(reference, copy_of,
                                                                        monkeypatch, command):
    # the work was done, then 'Read-only file system (RUN/eval-test.json)'. Root passes every
    # permission check, so the read-only disk is simulated: no file may be made in the run folder
    run = copy_of(reference)
    real_open = open

    def read_only(path, *args, **kwargs):
        if str(path).startswith(run) and any(m in (args[0] if args else kwargs.get('mode', 'r'))
                                             for m in 'wax'):
            raise OSError(errno.EROFS, 'Read-only file system', str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr('builtins.open', read_only)
    r = gluon_dml(command, run, '--points', '30') if command == 'tsne' else gluon_dml(command, run)
    one_error(r, '%s takes no file (Read-only file system), and the %s goes there by default: '
                 'give --out FILE.' % (run, 'metrics JSON' if command == 'evaluate' else 'map'))
    assert 'network:' not in r.out


@handled
def test_tsne_writes_the_format_its_out_names(reference, tmp_path):
    # --out map.svg held a PNG (written as map.svg.part.png, then renamed)
    r = gluon_dml('tsne', reference, '--points', '30', '--out', tmp_path / 'map.svg')
    assert r.code == 0, r
    assert (tmp_path / 'map.svg').read_bytes().startswith(b'<?xml')


@error
@pytest.mark.parametrize('given', ['one file twice', 'the run record'])
def test_evaluate_outputs_that_would_overwrite_one_another_or_the_run(reference, copy_of, tmp_path,
                                                                       given):
    # the metrics JSON was overwritten by the embeddings (both 'written: X'); --out RUN/args.json
    # replaced the record, and the run could not be opened again ("lacks the setting 'model'")
    run = copy_of(reference)
    before = files_of(run)
    if given == 'one file twice':
        same = str(tmp_path / 'x.npz')
        r = gluon_dml('evaluate', run, '--out', same, '--save-embeddings', same)
        one_error(r, '--out and --save-embeddings name one file, %s; give each its own.' % same)
    else:
        path = os.path.join(run, 'args.json')
        one_error(gluon_dml('evaluate', run, '--out', path),
                  '--out %s is a file of the run itself; choose another name.' % path)
    assert files_of(run) == before


@error
def test_evaluate_a_folder_that_is_not_a_run(tmp_path):
    one_error(gluon_dml('evaluate', str(tmp_path)), '%s is not a run folder: it has no args.json' % tmp_path)


# -- search-codes -----------------------------------------------------------------------------

@error
def test_search_codes_with_more_lists_than_codes(hash_run):
    one_error(gluon_dml('search-codes', hash_run, '--index', 'ivf', '--nlist', '100000'),
              '--nlist 100000 is more lists than the ')


@error
@pytest.mark.parametrize('flags,start', [
    (['--index', 'ivf', '--nprobe', '0'], '--nprobe must be at least 1 for --index ivf'),
    (['--index', 'hash', '--nprobe', '-1'], '--nprobe must be 0 or more for --index hash'),
    (['--index', 'hash', '--hash-bits', '40'], '--hash-bits must lie in 1..16'),
    (['--index', 'ivf', '--nlist', '0'], '--nlist must be a positive number of lists, got 0.'),
    (['--k', '0'], '--k must be a positive integer, got 0.'),
])
def test_search_codes_index_flags(hash_run, flags, start):
    one_error(gluon_dml('search-codes', hash_run, *flags), start)


@error
def test_search_codes_with_codes_of_another_length(hash_run, tmp_path):
    from gluon_dml.index import save_codes
    other = str(tmp_path / 'codes32.npz')
    rng = np.random.RandomState(0)
    save_codes(other, np.sign(rng.randn(5, 32)), np.arange(5), np.sign(rng.randn(9, 32)), np.arange(9))
    for flag in ('--queries', '--db'):
        one_error(gluon_dml('search-codes', hash_run, flag, other),
                  '%s holds 32-bit codes but the run makes 16-bit codes' % other)


@error
@pytest.mark.parametrize('content', [b'this is text, not an npz', b'PK\x03\x04broken zip', b''])
def test_search_codes_with_a_file_that_is_not_codes(hash_run, tmp_path, content):
    path = tmp_path / 'codes.npz'
    path.write_bytes(content)
    one_error(gluon_dml('search-codes', hash_run, '--queries', str(path)),
              '%s is not a codes .npz file' % path)


@error
def test_search_codes_with_an_npz_of_other_arrays(hash_run, tmp_path):
    path = str(tmp_path / 'other.npz')
    np.savez(path, x=np.zeros(3))
    one_error(gluon_dml('search-codes', hash_run, '--queries', path),
              '%s holds no query_codes' % path)


@error
def test_search_codes_with_a_missing_file(hash_run, tmp_path):
    one_error(gluon_dml('search-codes', hash_run, '--db', str(tmp_path / 'nope.npz')),
              '%s does not exist' % (tmp_path / 'nope.npz'))


@error
@pytest.mark.parametrize('flags,start', [
    (['--queries', 'nosuch'], '--queries nosuch is not a split of digits (train, database, query), '
                              'a codes .npz, an image, a folder or a list file.'),
    (['--db', 'nosuch'], '--db nosuch is not a split of digits (train, database, query), a codes .npz.'),
    (['--queries', 'missing.npz'], 'missing.npz does not exist (--queries: '),
])
def test_search_codes_refuses_before_encoding_the_database(hash_run, flags, start):
    # these were refused only after the database split was encoded (or, for --queries nosuch,
    # with list_images's words); the encoding's progress bar shows whether it ran
    r = gluon_dml('search-codes', hash_run, *flags)
    one_error(r, start)
    assert 'encode database' not in r.err, r.err


@handled
def test_search_codes_works_on_the_run_codes(hash_run):
    codes = os.path.join(hash_run, 'codes.npz')
    r = gluon_dml('search-codes', hash_run, '--db', codes, '--queries', codes, '--index', 'ivf',
                  '--nlist', '4', '--nprobe', '2', '--k', '5')
    assert r.code == 0, r
    assert 'precision@5' in r.out


@error
def test_int8_codes_are_refused_not_written_under_the_float32_record(hash_run, tmp_path):
    """A codes file records the SHA-256 of the float32 parameters that wrote it: INT8 codes
    under that record would pass search-codes' check as the float32 network's. --int8 is for the
    image networks of embedding runs; a hashing run refuses it before anything is written."""
    before = files_of(hash_run)
    out = tmp_path / 'codes.npz'
    one_error(gluon_dml('evaluate', hash_run, '--int8', '--save-codes', str(out)),
              '--int8 quantizes the image network of an embedding run (train-margin, '
              'train-npair); %s is a hash run.' % hash_run)
    assert not out.exists() and files_of(hash_run) == before


@error
def test_a_hashing_run_is_not_resumed_by_the_margin_script(hash_run):
    before = files_of(hash_run)
    one_error(gluon_dml('train-margin', '--save-dir', hash_run, '--resume'),
              '%s holds a hash run (made with train_hash.py)' % hash_run)
    assert files_of(hash_run) == before
