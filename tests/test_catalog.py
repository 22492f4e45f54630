"""gluon-dml index and search: a real run embeds real image files into a real faiss index (and an
embedded Milvus Lite file), searched from the command line; resumable embedding."""
import json
import os

import numpy as np
import pytest

from gluon_dml.catalog import build_catalog, open_catalog

from .helpers import run_command, write_digit_folder


@pytest.fixture(scope='module')
def digits_run(tiny_digits_run):
    return tiny_digits_run


@pytest.fixture(scope='module')
def image_folder(tmp_path_factory):
    """120 scikit-learn digits as PNG files in class folders, dark ink on light paper, and one
    file that is not an image."""
    root = write_digit_folder(tmp_path_factory.mktemp('images') / 'digits')
    (root / '5' / 'broken.png').write_bytes(b'not a png at all')
    return root


def _gluon_dml(*argv, check=True):
    return run_command(*argv, check=check)


def test_index_and_search_from_the_command_line(digits_run, image_folder, tmp_path):
    cat = tmp_path / 'cat'
    proc = _gluon_dml('index', digits_run, '--images', image_folder, '--out', cat, '--no-progress')
    assert 'faiss flat index (ip, 64 x floats): 120 items (120 added, 1 unreadable skipped)' in proc.stdout
    skipped = [l for l in proc.stdout.splitlines() if l.startswith('skipped: ')]
    assert skipped == ['skipped: %s (cannot decode: cannot identify image file %r)'
                       % ((image_folder / '5' / 'broken.png'), str(image_folder / '5' / 'broken.png'))], \
        skipped                       # the decoder's words, without advice to pass the flag
    assert not (cat / '.embedding').exists()                 # the resumable parts are cleaned up
    source = json.load(open(cat / 'run.json'))
    assert source['run_dir'] == str(digits_run) and source['network'] == 'final network'
    assert (source['kind'], source['dim'], source['count']) == ('float', 64, 120)

    query = image_folder / '3' / '003.png'
    proc = _gluon_dml('search', cat, '--image', query, '-k', '5', '--json')
    hits = json.loads(proc.stdout)
    assert [h['path'] for h in hits][0] == str(query)                 # the image finds itself
    assert hits[0]['score'] == pytest.approx(1.0, abs=1e-4) and hits[0]['label'] == '3'
    assert all(set(h) == {'id', 'path', 'score', 'distance', 'label', 'metadata'} for h in hits)
    assert [h['score'] for h in hits] == sorted((h['score'] for h in hits), reverse=True)
    assert 'search' in proc.stderr and 'ms' in proc.stderr

    # the same answer by vector and by id; a filter keeps one label
    c = open_catalog(str(cat))
    v = c.embed_images([str(query)])
    np.save(tmp_path / 'q.npy', v[0])
    by_vector = json.loads(_gluon_dml('search', cat, '--vector', tmp_path / 'q.npy', '--json').stdout)
    assert [h['id'] for h in by_vector] == [h['id'] for h in
                                            json.loads(_gluon_dml('search', cat, '--image', query,
                                                                  '--json').stdout)]
    by_id = json.loads(_gluon_dml('search', cat, '--id', hits[0]['id'], '-k', '4', '--json',
                                  '--filter', 'label=7').stdout)
    assert len(by_id) == 4 and {h['label'] for h in by_id} == {'7'}
    # precision of the neighbours against the folder labels: the run learned something
    labels = {i: c.index.get(i)['label'] for i in c.index.ids()}
    found = c.search_id(hits[0]['id'], k=10)
    assert sum(labels[h.id] == '3' for h in found) >= 5

    bad = _gluon_dml('search', cat, '--vector', tmp_path / 'q.npy', '-k', '0', check=False)
    assert bad.returncode == 2 and '-k must be a positive integer' in bad.stderr
    np.save(tmp_path / 'wrong.npy', np.zeros(7, np.float32))
    bad = _gluon_dml('search', cat, '--vector', tmp_path / 'wrong.npy', check=False)
    assert bad.returncode == 2 and 'has 64 values' in bad.stderr
    bad = _gluon_dml('search', cat, '--text', 'a red bag', check=False)
    assert bad.returncode == 2 and 'Search by text needs a catalogue embedded by a train-vse run' in bad.stderr
    bad = _gluon_dml('search', cat, '--image', image_folder / '3', check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        'error: --image %s is a folder; --image takes image files (to search with every image of '
        'a folder: --image %s/*).' % (image_folder / '3', image_folder / '3')), bad.stderr
    bad = _gluon_dml('search', cat, '--vector', query, check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        'error: --vector %s is not a .npy array (it is no file written by numpy.save); to search '
        'with an image, use --image.' % query), bad.stderr
    again = _gluon_dml('index', digits_run, '--images', image_folder, '--out', cat, check=False)
    assert again.returncode == 2 and 'already holds a catalogue; add to it with --add' in again.stderr


