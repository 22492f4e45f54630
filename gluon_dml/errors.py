"""The errors a user can cause, and how entry points report them.

Library code raises :class:`UserError` (or ``ValueError`` / ``FileNotFoundError`` with one
sentence); an entry point (``train_*.py``, ``gluon-dml ...``) wraps its ``main`` in
:func:`gluon_dml.cli.main_guard`, which prints the sentence and exits with code 2.
"""

__all__ = ['UserError', 'first_line']


class UserError(Exception):
    """An error the user can fix (bad flag, missing data): printed as one sentence, no traceback."""


def first_line(err):
    """The first line of an error's message, at most 300 characters (MXNet's carry a C++ stack
    trace after it); of an MXNetError whose text opens with the trace ('Traceback (most recent
    call last):', as a damaged parameter file gives), the sentence MXNet put after it."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    said = [ln for ln in lines if ln.startswith('MXNetError:')]
    if said and lines[0].startswith('Traceback'):
        return said[-1].replace('MXNetError: ', '').replace('Check failed: ', '')[:300]
    return (lines[0] if lines else type(err).__name__)[:300]
