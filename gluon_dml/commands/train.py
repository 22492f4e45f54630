"""``gluon-dml train-METHOD``: parse the flags of a method and train it."""
from ..cli import train

__all__ = ['margin', 'npair', 'hash', 'vse', 'any_method']


def margin(argv=None):
    return train('margin', argv)


def npair(argv=None):
    return train('npair', argv)


def hash(argv=None):  # noqa: A001  (the method's name)
    return train('hash', argv)


def vse(argv=None):
    return train('vse', argv)


def any_method(argv=None):
    """``gluon-dml train METHOD [flags]``: any registered method (``train --list`` names them)."""
    from ..errors import UserError
    from ..methods import list_methods
    argv = list(argv or [])
    if not argv or argv[0].startswith('-'):
        if argv[:1] in (['--list'], ['-h'], ['--help']):
            print('methods: %s (gluon-dml train METHOD --help for its flags)' % ', '.join(list_methods()))
            return None
        raise UserError('gluon-dml train needs a method first: one of %s.' % ', '.join(list_methods()))
    if argv[0] not in list_methods():
        raise UserError('Unknown method %r; registered methods: %s.' % (argv[0], ', '.join(list_methods())))
    return train(argv[0], argv[1:])
