"""gluon-dml: deep metric learning on MXNet/Gluon."""
import os as _os
import sys as _sys

__version__ = "0.2.0"

# float32's largest number (numpy.finfo(numpy.float32).max), in which MXNet trains and the index
# stores vectors: the one definition, here at the bottom of the package so that config, index and
# models can all import it (written out so that the package's root imports no numpy)
FLOAT32_MAX = 3.4028234663852886e+38

# the environment this process started with, before the package set anything (threads, the
# host-copy size, AMX, OpenBLAS's kernels for faiss): a command that starts itself again passes
# this on, so the new process chooses as this one did and computes bit for bit the same
ENV_AT_START = dict(_os.environ)


def _use_every_core():
    """MXNet 1.9 uses half the cores when OMP_NUM_THREADS is unset (it assumes hyper-threads):
    set it to the cores this process may run on, unless the user chose. Must run before MXNet
    loads, which importing any part of the package does."""
    if 'OMP_NUM_THREADS' not in _os.environ:
        try:
            cores = len(_os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = _os.cpu_count() or 1
        _os.environ['OMP_NUM_THREADS'] = str(max(1, cores))


def _serial_host_copies():
    """MXNet copies a numpy array of more than MXNET_CPU_PARALLEL_SIZE (default 200,000)
    values into an NDArray with an OpenMP loop run by the calling (Python) thread. That gives
    the process a second OpenMP thread team beside the engine's, and every training step after
    it ran about 23 % slower on two cores (bench/bench_host_copy.py) (one evaluation batch of 256 Omniglot images was
    enough; docs/speed.md). A plain memory copy gains nothing from the threads: copy serially,
    unless the user chose a size."""
    _os.environ.setdefault('MXNET_CPU_PARALLEL_SIZE', str(2 ** 31 - 1))   # parsed as a C int


class _AfterMXNetLoads:
    """Runs its callbacks (``callback(mxnet_module)``) right after ``mxnet`` is imported, once,
    whoever imports it. It stays in ``sys.meta_path`` until MXNet's module is executed, so a mere
    ``find_spec('mxnet')`` probe does not use it up. (A meta path finder needs only
    ``find_spec``; subclassing ``importlib.abc.MetaPathFinder`` would import
    ``importlib.resources``, ``tempfile`` and ``typing``: about 15 ms on every
    ``import gluon_dml``.)"""

    def __init__(self):
        self.callbacks = []
        self._looking = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != 'mxnet' or self._looking:
            return None
        import importlib.util
        self._looking = True
        try:
            spec = importlib.util.find_spec('mxnet')       # the other finders' answer
        finally:
            self._looking = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, 'exec_module'):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            _sys.meta_path[:] = [f for f in _sys.meta_path if f is not self]
            run(module)
            for callback in self.callbacks:
                callback(module)

        spec.loader.exec_module = exec_module
        return spec


def _after_mxnet_loads(callback):
    """Run ``callback(mxnet)`` right after MXNet is imported; at once if it already is."""
    if 'mxnet' in _sys.modules:
        callback(_sys.modules['mxnet'])
        return
    hook = next((f for f in _sys.meta_path if isinstance(f, _AfterMXNetLoads)), None)
    if hook is None:
        hook = _AfterMXNetLoads()
        _sys.meta_path.insert(0, hook)
    hook.callbacks.append(callback)


class _ImportedAtFirstUse:
    """Stands, in an MXNet module, for a module that MXNet imports at its start but uses only in
    a few functions: the first attribute read imports it (``ss.norm`` imports scipy.stats)."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        import importlib
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self):
        return '<%s, imported at its first use (gluon_dml)>' % self._name


class _MXNetWithoutItsOptionalImports:
    """Three optional imports of MXNet cost every command's start and serve nothing here:

    - ``mxnet/model.py`` imports ``sklearn.base`` only to make its legacy ``FeedForward``
      (deprecated since MXNet 1.0, unused here) a scikit-learn estimator; that pulls in
      scipy.stats and pandas;
    - ``mxnet/contrib/quantization.py`` imports ``scipy.stats`` for the entropy calibration of
      INT8 networks; ``mxnet/test_utils.py`` (which ``import mxnet`` loads) imports it too, for
      the statistical checks of MXNet's own test suite.

    This meta path finder answers those imports, made from those modules, with ImportError
    (MXNet then uses ``object`` and ``None``), and leaves once all three were answered. Once
    MXNet has loaded, the two modules get a stand-in for scipy.stats instead of ``None``
    (``_ImportedAtFirstUse``): the entropy calibration and MXNet's statistical test helpers
    import it when they first use it. ``gluon-dml search --help`` starts in 1.65 s instead of
    2.36 s (``bench/bench_startup.py``, 2-core Zen 2; docs/speed.md). scikit-learn and
    scipy.stats import as usual afterwards; a process that imported them before MXNet keeps
    MXNet's imports, as does ``GLUON_DML_MXNET_OPTIONAL=1``."""

    # the module-level name under which each module keeps the import, where a stand-in can serve
    STAND_INS = {'mxnet.contrib.quantization': 'stats', 'mxnet.test_utils': 'ss'}

    def __init__(self):
        self.pending = {'mxnet.model': 'sklearn', 'mxnet.contrib.quantization': 'scipy.stats',
                        'mxnet.test_utils': 'scipy.stats'}
        self.answered = {}

    def find_spec(self, fullname, path=None, target=None):
        hits = [m for m, top in self.pending.items()
                if fullname == top or fullname.startswith(top + '.')]
        if not hits:
            return None
        frame = _sys._getframe(1)
        while frame is not None:
            module = frame.f_globals.get('__name__')
            if module in hits:
                self.answered[module] = self.pending.pop(module)
                if not self.pending:
                    _sys.meta_path[:] = [f for f in _sys.meta_path if f is not self]
                raise ImportError('%s is not imported for %s (gluon_dml; '
                                  'GLUON_DML_MXNET_OPTIONAL=1 imports it)' % (fullname, module))
            frame = frame.f_back
        return None

    def stand_in(self, mxnet):
        """After MXNet loaded: a stand-in where a module was refused scipy.stats."""
        for module, attr in self.STAND_INS.items():
            loaded = _sys.modules.get(module)
            if module in self.answered and loaded is not None and getattr(loaded, attr, 0) is None:
                setattr(loaded, attr, _ImportedAtFirstUse(self.answered[module]))


def _start_mxnet_without_its_optional_imports():
    if ('mxnet' not in _sys.modules and _os.environ.get('GLUON_DML_MXNET_OPTIONAL') != '1'
            and not any(isinstance(f, _MXNetWithoutItsOptionalImports) for f in _sys.meta_path)):
        finder = _MXNetWithoutItsOptionalImports()
        for module, name in list(finder.pending.items()):
            if name in _sys.modules:                 # imported before MXNet: MXNet gets it
                del finder.pending[module]
        if finder.pending:
            _sys.meta_path.insert(0, finder)
            _after_mxnet_loads(finder.stand_in)


# whether OMP_NUM_THREADS came from the user (the launcher then leaves it to the processes it starts)
OMP_FROM_USER = 'OMP_NUM_THREADS' in _os.environ
_use_every_core()
_serial_host_copies()
_start_mxnet_without_its_optional_imports()

# Intel AMX for the INT8 and bfloat16 kernels where the CPU and Linux allow it (gluon_dml/amx.py)
from . import amx as _amx  # noqa: E402
_amx.enable(_after_mxnet_loads)