def test_add_takes_only_new_images_and_persists(digits_run, image_folder, tmp_path):
    cat = str(tmp_path / 'cat')
    first = [str(image_folder / '0' / f) for f in sorted(os.listdir(image_folder / '0'))]
    listing = tmp_path / 'some.txt'
    listing.write_text('\n'.join(first[:5]) + '\n')
    c, report = build_catalog(str(digits_run), str(listing), cat)
    assert (report['added'], len(c.index)) == (5, 5) and 'label' not in c.index.get(c.index.ids()[0])
    c.close()
    listing.write_text('\n'.join('%s zero' % p for p in first[:8]) + '\n')   # 5 known + 3 new
    c, report = build_catalog(str(digits_run), str(listing), cat, add=True)
    assert (report['added'], report['skipped_already_there'], len(c.index)) == (3, 5, 8)
    c.close()
    c = open_catalog(cat)
    assert len(c.index) == 8 and sorted(m['path'] for m in map(c.index.get, c.index.ids())) == sorted(first[:8])
    assert [c.index.get(i).get('label') for i in c.index.ids()].count('zero') == 3
    c.close()
    # nothing new: nothing written (it saved a new version of the same items)
    pointer = os.path.join(cat, 'CATALOG.json')
    before = (open(pointer).read(), sorted(os.listdir(cat)))
    c, report = build_catalog(str(digits_run), str(listing), cat, add=True)
    assert (report['added'], report['skipped_already_there'], len(c.index)) == (0, 8, 8)
    assert (open(pointer).read(), sorted(os.listdir(cat))) == before


def test_embedding_resumes_from_its_saved_parts(digits_run, image_folder, tmp_path):
    """An embedding interrupted after two parts: the next build reuses them and embeds the rest."""
    from gluon_dml.catalog import _embed_resumable
    from gluon_dml.methods import open_run
    enc = open_run(str(digits_run)).encoders()
    paths = sorted(str(p) for p in image_folder.glob('*/*.png'))
    calls = []
    real = enc.embed_paths

    class Killed(Exception):
        pass

    def interrupted(batch, *a, **kw):
        calls.append(len(batch))
        if len(calls) == 3 and not log:
            raise Killed('the third part never finishes')
        return real(batch, *a, **kw)
    enc.embed_paths = interrupted
    out = str(tmp_path / 'cat')
    log = []
    with pytest.raises(Killed):
        _embed_resumable(enc, paths, out, 16, 30, False, lambda m: None, 'net')
    assert len(os.listdir(os.path.join(out, '.embedding'))) == 2
    calls.clear()
    vectors, kept, bad = _embed_resumable(enc, paths, out, 16, 30, False, log.append, 'net')
    assert len(paths) == 121 and calls == [30, 30, 1]          # parts 3, 4 and 5 only
    assert sum('reused' in m for m in log) == 2
    enc.embed_paths = real
    ref, ref_kept, _ = real(paths, 16)
    assert kept == ref_kept and len(bad) == 1
    np.testing.assert_allclose(vectors, ref, rtol=1e-5, atol=1e-6)


def test_a_milvus_lite_catalogue_gives_the_faiss_answers(digits_run, image_folder, tmp_path):
    pytest.importorskip('pymilvus', reason='the milvus extra is not installed (pip install -e ".[milvus]")')
    listing = tmp_path / 'l.txt'
    listing.write_text('\n'.join(sorted(str(p) for p in image_folder.glob('[0-4]/*.png'))) + '\n')
    faiss_cat, _ = build_catalog(str(digits_run), str(listing), str(tmp_path / 'f'))
    milvus_cat, _ = build_catalog(str(digits_run), str(listing), str(tmp_path / 'm'), backend='milvus')
    assert milvus_cat.info()['backend'] == 'milvus'
    queries = faiss_cat.embed_images(sorted(str(p) for p in image_folder.glob('[5-9]/*.png'))[:10])
    for a, b in zip(faiss_cat.search_vectors(queries, k=5), milvus_cat.search_vectors(queries, k=5)):
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-4, atol=1e-5)
        assert [h.metadata['path'] for h in a] == [h.metadata['path'] for h in b]
    milvus_cat.close()
    again = open_catalog(str(tmp_path / 'm'))
    assert len(again.index) == len(faiss_cat.index)
    again.close()
    for folder in ('f', 'm'):
        _assert_names_differ_in_more_than_case(tmp_path / folder)


