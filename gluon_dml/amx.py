"""Intel AMX (the tile units of Sapphire Rapids and later Xeons) for MXNet's INT8 and bfloat16 kernels.

MXNet 1.9.1 ships oneDNN 2.4.4. Its AMX convolutions are in the library but off unless the
process starts oneDNN with ``DNNL_MAX_CPU_ISA=AVX512_CORE_AMX``, and that oneDNN does not ask
Linux (5.16 and later) for the permission that using the tile registers needs: with the variable
set and no permission the first AMX instruction kills the process (SIGILL). Importing
``gluon_dml`` therefore arranges, on a CPU with AMX and a kernel that grants it:

- the permission (``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``), whatever the user set;
- unless the user set ``DNNL_MAX_CPU_ISA`` or ``ONEDNN_MAX_CPU_ISA`` themselves (their choice
  wins; ``DNNL_MAX_CPU_ISA=AVX512_CORE_BF16`` turns AMX off), the AMX limit for oneDNN. oneDNN reads
  the variable once, at the process's first oneDNN primitive, so it is set when MXNet loads, one
  tiny primitive is run, and the variable is removed again: a process started later by this one
  runs without the permission (Linux drops it at ``exec``) and must not inherit a setting that would
  crash it.

Only INT8 inference (``--int8``) and ``--amp bfloat16`` run AMX kernels; float32 keeps the same
AVX-512 kernels and gives bitwise the same numbers (tests/test_amx.py; speeds in docs/speed.md).
Nothing happens on other CPUs, other systems, or where the permission is refused.

It also says where MXNet 1.9.1 cannot run bfloat16 at all (:func:`bfloat16_refusal`: x86 CPUs
without AVX-512), so that ``--amp bfloat16`` is refused there before a run starts.
"""
import os
import sys

__all__ = ['cpu_has_amx', 'cpu_flags', 'bfloat16_refusal', 'request_permission', 'status', 'active',
           'ISA_VARIABLES', 'AMX_ISA']

# oneDNN 2.4.4 reads only the first; a user's setting of either (the second is newer oneDNN's
# spelling) is left to decide
ISA_VARIABLES = ('DNNL_MAX_CPU_ISA', 'ONEDNN_MAX_CPU_ISA')
AMX_ISA = 'AVX512_CORE_AMX'
_SYS_ARCH_PRCTL = 158               # x86-64 Linux
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18

# what happened in this process: cpu (has AMX), permitted, isa ('ours', 'user' or None), reason
_state = {'cpu': False, 'permitted': False, 'isa': None, 'reason': 'not checked'}


