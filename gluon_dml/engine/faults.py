"""Fault injection and tracing for the fault suite (``tests/faults``, ``scripts/kill9.py``).

Both are off unless their environment variable is set, and then cost one dictionary lookup per
point:

* ``GLUON_DML_FAULTS="POINT[@N]:ACTION,..."``: at the ``N``-th time (default the first; ``*``:
  every time) the process reaches ``POINT``, do ``ACTION``: ``kill`` (SIGKILL itself, as ``kill -9`` would),
  ``term`` / ``int`` (send itself SIGTERM / SIGINT), ``pause=SECONDS``, or ``enospc`` (raise
  ``OSError(ENOSPC)``, a full disk).
* ``GLUON_DML_TRACE=FILE``: append one line per point reached (``POINT key=value ...``), flushed,
  so that a watcher knows what the run was doing when it was killed (``t=`` is the time).

The points: ``step`` (after each optimisation step), ``load`` (before each batch is read),
``eval`` (evaluation started), ``log`` (an epoch's row written), ``checkpoint-files`` (the first
file of a checkpoint written), ``checkpoint-meta`` (every file but ``meta.json`` written),
``checkpoint-rename``, ``checkpoint-between-renames`` (a re-saved checkpoint: the old one moved
aside, the new one not yet in place), ``checkpoint-pointer`` (renamed, ``latest`` not updated),
``checkpoint-done``; ``index-part`` (``gluon-dml index``: a part of the embedding saved under
``OUT/.embedding/``), ``index-saved`` (its catalogue saved, the parts not yet removed).
"""
import errno
import os
import signal
import time

__all__ = ['fault_point']

_counts = {}
_plan = None


def _load_plan():
    plan = {}
    for item in filter(None, (s.strip() for s in os.environ.get('GLUON_DML_FAULTS', '').split(','))):
        where, _, action = item.partition(':')
        point, _, nth = where.partition('@')
        plan.setdefault(point, []).append((None if nth == '*' else int(nth or 1), action))
    return plan


def fault_point(point, **info):
    """Mark that the process reached ``point`` (see the module docstring)."""
    global _plan
    trace = os.environ.get('GLUON_DML_TRACE')
    if _plan is None:
        _plan = _load_plan()
    if not trace and not _plan:
        return
    n = _counts[point] = _counts.get(point, 0) + 1
    if trace:
        with open(trace, 'a') as f:
            f.write('%s n=%d pid=%d t=%.3f %s\n' % (point, n, os.getpid(), time.time(),
                                                    ' '.join('%s=%s' % kv for kv in info.items())))
            f.flush()
    for nth, action in _plan.get(point, ()):
        if nth is not None and nth != n:
            continue
        if action == 'kill':
            os.kill(os.getpid(), signal.SIGKILL)
        elif action in ('term', 'int'):
            os.kill(os.getpid(), signal.SIGTERM if action == 'term' else signal.SIGINT)
        elif action.startswith('pause='):
            time.sleep(float(action.split('=', 1)[1]))
        elif action == 'enospc':
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def reset():
    """Forget the counts and re-read the plan (for in-process tests)."""
    global _plan
    _counts.clear()
    _plan = None
