"""train_hash.py end to end on digits: training improves mAP, packed codes, evaluate.py
--save-codes, eval/search.py, exact --resume of the continuation schedule, clear errors."""
import json
import os
import re
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from gluon_dml.engine import CheckpointManager, read_log
from gluon_dml.index import load_codes
from gluon_dml.metrics.hashing import hamming_map

from ..helpers import run_script, script_env, with_sigint

TINY = ['--data', 'digits', '--bits', '16', '--no-progress']


def test_bad_flags_are_clear_errors(tmp_path):
    from gluon_dml.cli import train
    from gluon_dml.errors import UserError
    with pytest.raises(UserError, match='gluon-dml train-hash trains a hashing loss'):
        train('hash', TINY + ['--loss', 'margin', '--save-dir', str(tmp_path / 'a')])
    with pytest.raises(UserError, match='Unknown dataset .omniglot. for the hashing protocol'):
        train('hash', ['--data', 'omniglot', '--save-dir', str(tmp_path / 'b')])
    with pytest.raises(UserError, match='--bits must be a positive integer'):
        train('hash', TINY + ['--bits', '0', '--save-dir', str(tmp_path / 'c')])
    # as a user sees it: one line, exit code 2
    proc = run_script('train_hash.py', *TINY, '--loss', 'margin', '--save-dir', tmp_path / 'd')
    assert proc.returncode == 2 and proc.stderr.strip().startswith('error: gluon-dml train-hash trains')
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_training_improves_map_and_codes_are_saved_searched_and_evaluated(tmp_path):
    run = tmp_path / 'run'
    run_script('train_hash.py', *TINY, '--epochs', '8', '--scale-step', '20', '--save-dir', run,
               check=True)
    log = read_log(str(run))
    assert [r['epoch'] for r in log] == list(range(9))
    assert log[-1]['map'] > log[0]['map'] + 0.4, (log[0]['map'], log[-1]['map'])
    assert log[-1]['bit_balance'] < log[0]['bit_balance']
    assert log[-1]['scale'] > 1.0                       # the continuation moved
    args = json.load(open(run / 'args.json'))
    assert args['method'] == 'hash' and args['bits'] == 16 and args['loss'] == 'hashnet'

    # the packed codes of the final network, with ids: the same mAP as the best epoch's
    c = load_codes(str(run / 'codes.npz'))
    assert c['db_codes'].dtype == np.uint8 and c['db_codes'].shape == (1497, 2)
    assert c['query_codes'].shape == (300, 2) and c['bits'] == 16
    np.testing.assert_array_equal(c['db_ids'], np.arange(1497))
    best = log[-1]                      # the final network's epoch (queries are test data)
    m = hamming_map(c['query_codes'], c['db_codes'], c['query_labels'], c['db_labels'], bits=16)
    assert m == pytest.approx(best['map'], abs=1e-6)

    # eval/evaluate.py --save-codes: the four arrays of the issue, same metrics
    out = tmp_path / 'codes.npz'
    run_script('eval/evaluate.py', run, '--save-codes', out, check=True)
    with np.load(str(out)) as f:
        assert {'query_codes', 'query_labels', 'db_codes', 'db_labels'} <= set(f.files)
        assert f['db_codes'].dtype == np.uint8
        np.testing.assert_array_equal(f['db_codes'], c['db_codes'])
    ev = json.load(open(run / 'eval-hash.json'))
    assert ev['map'] == pytest.approx(best['map'], abs=1e-6)
    assert len(ev['pr_curve']['precision']) == 17 and ev['pr_curve']['recall'][-1] == pytest.approx(1.0)

    # eval/search.py with each faiss index, queries from the split and from the codes file
    for index, flags in (('flat', []), ('ivf', ['--nlist', '8']), ('hash', [])):
        proc = run_script('eval/search.py', run, '--index', index, '--k', '10', *flags,
                          '--out', tmp_path / ('hits-%s.npz' % index), check=True)
        assert 'queries/s' in proc.stdout and 'precision@10' in proc.stdout
    hits = np.load(str(tmp_path / 'hits-flat.npz'))
    assert hits['ids'].shape == (300, 10) and hits['ids'].min() >= 0
    proc = run_script('eval/search.py', run, '--queries', out, '--k', '5', check=True)
    assert 'precision@5' in proc.stdout
    # image queries: each one's nearest codes are printed; an unreadable image is left out
    from PIL import Image
    from sklearn.datasets import load_digits
    pics = tmp_path / 'pics'
    pics.mkdir()
    Image.fromarray((load_digits().images[7] * 16).clip(0, 255).astype(np.uint8)).save(
        str(pics / 'seven.png'))
    (pics / 'broken.png').write_bytes(b'no image')
    proc = run_script('eval/search.py', run, '--queries', pics, '--k', '3', check=True)
    lines = proc.stdout.splitlines()
    assert any(l.startswith('skipped: %s (cannot decode: ' % (pics / 'broken.png')) for l in lines)
    shown = [l for l in lines if l.startswith('%s: ' % (pics / 'seven.png'))]
    assert len(shown) == 1 and len(re.findall(r'\d+ \(\d+ bits, label \d+\)', shown[0])) == 3, lines

    # evaluate flags that do not apply to a hashing run are refused, before any work
    for flags, said in ((['--split', 'train'], '--split train: a hashing run is evaluated on its protocol'),
                        (['--episodes', '10'], '--episodes is for the embedding runs'),
                        (['--save-codes', tmp_path / 'codes.npz' / 'x'], '--save-codes')):
        bad = run_script('eval/evaluate.py', run, *flags)
        assert bad.returncode == 2 and said in bad.stderr and 'Traceback' not in bad.stderr, bad.stderr


