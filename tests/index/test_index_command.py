"""gluon-dml index as a user runs it: what an interrupted build says, settings refused before the
embedding, list files with and without labels, and a Milvus Lite catalogue held by another
process (real run folders, real image files, real faiss and Milvus Lite, real signals)."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from gluon_dml.catalog import build_catalog, open_catalog

from ..helpers import REPO, run_command, script_env, with_sigint, write_digit_folder


@pytest.fixture(scope='module')
def image_folder(tmp_path_factory):
    """120 scikit-learn digits as PNG files in class folders."""
    return write_digit_folder(tmp_path_factory.mktemp('images') / 'digits')


@pytest.fixture(scope='module')
def hash_run(tmp_path_factory):
    """A real hashing run on digits (binary codes), one short epoch."""
    run = tmp_path_factory.mktemp('hash-run') / 'h'
    run_command('train-hash', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '4',
                '--no-progress', '--save-dir', run, check=True)
    return run


@pytest.mark.parametrize('signame', ['SIGINT', 'SIGTERM'])
def test_an_interrupted_index_says_what_it_kept_and_the_same_command_continues(
        tiny_digits_run, image_folder, tmp_path, signame):
    """A signal during the embedding (the process sends it to itself once the second part of 30
    images is saved): not the training run's "nothing was saved ... --resume" but how many images
    are kept in OUT/.embedding and that the same command continues; the same command then
    reuses both parts and builds the catalogue."""
    out = tmp_path / 'cat'
    argv = ('index', tiny_digits_run, '--images', image_folder, '--out', out, '--chunk', '30',
            '--batch-size', '8', '--no-progress')
    env = script_env(GLUON_DML_FAULTS='index-part@2:%s' % ('int' if signame == 'SIGINT' else 'term'))
    proc = run_command(*argv, env=env)
    assert proc.returncode == (130 if signame == 'SIGINT' else 143), (proc.stdout, proc.stderr)
    assert 'nothing was saved' not in proc.stderr and '--resume' not in proc.stderr, proc.stderr
    said = 'Interrupted (Ctrl-C)' if signame == 'SIGINT' else 'Stopped (SIGTERM)'
    assert ('%s; the catalogue was not written, but the 60 image(s) embedded so far are kept in '
            '%s: run the same command again to continue from there.'
            % (said, out / '.embedding')) in proc.stderr, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert sorted(os.listdir(out / '.embedding')) == ['part-000000.npz', 'part-000001.npz']
    assert not (out / '.lock').exists() and not (out / 'run.json').exists()
    again = run_command(*argv, check=True)
    assert again.stdout.count('was done before, reused') == 2
    assert '120 items (120 added' in again.stdout and not (out / '.embedding').exists()


def test_a_signal_after_the_catalogue_is_saved_says_it_is_whole(tiny_digits_run, image_folder,
                                                                 tmp_path):
    """Ctrl-C after the catalogue was saved, while its embedded parts were being removed, said
    "the catalogue was not written" and left the parts behind; it was written, and whole. The
    same for a version added with --add."""
    from gluon_dml.catalog import open_catalog
    out = tmp_path / 'cat'
    some = tmp_path / 'some.txt'
    files = sorted(str(p) for p in image_folder.rglob('*.png') if p.name != 'broken.png')
    some.write_text(''.join('%s\n' % f for f in files[:60]))
    env = script_env(GLUON_DML_FAULTS='index-saved:int')
    for add, count, version in (((), 60, 'v-000001'), (('--add',), 120, 'v-000002')):
        images = some if not add else image_folder
        proc = run_command('index', tiny_digits_run, '--images', images, '--out', out,
                           '--no-progress', *add, env=env)
        assert proc.returncode == 130, (proc.stdout, proc.stderr)
        assert proc.stderr.strip().splitlines()[-1] == (
            'Interrupted (Ctrl-C) after the catalogue was saved: %s is whole (version %s); only '
            'the summary was not printed.' % (out, version)), proc.stderr
        assert not (out / '.embedding').exists()
        cat = open_catalog(str(out))            # its lock given back
        assert len(cat.index) == count
        cat.close()


def test_kill_int_stops_an_index_started_with_sigint_ignored(tiny_digits_run, image_folder, tmp_path):
    """A shell script's background job starts with SIGINT ignored (`gluon-dml index ... &`):
    `kill -INT` then did nothing and the build ran on; it stops as Ctrl-C does, as training's."""
    import subprocess
    import sys
    out = tmp_path / 'cat'
    cmd = [sys.executable, '-m', 'gluon_dml', 'index', str(tiny_digits_run), '--images',
           str(image_folder), '--out', str(out), '--chunk', '30', '--batch-size', '8', '--no-progress']
    proc = subprocess.run(with_sigint(cmd), capture_output=True, text=True, timeout=300,
                          env=script_env(GLUON_DML_FAULTS='index-part@2:int'))
    assert proc.returncode == 130, (proc.stdout, proc.stderr)
    assert 'Interrupted (Ctrl-C)' in proc.stderr and not (out / 'run.json').exists()


