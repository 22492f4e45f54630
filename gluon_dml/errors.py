"""The errors a user can cause, and how entry points report them.

Library code raises :class:`UserError` (or ``ValueError`` / ``FileNotFoundError`` with one
sentence); an entry point (``train_*.py``, ``gluon-dml ...``) wraps its ``main`` in
:func:`gluon_dml.cli.main_guard`, which prints the sentence and exits with code 2.
"""

__all__ = ['UserError']


class UserError(Exception):
    """An error the user can fix (bad flag, missing data): printed as one sentence, no traceback."""