@pytest.mark.slow
def test_resume_continues_the_scale_schedule_exactly(tmp_path):
    common = TINY + ['--epochs', '2', '--batches-per-epoch', '4', '--scale-step', '1',
                     '--scale-gamma', '0.5', '--loss', 'dch']
    full = tmp_path / 'full'
    run_script('train_hash.py', *common, '--save-dir', full, check=True)
    part = tmp_path / 'part'
    first = [a if a != '2' else '1' for a in common]           # --epochs 1
    run_script('train_hash.py', *first, '--save-dir', part, check=True)
    run_script('train_hash.py', *common, '--save-dir', part, '--resume', check=True)
    a = mx.nd.load(os.path.join(CheckpointManager(str(full)).latest(), 'net.params'))
    b = mx.nd.load(os.path.join(CheckpointManager(str(part)).latest(), 'net.params'))
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(a[k].asnumpy(), b[k].asnumpy(), rtol=1e-5, atol=1e-6)
    scale = [v for k, v in a.items() if k.endswith('scale')][0].asscalar()
    assert scale == pytest.approx(np.sqrt(1 + 0.5 * 7))       # set before the 8th step
    meta = CheckpointManager.meta(CheckpointManager(str(part)).latest())
    assert meta['iteration'] == 8


def test_multi_label_data_train_through_the_engine(tmp_path):
    """Multi-hot labels (NUS-WIDE / COCO style) go through HashEngine and the metrics unchanged."""
    from gluon_dml.data import ShuffledBatchSampler
    from gluon_dml.data.hashing import MultiLabelDataset
    from gluon_dml.engine import EngineConfig, Logger
    from gluon_dml.methods.hashing import HashEngine, HashEvaluator
    from gluon_dml.losses import get_loss
    from gluon_dml.models.hashing import ScaleSchedule, get_hash_model
    rng = np.random.RandomState(0)
    labels = (rng.rand(64, 5) < 0.3).astype(np.float32)
    labels[np.arange(64), rng.randint(0, 5, 64)] = 1
    # images: each label lights one 8x8 quadrant-ish pattern, plus noise
    patterns = rng.rand(5, 1, 8, 8)
    images = np.clip(np.einsum('nc,cxyz->nxyz', labels, patterns) / 3 + 0.1 * rng.rand(64, 1, 8, 8), 0, 1)
    data = MultiLabelDataset(images, labels)
    net = get_hash_model('smallconv', 8)
    loss = get_loss('hashnet', embed_dim=8)
    loss.initialize()
    evaluator = HashEvaluator(data, data, topk=(10,))
    engine = HashEngine(net, loss, data, ShuffledBatchSampler(64, 16, seed=0), evaluator,
                        str(tmp_path), [mx.cpu()],
                        EngineConfig(epochs=2, best_metric='map', progress=False),
                        logger=Logger(str(tmp_path)), schedule=ScaleSchedule(step_size=2),
                        num_classes=5)
    metrics = engine.fit()
    assert engine.iteration == 8
    assert 0 < metrics['map'] <= 1 and 'precision@r2' in metrics and 'map@10' in metrics
    log = read_log(str(tmp_path))
    assert [r['epoch'] for r in log] == [0, 1, 2]
    # the scale set before the 4th and the 8th steps (iterations 3 and 7: schedule steps 2 and 6)
    assert log[1]['scale'] == pytest.approx(np.sqrt(1 + 0.005 * 2))
    assert log[2]['scale'] == pytest.approx(np.sqrt(1 + 0.005 * 6))