def test_an_index_interrupted_before_any_part_leaves_nothing(tiny_digits_run, image_folder, tmp_path):
    """Interrupted before any part is saved (here while the run loads): it says nothing was
    kept, and the folders the build made are given back."""
    from gluon_dml import catalog
    out = tmp_path / 'new' / 'cat'
    real = catalog.open_run

    def interrupted(*a, **kw):
        raise KeyboardInterrupt
    catalog.open_run = interrupted
    try:
        with pytest.raises(catalog.IndexingInterrupted, match='before any image was embedded; '
                                                              'nothing was kept'):
            build_catalog(str(tiny_digits_run), str(image_folder), str(out))
    finally:
        catalog.open_run = real
    assert not (tmp_path / 'new').exists()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_backend_and_index_type_errors_come_before_the_embedding(tiny_digits_run, hash_run,
                                                                image_folder, tmp_path):
    """Settings the index cannot take are refused with the index's own sentence before a single
    image is embedded (no "embedding: ..." line, no parts, no folder left)."""
    pytest.importorskip('pymilvus', reason='the milvus extra is not installed')
    port = _free_port()                                    # nothing listens there
    cases = [
        (tiny_digits_run, ['--backend', 'milvus', '--index-type', 'hnsw'],
         'Milvus Lite supports only FLAT and IVF_FLAT (floats) and BIN_FLAT (binary); HNSW needs a '
         'Milvus server'),
        (tiny_digits_run, ['--backend', 'milvus', '--index-type', 'ivf_pq'],
         'IVF_PQ needs a Milvus server'),
        (tiny_digits_run, ['--backend', 'milvus', '--index-type', 'factory:IVF4,Flat'],
         'faiss factory strings need the faiss backend'),
        (tiny_digits_run, ['--index-type', 'factory:NotAnIndex7'],
         "faiss cannot build the factory string 'NotAnIndex7'"),
        (hash_run, ['--index-type', 'ivf_flat'],
         "Unknown binary faiss index_type 'ivf_flat'; choose one of: auto, flat, ivf, hash."),
        (tiny_digits_run, ['--backend', 'milvus', '--uri', 'http://127.0.0.1:%d' % port],
         'Cannot reach the Milvus server at http://127.0.0.1:%d' % port),
    ]
    for n, (run, flags, message) in enumerate(cases):
        out = tmp_path / ('new-%d' % n) / 'cat'
        proc = run_command('index', run, '--images', image_folder, '--out', out, '--chunk', '30',
                           '--no-progress', *flags)
        assert proc.returncode == 2 and message in proc.stderr, (flags, proc.stdout, proc.stderr)
        assert 'embedding:' not in proc.stdout, (flags, proc.stdout)
        assert not (tmp_path / ('new-%d' % n)).exists(), flags


def test_nlist_and_nprobe_below_one_are_refused_before_the_embedding(tiny_digits_run,
                                                                    image_folder, tmp_path):
    """--nprobe -3 was "unexpected OverflowError" from faiss once every image was embedded, and
    --nlist 0 / --nprobe 0 were taken as not given (the default, silently). Refused at once."""
    cases = [(['--nprobe', '-3'], '--nprobe must be a positive number of IVF lists searched per '
                                  'query, got -3.'),
             (['--nprobe', '0'], '--nprobe must be a positive number of IVF lists searched per '
                                 'query, got 0.'),
             (['--nlist', '0'], '--nlist must be a positive number of IVF lists, got 0.')]
    for n, (flags, message) in enumerate(cases):
        out = tmp_path / ('new-%d' % n) / 'cat'
        proc = run_command('index', tiny_digits_run, '--images', image_folder, '--out', out,
                           '--index-type', 'ivf_flat', '--no-progress', *flags)
        assert proc.returncode == 2 and proc.stderr.strip() == 'error: ' + message, \
            (flags, proc.stdout, proc.stderr)
        assert 'embedding:' not in proc.stdout and not (tmp_path / ('new-%d' % n)).exists()


