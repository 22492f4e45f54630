"""What a loss can be told from the command line: each loss class declares its options.

A loss class lists its user options in ``options``, a dict ``name -> Option(kind, help)``; the
default of each is the constructor's (the paper's value). ``kind`` is ``float``, ``int``,
``bool`` or a tuple of the allowed words, so the same flag name can mean different things for
different losses (``--mining`` is a word for the triplet loss and true/false for
multi-similarity) and is always parsed by the *chosen* loss's declaration.

>>> parse_option('multi_similarity', 'mining', 'false')
False
>>> parse_option('triplet', 'mining', 'semihard')
'semihard'

Constructor arguments that the training script fills from the run (``num_classes``,
``embed_dim``, ``negatives_per_anchor``) are not options.
"""
import inspect

__all__ = ['Option', 'str2bool', 'loss_options', 'parse_option', 'option_users']

_TRUE = ('1', 'true', 'yes', 'on', 't', 'y')
_FALSE = ('0', 'false', 'no', 'off', 'f', 'n')


def str2bool(text):
    """true/false, 1/0, yes/no, on/off (any case) as a bool; anything else is a ValueError."""
    if isinstance(text, bool):
        return text
    word = str(text).strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError('expected true or false (or 1/0, yes/no), got %r' % (text,))


class Option(object):
    """One loss option: ``kind`` (float, int, bool, or a tuple of allowed words; ``None`` among
    the words makes the option optional, spelt ``none``), a help line, the default (filled
    from the constructor by :func:`loss_options`) and, for a number, its least value ``low``."""

    def __init__(self, kind, help, default=None, low=None):
        self.kind, self.help, self.default, self.low = kind, help, default, low

    def parse(self, text):
        """The value of ``text`` (a command-line string, or an already typed value)."""
        if self.kind is bool:
            return str2bool(text)
        if isinstance(self.kind, tuple):
            word = None if text is None or str(text).lower() == 'none' else str(text)
            if word not in self.kind:
                raise ValueError('expected one of %s, got %r' % (self.words(), text))
            return word
        if isinstance(text, str) and text.strip().lower() == 'none' and self.default is None:
            return None
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            raise ValueError('expected %s, got %r' % (
                'a number' if self.kind is float else 'an integer', text)) from None
        if self.low is not None and value is not None and value < self.low:
            raise ValueError('must be at least %s, got %s' % (self.low, value))
        return value

    def words(self):
        return '/'.join('none' if w is None else w for w in self.kind)

    def describe(self):
        """``float, 0.2`` / ``all/semihard, all`` / ``true/false, true``: kind and default."""
        if self.kind is bool:
            kind = 'true/false'
        elif isinstance(self.kind, tuple):
            kind = self.words()
        else:
            kind = self.kind.__name__
        default = self.default
        if isinstance(default, bool):
            default = str(default).lower()
        return '%s, default %s' % (kind, 'none' if default is None else default)


def loss_options(loss):
    """``{name: Option}`` of a loss (a name or a class), defaults from its constructor."""
    if isinstance(loss, str):
        from . import get_loss_class
        loss = get_loss_class(loss)
    params = inspect.signature(loss.__init__).parameters
    out = {}
    for name, opt in getattr(loss, 'options', {}).items():
        if name not in params:
            raise TypeError('%s declares option %r that its constructor does not take.'
                            % (loss.__name__, name))
        default = params[name].default
        out[name] = Option(opt.kind, opt.help, None if default is inspect.Parameter.empty else default,
                           opt.low)
    return out


def parse_option(loss, name, text):
    """``text`` parsed as option ``name`` of ``loss``; a ValueError names the flag and the loss."""
    opts = loss_options(loss)
    if name not in opts:
        raise ValueError('the %s loss has no option %s' % (loss, name))
    try:
        return opts[name].parse(text)
    except ValueError as err:
        raise ValueError('--%s for the %s loss: %s.' % (name.replace('_', '-'), loss, err)) from None


def option_users():
    """``{option name: [(loss name, Option), ...]}`` over every registered loss."""
    from . import list_losses
    users = {}
    for loss in list_losses():
        for name, opt in loss_options(loss).items():
            users.setdefault(name, []).append((loss, opt))
    return users
