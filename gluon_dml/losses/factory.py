"""Build the loss of a run from its name and options.

:func:`loss_flags` sorts the option values typed on the command line into those of the chosen
loss (parsed by its own declaration, :mod:`gluon_dml.losses.options`) and those that other losses
declare (a one-line warning each: they have no effect). :func:`build_loss` adds what the run
supplies (the number of training classes, the embedding size, negatives per anchor) and records
every option the loss really used, defaults included.
"""
import inspect

from . import get_loss_class, list_losses
from ..errors import UserError
from .options import loss_options, option_users

__all__ = ['build_loss', 'check_loss', 'loss_flags', 'loss_family', 'FILLED_BY_RUN']

# Constructor arguments that are not options: the run fills them.
FILLED_BY_RUN = ('num_classes', 'embed_dim', 'negatives_per_anchor')


def loss_family(name):
    """``'hashing'`` for the losses over binary codes (train_hash.py), else ``'embedding'``."""
    return getattr(get_loss_class(name), 'family', 'embedding')


def loss_flags(loss, values):
    """``values``: {option: value} as given (strings from the command line, or typed values from
    a recipe). Returns ({option: typed value} for ``loss``, [warning sentences] for the options
    that only other losses take)."""
    own = loss_options(loss)
    users = option_users()
    typed, warnings = {}, []
    for name, value in values.items():
        if name in own:
            try:
                typed[name] = own[name].parse(value)
            except ValueError as err:
                raise UserError('--%s for the %s loss: %s.' % (name.replace('_', '-'), loss, err)) from None
        else:
            takers = ', '.join(sorted(n for n, _ in users.get(name, ())))
            warnings.append('--%s has no effect with --loss %s (it is an option of %s; %s takes: %s).'
                            % (name.replace('_', '-'), loss, takers or 'no loss', loss,
                               ', '.join('--' + o.replace('_', '-') for o in sorted(own)) or 'no options'))
    return typed, warnings


def build_loss(name, options=None, num_classes=None, embed_dim=None, batch_k=None,
               beta_per_class=False, family='embedding'):
    """(loss block, {option: value used}) for loss ``name`` with ``options`` (typed, see
    :func:`loss_flags`); the other constructor arguments come from the run."""
    key = name.lower().replace('-', '_')
    check_loss(key, family, beta_per_class)
    cls = get_loss_class(key)
    params = inspect.signature(cls.__init__).parameters
    kwargs = dict(options or {})
    if 'num_classes' in params:
        kwargs['num_classes'] = (num_classes if beta_per_class else None) if key == 'margin' else num_classes
    if 'embed_dim' in params:
        kwargs['embed_dim'] = embed_dim
    if 'negatives_per_anchor' in params:
        kwargs['negatives_per_anchor'] = max(1, (batch_k or 2) - 1)
    try:
        loss = cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise UserError('Bad options for the %s loss: %s.' % (name, str(err).rstrip('.'))) from None
    used = {n: (kwargs[n] if n in kwargs else p.default) for n, p in params.items()
            if n not in ('self', 'prefix', 'params') and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return loss, used


def check_loss(name, family='embedding', beta_per_class=False):
    """Refuse a loss of the other family, or --beta-per-class for a loss without beta."""
    try:
        get_loss_class(name)
    except ValueError:
        raise UserError('Unknown loss %r; the %s losses are: %s.'
                        % (name, family, ', '.join(_family_members(family)))) from None
    if loss_family(name) != family:
        if family == 'hashing':
            raise UserError('gluon-dml train-hash trains a hashing loss (--loss %s); %s is not one.'
                            % (', '.join(_family_members('hashing')), name))
        raise UserError('--loss %s is a hashing loss over binary codes; train it with '
                        'gluon-dml train-hash.' % name)
    if beta_per_class and name.lower().replace('-', '_') != 'margin':
        raise UserError('--beta-per-class is an option of the margin loss, not of %s.' % name)


def _family_members(family):
    return [n for n in list_losses() if loss_family(n) == family]
