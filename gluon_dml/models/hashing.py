"""The hash head of HashNet (Cao, Long, Wang, Yu, "HashNet: Deep Learning to Hash by
Continuation", ICCV 2017) on any backbone.

``HashNet``: backbone -> ``Dense(bits)`` -> ``tanh(scale * x)``. During training ``scale``
follows the continuation schedule of the paper (Sec. 3.3, the authors' code:
``scale = init_scale * (1 + gamma * iter) ^ power``, gamma 0.005, power 0.5, updated every 200
iterations), so that tanh tends to sign and the network learns codes that quantise with little
loss. At test time the codes are ``sign(x)`` (:func:`binarize`), the limit of the head.
"""
import math

import numpy as np
from mxnet import init
from mxnet.gluon import nn, HybridBlock

from gluon_dml import FLOAT32_MAX
from . import get_backbone, initialize_with_head

__all__ = ['HashNet', 'ScaleSchedule', 'get_hash_model', 'binarize']


class ScaleSchedule:
    """HashNet's continuation: ``scale(it) = init_scale * (1 + gamma * it') ** power`` with
    ``it' = step_size * floor(it / step_size)`` (the scale changes every ``step_size``
    iterations, as in the authors' code). Defaults gamma 0.005, power 0.5, step 200, init 1.
    The scale stops at float32's largest number (``MAX_SCALE``; tanh is a sign long before): past
    it the head's float32 parameter would hold infinity, and ``tanh(inf * 0)`` is NaN."""

    MAX_SCALE = FLOAT32_MAX

    def __init__(self, init_scale=1.0, gamma=0.005, power=0.5, step_size=200):
        if not all(math.isfinite(v) for v in (init_scale, gamma, power)) or init_scale > self.MAX_SCALE:
            raise ValueError('The scale schedule needs finite numbers and init_scale at most %g '
                             '(float32), got %g, %g, %g.' % (self.MAX_SCALE, init_scale, gamma, power))
        if init_scale <= 0 or gamma < 0 or power < 0 or step_size < 1:
            raise ValueError('The scale schedule needs init_scale > 0, gamma >= 0, power >= 0 and '
                             'step_size >= 1, got %g, %g, %g, %d.' % (init_scale, gamma, power, step_size))
        self.init_scale, self.gamma, self.power, self.step_size = init_scale, gamma, power, step_size

    def __call__(self, iteration):
        it = self.step_size * (int(iteration) // self.step_size)
        try:
            return min(self.init_scale * math.pow(1.0 + self.gamma * it, self.power), self.MAX_SCALE)
        except OverflowError:
            return self.MAX_SCALE


class HashNet(HybridBlock):
    """backbone -> ``Dense(bits)`` -> ``tanh(scale * x)``.

    ``scale`` is a parameter that takes no gradient (``grad_req='null'``): it is an input of the
    hybridized graph, set with :meth:`set_scale` by the training loop, and saved with the
    network's parameters (a resumed run continues with its scale). ``net.codes(x)`` gives the
    pre-activation whose sign is the binary code."""

    def __init__(self, backbone, bits, **kwargs):
        super().__init__(**kwargs)
        self.bits = int(bits)
        with self.name_scope():
            self.backbone = backbone
            self.hash = nn.Dense(self.bits, flatten=True)
            self.scale = self.params.get('scale', shape=(1,), init=init.One(), grad_req='null',
                                         differentiable=False)

    def set_scale(self, value):
        for arr in self.scale.list_data():
            arr[:] = float(value)

    def get_scale(self):
        return float(self.scale.list_data()[0].asscalar())

    def hybrid_forward(self, F, x, scale):
        z = self.hash(self.backbone(x))
        return F.tanh(F.broadcast_mul(z, scale))


def get_hash_model(backbone, bits, pretrained=False, ctx=None):
    """An initialised :class:`HashNet` with ``bits`` outputs."""
    if bits < 1:
        raise ValueError('--bits must be a positive integer, got %s.' % bits)
    net = HashNet(get_backbone(backbone, pretrained), bits)
    net.scale.initialize(ctx=ctx)                      # its own initializer: 1
    return initialize_with_head(net, net.hash, pretrained, ctx)


def binarize(outputs):
    """Binary codes in {-1, +1} (int8) from the head's outputs: ``sign``, with 0 mapped to +1."""
    outputs = np.asarray(outputs)
    return np.where(outputs >= 0, 1, -1).astype(np.int8)