def _assert_names_differ_in_more_than_case(folder):
    """Every file of a catalogue folder keeps its own name on a case-insensitive file system
    (macOS, Windows): the run record was ``catalog.json`` beside the index's ``CATALOG.json``."""
    for dirpath, dirs, files in os.walk(folder):
        names = dirs + files
        assert len({n.lower() for n in names}) == len(names), (dirpath, sorted(names))


def test_a_catalogue_saved_before_the_record_was_renamed(digits_run, image_folder, tmp_path):
    """A catalogue whose run record is the old ``catalog.json`` is opened and searched; its next
    save renames the record. One whose record and pointer became one file (the old names on a
    case-insensitive file system; a hard link here) is refused with one sentence."""
    listing = tmp_path / 'l.txt'
    listing.write_text('\n'.join(sorted(str(p) for p in image_folder.glob('[0-4]/*.png'))) + '\n')
    cat = tmp_path / 'cat'
    c, _ = build_catalog(str(digits_run), str(listing), str(cat))
    query = c.embed_images([str(image_folder / '3' / '003.png')])
    want = [h.id for h in c.search_vectors(query, k=5)[0]]
    c.close()
    _assert_names_differ_in_more_than_case(cat)
    os.rename(cat / 'run.json', cat / 'catalog.json')                   # the old layout
    proc = _gluon_dml('search', cat, '--image', image_folder / '3' / '003.png', '-k', '5', '--json')
    assert [h['id'] for h in json.loads(proc.stdout)] == want
    c = open_catalog(str(cat))
    record = json.load(open(cat / 'catalog.json'))
    c.save()
    c.close()
    assert not (cat / 'catalog.json').exists() and json.load(open(cat / 'run.json'))['run_dir'] == record['run_dir']
    assert json.load(open(cat / 'CATALOG.json'))['format'] == 'gluon-dml-index'    # the pointer kept

    os.remove(cat / 'run.json')
    os.link(cat / 'CATALOG.json', cat / 'catalog.json')     # one file under both names
    proc = _gluon_dml('search', cat, '--id', '1', check=False)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
    assert ('was saved by an older gluon-dml on a case-insensitive file system, where its '
            'catalog.json and CATALOG.json are one file') in proc.stderr


def test_an_int8_catalogue_embeds_its_queries_in_int8_too(digits_run, image_folder, tmp_path):
    """``index --int8``: the catalogue records it; its queries are embedded by the same INT8
    network (reused from the run folder), so an image finds itself at score ~1; adding without
    --int8 is refused."""
    cat = tmp_path / 'cat8'
    proc = _gluon_dml('index', digits_run, '--images', image_folder, '--out', cat, '--no-progress',
                      '--int8', '--calib-images', '64')
    assert '120 items' in proc.stdout
    source = json.load(open(cat / 'run.json'))
    assert source['int8'] == {'calib_images': 64, 'calib_mode': 'naive', 'data_path': None}
    c = open_catalog(str(cat))
    query = str(image_folder / '3' / '003.png')
    hits = c.search_images([query], k=3)[0]
    assert c.encoders is not None and hits[0].metadata['path'] == query
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    # the float32 network embeds the same image a little differently: the catalogue is INT8
    from gluon_dml.methods import open_run
    f32 = open_run(str(digits_run)).encoders()
    v8, v32 = c.embed_images([query]), f32.image(np.stack([f32.preprocess(query)]))
    assert 0.95 < float((v8 * v32).sum()) < 1 - 1e-6
    c.close()
    proc = _gluon_dml('index', digits_run, '--images', image_folder, '--out', cat, '--add',
                      check=False)
    assert proc.returncode == 2 and 'INT8 vectors' in proc.stderr


