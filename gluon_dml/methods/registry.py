"""``METHODS``: the registered training methods, by name."""

__all__ = ['METHODS', 'register_method', 'get_method', 'list_methods']

METHODS = {}


def register_method(method, overwrite=False):
    """Add a :class:`~gluon_dml.methods.base.Method` instance under ``method.name``."""
    if method.name in METHODS and not overwrite:
        raise ValueError('A method named %r is already registered.' % method.name)
    METHODS[method.name] = method
    return method


def get_method(name):
    if name not in METHODS:
        raise ValueError('Unknown method %r; registered methods: %s.' % (name, ', '.join(sorted(METHODS))))
    return METHODS[name]


def list_methods():
    return sorted(METHODS)
