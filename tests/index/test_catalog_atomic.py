"""Atomic save of a catalogue: a failure or a kill between writing the index and writing its
metadata (or before the pointer swap) leaves the previous version, index and metadata together,
as the one that opens; the next save cleans up the leftovers."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gluon_dml.index import create_index, faiss_backend, open_index
from gluon_dml.index import core

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _vectors(n, seed):
    return np.random.RandomState(seed).randn(n, 16).astype(np.float32)


def _state(path):
    """What a reader sees: ids, their metadata and each id's nearest neighbour to itself."""
    idx = open_index(path)
    ids = idx.ids()
    meta = {int(i): idx.get(int(i)) for i in ids}
    own = [idx.search(idx.vector(int(i)), k=1)[0][0].id for i in ids[:20]]
    return ids.tolist(), meta, own


def _make_v1(path):
    idx = create_index('faiss', 'float', dim=16, metric='l2', index_type='flat', path=path)
    idx.add(_vectors(50, 0), metadata=[{'path': 'v1/%d' % i} for i in range(50)])
    idx.save()
    return idx


def test_failure_between_index_and_metadata_writes_keeps_the_old_version(tmp_path, monkeypatch):
    path = str(tmp_path / 'cat')
    idx = _make_v1(path)
    v1 = _state(path)
    assert v1[0] == list(range(50)) and v1[2] == list(range(20))

    idx.remove(list(range(10)))
    idx.add(_vectors(30, 1), metadata=[{'path': 'v2/%d' % i} for i in range(30)])
    written = []
    real_index_writer = faiss_backend._write_index_file

    def index_then_note(*args):
        real_index_writer(*args)
        written.append(args[1])                  # the new index file is on disk

    def fail(*args, **kwargs):
        raise OSError('disk full (simulated) between the index and the metadata writes')
    monkeypatch.setattr(faiss_backend, '_write_index_file', index_then_note)
    monkeypatch.setattr(faiss_backend, '_write_metadata', fail)
    with pytest.raises(OSError, match='simulated'):
        idx.save()
    assert len(written) == 1 and os.path.exists(written[0])     # the index file was written...
    # ...but the catalogue still opens as version 1, index and metadata agreeing
    assert _state(path) == v1
    pointer = json.load(open(os.path.join(path, 'CATALOG.json')))
    assert pointer['current'] == 'v-000001'
    assert any(n.startswith('.tmp-') for n in os.listdir(path))   # the unfinished save

    monkeypatch.undo()
    idx.save()                                                    # a good save cleans up
    names = sorted(os.listdir(path))
    assert names == ['CATALOG.json', 'v-000002'], names
    ids, meta, own = _state(path)
    assert ids == list(range(10, 80)) and meta[60] == {'path': 'v2/10'} and own == ids[:20]


def test_failure_before_the_pointer_swap_keeps_the_old_version(tmp_path, monkeypatch):
    path = str(tmp_path / 'cat')
    idx = _make_v1(path)
    v1 = _state(path)
    idx.remove([0, 1, 2])
    real = core.atomic_write_json

    def fail_on_pointer(p, obj):
        if os.path.basename(p) == 'CATALOG.json':
            raise OSError('killed before the pointer swap (simulated)')
        return real(p, obj)
    monkeypatch.setattr(core, 'atomic_write_json', fail_on_pointer)
    with pytest.raises(OSError, match='pointer swap'):
        idx.save()
    assert os.path.isdir(os.path.join(path, 'v-000002'))          # complete but not current
    assert _state(path) == v1
    monkeypatch.undo()
    idx.save()
    assert sorted(os.listdir(path)) == ['CATALOG.json', 'v-000003']
    assert _state(path)[0] == list(range(3, 50))


CRASH_SCRIPT = textwrap.dedent('''
    import os, sys
    import numpy as np
    from gluon_dml.index import faiss_backend, open_index
    idx = open_index(sys.argv[1])
    idx.remove(list(range(25)))
    idx.add(np.random.RandomState(2).randn(40, 16).astype(np.float32),
            metadata=[{'path': 'v2/%d' % i} for i in range(40)])
    def die(*args, **kwargs):
        os._exit(9)          # like a kill: no exception handler, no cleanup runs
    faiss_backend._write_metadata = die
    idx.save()
''')


def test_process_killed_mid_save_leaves_a_consistent_catalogue(tmp_path):
    path = str(tmp_path / 'cat')
    _make_v1(path)
    v1 = _state(path)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''),
               OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', CRASH_SCRIPT, path], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    leftovers = [n for n in os.listdir(path) if n.startswith('.tmp-')]
    assert leftovers and os.path.exists(os.path.join(path, leftovers[0], 'index.faiss'))
    assert not os.path.exists(os.path.join(path, leftovers[0], 'metadata.json'))
    assert _state(path) == v1                  # the old index with the old metadata
