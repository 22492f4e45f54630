"""Starting a command: MXNet is imported without scikit-learn (its legacy FeedForward's only use
of it) and scipy.stats (its test utilities' and INT8 entropy calibration's), 0.6 s of every start;
both still import when the package or the user needs them, MXNet's own modules import
scipy.stats at its first use, and the user can keep MXNet's imports. Fresh processes, since the
import happens once."""
import os
import subprocess
import sys

from .helpers import REPO, script_env

PROBE = """
import sys
{before}
import gluon_dml
{between}
import mxnet
import mxnet.contrib.quantization as mxq
print(mxnet.model.BASE_ESTIMATOR.__module__, 'pandas' in sys.modules, 'scipy.stats' in sys.modules,
      mxq.stats is not None, mxnet.test_utils.ss is not None)
# MXNet's own statistical check of a sampler (a chi-square test through scipy.stats): it raised
# "scipy is not available" while importing gluon_dml left mxnet.test_utils.ss None
import numpy as np
buckets, probs = mxnet.test_utils.gen_buckets_probs_with_ppf(
    lambda x: mxnet.test_utils.ss.norm.ppf(x, 0, 1), 5)
mxnet.test_utils.verify_generator(lambda n: np.random.RandomState(0).normal(size=n), buckets, probs)
print('scipy.stats' in sys.modules, mxq.stats.entropy([1, 1]) > 0)
from sklearn.metrics import normalized_mutual_info_score
import scipy.stats
print(normalized_mutual_info_score([0, 0, 1, 1], [1, 1, 0, 0]), scipy.stats.entropy([1, 1]) > 0)
print(any(type(f).__name__ in ('_MXNetWithoutItsOptionalImports', '_ModuleHooks')
          for f in sys.meta_path))
"""