def cpu_flags(cpuinfo='/proc/cpuinfo'):
    """The CPU's feature flags (the ``flags`` line of Linux's cpuinfo, x86), or None where there is
    no such line to read."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return None


def cpu_has_amx(cpuinfo='/proc/cpuinfo'):
    """Whether the CPU reports AMX tiles with both bfloat16 and int8 (Linux's ``flags`` line)."""
    return {'amx_tile', 'amx_bf16', 'amx_int8'} <= (cpu_flags(cpuinfo) or set())


# oneDNN's avx512_core: what MXNet 1.9.1's oneDNN 2.4.4 needs for its bfloat16 kernels (natively
# with avx512_bf16 or AMX, emulated on plain AVX-512)
AVX512_CORE = ('avx512f', 'avx512bw', 'avx512vl', 'avx512dq')
# oneDNN's names of the limits below avx512_core (DNNL_MAX_CPU_ISA)
_ISAS_WITHOUT_BF16 = ('SSE41', 'AVX', 'AVX2', 'AVX2_VNNI', 'AVX512_MIC', 'AVX512_MIC_4OPS')


def bfloat16_refusal(cpuinfo='/proc/cpuinfo', environ=None):
    """The sentence that refuses ``--amp bfloat16`` where MXNet 1.9.1 cannot run it, or None: on an
    x86 CPU without AVX-512 (an AVX2-only AMD Zen 2 said "could not create a primitive descriptor
    iterator" at the first bfloat16 convolution), or with oneDNN limited below it by
    ``DNNL_MAX_CPU_ISA``. A CPU whose flags cannot be read is left to try."""
    environ = os.environ if environ is None else environ
    isa = (environ.get(ISA_VARIABLES[0]) or '').strip().upper()
    if isa in _ISAS_WITHOUT_BF16:
        return ('--amp bfloat16 needs oneDNN\'s AVX-512 kernels, and %s=%s limits it below them: '
                'unset it, or leave --amp out (float32).' % (ISA_VARIABLES[0], isa))
    flags = cpu_flags(cpuinfo)
    if flags is None or not flags & {'sse2', 'avx', 'avx2'} or set(AVX512_CORE) <= flags:
        return None
    return ('--amp bfloat16 needs a CPU with AVX-512 (%s): MXNet 1.9.1\'s oneDNN has no bfloat16 '
            'kernels for this one (it has %s); leave --amp out (float32).'
            % (', '.join(AVX512_CORE), 'AVX2' if 'avx2' in flags else 'no AVX2 either'))


def request_permission():
    """Ask Linux for the AMX tile data state for this process (all its threads). True when granted
    (also when it was granted before); False where the kernel is older than 5.16 or refuses."""
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False


def status():
    """A copy of what this process did about AMX: ``cpu``, ``permitted``, ``isa`` (``'ours'``: the
    package set oneDNN's limit; ``'user'``: the user's variable; None) and ``reason``."""
    return dict(_state)


def active():
    """Whether oneDNN may run AMX kernels in this process: permitted, and its ISA limit AMX (the
    package's, or the user's ``AVX512_CORE_AMX``; oneDNN 2.4's ``ALL`` leaves AMX out)."""
    if not _state['permitted']:
        return False
    if _state['isa'] == 'ours':
        return True
    return (_state['isa'] == 'user'
            and os.environ.get(ISA_VARIABLES[0], '').upper() == AMX_ISA)


def _settle(mx):
    """Set oneDNN's ISA limit to AMX, run one primitive so that oneDNN reads it, remove it again."""
    name = ISA_VARIABLES[0]
    os.environ[name] = AMX_ISA
    try:
        mx.nd.Activation(mx.nd.ones((1, 16)), act_type='relu').wait_to_read()
        _state['isa'] = 'ours'
        _state['reason'] = 'AMX on: oneDNN limited to %s at its first primitive' % AMX_ISA
    except Exception as e:  # noqa: BLE001  (MXNet broken or missing: its own import says why)
        _state['reason'] = 'AMX not set: the first oneDNN primitive failed (%s)' % e
    finally:
        if os.environ.get(name) == AMX_ISA:
            del os.environ[name]


def enable(after_module_runs):
    """Called once by ``import gluon_dml``, with :func:`gluon_dml.startup.after_module_runs`
    (``(name, callback)``: the callback runs right after that module is imported); see the
    module's docstring."""
    if sys.platform != 'linux' or os.uname().machine != 'x86_64':
        _state['reason'] = 'not x86-64 Linux'
        return
    _state['cpu'] = cpu_has_amx()
    if not _state['cpu']:
        _state['reason'] = 'the CPU has no AMX'
        return
    _state['permitted'] = request_permission()
    if not _state['permitted']:
        _state['reason'] = 'Linux did not grant the AMX tile state (a kernel before 5.16?)'
        return
    if any(v in os.environ for v in ISA_VARIABLES):
        _state['isa'] = 'user'
        _state['reason'] = 'AMX permitted; oneDNN\'s ISA limit is the user\'s (%s)' % ', '.join(
            '%s=%s' % (v, os.environ[v]) for v in ISA_VARIABLES if v in os.environ)
        return
    if 'mxnet' not in sys.modules:
        _state['reason'] = 'AMX permitted; oneDNN\'s limit is set when MXNet loads'
    # MXNet loaded before gluon_dml: this works if no primitive ran yet
    after_module_runs('mxnet', _settle)