def test_hash_baselines_command_writes_each_method_and_takes_threads(tmp_path):
    """hashing.md repeats its baseline numbers with --threads 1: the command takes the flag (it
    was refused as an unrecognised argument) and writes one row per method and length."""
    out = tmp_path / 'b.json'
    proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'hash-baselines', '--data', 'digits',
                           '--bits', '16', '--methods', 'lsh,itq', '--threads', '1', '--out',
                           str(out)], capture_output=True, text=True, env=script_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert [(r['method'], r['bits'], r['data']) for r in rows] == [('lsh', 16, 'digits'),
                                                                   ('itq', 16, 'digits')]
    assert rows[1]['map'] > rows[0]['map'] > 0.2        # 5 classes: chance is about 0.2


def test_hash_baselines_refuses_itq_bits_and_a_seed_before_any_fitting(tmp_path):
    """--bits 16,65 fitted LSH at both lengths and ITQ at 16, then stopped on ITQ at 65 bits
    (digits has 64 pixels) with nothing written; --seed -1 was numpy's "Seed must be between 0
    and 2**32 - 1", naming no flag. Both are refused before the first baseline is fitted."""
    out = tmp_path / 'b.json'
    for flags, said in ((['--bits', '16,65', '--methods', 'lsh,ITQ'],
                         'error: --bits 65: ITQ makes at most 64 bits on digits (one per pixel of '
                         'its images); use shorter codes, or --methods lsh.'),
                        (['--bits', '16', '--seed', '-1'],
                         'error: --seed must lie in 0 .. 2^32 - 1, got -1.'),
                        # these ran twice and wrote the same row twice
                        (['--bits', '16,32,16'], 'error: --bits names 16 twice; each is run once.'),
                        (['--bits', '16', '--methods', 'lsh,itq,LSH'],
                         'error: --methods names lsh twice; each is run once.')):
        proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'hash-baselines', '--data',
                               'digits', '--out', str(out)] + flags, capture_output=True,
                              text=True, env=script_env(), timeout=300)
        assert proc.returncode == 2 and proc.stderr.strip() == said, (flags, proc.stderr)
        assert 'mAP' not in proc.stdout and not out.exists(), proc.stdout
    proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'hash-baselines', '--data', 'digits',
                           '--bits', '65', '--methods', 'lsh', '--out', str(out)],
                          capture_output=True, text=True, env=script_env(), timeout=300)
    assert proc.returncode == 0 and json.loads(out.read_text())[0]['bits'] == 65, proc.stderr


@pytest.mark.parametrize('started_with_sigint_ignored', [False, True])
def test_hash_baselines_interrupted_keeps_the_rows_done(tmp_path, started_with_sigint_ignored):
    """Ctrl-C during a long code length (LSH at 100,000 bits, seconds) lost the rows already
    done, since --out was written only at the end, and said the training advice ("a training
    run continues ... with --resume"). Each row is written as it is done; the message says how
    many are kept, and where. Started with SIGINT ignored (a shell script's background job),
    `kill -INT` did nothing; it stops the same way."""
    import signal
    out = tmp_path / 'b.json'
    proc = subprocess.Popen(with_sigint([sys.executable, '-m', 'gluon_dml', 'hash-baselines',
                                         '--data', 'digits', '--bits', '16,100000', '--methods',
                                         'lsh', '--out', str(out)], started_with_sigint_ignored),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=script_env())
    try:
        first = proc.stdout.readline()
        assert first.startswith('lsh   16 bits'), first + proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip() == 'Interrupted (Ctrl-C); the 1 result(s) done so far are in %s.' % out, err
    assert [(r['method'], r['bits']) for r in json.loads(out.read_text())] == [('lsh', 16)]


