"""Inference on the CPU: MKLDNN operator fusion and INT8 quantization.

- **Fusion** (on by default on the CPU): the network's graph is partitioned by MXNet's MKLDNN
  subgraph backend, which folds each batch norm into the convolution before it, fuses the ReLU
  (and the residual sum) into the convolution and the Dense layer into one MKLDNN call, with
  statically allocated memory (``static_alloc``, ``static_shape``). It computes the same
  function: the embeddings differ from the unfused network's by float rounding (about 1e-7).
  ``GLUON_DML_FUSION=0`` turns it off everywhere; the commands also take ``--no-fusion``.
- **INT8** (asked for, ``--int8``): :func:`quantize` turns a float network into a quantized
  ``SymbolBlock`` with ``mxnet.contrib.quantization.quantize_net_v2``: convolutions and Dense
  layers run in 8-bit integers, with the ranges of their inputs and outputs calibrated on a few
  hundred images (training images, never the evaluation split).

Training never uses either: :func:`inference_view` gives a fused view of a network being
trained (its parameters shared, its training graph untouched) for the per-epoch evaluation.
"""
import os

import mxnet as mx
import numpy as np

from ..errors import UserError

__all__ = ['FUSION_ENV', 'fusion_enabled', 'hybridize_for_inference', 'inference_view', 'FusedNet',
           'quantize', 'quantization_available', 'agreement', 'CALIB_MODES']

FUSION_ENV = 'GLUON_DML_FUSION'
# MXNet logs a line each time a graph is partitioned ("Subgraph backend MKLDNN is activated")
os.environ.setdefault('MXNET_SUBGRAPH_VERBOSE', '0')
CALIB_MODES = ('naive', 'entropy')
_BACKEND = 'MKLDNN'


def _mkldnn():
    try:
        from mxnet.runtime import Features
        return Features().is_enabled('MKLDNN')
    except Exception:  # noqa: BLE001  (an MXNet without the runtime feature list)
        return False


def _contexts(ctx):
    if ctx is None:
        return [mx.cpu()]
    return list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]


def fusion_enabled(ctx=None, fuse=True):
    """Whether operator fusion applies: asked for (``fuse``), not switched off by
    ``GLUON_DML_FUSION=0``, every context a CPU, and MXNet built with MKLDNN."""
    if not fuse or os.environ.get(FUSION_ENV, '1').strip().lower() in ('0', 'false', 'no', 'off'):
        return False
    return all(c.device_type == 'cpu' for c in _contexts(ctx)) and _mkldnn()


def hybridize_for_inference(net, ctx=None, fuse=True):
    """Hybridize ``net`` for inference with static memory; fused (the MKLDNN backend) when
    :func:`fusion_enabled`. Returns whether it is fused. The partitioning happens at the first
    call of ``net`` itself (a child called on its own is hybridized, not fused)."""
    fused = fusion_enabled(ctx, fuse)
    net.hybridize(backend=_BACKEND if fused else None, static_alloc=True, static_shape=True)
    return fused


class FusedNet(object):
    """A fused network that turns into the plain one if MXNet cannot run its fused graph.

    Seen: a GluonCV ResNet on 8 x 8 digits, whose feature maps shrink to 1 x 1 early; MXNet's fused
    graph then hands out an MKLDNN-format array that cannot be copied to numpy ("We can't generate
    TBlob for MKLDNN data", seen from the second batch on). Each call checks its outputs on the
    spot (a copy of the B x D outputs); on that error the network is used unfused from then on
    (``plain()`` makes it) and :attr:`fused` turns False. Every other attribute is the fused
    network's."""

    def __init__(self, block, plain):
        self.block, self._plain, self.fused = block, plain, True

    def __call__(self, *inputs):
        out = self.block(*inputs)
        if not self.fused:
            return out
        try:
            for o in (out if isinstance(out, (list, tuple)) else [out]):
                o.asnumpy()
        except mx.base.MXNetError as err:
            if 'MKLDNN' not in str(err):
                raise
            self.block, self.fused = self._plain(), False
            out = self.block(*inputs)
        return out

    def __getattr__(self, name):
        return getattr(self.__dict__['block'], name)


def _unfused(net):
    net.hybridize(backend=None, static_alloc=True, static_shape=True)
    return net


def fused_or_plain(net, fused):
    """``net`` hybridized by :func:`hybridize_for_inference` (``fused``: whether it fused), as a
    :class:`FusedNet` when fused."""
    return FusedNet(net, lambda: _unfused(net)) if fused else net


