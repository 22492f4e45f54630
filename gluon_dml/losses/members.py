"""One loss per member of an ensemble network (``--members N``)."""
import math

from mxnet import gluon

__all__ = ['MemberLoss']


class MemberLoss(gluon.Block):
    """The loss of a :class:`gluon_dml.models.MemberEnsemble`: its (B, N x D) output is cut into
    the N members' (B, D) embeddings (scaled back to length 1 when they are normalised), each
    goes to its own copy of the loss (its own parameters: the margin loss's betas, proxies ...),
    and the loss is the mean of the N. ``losses``: the N loss blocks, built alike.

    The copies' own attributes (``normalize_embeddings``, ``param_optimizer``) are the first
    copy's; ``set_epoch`` reaches every copy; ``schedule_metrics`` are the first copy's."""

    def __init__(self, losses, **kwargs):
        super().__init__(**kwargs)
        if len(losses) < 2:
            raise ValueError('MemberLoss needs at least 2 losses, got %d' % len(losses))
        self.losses = []
        for i, loss in enumerate(losses):
            setattr(self, 'member%d' % i, loss)
            self.losses.append(loss)
        first = losses[0]
        self.normalize_embeddings = bool(getattr(first, 'normalize_embeddings', True))
        if getattr(first, 'param_optimizer', None) is not None:
            self.param_optimizer = first.param_optimizer
        self._scale = math.sqrt(len(losses)) if self.normalize_embeddings else 1.0

    def set_epoch(self, epoch):
        for loss in self.losses:
            if callable(getattr(loss, 'set_epoch', None)):
                loss.set_epoch(epoch)

    def schedule_metrics(self):
        fn = getattr(self.losses[0], 'schedule_metrics', None)
        return fn() if callable(fn) else {}

    def forward(self, embeddings, labels):
        n = len(self.losses)
        width = embeddings.shape[1]
        if width % n:
            raise ValueError('the ensemble output has %d columns, not a multiple of its %d members'
                             % (width, n))
        d = width // n
        total = None
        for i, loss in enumerate(self.losses):
            part = embeddings.slice_axis(axis=1, begin=i * d, end=(i + 1) * d)
            if self._scale != 1.0:
                part = part * self._scale
            value = loss(part, labels)
            total = value if total is None else total + value
        return total / n
