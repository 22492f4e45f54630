"""The Milvus backend on embedded Milvus Lite (a real .db file in the catalogue folder) against
exact faiss on the same vectors: float (IP and L2) and binary (Hamming), reopen, remove,
metadata filters, clear errors. Needs the milvus extra (pip install -e ".[milvus]")."""
import logging
import re
import os

import numpy as np
import pytest

pytest.importorskip('pymilvus', reason='the milvus extra is not installed: pip install -e ".[milvus]"')
pytest.importorskip('milvus_lite', reason='the milvus extra is not installed: pip install -e ".[milvus]"')

from gluon_dml.index import UnknownIdError, create_index, open_index  # noqa: E402
from gluon_dml.index import milvus_backend  # noqa: E402
from gluon_dml.index.milvus_backend import filter_expression  # noqa: E402

D = 24


@pytest.fixture(scope='module')
def data():
    rng = np.random.RandomState(0)
    centres = rng.randn(20, D).astype(np.float32)
    x = (centres[rng.randint(0, 20, 3000)] + 0.5 * rng.randn(3000, D)).astype(np.float32)
    q = (x[rng.choice(3000, 30, replace=False)] + 0.3 * rng.randn(30, D)).astype(np.float32)
    meta = [{'label': int(i % 4), 'path': 'img/%d.png' % i, 'split': 'train' if i % 3 else 'test'}
            for i in range(3000)]
    return x, q, meta


def _ids(hits):
    return [[h.id for h in row] for row in hits]