def test_hash_baselines_out_never_replaces_a_run_record(tmp_path):
    """hash-baselines --out RUN/args.json (or log.jsonl) replaced a run's record with the
    baselines' table; the command takes no run, but a folder holding args.json is one. Refused
    before any fitting, the record untouched; another name in the run folder is written."""
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'args.json').write_text('{"method": "hash"}')
    (run / 'log.jsonl').write_text('{"epoch": 0}\n')
    for name in ('args.json', 'log.jsonl'):
        proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'hash-baselines', '--data',
                               'digits', '--bits', '16', '--methods', 'lsh', '--out',
                               str(run / name)], capture_output=True, text=True, env=script_env(),
                              timeout=300)
        assert proc.returncode == 2 and proc.stderr.strip() == (
            'error: --out %s is a file of the run itself; choose another name.' % (run / name)), \
            proc.stderr
    assert (run / 'args.json').read_text() == '{"method": "hash"}'
    assert (run / 'log.jsonl').read_text() == '{"epoch": 0}\n'
    proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'hash-baselines', '--data', 'digits',
                           '--bits', '16', '--methods', 'lsh', '--out', str(run / 'lsh.json')],
                          capture_output=True, text=True, env=script_env(), timeout=300)
    assert proc.returncode == 0 and json.loads((run / 'lsh.json').read_text())[0]['bits'] == 16


def test_evaluate_reports_the_runs_own_top_k_and_refuses_recall_flags(tmp_path):
    """gluon-dml evaluate of a hashing run gives mAP@top-K for the run's --topk, equal to the
    log's final values (it always gave mAP@1000, whatever the run's K); --ks and --nmi-runs,
    which a hashing run's evaluation has no use for, are refused (they were ignored)."""
    from ..helpers import run_command
    run = tmp_path / 'run'
    run_command('train-hash', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '2',
                '--bits', '16', '--topk', '100,500', '--no-progress', '--save-dir', run, check=True)
    last = read_log(str(run))[-1]
    run_command('evaluate', run, '--no-progress', check=True)
    ev = json.load(open(run / 'eval-hash.json'))
    assert 'map@1000' not in ev and 'map@1000' not in last
    for key in ('map', 'map@100', 'map@500'):
        assert ev[key] == pytest.approx(last[key], abs=1e-6), key
    for flags, said in ((['--ks', '1,2'], '--ks is for the embedding runs (train-margin, train-npair); '),
                        (['--nmi-runs', '3'], '--nmi-runs is for the embedding runs')):
        bad = run_command('evaluate', run, *flags)
        assert bad.returncode == 2 and said in bad.stderr and 'its --topk: 100,500).' in bad.stderr, \
            bad.stderr


@pytest.fixture(scope='module')
def tiny_hash_run(tmp_path_factory):
    """One epoch of two batches of train-hash on digits, 16 bits (its folder is named ``b``): the
    search-codes tests below read it and write only into their own tmp_path."""
    from ..helpers import run_command
    run = tmp_path_factory.mktemp('hash') / 'b'
    run_command('train-hash', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '2',
                '--bits', '16', '--no-progress', '--save-dir', run, check=True)
    return run


def test_search_codes_out_never_replaces_the_codes_it_reads(tiny_hash_run, tmp_path):
    """search-codes --out RUN/codes.npz replaced the run's codes with the hits (the next search
    with them said "holds no query_codes"); the --db / --queries file likewise. Each is refused
    before any work, and the file is left as it was."""
    from ..helpers import run_command
    run = tiny_hash_run
    codes = run / 'codes.npz'
    before = codes.read_bytes()
    copy = tmp_path / 'copy.npz'
    copy.write_bytes(before)
    for flags, said in (
            (['--out', codes], '--out %s is the run\'s own codes file' % codes),
            (['--out', run / 'codes'], '--out %s is the run\'s own codes file' % codes),
            (['--db', copy, '--queries', copy, '--out', copy],
             '--out %s is the --db file this search reads' % copy),
            (['--queries', copy, '--out', copy], '--out %s is the --queries file' % copy)):
        bad = run_command('search-codes', run, '--k', '3', *flags)
        assert bad.returncode == 2 and said in bad.stderr and 'Traceback' not in bad.stderr, bad.stderr
        assert 'encode' not in bad.stderr            # refused before the database is encoded
    assert codes.read_bytes() == before and copy.read_bytes() == before
    run_command('search-codes', run, '--db', codes, '--queries', codes, '--k', '3', '--out',
                tmp_path / 'hits.npz', check=True)
    assert np.load(str(tmp_path / 'hits.npz'))['ids'].shape == (300, 3)