def _probe(before='', between='', **env):
    proc = subprocess.run([sys.executable, '-c', PROBE.format(before=before, between=between)],
                          cwd=REPO,
                          env=script_env(**env), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split('\n')[:4]


def test_mxnet_starts_without_scikit_learn_and_scipy_stats_which_still_import_afterwards():
    # MXNet's two modules that use scipy.stats hold a stand-in that imports it at first use
    assert _probe(GLUON_DML_MXNET_OPTIONAL='0') == ['builtins False False True True', 'True True',
                                                    '1.0 True', 'False']
    # a find_spec probe of mxnet between gluon_dml's import and MXNet's does not use up the hook
    # that sets them
    assert _probe(between='import importlib.util; importlib.util.find_spec("mxnet")') == [
        'builtins False False True True', 'True True', '1.0 True', 'False']


def test_mxnet_keeps_its_imports_when_asked_or_when_they_were_imported_first():
    assert _probe(GLUON_DML_MXNET_OPTIONAL='1') == ['sklearn.base True True True True',
                                                    'True True', '1.0 True', 'False']
    assert _probe(before='import sklearn.base') == ['sklearn.base True True True True',
                                                    'True True', '1.0 True', 'False']
    # scipy.stats imported first (without scikit-learn): MXNet gets it, and still no scikit-learn
    assert _probe(before='import scipy.stats') == ['builtins False True True True', 'True True',
                                                   '1.0 True', 'False']


OPERATORS = """
import gluon_dml
from gluon_dml import startup
compiled = []
code = startup.OperatorCodeCache.code
def recorded(self, source):
    c = code(self, source)
    compiled.append((source, c))
    return c
startup.OperatorCodeCache.code = recorded
import mxnet as mx
cache = startup.operator_cache
# every function's code object against the one MXNet's own exec compiles from the same source
different = sum(1 for source, c in compiled if c != compile(source, '<string>', 'exec'))
print(cache is None or len(compiled), different, cache and cache.hits, cache and cache.new)
x = mx.sym.Variable('x')
y = mx.sym.FullyConnected(x, num_hidden=2, no_bias=True, name='fc').bind(
    mx.cpu(), {'x': mx.nd.ones((1, 3)), 'fc_weight': mx.nd.ones((2, 3))}).forward()[0]
print(mx.nd.ones((2, 3)).sum().asscalar(), mx.np.arange(4).sum().item(), y.asnumpy().tolist())
"""


def _operators(cache):
    proc = subprocess.run([sys.executable, '-c', OPERATORS], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=script_env(GLUON_DML_CACHE=str(cache)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split()


def test_mxnet_operator_functions_are_compiled_once_and_are_the_ones_mxnet_compiles(tmp_path):
    first = _operators(tmp_path)                  # an empty cache: every function compiled
    n = int(first[0])
    assert n > 2000 and first[1:4] == ['0', '0', str(n)], first
    assert first[4:] == ['6.0', '6.0', '[[3.0,', '3.0]]'], first
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].startswith('mxnet-operators-'), files
    second = _operators(tmp_path)                 # every one from the file, none compiled
    assert second[:4] == [str(n), '0', str(n), '0'] and second[4:] == first[4:], second
    # a damaged file is compiled anew and written again
    (tmp_path / files[0]).write_bytes(b'not marshal')
    assert _operators(tmp_path)[:4] == [str(n), '0', '0', str(n)]
    assert _operators(tmp_path)[:4] == [str(n), '0', str(n), '0']


def test_the_operator_cache_is_off_with_the_cache_folder(tmp_path):
    out = _operators('off')
    assert out[:4] == ['True', '0', 'None', 'None'] and out[4:] == ['6.0', '6.0', '[[3.0,', '3.0]]']


def test_a_training_run_never_imports_scikit_learn_or_scipy_stats():
    # NMI is scored in numpy (metrics.nmi_score); Omniglot needs neither
    code = ('import sys, runpy; sys.argv = ["train_margin.py", "--data", "omniglot", "--epochs", '
            '"1", "--batches-per-epoch", "2", "--no-progress", "--save-dir", sys.argv[1]]; '
            'runpy.run_path("train_margin.py", run_name="__main__")')
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        probe = code + ('; print(sorted(m for m in sys.modules '
                        'if m.split(".")[0] == "sklearn" or m.startswith("scipy.stats")))')
        proc = subprocess.run([sys.executable, '-c', probe, os.path.join(tmp, 'run')], cwd=REPO,
                              env=script_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == '[]', proc.stdout[-2000:]


def test_bench_startup_prints_both_settings_and_their_ratio():
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'bench', 'bench_startup.py'),
                           '--rounds', '1'], cwd=REPO, env=script_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith('gluon-dml (no scikit-learn, scipy.stats; operators cached)')
    assert ' median ' in lines[0]
    assert lines[1].startswith('the same, operators compiled (GLUON_DML_CACHE=off)')
    assert lines[2].startswith("MXNet's own start (GLUON_DML_MXNET_OPTIONAL=1, GLUON_DML_CACHE=off)")
    assert lines[3].startswith('gluon-dml search --help starts ') and 'x as fast' in lines[3]


def test_module_hooks_run_around_the_module_once_and_survive_a_probe(tmp_path, monkeypatch):
    import importlib
    import importlib.util
    from gluon_dml import startup
    (tmp_path / 'hooked_pkg_for_test').mkdir()
    (tmp_path / 'hooked_pkg_for_test' / '__init__.py').write_text('from . import inner\n')
    (tmp_path / 'hooked_pkg_for_test' / 'inner.py').write_text('VALUE = 1\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    assert startup.before_module_runs('hooked_pkg_for_test.inner',
                                      lambda m: seen.append(('before', hasattr(m, 'VALUE'))))

    def after_outer(m):
        seen.append(('after outer', hasattr(m, 'inner')))
    startup.after_module_runs('hooked_pkg_for_test', after_outer)
    # added while the package runs (the inner module's hook): runs at the package's end
    startup.after_module_runs('hooked_pkg_for_test.inner', lambda m: startup.after_module_runs(
        'hooked_pkg_for_test', lambda p: seen.append(('added while running', hasattr(p, 'inner')))))
    try:
        assert importlib.util.find_spec('hooked_pkg_for_test') is not None   # a probe: no use
        assert seen == []
        importlib.import_module('hooked_pkg_for_test')
        assert seen == [('before', False), ('after outer', True), ('added while running', True)]
        assert not [n for f in sys.meta_path if isinstance(f, startup._ModuleHooks)
                    for n in f.hooks if n.startswith('hooked_pkg_for_test')]
        # imported already: an after-hook runs at once, a before-hook is refused
        startup.after_module_runs('hooked_pkg_for_test', lambda m: seen.append('now'))
        assert seen[-1] == 'now'
        assert not startup.before_module_runs('hooked_pkg_for_test', seen.append)
    finally:
        for name in ('hooked_pkg_for_test.inner', 'hooked_pkg_for_test'):
            sys.modules.pop(name, None)
        for f in sys.meta_path:
            if isinstance(f, startup._ModuleHooks):
                for n in [n for n in f.hooks if n.startswith('hooked_pkg_for_test')]:
                    del f.hooks[n]