def test_an_index_type_that_needs_more_vectors_than_the_images_is_refused_before_the_embedding(
        tiny_digits_run, hash_run, image_folder, tmp_path):
    """--nlist 1000 for 120 images (or IVF-PQ's 256 codebook vectors) failed only once every
    image was embedded, with the API's advice ("call train() on a larger sample"); the count of
    the images listed is known before: refused then. A type the images can train is built."""
    cases = [(tiny_digits_run, ['--index-type', 'ivf_flat', '--nlist', '1000'],
              'The ivf_flat index needs at least 1000 training vectors (nlist=1000), but the '
              'collection has 120: lower nlist, or use the flat index type.'),
             (tiny_digits_run, ['--index-type', 'ivf_pq'],
              'The ivf_pq index needs at least 256 training vectors (nlist=3, 2^nbits=256), but '
              'the collection has 120'),
             (hash_run, ['--index-type', 'ivf', '--nlist', '121'],
              'The ivf index needs at least 121 training vectors (nlist=121), but the collection '
              'has 120')]
    for n, (run, flags, message) in enumerate(cases):
        out = tmp_path / ('new-%d' % n) / 'cat'
        proc = run_command('index', run, '--images', image_folder, '--out', out, '--no-progress',
                           *flags)
        assert proc.returncode == 2 and message in proc.stderr, (flags, proc.stdout, proc.stderr)
        assert 'embedding:' not in proc.stdout and not (tmp_path / ('new-%d' % n)).exists()
    proc = run_command('index', tiny_digits_run, '--images', image_folder, '--out',
                       tmp_path / 'ok', '--index-type', 'ivf_flat', '--nlist', '120',
                       '--no-progress', check=True)
    assert 'ivf_flat index' in proc.stdout and '120 items' in proc.stdout