def test_search_codes_refuses_a_k_beyond_the_database(tiny_hash_run, tmp_path):
    """search-codes --k 1000000000 was "unexpected MemoryError: Unable to allocate 1.09 TiB"
    (the result arrays are queries x k), after the database was encoded; a k past the database
    only padded every row with -1. One sentence with the largest k that means something; that
    k itself searches."""
    from ..helpers import run_command
    run = tiny_hash_run
    codes = run / 'codes.npz'
    n_db = len(load_codes(str(codes))['db_codes'])
    for k in (n_db + 1, 10 ** 9):
        bad = run_command('search-codes', run, '--db', codes, '--queries', codes, '--k', k)
        assert bad.returncode == 2 and bad.stderr.strip() == (
            'error: --k %d is more neighbours than the %d database codes hold; use at most %d.'
            % (k, n_db, n_db)), bad.stderr
    run_command('search-codes', run, '--db', codes, '--queries', codes, '--k', n_db, '--out',
                tmp_path / 'all.npz', check=True)
    assert (np.load(str(tmp_path / 'all.npz'))['ids'] >= 0).all()


def test_ctrl_c_during_search_codes_says_nothing_was_written(tiny_hash_run, tmp_path):
    """Ctrl-C while search-codes embedded its image queries said the training runs' advice
    ("nothing was saved at this point: a training run continues from its last checkpoint with
    --resume"); search-codes has no checkpoint and no --resume. It says the search was not done
    and --out not written (exit 130)."""
    import time
    from ..helpers import interrupt_command, run_command
    run = tiny_hash_run
    from PIL import Image
    from sklearn.datasets import load_digits
    pic = tmp_path / 'seven.png'
    Image.fromarray((load_digits().images[7] * 16).clip(0, 255).astype(np.uint8)).save(str(pic))
    listing = tmp_path / 'queries.txt'
    listing.write_text(('%s\n' % pic) * 40000)        # seconds of embedding to interrupt
    out = tmp_path / 'hits.npz'

    def encoding(proc):
        seen = b''
        while b'encode' not in seen:                   # the database is being encoded
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, seen.decode(errors='replace')
            seen += chunk
        time.sleep(0.5)
    code, err = interrupt_command(['search-codes', run, '--queries', listing, '--k', '3',
                                   '--out', out], encoding)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == ('Interrupted (Ctrl-C) before the search was done; '
                                            'nothing was written.'), err
    assert '--resume' not in err and not out.exists()


def test_search_codes_refuses_the_codes_of_another_run_or_other_parameters(tiny_hash_run, tmp_path):
    """search-codes RUN --db codes.npz searched the codes of ANOTHER run in silence as long as
    their length matched (codes files recorded no run). A codes file records the run folder's
    name and the SHA-256 of the parameter file that wrote it (train-hash's RUN/codes.npz and
    evaluate --save-codes); search-codes refuses another run's codes, and this run's codes made
    by parameters it no longer has, before anything is encoded. A file with no record (written
    before) is searched, with one warning line."""
    from gluon_dml.catalog import params_digest
    from gluon_dml.engine import trained_params_path
    from ..helpers import run_command
    tiny = ['--data', 'digits', '--batches-per-epoch', '2', '--bits', '16', '--no-progress']
    a, b = tmp_path / 'a', tiny_hash_run
    run_command('train-hash', *tiny, '--epochs', '1', '--save-dir', a, check=True)
    own = load_codes(str(a / 'codes.npz'))
    assert own['run'] == 'a'
    assert own['params_sha256'] == params_digest(trained_params_path(str(a), 'last')[0])
    saved = tmp_path / 'saved-a.npz'
    run_command('evaluate', a, '--save-codes', saved, '--no-progress', check=True)
    assert load_codes(str(saved))['run'] == 'a'

    # another run's codes, as --db or --queries (the other a split: refused before encoding it)
    for flags, path in ((['--db', a / 'codes.npz', '--queries', a / 'codes.npz'], a / 'codes.npz'),
                        (['--queries', saved], saved), (['--db', saved], saved)):
        bad = run_command('search-codes', b, '--k', '3', *flags)
        assert bad.returncode == 2 and bad.stderr.strip() == (
            'error: %s holds the codes of the run a, not of b; write this run\'s codes with '
            'gluon-dml evaluate %s --save-codes FILE.npz.' % (path, b)), bad.stderr
        assert 'encode' not in bad.stderr
    # its own codes are searched, without a warning
    ok = run_command('search-codes', a, '--db', saved, '--queries', saved, '--k', '3', check=True)
    assert 'precision@3' in ok.stdout and 'warning' not in ok.stderr, ok.stderr

    # a file written before codes files recorded a run: searched, one warning line
    old = tmp_path / 'old.npz'
    np.savez(str(old), **{k: v for k, v in np.load(str(saved)).items()
                          if k not in ('run', 'params_sha256')})
    assert 'run' not in load_codes(str(old))
    ok = run_command('search-codes', b, '--db', old, '--queries', old, '--k', '3', check=True)
    warnings = [l for l in ok.stderr.splitlines() if l.startswith('warning:')]
    assert warnings == ['warning: %s records no run (written before codes files did); it is '
                        'searched as codes of b without a check.' % old], ok.stderr
    assert 'precision@3' in ok.stdout

    # run a trained further: the codes its earlier parameters wrote are refused
    run_command('train-hash', *tiny, '--epochs', '2', '--save-dir', a, '--resume', check=True)
    bad = run_command('search-codes', a, '--db', saved, '--k', '3')
    params = trained_params_path(str(a), 'last')[0]
    assert bad.returncode == 2 and bad.stderr.strip() == (
        'error: %s holds the codes of the run a with other parameters (SHA-256 %s...) than its '
        'final network, %s (trained further since, or another --checkpoint); write them again '
        'with gluon-dml evaluate %s --save-codes FILE.npz.'
        % (saved, load_codes(str(saved))['params_sha256'][:12], params, a)), bad.stderr
    # the run's own codes.npz was written again by the resumed run: searched
    run_command('search-codes', a, '--db', a / 'codes.npz', '--queries', a / 'codes.npz',
                '--k', '3', check=True)


