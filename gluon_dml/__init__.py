"""gluon-dml: deep metric learning on MXNet/Gluon."""
import os as _os

__version__ = "0.2.0"


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


# whether OMP_NUM_THREADS came from the user (the launcher then leaves it to the processes it starts)
OMP_FROM_USER = 'OMP_NUM_THREADS' in _os.environ
_use_every_core()