def test_a_catalogue_refuses_queries_by_image_once_its_run_changed(digits_run, image_folder, tmp_path):
    """The run is trained further after the catalogue was built (checkpoint rotation deletes the
    parameters that embedded it): a query by image would be embedded by another network, so it
    is refused with the way out; by vector and id still works, and --add is refused too."""
    import shutil
    run = tmp_path / 'run'
    shutil.copytree(str(digits_run), str(run))
    cat = tmp_path / 'cat'
    _gluon_dml('index', run, '--images', image_folder, '--out', cat, '--no-progress')
    source = json.load(open(cat / 'run.json'))
    assert len(source['params_sha256']) == 64
    query = image_folder / '3' / '003.png'
    assert json.loads(_gluon_dml('search', cat, '--image', query, '--json').stdout)[0]['path'] == str(query)
    run_command('train-margin', '--save-dir', run, '--resume', '--epochs', '2', '--no-progress',
                check=True)
    bad = _gluon_dml('search', cat, '--image', query, check=False)
    assert bad.returncode == 2, bad.stderr
    assert 'has changed since the catalogue' in bad.stderr and 'gluon-dml index %s' % run in bad.stderr
    assert len(json.loads(_gluon_dml('search', cat, '--id', 0, '-k', 3, '--json').stdout)) == 3
    bad = _gluon_dml('index', run, '--images', image_folder, '--out', cat, '--add', check=False)
    assert bad.returncode == 2 and 'has changed since the catalogue' in bad.stderr