@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='no /proc (a folder taking no file)')
def test_an_out_that_takes_no_file_and_an_empty_images_are_refused_naming_the_flag(
        tiny_digits_run, image_folder, tmp_path):
    """--out in a folder that takes no file was the OS's "[Errno 2] No such file or directory:
    '/proc/cat'" from the first write, and --images '' was " does not exist": one sentence
    naming the flag, before the run is opened."""
    for flags, said in ((['--images', image_folder, '--out', '/proc/cat'],
                         'error: --out /proc/cat cannot be written: /proc takes no file ('),
                        (['--images', '', '--out', tmp_path / 'cat'],
                         'error: --images is empty; give an image, a folder of images or a list '
                         'file.')):
        proc = run_command('index', tiny_digits_run, '--no-progress', *flags)
        assert proc.returncode == 2 and proc.stderr.startswith(said), (flags, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and 'embedding:' not in proc.stdout
    assert not (tmp_path / 'cat').exists()


def _listing(tmp_path, image_folder, labelled):
    """A list file of the images of classes 0-3: the lines of the ``labelled`` classes carry
    a label (``digit-N``), the others are the path alone."""
    lines = []
    for p in sorted(image_folder.glob('[0-3]/*.png')):
        cls = p.parent.name
        lines.append('%s digit-%s' % (p, cls) if cls in labelled else str(p))
    listing = tmp_path / 'mixed.txt'
    listing.write_text('\n'.join(lines) + '\n')
    return listing


def test_a_list_file_keeps_each_lines_own_label(tiny_digits_run, image_folder, tmp_path):
    """A list file where some lines have a label and some do not: each item keeps its own line's
    label (before, one unlabelled line dropped every label); --filter label=... finds the
    labelled items, the others have no label (null in --json, '-' in the table)."""
    from gluon_dml.data.sources import list_images
    listing = _listing(tmp_path, image_folder, labelled={'1', '3'})
    paths, labels = list_images(str(listing))
    want = {p: ('digit-' + os.path.basename(os.path.dirname(p))
                if os.path.basename(os.path.dirname(p)) in ('1', '3') else None) for p in paths}
    assert labels == [want[p] for p in paths] and None in labels
    cat = tmp_path / 'cat'
    c, report = build_catalog(str(tiny_digits_run), str(listing), str(cat))
    assert report['added'] == len(paths)
    meta = [c.index.get(i) for i in c.index.ids()]
    assert {m['path']: m.get('label') for m in meta} == want
    assert all('label' not in m for m in meta if want[m['path']] is None)   # absent, not null
    c.close()
    threes = sorted(p for p in paths if want[p] == 'digit-3')
    hits = json.loads(run_command('search', cat, '--id', 0, '-k', 200, '--json', '--filter',
                                  'label=digit-3', check=True).stdout)
    assert sorted(h['path'] for h in hits) == [p for p in threes if p != meta[0]['path']]
    assert {h['label'] for h in hits} == {'digit-3'}
    everything = json.loads(run_command('search', cat, '--id', 0, '-k', 200, '--json',
                                        check=True).stdout)
    assert {h['path']: h['label'] for h in everything} == {p: want[p] for p in paths
                                                          if p != meta[0]['path']}
    source = json.load(open(cat / 'run.json'))        # records no labels, only the source
    assert source['images'] == str(listing) and source['count'] == len(paths)
    # a filter that matches nothing says so and names the fields there are (was: a count line)
    none = run_command('search', cat, '--id', 0, '--filter', 'lable=digit-3', check=True)
    assert 'note: no item matches --filter lable=digit-3 (the catalogue\'s fields: label, path).' \
        in none.stderr, none.stderr
    assert 'note:' not in run_command('search', cat, '--id', 0, '--filter', 'label=digit-3',
                                      check=True).stderr


def test_embed_warns_when_a_list_file_has_unlabelled_lines(tiny_digits_run, image_folder, tmp_path):
    """gluon-dml embed writes one labels array: a list with unlabelled lines gives none, and says
    so in one line naming the first unlabelled image."""
    listing = _listing(tmp_path, image_folder, labelled={'1', '3'})
    first = next(str(p) for p in sorted(image_folder.glob('[0-3]/*.png')) if p.parent.name == '0')
    out = tmp_path / 'e.npz'
    proc = run_command('embed', tiny_digits_run, '--images', listing, '--out', out, check=True)
    assert 'warning: ' in proc.stderr and '(first: %s)' % first in proc.stderr, proc.stderr
    with np.load(out) as z:
        assert 'labels' not in z.files and len(z['paths']) == len(listing.read_text().splitlines())


def test_search_on_a_milvus_lite_catalogue_held_by_another_process(tiny_digits_run, image_folder,
                                                                  tmp_path):
    """A second real process holds the catalogue as gluon-dml serve does (its .lock, and the
    Milvus Lite file open): search says which process serves it and to query the service,
    instead of "Cannot open the Milvus Lite file"; Milvus Lite's own lock file is left alone; once
    the holder is gone, search reads the catalogue."""
    pytest.importorskip('pymilvus', reason='the milvus extra is not installed')
    listing = tmp_path / 'l.txt'
    listing.write_text('\n'.join(sorted(str(p) for p in image_folder.glob('[0-2]/*.png'))) + '\n')
    cat = tmp_path / 'cat'
    run_command('index', tiny_digits_run, '--images', listing, '--out', cat, '--backend', 'milvus',
                '--no-progress', check=True)
    holder = subprocess.Popen([sys.executable, '-c', (
        'import sys, time; from gluon_dml.catalog import lock_catalog, open_catalog; '
        'lock_catalog(sys.argv[1]); c = open_catalog(sys.argv[1]); print(len(c.index), flush=True); '
        'time.sleep(300)'), str(cat)], stdout=subprocess.PIPE, text=True, env=script_env(), cwd=REPO)
    try:
        assert int(holder.stdout.readline()) > 0
        for _ in range(2):               # the second try as the first (milvus-lite untouched)
            bad = run_command('search', cat, '--id', 0, '-k', 3)
            assert bad.returncode == 2, (bad.stdout, bad.stderr)
            assert 'Cannot open the Milvus Lite file' not in bad.stderr
            assert ('The catalogue %s is being served by process %d' % (cat, holder.pid)
                    in bad.stderr), bad.stderr
            assert 'send queries to the service (POST /search)' in bad.stderr
            assert (cat / '.milvus.db.lock').exists()
    finally:
        holder.kill()
        holder.wait()
    hits = json.loads(run_command('search', cat, '--id', 0, '-k', 3, '--json', check=True).stdout)
    assert len(hits) == 3
    c = open_catalog(str(cat))
    assert len(c.index) == len(listing.read_text().split())
    c.close()


def test_a_query_image_that_cannot_be_read_is_one_sentence_about_the_query(
        tiny_digits_run, image_folder, tmp_path):
    """search --image with a missing file, a truncated PNG or a text file: one error line about
    the query image, not the training advice (the dataset's annotation files, --skip-bad-images,
    which search does not take)."""
    cat = tmp_path / 'cat'
    build_catalog(str(tiny_digits_run), str(image_folder), str(cat))[0].close()
    truncated = tmp_path / 'cut.png'
    data = open(sorted(image_folder.glob('0/*.png'))[0], 'rb').read()
    truncated.write_bytes(data[:len(data) // 2])
    text = tmp_path / 'notes.png'
    text.write_text('not an image\n')
    cases = {tmp_path / 'missing.png': 'The query image %s does not exist.' % (tmp_path / 'missing.png'),
             truncated: 'The query image %s cannot be read (cannot decode: ' % truncated,
             text: 'The query image %s cannot be read (cannot decode: cannot identify image file'
                   % text}
    for query, said in cases.items():
        proc = run_command('search', cat, '--image', query, '-k', 3)
        assert proc.returncode == 2, (query, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error: ' + said), (query, proc.stderr)
        assert 'skip-bad-images' not in proc.stderr and 'annotation' not in proc.stderr


def test_parts_embedded_by_another_network_are_not_reused(tiny_digits_run, image_folder, tmp_path):
    """An index interrupted with one run, then the same images into the same --out with another
    run (the user picked the wrong run, or trained it further meanwhile): the parts the first
    network embedded are embedded again, not reused. Before, the catalogue silently held the
    first network's vectors for them and the second's for the rest (an image was not its own
    nearest neighbour)."""
    other = tmp_path / 'other-run'
    run_command('train-margin', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '2',
                '--seed', '7', '--no-progress', '--save-dir', other, check=True)
    out = tmp_path / 'cat'
    argv = ('--images', image_folder, '--out', out, '--chunk', '30', '--batch-size', '8',
            '--no-progress')
    proc = run_command('index', tiny_digits_run, *argv,
                       env=script_env(GLUON_DML_FAULTS='index-part@2:int'))
    assert proc.returncode == 130, (proc.stdout, proc.stderr)
    again = run_command('index', other, *argv, check=True)
    assert 'was done before, reused' not in again.stdout, again.stdout
    assert again.stdout.count('was made by another network') == 2, again.stdout
    fresh = tmp_path / 'fresh'
    build_catalog(str(other), str(image_folder), str(fresh))[0].close()
    a, b = open_catalog(str(out)), open_catalog(str(fresh))
    by_path = {m['path']: i for i, m in b.index.all_metadata().items()}
    for i, m in a.index.all_metadata().items():
        np.testing.assert_allclose(a.index.vector(i), b.index.vector(by_path[m['path']]), atol=1e-5)
    a.close()
    b.close()


def test_a_continued_index_reads_the_images_a_kept_part_found_unreadable(
        tiny_digits_run, image_folder, tmp_path):
    """An index interrupted after a part that holds an unreadable image; the user replaces the
    image and runs the same command: the reused part tries the image again and embeds it, and the
    catalogue equals a fresh build's (same ids, paths and vectors). Before, the part's record kept
    it "skipped" until the catalogue was rebuilt from scratch."""
    import shutil
    images = tmp_path / 'digits'
    shutil.copytree(str(image_folder), str(images))
    broken = sorted(images.glob('0/*.png'))[1]                     # in the first part of 30
    good = broken.read_bytes()
    broken.write_bytes(good[:len(good) // 2])
    out = tmp_path / 'cat'
    argv = ('index', tiny_digits_run, '--images', images, '--out', out, '--chunk', '30',
            '--batch-size', '8', '--no-progress')
    proc = run_command(*argv, env=script_env(GLUON_DML_FAULTS='index-part@2:int'))
    assert proc.returncode == 130, (proc.stdout, proc.stderr)
    broken.write_bytes(good)                                       # the user replaces it
    again = run_command(*argv, check=True)
    assert ('part 1/4 was done before, reused; 1 of its 1 unreadable image(s) read now, embedded'
            in again.stdout), again.stdout
    assert 'part 2/4 was done before, reused\n' in again.stdout, again.stdout
    assert '120 items (120 added, 0 unreadable skipped' in again.stdout, again.stdout
    fresh = tmp_path / 'fresh'
    build_catalog(str(tiny_digits_run), str(images), str(fresh), chunk=30, batch_size=8)[0].close()
    a, b = open_catalog(str(out)), open_catalog(str(fresh))
    try:
        assert a.index.all_metadata() == b.index.all_metadata()
        for i in b.index.all_metadata():
            np.testing.assert_allclose(a.index.vector(i), b.index.vector(i), atol=1e-5)
    finally:
        a.close()
        b.close()


def test_a_build_where_no_image_could_be_read_says_why_and_keeps_nothing(
        tiny_digits_run, image_folder, tmp_path):
    """Every image unreadable: one error line naming the first and why, and no folder left
    behind. Before, the line gave no reason and OUT/.embedding kept the images as unreadable, so
    the same command after the user replaced the files failed again without reading them."""
    photos = tmp_path / 'photos' / 'shoes'
    photos.mkdir(parents=True)
    good = sorted(image_folder.glob('0/*.png'))[0].read_bytes()
    (photos / 'a.png').write_bytes(good[:len(good) // 2])
    out = tmp_path / 'cat'
    argv = ('index', tiny_digits_run, '--images', photos.parent, '--out', out, '--no-progress')
    proc = run_command(*argv)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert ('error: None of the 1 image(s) of %s could be read (first: %s, cannot decode: '
            % (photos.parent, photos / 'a.png')) in proc.stderr, proc.stderr
    assert not out.exists()
    (photos / 'a.png').write_bytes(good)                 # the user replaces the file
    again = run_command(*argv, check=True)
    assert '1 items (1 added, 0 unreadable skipped' in again.stdout, again.stdout


def test_a_damaged_catalogue_file_is_one_sentence_naming_it(tiny_digits_run, image_folder,
                                                            tmp_path):
    """A catalogue whose files were cut short, emptied or removed (a full disk, a careless copy):
    search named no file (numpy's "EOF: reading array header", json's "Expecting value"), faiss's
    read error was an "unexpected RuntimeError (a bug?)", and a run.json emptied to {} was
    "unexpected KeyError: missing 'run_dir'" on a query by image. Each is one sentence naming the
    file, exit code 2."""
    import shutil
    good = tmp_path / 'good'
    build_catalog(str(tiny_digits_run), str(image_folder), str(good))[0].close()
    version = sorted(p.name for p in good.glob('v-*'))[-1]
    query = sorted(image_folder.glob('3/*.png'))[0]

    def cut(f):
        f.write_bytes(f.read_bytes()[:100])
    cases = [('run.json', lambda f: f.write_text('{}'), ['--image', query],
              'run.json is damaged (it records no run_dir, kind, dim).'),
             ('run.json', lambda f: f.write_text('[]'), ['--id', '1'],
              'run.json is damaged (not a JSON object).'),
             (version + '/index.faiss', cut, ['--id', '1'], 'index.faiss is damaged ('),
             (version + '/ids.npy', lambda f: f.write_bytes(b''), ['--id', '1'], 'ids.npy is damaged ('),
             (version + '/metadata.json', lambda f: f.unlink(), ['--id', '1'],
              'metadata.json is missing: the catalogue is incomplete'),
             (version + '/manifest.json', cut, ['--id', '1'], 'manifest.json is damaged (')]
    for n, (name, damage, query_flags, said) in enumerate(cases):
        cat = tmp_path / ('cat%d' % n)
        shutil.copytree(good, cat)
        damage(cat / name)
        proc = run_command('search', cat, *query_flags, '-k', 3)
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and said in lines[0] and str(cat) in lines[0], (name, proc.stderr)
        assert 'unexpected' not in proc.stderr and 'Traceback' not in proc.stderr
    assert json.loads(run_command('search', good, '--id', '1', '-k', 3, '--json', check=True).stdout)


def test_a_query_vector_file_that_cannot_be_searched_is_one_sentence_naming_it(
        tiny_digits_run, hash_run, image_folder, tmp_path):
    """search --vector with text in it ("could not convert string to float", no file named), an
    infinite value (a RuntimeWarning first), complex values (the imaginary part dropped in
    silence), a .npz (read as an archive: "has 64 values; got shape (1, 1)"), no rows (nothing
    printed, exit 0), or NaN given to a catalogue of codes (searched as 0 bits): one sentence
    naming --vector and the file, exit 2. A good vector is still searched."""
    floats, codes = tmp_path / 'floats', tmp_path / 'codes'
    listing = tmp_path / 'l.txt'
    listing.write_text('\n'.join(sorted(str(p) for p in image_folder.glob('[0-2]/*.png'))) + '\n')
    build_catalog(str(tiny_digits_run), str(listing), str(floats))[0].close()
    build_catalog(str(hash_run), str(listing), str(codes))[0].close()
    dim = open_catalog(str(floats)).dim
    bits = open_catalog(str(codes)).dim

    def saved(name, array):
        path = tmp_path / name
        np.save(str(path), array)
        return path
    archive = tmp_path / 'v.npz'
    np.savez(str(archive), q=np.ones(dim, np.float32))
    inf = np.ones(dim, np.float32)
    inf[0] = np.inf
    cases = [(floats, saved('text.npy', np.array(['a'] * dim)),
              'a query vector must hold numbers; got dtype <U1.'),
             (floats, saved('inf.npy', inf), 'a query vector holds NaN or infinite values.'),
             (floats, saved('complex.npy', np.ones(dim, np.complex64)),
              'a query vector must hold numbers; got dtype complex64.'),
             (floats, archive, 'is a .npz archive (arrays: q); give a .npy file of one array'),
             (floats, saved('none.npy', np.ones((0, dim), np.float32)),
              'holds no vector (shape (0, %d)).' % dim),
             (codes, saved('nan.npy', np.full(bits, np.nan, np.float32)),
              'a query vector holds NaN or infinite values.')]
    for cat, vector, said in cases:
        proc = run_command('search', cat, '--vector', vector, '-k', 3)
        assert proc.returncode == 2, (vector, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error: --vector %s' % vector), proc.stderr
        assert said in lines[0], (vector, proc.stderr)
    good = saved('good.npy', open_catalog(str(floats)).index.vector(0))
    hits = json.loads(run_command('search', floats, '--vector', good, '-k', 3, '--json',
                                  check=True).stdout)
    assert hits[0]['id'] == 0


def test_add_refuses_index_settings_it_would_ignore(tiny_digits_run, image_folder, tmp_path):
    """index --add adds to the catalogue's own index: --backend milvus on a faiss catalogue,
    another --index-type, --nlist or --nprobe were ignored in silence (the user believed the
    catalogue moved to Milvus). Refused before anything is embedded; the catalogue's own
    settings (or none) add as before."""
    cat = tmp_path / 'cat'
    first = sorted(image_folder.glob('[0-1]/*.png'))
    listing = tmp_path / 'l.txt'
    listing.write_text('\n'.join(str(p) for p in first) + '\n')
    build_catalog(str(tiny_digits_run), str(listing), str(cat))[0].close()
    more = sorted(image_folder.glob('2/*.png'))
    for flags, said in (
            (['--backend', 'milvus'], '--backend milvus does not apply with --add: %s is a faiss '
                                      'flat catalogue, and --add adds to its own index' % cat),
            (['--index-type', 'hnsw', '--nlist', '5'],
             '--index-type hnsw, --nlist 5 do not apply with --add'),
            (['--nprobe', '4'], '--nprobe 4 does not apply with --add')):
        proc = run_command('index', tiny_digits_run, '--images', more[0], '--out', cat, '--add',
                           '--no-progress', *flags)
        assert proc.returncode == 2 and said in proc.stderr, (flags, proc.stdout, proc.stderr)
        assert 'embedding:' not in proc.stdout
    assert len(open_catalog(str(cat)).index) == len(first)
    proc = run_command('index', tiny_digits_run, '--images', more[0], '--out', cat, '--add',
                       '--backend', 'faiss', '--index-type', 'flat', '--no-progress', check=True)
    assert '(1 added' in proc.stdout and len(open_catalog(str(cat)).index) == len(first) + 1


def test_uri_given_for_a_faiss_catalogue_is_one_sentence_naming_it(tiny_digits_run, image_folder,
                                                                   tmp_path):
    """search --uri (or index --add --uri) on a faiss catalogue said the index layer's "open_index
    takes no options for a faiss catalogue; got uri."; it names --uri and says to leave it out."""
    cat = tmp_path / 'cat'
    build_catalog(str(tiny_digits_run), str(sorted(image_folder.glob('0/*.png'))[0]),
                  str(cat))[0].close()
    said = ('error: --uri http://127.0.0.1:1 reaches a Milvus collection, but %s is a faiss '
            'catalogue (its index is in the folder): leave --uri out.' % cat)
    for argv in (('search', cat, '--id', '0'),
                 ('index', tiny_digits_run, '--images', image_folder, '--out', cat, '--add')):
        proc = run_command(*argv, '--uri', 'http://127.0.0.1:1')
        assert proc.returncode == 2 and proc.stderr.strip() == said, (argv, proc.stderr)
    assert len(open_catalog(str(cat)).index) == 1


def test_an_image_listed_twice_is_one_item_and_keeps_its_label(tiny_digits_run, image_folder,
                                                               tmp_path):
    """A list file naming an image on two lines made two items of it, both with the label of the
    last line (the first line's label was lost). It is one item, said in a note; two different
    labels for it are refused before anything is embedded."""
    a, b = sorted(image_folder.glob('1/*.png'))[:2]
    listing = tmp_path / 'twice.txt'
    listing.write_text('%s 1\n%s 7\n%s 1\n' % (a, b, a))
    cat = tmp_path / 'cat'
    proc = run_command('index', tiny_digits_run, '--images', listing, '--out', cat,
                       '--no-progress', check=True)
    assert ('note: 1 line(s) of %s repeat an image listed before; each image is indexed once'
            % listing) in proc.stdout
    c = open_catalog(str(cat))
    assert sorted((m['path'], m['label']) for m in c.index.all_metadata().values()) == \
        [(str(a), '1'), (str(b), '7')]
    c.close()
    listing.write_text('%s 1\n%s 2\n' % (a, a))
    bad = run_command('index', tiny_digits_run, '--images', listing, '--out', tmp_path / 'c2',
                      '--no-progress')
    assert bad.returncode == 2 and bad.stderr.strip() == (
        'error: %s lists %s twice with different labels (1 and 2); an image is one item of the '
        'catalogue, with one label.' % (listing, a)), bad.stderr
    assert 'embedding:' not in bad.stdout and not (tmp_path / 'c2').exists()


def test_uri_without_backend_milvus_is_one_sentence_naming_it(tiny_digits_run, image_folder,
                                                              tmp_path):
    """index --uri http://... without --backend milvus was the index layer's "Unknown faiss
    index parameter(s): uri; known: ef_construction, ...": it names --uri and --backend."""
    for flags in ([], ['--backend', 'faiss']):
        out = tmp_path / 'new' / 'cat'
        proc = run_command('index', tiny_digits_run, '--images', image_folder, '--out', out,
                           '--uri', 'http://127.0.0.1:1', '--no-progress', *flags)
        assert proc.returncode == 2 and proc.stderr.strip() == (
            'error: --uri http://127.0.0.1:1 is a Milvus address: give --backend milvus with it '
            '(the faiss backend keeps the index in the catalogue folder).'), proc.stderr
        assert not (tmp_path / 'new').exists()


def test_out_that_is_the_run_folder_is_refused(tiny_digits_run, image_folder):
    """index RUN --out RUN put the catalogue's files among the run's, and the catalogue's writer
    lock is the run's own RUN/.lock (a service holding the catalogue kept the run from being
    resumed). Refused before anything is written; the run folder is left as it was."""
    before = sorted(os.listdir(tiny_digits_run))
    proc = run_command('index', tiny_digits_run, '--images', image_folder, '--out',
                       str(tiny_digits_run) + '/', '--no-progress')
    assert proc.returncode == 2 and proc.stderr.strip() == (
        'error: --out %s/ is the run folder itself; a catalogue goes in a folder of its own (e.g. '
        '--out %s/catalog).' % (tiny_digits_run, tiny_digits_run)), proc.stderr
    assert sorted(os.listdir(tiny_digits_run)) == before


def test_search_of_a_milvus_lite_catalogue_whose_file_is_gone(tiny_digits_run, image_folder,
                                                              tmp_path):
    """A Milvus Lite catalogue whose milvus.db was removed: search let Milvus Lite make a new,
    empty milvus.db in the catalogue (a reader wrote into it), then said the collection was
    "not held". It says the file is missing and writes nothing."""
    pytest.importorskip('pymilvus', reason='the milvus extra is not installed')
    cat = tmp_path / 'cat'
    run_command('index', tiny_digits_run, '--images', sorted(image_folder.glob('0/*.png'))[0],
                '--out', cat, '--backend', 'milvus', '--no-progress', check=True)
    (cat / 'milvus.db').unlink()
    before = sorted(os.listdir(cat))
    proc = run_command('search', cat, '--id', '0')
    assert proc.returncode == 2 and proc.stderr.strip() == (
        'error: The Milvus Lite file %s of the catalogue %s is missing: its items are gone; build '
        'the catalogue again (gluon-dml index).' % (cat / 'milvus.db', cat)), proc.stderr
    assert sorted(os.listdir(cat)) == before


def test_a_filter_without_a_field_is_refused(tiny_digits_run, image_folder, tmp_path):
    """search --filter =3 (the field left out) searched for items whose field '' is 3 and said
    only "no item matches"; --filter 3 was refused. Both are refused alike."""
    cat = tmp_path / 'cat'
    build_catalog(str(tiny_digits_run), str(sorted(image_folder.glob('3/*.png'))[0]),
                  str(cat))[0].close()
    for given in ('=3', ' =3', '3'):
        proc = run_command('search', cat, '--id', '0', '--filter', given)
        assert proc.returncode == 2 and proc.stderr.strip() == (
            'error: --filter takes FIELD=VALUE, got %r.' % given), (given, proc.stderr)
    proc = run_command('search', cat, '--id', '0', '--filter', 'label=3', check=True)
    assert 'query: id 0' in proc.stdout


def test_more_than_ten_unreadable_images_are_all_accounted_for(tiny_digits_run, image_folder,
                                                               tmp_path):
    """The report keeps the first 10 unreadable images: with 12, ten were listed and two dropped
    without a word (the summary's count said 12). The rest are counted on a line of their own."""
    import shutil
    pics = tmp_path / 'pics'
    shutil.copytree(image_folder / '0', pics / '0')
    for i in range(12):
        (pics / ('broken-%02d.png' % i)).write_bytes(b'not an image')
    proc = run_command('index', tiny_digits_run, '--images', pics, '--out', tmp_path / 'cat',
                       '--no-progress', check=True)
    listed = [l for l in proc.stdout.splitlines() if l.startswith('skipped: ')]
    assert len(listed) == 11 and listed[-1] == 'skipped: 2 more unreadable image(s), not listed', \
        proc.stdout
    assert '12 unreadable skipped' in proc.stdout
