"""``gluon-dml train-METHOD``: parse the flags of a method and train it."""
from ..cli import train

__all__ = ['margin', 'npair', 'hash', 'vse']


def margin(argv=None):
    return train('margin', argv)


def npair(argv=None):
    return train('npair', argv)


def hash(argv=None):  # noqa: A001  (the method's name)
    return train('hash', argv)


def vse(argv=None):
    return train('vse', argv)
