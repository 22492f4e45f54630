"""Transparent huge pages for the memory of a gluon-dml command (on by default where they work).

MXNet's activations, gradients and weights are large arrays that every step streams through
(ResNet-50 at batch 16: about 1.3 GB). On Linux, ``malloc`` maps them in 4 KiB pages unless
asked for huge ones, and where the kernel's transparent huge pages are in ``madvise`` mode (the
usual default) nothing asks. glibc >= 2.35 asks when the environment variable
``GLIBC_TUNABLES`` holds ``glibc.malloc.hugetlb=1``, which the dynamic loader reads when a
process starts. So each gluon-dml command (the ``gluon-dml`` console script, ``python -m
gluon_dml``, the ``train_*.py`` scripts) starts itself again, once, with it set, before MXNet
loads: the same process id, arguments, streams and environment otherwise. The arithmetic is the
same, so the results are the same to the bit; ResNet-50 training ran about 8 % faster on the
2-core Intel VM of docs/speed.md, with 12 MB more peak memory.

Nothing happens when:

- ``GLUON_DML_HUGEPAGES=0`` (the switch off) or ``GLIBC_TUNABLES`` already names the tunable;
- the system is not Linux with glibc >= 2.35, or its transparent huge pages are ``never``
  (nothing to gain) or ``always`` (the kernel already uses them);
- the process is not a command started from a file or module (an interactive session, a script
  read from standard input), or it is gluon-dml used as a library: a program that imports
  gluon_dml gets the same by starting with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` set.
"""
import os
import platform
import sys

__all__ = ['SWITCH', 'TUNABLE', 'thp_mode', 'glibc_version', 'decide', 'environment', 'reexec']

SWITCH = 'GLUON_DML_HUGEPAGES'
TUNABLE = 'glibc.malloc.hugetlb'
THP_ENABLED = '/sys/kernel/mm/transparent_hugepage/enabled'


def thp_mode(path=THP_ENABLED):
    """The kernel's transparent huge page mode (``always``, ``madvise``, ``never``), or None
    where the file is missing or unreadable."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find('['), text.find(']')
    return text[start + 1:end] if 0 <= start < end else None


def glibc_version():
    """glibc's version as a tuple of ints, or None for another C library."""
    lib, version = platform.libc_ver()
    if lib != 'glibc' or not version:
        return None
    try:
        return tuple(int(p) for p in version.split('.')[:2])
    except ValueError:
        return None


def decide(environ=None, system=None, glibc=None, mode=None):
    """``(True, why)`` when a command should start again with the tunable set, else
    ``(False, why)``. The arguments default to this process and machine."""
    environ = os.environ if environ is None else environ
    system = platform.system() if system is None else system
    if environ.get(SWITCH, '').strip().lower() in ('0', 'off', 'no', 'false'):
        return False, '%s=%s' % (SWITCH, environ[SWITCH])
    if TUNABLE in environ.get('GLIBC_TUNABLES', ''):
        return False, 'GLIBC_TUNABLES already sets %s' % TUNABLE
    if system != 'Linux':
        return False, 'not Linux'
    glibc = glibc_version() if glibc is None else glibc
    if not glibc or tuple(glibc) < (2, 35):
        return False, 'needs glibc >= 2.35'
    mode = thp_mode() if mode is None else mode
    if mode != 'madvise':
        return False, 'transparent huge pages are %s' % (mode or 'not available')
    return True, 'transparent huge pages in madvise mode, glibc %s' % '.'.join(map(str, glibc))


def environment(environ=None):
    """A copy of ``environ`` (default: this process's, less the variables that importing
    gluon_dml set, so that the new start sees the user's own) with ``glibc.malloc.hugetlb=1``
    added to ``GLIBC_TUNABLES``."""
    if environ is None:
        import gluon_dml
        environ = {k: v for k, v in os.environ.items() if k not in gluon_dml.DEFAULTED}
    env = dict(environ)
    current = env.get('GLIBC_TUNABLES', '')
    env['GLIBC_TUNABLES'] = (current + ':' if current else '') + TUNABLE + '=1'
    return env


def _command_line():
    """The interpreter's own command line when it can be run again as it was, else None."""
    argv = list(getattr(sys, 'orig_argv', None) or [])
    if len(argv) < 2 or sys.flags.interactive or not sys.executable:
        return None
    i = 1                                   # skip the interpreter's options to the script / -m / -c
    while i < len(argv) and argv[i].startswith('-') and argv[i] not in ('-', '-m', '-c'):
        i += 1 + (argv[i] in ('-W', '-X', '-Q'))
    if i >= len(argv) or argv[i] == '-':
        return None                          # an interactive session or a script read from stdin
    return [sys.executable] + argv[1:]


def reexec():
    """Start this command again with huge pages (see the module's text) when :func:`decide`
    says so; returns only when it does not. Call it first thing in a program's entry point,
    before MXNet loads, never from library code."""
    wanted, _ = decide()
    argv = _command_line() if wanted else None
    if argv is None:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    try:
        os.execve(argv[0], argv, environment())
    except OSError:
        return                               # cannot start again: carry on in 4 KiB pages