def inference_view(net, ctx=None, fuse=True):
    """A fused inference copy of ``net`` that shares its parameters (no copy, no change to
    ``net``'s own graph or hybridization), or ``net`` itself when fusion does not apply or the
    network is not a single-input HybridBlock. Build a new view after the parameters change:
    the fused operators fold the weights when they first run."""
    if not fusion_enabled(ctx, fuse) or not isinstance(net, mx.gluon.HybridBlock):
        return net
    data = mx.sym.var('data')
    try:
        out = net(data)
    except Exception:  # noqa: BLE001  (a block that cannot be called on one symbol)
        return net
    if not isinstance(out, mx.sym.Symbol):
        return net
    import warnings
    with warnings.catch_warnings():
        # SymbolBlock infers the graph's types without the input's: a harmless UserWarning
        warnings.simplefilter('ignore', UserWarning)
        view = mx.gluon.SymbolBlock(out, data, params=net.collect_params())
    view.hybridize(backend=_BACKEND, static_alloc=True, static_shape=True)
    return FusedNet(view, lambda: net)


def quantization_available():
    """``None`` when INT8 inference can run here, else why not (one sentence)."""
    try:
        from mxnet.contrib import quantization  # noqa: F401
    except ImportError as err:
        return 'this MXNet has no mxnet.contrib.quantization (%s)' % err
    if not _mkldnn():
        return 'this MXNet build has no MKLDNN, whose quantized CPU operators INT8 inference needs'
    return None


def quantize(net, calib_images, ctx=None, calib_mode='naive', batch_size=64,
             exclude_operators=None, logger=None, min_cosine=0.9):
    """An INT8 ``SymbolBlock`` of the float network ``net`` (a single-input HybridBlock with
    its trained parameters), calibrated on ``calib_images`` (N, C, H, W) float32: ``naive``
    takes the min and max of each quantized layer's outputs over them, ``entropy`` the range
    that minimises the KL divergence to their float distribution. Only CPU contexts.

    Raises :class:`gluon_dml.errors.UserError` when quantization is unavailable, the network
    cannot be quantized, or the INT8 network's outputs on the calibration images are at a mean
    cosine below ``min_cosine`` to the float network's (``qnet.calibration_cosine``)."""
    why = quantization_available()
    if why:
        raise UserError('--int8 cannot run: %s.' % why)
    ctxs = _contexts(ctx)
    if any(c.device_type != 'cpu' for c in ctxs):
        raise UserError('--int8 runs on the CPU (MKLDNN\'s quantized operators); drop --gpus.')
    if calib_mode not in CALIB_MODES:
        raise UserError('--calib-mode must be one of %s, got %r.' % (', '.join(CALIB_MODES),
                                                                      calib_mode))
    calib = np.asarray(calib_images, dtype=np.float32)
    if calib.ndim != 4 or not len(calib):
        raise UserError('INT8 calibration needs images (N, C, H, W); got an array of shape %s.'
                        % (calib.shape,))
    import mxnet.contrib.quantization as mxq
    batch = int(min(batch_size, len(calib)))
    # the iterator drops nothing: a last, partial batch is padded (with the first images) and the
    # statistics see every image at least once
    it = mx.io.NDArrayIter(data=calib, batch_size=batch, last_batch_handle='pad',
                           data_name='data')
    import warnings
    try:
        with warnings.catch_warnings():
            # quantize_net_v2 infers the graph's types without the input's: a harmless UserWarning
            warnings.simplefilter('ignore', UserWarning)
            qnet = mxq.quantize_net_v2(net, quantized_dtype='auto', quantize_mode='full',
                                       exclude_operators=list(exclude_operators or []),
                                       calib_data=it, calib_mode=calib_mode,
                                       num_calib_examples=len(calib), ctx=mx.cpu(), logger=logger)
            qnet.hybridize(static_alloc=True, static_shape=True)
            qnet(mx.nd.array(calib[:batch], ctx=mx.cpu())).wait_to_read()   # fails here, not later
    except mx.base.MXNetError as err:
        first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), '')
        raise UserError('MXNet could not quantize this network to INT8 (%s); run without --int8.'
                        % first[:300]) from None
    # a calibration can go wrong without an error (entropy on the Omniglot small conv net gives
    # embeddings at a mean cosine of -0.27 to float32's): check it on the calibration images
    cos = agreement(net, qnet, calib, batch)
    if cos < min_cosine:
        raise UserError('The INT8 network (%s calibration) does not reproduce the float32 one: '
                        'mean cosine %.3f between their embeddings of the calibration images '
                        '(below %.2f); try --calib-mode %s, more --calib-images, or run without '
                        '--int8.' % (calib_mode, cos, min_cosine,
                                     'naive' if calib_mode == 'entropy' else 'entropy'))
    qnet.calibration_cosine = cos
    return qnet


def agreement(net, qnet, images, batch_size=64):
    """The mean cosine between the outputs of ``net`` and ``qnet`` on ``images`` (CPU)."""
    sims = []
    for s in range(0, len(images), batch_size):
        x = mx.nd.array(images[s:s + batch_size], ctx=mx.cpu())
        a, b = net(x).asnumpy().reshape(len(x), -1), qnet(x).asnumpy().reshape(len(x), -1)
        sims.append((a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1),
                                                1e-12))
    return float(np.concatenate(sims).mean())