def _same_float_hits(a, b):
    assert _ids(a) == _ids(b)      # continuous random data: no ties
    for ra, rb in zip(a, b):
        np.testing.assert_allclose([h.distance for h in ra], [h.distance for h in rb], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose([h.score for h in ra], [h.score for h in rb], rtol=1e-4, atol=1e-3)
        assert [h.metadata for h in ra] == [h.metadata for h in rb]


@pytest.mark.parametrize('metric,index_type', [('ip', 'flat'), ('l2', 'flat'), ('l2', 'ivf_flat')])
def test_float_milvus_lite_matches_exact_faiss_and_reopens(tmp_path, monkeypatch, caplog, data, metric,
                                                           index_type):
    x, q, meta = data
    path = str(tmp_path / 'cat')
    exact = create_index('faiss', 'float', dim=D, metric=metric, index_type='flat')
    exact.add(x, metadata=meta)
    params = {'nlist': 16, 'nprobe': 16} if index_type == 'ivf_flat' else {}
    m = create_index('milvus', 'float', dim=D, metric=metric, index_type=index_type, path=path, **params)
    assert m.add(x, metadata=meta).tolist() == list(range(3000))
    assert os.path.isfile(os.path.join(path, 'milvus.db'))
    want = exact.search(q, k=10)
    _same_float_hits(m.search(q, k=10), want)
    # remove: gone from results and from len; unknown ids are counted out
    drop = sorted({h.id for row in want for h in row[:2]})
    assert m.remove(drop + [10 ** 9]) == len(drop) and exact.remove(drop) == len(drop)
    assert len(m) == 3000 - len(drop)
    want = exact.search(q, k=10)
    _same_float_hits(m.search(q, k=10), want)
    info = m.info()
    assert info['backend'] == 'milvus' and info['lite'] and info['milvus_index'] == index_type.upper()
    m.save()
    m.close()
    again = open_index(path)
    try:
        assert len(again) == 3000 - len(drop) and again.index_type == index_type
        _same_float_hits(again.search(q, k=10), want)
        assert again.get(5) == meta[5]
        # the bulk read (one query iterator, here in batches of 700) gives what get() gives
        monkeypatch.setattr(milvus_backend, 'ID_BATCH', 700)
        with caplog.at_level(logging.WARNING):
            every = again.all_metadata()
        # pymilvus's warning at every Milvus Lite iterator (no MVCC timestamp) is not printed
        assert not [r for r in caplog.records if 'mvccTs' in r.getMessage()]
        assert list(every) == [i for i in range(3000) if i not in drop]
        assert all(every[i] == meta[i] for i in every)
        np.testing.assert_allclose(again.vector(5), x[5], rtol=1e-6)
        assert again.add(x[:2]).tolist() == [3000, 3001]
    finally:
        again.close()


def test_binary_milvus_lite_matches_faiss_hamming(tmp_path):
    rng = np.random.RandomState(1)
    centres = rng.rand(10, 64) > 0.5
    db = centres[rng.randint(0, 10, 2000)] ^ (rng.rand(2000, 64) < 0.1)
    q = centres[rng.randint(0, 10, 20)] ^ (rng.rand(20, 64) < 0.1)
    packed = np.packbits(db, axis=1)
    exact = create_index('faiss', 'binary', dim=64, index_type='flat')
    exact.add(packed)
    m = create_index('milvus', 'binary', dim=64, index_type='flat', path=str(tmp_path))
    try:
        m.add(np.where(db, 1, -1), metadata=[{'label': i % 3} for i in range(2000)])  # +-1 codes
        dist = np.unpackbits(np.packbits(q, axis=1)[:, None, :] ^ packed[None], axis=2).sum(2)
        got, want = m.search(q.astype(np.uint8), k=10), exact.search(q.astype(np.uint8), k=10)
        for g, w, d in zip(got, want, dist):
            # Hamming distances tie: the same distances at each rank, ids agreeing below the 10th
            assert [h.distance for h in g] == [h.distance for h in w] == sorted(d)[:10]
            assert all(d[h.id] == h.distance for h in g)
            kth = sorted(d)[9]
            assert {h.id for h in g if h.distance < kth} == {h.id for h in w if h.distance < kth}
            assert [(h.distance, h.id) for h in g] == sorted((h.distance, h.id) for h in g)
            assert g[0].score == pytest.approx(1 - g[0].distance / 64)
        np.testing.assert_array_equal(m.vector(7), packed[7])
        assert m.remove([7, 8]) == 2 and len(m) == 1998
        assert all(h.id not in (7, 8) for row in m.search(packed[7:9], k=5) for h in row)
        hits = m.search(q[:5].astype(np.uint8), k=10, filter={'label': 2})
        assert all(len(r) == 10 and all(h.metadata['label'] == 2 for h in r) for r in hits)
    finally:
        m.close()


def test_metadata_filters_agree_with_faiss(tmp_path, data):
    x, q, meta = data
    exact = create_index('faiss', 'float', dim=D, metric='l2', index_type='flat')
    exact.add(x, metadata=meta)
    m = create_index('milvus', 'float', dim=D, metric='l2', index_type='flat', path=str(tmp_path))
    try:
        m.add(x, metadata=meta)
        for flt in ({'label': 2}, {'label': [0, 3], 'split': 'test'}, {'path': 'img/17.png'},
                    lambda md: md['label'] == 1 and md['path'].endswith('5.png')):
            got, want = m.search(q, k=7, filter=flt), exact.search(q, k=7, filter=flt)
            _same_float_hits(got, want)
            assert all(len(r) == min(7, len(w)) for r, w in zip(got, want))
        assert m.search(q[:2], k=3, filter={'label': 9}) == [[], []]
        assert [h.id for h in m.search_by_id(3, k=4)] == [h.id for h in exact.search_by_id(3, k=4)]
    finally:
        m.close()


def test_filter_expression_quotes_values():
    assert filter_expression({'label': 3}) == 'meta["label"] == 3'
    assert filter_expression({'ok': True, 'x': [1.5, 2]}) == \
        'meta["ok"] == true and (meta["x"] in [1.5] or meta["x"] in [2])'
    assert filter_expression({'label': [4, '4', 5]}) == '(meta["label"] in [4, 5] or meta["label"] in ["4"])'
    with pytest.raises(ValueError, match='non-empty strings'):
        filter_expression({'': 4})


def test_filters_mixing_types_run_on_milvus_lite(tmp_path, data):
    # `--filter label=4` asks for 4 or "4"; Milvus refuses one `in` list of both types
    x, _, _ = data
    m = create_index('milvus', 'float', dim=D, metric='l2', index_type='flat', path=str(tmp_path))
    try:
        m.add(x[:6], metadata=[{'label': 4}, {'label': '4'}, {'label': 4.5}, {'label': 'x'},
                               {'label': True}, {'sku': 1}])
        for flt, want in (({'label': [4, '4']}, [0, 1]), ({'label': [4, 4.5, 'x']}, [0, 2, 3]),
                          ({'label': [True, 'x']}, [3, 4]), ({'label': 4.5}, [2]),
                          ({'label': [4, '4'], 'sku': 1}, [])):
            assert sorted(h.id for h in m.search(x[0], k=6, filter=flt)[0]) == want, flt
    finally:
        m.close()
    assert filter_expression({'path': 'a"b\\c'}) == 'meta["path"] == "a\\"b\\\\c"'


def test_quoting_survives_a_real_search(tmp_path, data):
    x, _, _ = data
    m = create_index('milvus', 'float', dim=D, metric='l2', index_type='flat', path=str(tmp_path))
    try:
        odd = ['it\'s "quoted" \\ here', 'plain', 'ünïcode']
        m.add(x[:3], metadata=[{'path': p} for p in odd])
        for i, p in enumerate(odd):
            assert [h.id for h in m.search(x[0], k=3, filter={'path': p})[0]] == [i]
    finally:
        m.close()


def test_file_names_that_are_not_utf8_are_stored_and_read_back_whole(tmp_path, data):
    """A Latin-1 file name (b'caf\\xe9.png' reaches Python as 'caf\\udce9.png') made pymilvus
    refuse the whole insert ('str is not valid UTF-8'): gluon-dml index --backend milvus ended in
    an unexpected error. It is stored as its bytes and read back as the same string by get,
    search and all_metadata, after a reopen too."""
    x, _, _ = data
    name = os.fsdecode(b'img/caf\xe9.png')
    meta = [{'path': name, 'label': 1, 'tags': [name, 'ok']}, {'path': 'img/plain.png', 'label': 2},
            {'path': 'ünïcode.png', 'label': 3}]
    path = str(tmp_path / 'cat')
    m = create_index('milvus', 'float', dim=D, metric='l2', index_type='flat', path=path)
    try:
        m.add(x[:3], metadata=meta)
        assert [m.get(i) for i in range(3)] == meta
        assert m.search(x[0], k=1)[0][0].metadata == meta[0]
        # filters on such a name find it (the expression compares the stored bytes)
        for flt in ({'path': name}, {'path': [name, 'img/plain.png']}, {'path': [name, 7]}):
            found = sorted(h.id for h in m.search(x[0], k=3, filter=flt)[0])
            assert found == ([0, 1] if 'img/plain.png' in flt['path'] else [0]), (flt, found)
        m.save()
    finally:
        m.close()
    again = open_index(path)
    try:
        assert again.all_metadata() == dict(enumerate(meta))
    finally:
        again.close()


def test_milvus_clear_errors(tmp_path, data):
    x, q, _ = data
    with pytest.raises(ValueError, match='HNSW needs a Milvus server'):
        create_index('milvus', 'float', dim=D, index_type='hnsw', path=str(tmp_path / 'a'))
    with pytest.raises(ValueError, match='BIN_IVF_FLAT needs a Milvus server'):
        create_index('milvus', 'binary', dim=64, index_type='ivf', path=str(tmp_path / 'b'))
    with pytest.raises(ValueError, match='faiss only'):
        create_index('milvus', 'binary', dim=64, index_type='hash', path=str(tmp_path / 'c'))
    with pytest.raises(ValueError, match='needs path='):
        create_index('milvus', 'float', dim=D)
    with pytest.raises(ValueError, match='Cannot reach the Milvus server at http://127.0.0.1:9'):
        create_index('milvus', 'float', dim=D, path=str(tmp_path / 'd'), uri='http://127.0.0.1:9', timeout=5)
    m = create_index('milvus', 'float', dim=D, index_type='flat', path=str(tmp_path / 'e'))
    try:
        m.add(x[:10])
        with pytest.raises(ValueError, match='dimension 5 but the index holds 24'):
            m.search(np.zeros((1, 5), np.float32))
        with pytest.raises(ValueError, match='k must be >= 1'):
            m.search(q, k=0)
        assert len(m.search(q[:1], k=10 ** 6)[0]) == 10
        with pytest.raises(UnknownIdError, match='no id 99'):
            m.get(99)
        with pytest.raises(ValueError, match='no id 99'):
            m.vector(99)
        with pytest.raises(ValueError, match='already in the index'):
            m.add(x[:2], ids=[3, 50])
        assert len(m) == 10
    finally:
        m.close()
    with pytest.raises(ValueError, match='already holds an index catalogue'):
        create_index('milvus', 'float', dim=D, path=str(tmp_path / 'e'))


def test_auto_ids_stay_unique_when_the_manifest_is_stale(tmp_path, data):
    x, _, _ = data
    path = str(tmp_path / 'cat')
    m = create_index('milvus', 'float', dim=D, path=path)          # auto: FLAT below 50,000
    m.add(x[:5])
    m.save()
    m.add(x[5:8])                                                  # not saved
    m.close()
    again = open_index(path)
    try:
        assert again.index_type == 'flat' and len(again) == 8
        assert again.add(x[8:10]).tolist() == [8, 9]
    finally:
        again.close()


def test_bench_metadata_prints_bulk_and_per_item_times():
    """bench/bench_metadata.py (docs/serve.md's figure) runs on Milvus Lite and checks that the
    bulk read gives what get() gives before it prints."""
    from tests.helpers import run_script
    proc = run_script('bench/bench_metadata.py', '--items', 3000, '--sample', 200, check=True)
    line = proc.stdout.strip().splitlines()[-1]
    m = re.match(r'milvus, 3000 items: all_metadata\(\) ([\d.]+) s; get\(\) per item ([\d.]+) s '
                 r'\(200 timed, scaled\); (\d+)x$', line)
    assert m, proc.stdout
    assert float(m.group(2)) > float(m.group(1))      # 3,000 queries cost more than one iterator


def test_open_index_refuses_a_milvus_lite_file_another_process_holds(tmp_path, data):
    """This process makes a Milvus Lite index and closes it, which frees the file; a second
    real process then holds it open (gluon_dml.index.open_index, no catalogue lock): open_index
    here is refused twice with the holder's pid before Milvus Lite is asked. milvus-lite 2.5.1 alone would log its own error and, on its way out, delete the
    holder's lock file (.milvus.db.lock), after which a third process would open the file beside
    the holder. The lock file stays, the holder still answers, and once it is gone the index
    opens here with its items."""
    import subprocess
    import sys
    from tests.helpers import REPO, script_env
    x = data[0]
    path = tmp_path / 'idx'
    m = create_index('milvus', 'float', dim=D, index_type='flat', path=str(path))
    m.add(x[:50])
    m.save()
    m.close()
    lock = path / '.milvus.db.lock'
    holder = subprocess.Popen([sys.executable, '-c', (
        'import sys, numpy as np; from gluon_dml.index import open_index; m = open_index(sys.argv[1]); '
        'print(len(m), flush=True); sys.stdin.readline(); '
        'print(m.search(np.zeros((1, %d), np.float32), k=3)[0][0].id, flush=True)' % D), str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=script_env(), cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == '50'
        assert milvus_backend.lite_file_holder(path / 'milvus.db') == str(holder.pid)
        for _ in range(2):
            with pytest.raises(ValueError, match=r'The Milvus Lite file %s is open in process %d '
                               % (re.escape(str(path / 'milvus.db')), holder.pid)):
                open_index(str(path))
            assert lock.exists()
        holder.stdin.write('\n')
        holder.stdin.flush()
        assert int(holder.stdout.readline()) in range(50)
        assert holder.wait(60) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert milvus_backend.lite_file_holder(path / 'milvus.db') is None
    m = open_index(str(path))
    try:
        assert len(m) == 50
        assert milvus_backend.lite_file_holder(path / 'milvus.db') is None     # this process's own
        again = open_index(str(path))         # a second index on the file in this process
        again.close()
        assert len(m) == 50                   # ... leaves the first one's Milvus Lite running
    finally:
        m.close()
    # closed: the file is free for another process (pymilvus alone keeps it until exit)
    other = subprocess.run([sys.executable, '-c', 'import sys; from gluon_dml.index import '
                            'open_index; print(len(open_index(sys.argv[1])))', str(path)],
                           capture_output=True, text=True, env=script_env(), cwd=REPO, timeout=120)
    assert other.stdout.strip() == '50', other.stderr[-2000:]
