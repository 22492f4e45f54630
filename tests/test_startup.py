"""Starting a command: MXNet is imported without scikit-learn (its legacy FeedForward's only use
of it, 0.3-0.4 s of every start), scikit-learn still imports when the package needs it, and
the user can keep MXNet's import. Fresh processes, since the import happens once."""
import os
import subprocess
import sys

from .helpers import REPO, script_env

PROBE = """
import sys
{before}
import gluon_dml
import mxnet
print(mxnet.model.BASE_ESTIMATOR.__module__, 'pandas' in sys.modules)
from sklearn.metrics import normalized_mutual_info_score
print(normalized_mutual_info_score([0, 0, 1, 1], [1, 1, 0, 0]))
print(any(type(f).__name__ == '_NoScikitLearnForMXNet' for f in sys.meta_path))
"""


def _probe(before='', **env):
    proc = subprocess.run([sys.executable, '-c', PROBE.format(before=before)], cwd=REPO,
                          env=script_env(**env), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split('\n')[:3]


def test_mxnet_starts_without_scikit_learn_which_still_imports_afterwards():
    assert _probe(GLUON_DML_MXNET_SKLEARN='0') == ['builtins False', '1.0', 'False']


def test_mxnet_keeps_scikit_learn_when_asked_or_when_it_was_imported_first():
    assert _probe(GLUON_DML_MXNET_SKLEARN='1') == ['sklearn.base True', '1.0', 'False']
    assert _probe(before='import sklearn.base') == ['sklearn.base True', '1.0', 'False']


def test_bench_startup_prints_both_settings_and_their_ratio():
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'bench', 'bench_startup.py'),
                           '--rounds', '1'], cwd=REPO, env=script_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('gluon-dml (MXNet without scikit-learn)') and ' median ' in lines[0]
    assert lines[1].startswith("MXNet's own import (GLUON_DML_MXNET_SKLEARN=1)")
    assert lines[2].startswith('gluon-dml search --help starts ') and 'x as fast' in lines[2]