def test_search_codes_refuses_index_flags_the_index_does_not_use(tiny_hash_run, tmp_path, capsys):
    """--nlist and --hash-bits with --index flat (--nlist with hash, --hash-bits with ivf,
    --nprobe with flat) were ignored in silence. Each is refused before anything is encoded,
    naming the flag and the index it is for; --nprobe's default (8) still applies to ivf and
    hash."""
    from gluon_dml.cli import main_guard
    from gluon_dml.commands.search_codes import main as search_codes
    from ..helpers import run_command
    run = tiny_hash_run
    for flags, said in (
            (['--nlist', '64'], '--nlist 64 does not apply with --index flat (--nlist is for '
                                '--index ivf); leave it out with --index flat.'),
            (['--index', 'flat', '--nprobe', '4'],
             '--nprobe 4 does not apply with --index flat (--nprobe is for --index ivf and hash); '
             'leave it out with --index flat.'),
            (['--hash-bits', '8', '--nlist', '4'],
             '--nlist 4, --hash-bits 8 do not apply with --index flat (--nlist is for --index ivf, '
             '--hash-bits is for --index hash); leave them out with --index flat.'),
            (['--index', 'hash', '--nlist', '4'], '--nlist 4 does not apply with --index hash '
                                                  '(--nlist is for --index ivf); leave it out '
                                                  'with --index hash.'),
            (['--index', 'ivf', '--hash-bits', '8'], '--hash-bits 8 does not apply with --index '
                                                     'ivf (--hash-bits is for --index hash); leave '
                                                     'it out with --index ivf.')):
        with pytest.raises(SystemExit) as exit_:          # in this process: the refusal comes
            main_guard(search_codes, [str(run), '--k', '3'] + flags)    # before the run opens
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.strip() == 'error: ' + said, err
        assert 'encode' not in err                        # refused before the database is encoded
    # the flags with their own index search; --nprobe left out is 8, as before
    codes = run / 'codes.npz'
    ids = {}
    for name, flags in (('ivf', ['--index', 'ivf', '--nlist', '16']),
                        ('ivf8', ['--index', 'ivf', '--nlist', '16', '--nprobe', '8']),
                        ('hash', ['--index', 'hash', '--hash-bits', '8']),
                        ('hash8', ['--index', 'hash', '--hash-bits', '8', '--nprobe', '8']),
                        ('flat', [])):
        out = tmp_path / ('%s.npz' % name)
        run_command('search-codes', run, '--db', codes, '--queries', codes, '--k', '5', *flags,
                    '--out', out, check=True)
        ids[name] = np.load(str(out))['ids']
    np.testing.assert_array_equal(ids['ivf'], ids['ivf8'])
    np.testing.assert_array_equal(ids['hash'], ids['hash8'])
