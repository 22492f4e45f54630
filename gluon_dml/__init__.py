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


class _NoScikitLearnForMXNet:
    """MXNet's ``mxnet/model.py`` imports ``sklearn.base`` when it can, only to make its legacy
    ``FeedForward`` (deprecated since MXNet 1.0, unused here) a scikit-learn estimator; that
    import pulls in scipy.stats and pandas: 0.37 s of every command's start (``gluon-dml search
    --help``: 2.39 s -> 2.03 s on a 2-core Zen 2, ``bench/bench_startup.py``), saved by the
    commands that never use scikit-learn (a training run imports it for NMI). This meta path finder answers that one import with ImportError
    (MXNet then uses ``object``) and leaves: scikit-learn imports as usual afterwards, and when
    the process imported it before MXNet, MXNet gets it. ``GLUON_DML_MXNET_SKLEARN=1`` keeps
    MXNet's import. (Only ``find_spec``: see amx._AfterMXNetLoads.)"""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split('.')[0] != 'sklearn':
            return None
        frame = _sys._getframe(1)
        while frame is not None:
            if frame.f_globals.get('__name__') == 'mxnet.model':
                _sys.meta_path[:] = [f for f in _sys.meta_path if f is not self]
                raise ImportError('scikit-learn is not imported for MXNet\'s FeedForward '
                                  '(gluon_dml; GLUON_DML_MXNET_SKLEARN=1 imports it)')
            frame = frame.f_back
        return None


def _start_mxnet_without_scikit_learn():
    if ('mxnet' not in _sys.modules and 'sklearn.base' not in _sys.modules
            and _os.environ.get('GLUON_DML_MXNET_SKLEARN') != '1'
            and not any(isinstance(f, _NoScikitLearnForMXNet) for f in _sys.meta_path)):
        _sys.meta_path.insert(0, _NoScikitLearnForMXNet())


# whether OMP_NUM_THREADS came from the user (the launcher then leaves it to the processes it starts)
OMP_FROM_USER = 'OMP_NUM_THREADS' in _os.environ
_use_every_core()
_serial_host_copies()
_start_mxnet_without_scikit_learn()

# Intel AMX for the INT8 and bfloat16 kernels where the CPU and Linux allow it (gluon_dml/amx.py)
from . import amx as _amx  # noqa: E402
_amx.enable()
