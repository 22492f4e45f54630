"""gluon_dml.fileio: the folder lock shared by run folders and catalogues, and the clean-up of a
refused start (real files, a real second process)."""
import os
import subprocess
import sys

import pytest

from gluon_dml.fileio import (LockBusy, existing_ancestor, give_back_folder, hold_lock, lock_holder,
                              missing_folders, release_lock)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _try_lock_in_child(path):
    code = ('import sys; sys.path.insert(0, %r)\n'
            'from gluon_dml.fileio import LockBusy, hold_lock\n'
            'try:\n    hold_lock(%r)\nexcept LockBusy as e:\n    print("busy", e.pid)\n'
            'else:\n    print("taken")\n') % (REPO, path)
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          check=True).stdout.split()


def test_lock_keeps_another_process_out_until_released(tmp_path):
    path = str(tmp_path / '.lock')
    fd = hold_lock(path)
    assert fd is not None
    assert _try_lock_in_child(path) == ['busy', str(os.getpid())]
    release_lock(fd)
    assert _try_lock_in_child(path) == ['taken']


def test_lock_busy_in_the_same_process(tmp_path):
    path = str(tmp_path / '.lock')
    fd = hold_lock(path)
    try:
        with pytest.raises(LockBusy):
            hold_lock(path)
    finally:
        release_lock(fd)


def test_lock_holder_names_the_holder_and_takes_nothing(tmp_path):
    """lock_holder: the pid written by the process that holds the lock (this one, through another
    descriptor), None once released or with no lock file; it writes nothing and keeps nothing."""
    path = str(tmp_path / '.lock')
    assert lock_holder(path) is None and not os.path.exists(path)
    fd = hold_lock(path)
    assert lock_holder(path) == str(os.getpid())
    assert _try_lock_in_child(path) == ['busy', str(os.getpid())]      # the probe kept nothing
    release_lock(fd)
    assert lock_holder(path) is None
    with open(path) as f:
        assert f.read() == str(os.getpid())
    assert _try_lock_in_child(path) == ['taken']


def test_missing_folders_deepest_first(tmp_path):
    assert missing_folders(str(tmp_path)) == []
    deep = tmp_path / 'a' / 'b' / 'c'
    assert missing_folders(str(deep)) == [str(deep), str(tmp_path / 'a' / 'b'), str(tmp_path / 'a')]


def test_existing_ancestor_is_the_path_or_its_nearest_existing_parent(tmp_path):
    assert existing_ancestor(str(tmp_path)) == str(tmp_path)
    assert existing_ancestor(str(tmp_path / 'a' / 'b')) == str(tmp_path)
    (tmp_path / 'f').write_text('x')
    assert existing_ancestor(str(tmp_path / 'f' / 'sub' / 'x.onnx')) == str(tmp_path / 'f')


def test_give_back_the_folders_this_process_made(tmp_path):
    folder = tmp_path / 'runs' / 'run'
    made = missing_folders(str(folder))
    (folder / 'checkpoints').mkdir(parents=True)
    release_lock(hold_lock(str(folder / '.lock')))
    give_back_folder(str(folder), made, empty_subfolders=('checkpoints',))
    assert os.listdir(tmp_path) == []


def test_give_back_keeps_what_it_did_not_make(tmp_path):
    folder = tmp_path / 'run'
    made = missing_folders(str(folder))
    (folder / 'checkpoints').mkdir(parents=True)
    (folder / 'checkpoints' / 'epoch-1.params').write_text('x')
    (folder / 'notes.txt').write_text('mine')
    (folder / '.lock').write_text('1')
    give_back_folder(str(folder), made, empty_subfolders=('checkpoints',))
    assert sorted(os.listdir(folder)) == ['checkpoints', 'notes.txt']
    assert (folder / 'checkpoints' / 'epoch-1.params').read_text() == 'x'


def test_give_back_an_existing_empty_folder_stays(tmp_path):
    folder = tmp_path / 'out'
    folder.mkdir()
    (folder / '.lock').write_text('1')
    give_back_folder(str(folder), missing_folders(str(folder)))
    assert folder.is_dir() and os.listdir(folder) == []