def test_one_writer_at_a_time(digits_run, image_folder, tmp_path):
    """A catalogue held by another process (a gluon-dml serve, an index --add) refuses a second
    writer in one sentence, and searches still read it; a failed first build leaves nothing."""
    import subprocess
    import sys
    import time
    cat = tmp_path / 'cat'
    listing = tmp_path / 'l.txt'
    listing.write_text('\n'.join(sorted(str(p) for p in image_folder.glob('[0-4]/*.png'))) + '\n')
    _gluon_dml('index', digits_run, '--images', listing, '--out', cat, '--no-progress')
    holder = subprocess.Popen([sys.executable, '-c', (
        'import sys, time; from gluon_dml.catalog import lock_catalog; lock_catalog(sys.argv[1]); '
        'print("held", flush=True); time.sleep(120)'), str(cat)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        bad = _gluon_dml('index', digits_run, '--images', image_folder, '--out', cat, '--add',
                         check=False)
        assert bad.returncode == 2
        assert 'is being changed by another process (pid %d' % holder.pid in bad.stderr, bad.stderr
        assert len(json.loads(_gluon_dml('search', cat, '--id', 0, '-k', 2, '--json').stdout)) == 2
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    proc = _gluon_dml('index', digits_run, '--images', image_folder, '--out', cat, '--add', '--no-progress')
    assert '120 items' in proc.stdout
    # a first build that fails leaves neither the lock file nor the folders it made
    bad = _gluon_dml('index', digits_run, '--images', tmp_path / 'nothing-here', '--out',
                     tmp_path / 'new' / 'catalog', check=False)
    assert bad.returncode == 2 and not (tmp_path / 'new').exists()


def test_vectors_are_kept_at_unit_length(digits_run, image_folder, tmp_path):
    """The catalogue compares unit vectors (inner product = cosine): a longer vector added from
    outside is stored at unit length, so it cannot outscore every item; the network's own
    vectors stay bit for bit; a vector of zeros is refused."""
    c, _ = build_catalog(str(digits_run), str(image_folder / '3'), str(tmp_path / 'cat'))
    first = c.index.ids()[0]
    v = c.index.vector(first)
    [new] = c.add_vectors(50 * v[None], [{'big': 1}])
    np.testing.assert_allclose(np.linalg.norm(c.index.vector(new)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(c.index.vector(new), v, atol=1e-6)
    others = [i for i in c.index.ids() if i not in (first, new)]
    for i in others[:5]:
        top = c.search_vectors(c.index.vector(i), k=1)[0][0]
        assert top.id == i and top.score == pytest.approx(1.0, abs=1e-5)
    emb = c.embed_images([str(image_folder / '3' / '003.png')])
    assert np.array_equal(c.check_vectors(emb), emb)
    with pytest.raises(ValueError, match='vector of zeros has no direction'):
        c.add_vectors(np.zeros((1, c.dim), np.float32), [{}])
    c.close()


def test_ids_handed_out_before_a_save_stay_taken(digits_run, image_folder, tmp_path):
    """An id handed out and lost before a save (a killed service with --save-delay) is not
    handed out again: the catalogue records its next id (next_id.json) as it hands ids out;
    a new catalogue writes no record until it is saved; index --add numbers after the record."""
    cat = str(tmp_path / 'cat')
    c, _ = build_catalog(str(digits_run), str(image_folder / '3'), cat)
    n = len(c.index)
    assert not os.path.exists(os.path.join(cat, 'next_id.json'))
    [lost] = c.add_vectors(c.index.vector(0)[None], [{'lost': 1}])        # never saved
    with open(os.path.join(cat, 'next_id.json')) as f:
        assert lost == n and json.load(f) == {'next_id': n + 1}
    c.close()
    c = open_catalog(cat)
    assert len(c.index) == n and lost not in c.index and c.next_id == n + 1
    assert c.add_vectors(c.index.vector(0)[None], [{}]).tolist() == [n + 1]
    assert c.add_vectors(c.index.vector(1)[None], [{}], ids=[n + 10]).tolist() == [n + 10]
    assert c.next_id == n + 11
    c.close()                                                           # lost as well
    c, report = build_catalog(str(digits_run), str(image_folder / '4'), cat, add=True)
    assert report['added'] and int(c.index.ids()[n]) == n + 11
    c.close()


def test_a_file_name_that_is_not_utf8_is_searched_and_printed_as_its_bytes(digits_run, tmp_path):
    """Under a strict UTF-8 locale (en_US.UTF-8: Python's stdout then refuses surrogates), a hit
    whose file name is Latin-1 ended search with "error: 'utf-8' codec can't encode character
    '\\udce9' ... surrogates not allowed" (exit 2). The name's own bytes are printed, as ls
    into a pipe prints them."""
    import shutil
    import subprocess
    import sys
    from .helpers import script_env
    images = write_digit_folder(tmp_path / 'images', count=20)
    odd = os.path.join(os.fsencode(str(images / '3')), b'caf\xe9.png')
    shutil.copy(os.path.join(str(images / '3'), sorted(os.listdir(str(images / '3')))[0]), odd)
    cat = tmp_path / 'cat'
    _gluon_dml('index', digits_run, '--images', images, '--out', cat, '--no-progress')
    proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'search', str(cat), '--image',
                           os.fsdecode(odd), '-k', '2'], capture_output=True,
                          env=script_env(PYTHONIOENCODING='utf-8:strict'), timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors='replace')
    hits = [ln for ln in proc.stdout.splitlines() if ln.lstrip().startswith((b'1.', b'2.'))]
    assert any(ln.endswith(odd) for ln in hits), proc.stdout


def test_search_into_a_pipe_its_reader_closed_ends_quietly(digits_run, image_folder, tmp_path):
    """gluon-dml search ... | head: once head had its lines, search said 'error: Broken pipe.'
    (exit 2) on stderr. It ends without a word, with the status of a process SIGPIPE ended
    (141), as the other writers into head do."""
    import subprocess
    import sys
    from .helpers import script_env
    cat = tmp_path / 'cat'
    _gluon_dml('index', digits_run, '--images', image_folder, '--out', cat, '--no-progress')
    np.save(tmp_path / 'q.npy', np.random.RandomState(0).randn(20000, 64).astype(np.float32))
    proc = subprocess.Popen([sys.executable, '-m', 'gluon_dml', 'search', str(cat), '--vector',
                             str(tmp_path / 'q.npy'), '-k', '10'], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=script_env())
    try:
        assert proc.stdout.readline().startswith(b'query: ')      # head -1
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(120) == 141, err
    finally:
        proc.kill()
    assert err == '', err


def test_ctrl_c_during_a_search_says_the_search_was_not_done(digits_run, image_folder, tmp_path):
    """Ctrl-C while search printed the hits of many query vectors gave the training runs' advice
    ("a training run continues from its last checkpoint with --resume"); search has neither."""
    from .helpers import interrupt_command
    cat = tmp_path / 'cat'
    _gluon_dml('index', digits_run, '--images', image_folder, '--out', cat, '--no-progress')
    np.save(tmp_path / 'q.npy', np.random.RandomState(0).randn(100000, 64).astype(np.float32))

    def printing(proc):
        assert proc.stdout.read(1000)         # the hits are being printed; the pipe fills up
    code, err = interrupt_command(['search', cat, '--vector', tmp_path / 'q.npy', '-k', '10'],
                                  printing)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == ('Interrupted (Ctrl-C) before the search was done; '
                                            'nothing was written.'), err
