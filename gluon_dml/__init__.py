"""gluon-dml: deep metric learning on MXNet/Gluon."""
import os as _os

__version__ = "0.2.0"

# float32's largest number (numpy.finfo(numpy.float32).max), in which MXNet trains and the index
# stores vectors: the one definition, here at the bottom of the package so that config, index and
# models can all import it (written out so that the package's root imports no numpy)
FLOAT32_MAX = 3.4028234663852886e+38

# the environment this process started with, before the package set anything (threads, the
# host-copy size, OpenBLAS's spin, AMX, OpenBLAS's kernels for faiss): a command that starts
# itself again passes this on, so the new process chooses as this one did and computes bit for
# bit the same
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


def _short_blas_spin():
    """The OpenBLAS of numpy and of SciPy (pthreads builds) keeps its worker threads spinning
    for 2**28 CPU cycles, about 0.1 s, after each matrix product before they sleep. NMI's
    k-means ends an evaluation with such products (SciPy's sgemm), so the training step after
    every evaluation shared a core with a spinning thread and took twice as long on two cores
    (bench/bench_blas_spin.py). Spin for 2**20 cycles (under a millisecond: still awake for the
    next product of a k-means loop), unless the user chose. Each OpenBLAS reads it when it
    loads, after this (MXNet loads numpy); MXNet's own OpenBLAS is an OpenMP build that
    ignores it."""
    _os.environ.setdefault('OPENBLAS_THREAD_TIMEOUT', '20')


# whether OMP_NUM_THREADS came from the user (the launcher then leaves it to the processes it starts)
OMP_FROM_USER = 'OMP_NUM_THREADS' in _os.environ
_use_every_core()
_serial_host_copies()
_short_blas_spin()
# MXNet without three optional imports, its operator functions compiled once (gluon_dml/startup.py)
from . import startup as _startup  # noqa: E402
_startup.start_mxnet()

# Intel AMX for the INT8 and bfloat16 kernels where the CPU and Linux allow it (gluon_dml/amx.py)
from . import amx as _amx  # noqa: E402
_amx.enable(_startup.after_module_runs)
