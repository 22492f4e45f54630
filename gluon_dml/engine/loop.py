"""The one training loop every ``train_*.py`` script runs.

A method is a network, a loss, a batch sampler and an evaluation function; the loop does the
rest: data-parallel steps over the contexts, learning-rate drops, per-step seeding, per-epoch
evaluation and logging, atomic checkpoints, the best model, resuming, clean stops on
SIGINT/SIGTERM and on a NaN loss, and the exported deployment model.
"""
import json
import math
import os
import signal
import time
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..amx import bfloat16_refusal
from ..errors import UserError, first_line
from ..progress import progress_bar
from .checkpoint import (CheckpointError, CheckpointManager, atomic_save, atomic_write_text,
                         file_record, files_problem)
from .context import batch_seed
from .distributed import ReadOnlyCheckpoints, cluster as _cluster    # [distributed]
from .faults import fault_point

__all__ = ['Engine', 'EngineConfig', 'TrainingInterrupted', 'TrainingAborted', 'NaNLossError',
           'embed_dataset', 'reuse_embeddings', 'enable_amp']


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM arrived; a checkpoint was saved (``checkpoint`` None: it arrived before
    the first step, so there was nothing to save)."""

    def __init__(self, signame, checkpoint):
        if checkpoint is None:
            text = ('%s received before the first training step: nothing to save; --resume starts '
                    'the run from the beginning.' % signame)
        else:
            text = '%s received: checkpoint saved in %s; continue with --resume.' % (signame, checkpoint)
        super().__init__(text)
        self.signame = signame
        self.checkpoint = checkpoint


class TrainingAborted(KeyboardInterrupt):
    """A second SIGINT / SIGTERM while the first was being answered: stop at once, unsaved."""

    def __init__(self, signame, checkpoint):
        super().__init__('%s received again: stopped at once without saving; the last checkpoint '
                         'is %s; continue with --resume.' % (signame, checkpoint or '(none yet)'))
        self.signame = signame


class _StopNow(BaseException):
    """Raised by the signal handler where the engine may stop at once (evaluation, waiting for
    data): a BaseException so that no ``except Exception`` on the way swallows it."""


def _one_line(err):
    """``Type: first line`` of an error (:func:`gluon_dml.errors.first_line`)."""
    return '%s: %s' % (type(err).__name__, first_line(err)) if str(err).strip() else type(err).__name__


class NaNLossError(RuntimeError):
    """The loss became NaN or infinite."""


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    return progress_bar(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)


def enable_amp(dtype, ctx):
    """Turn on MXNet's automatic mixed precision (``mxnet.contrib.amp.init``) for ``dtype``
    ('float16' on GPUs, 'bfloat16' on the CPU), before any network runs. Once per process: a
    later call with another dtype is refused (AMP rewrites MXNet's operators globally)."""
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    on_gpu = all(c.device_type == 'gpu' for c in ctx)
    if dtype == 'float16' and not on_gpu:
        raise UserError('--amp float16 needs a GPU context, and this run has %s (a CPU build of '
                        'MXNet, or no usable GPU): MXNet\'s float16 mixed precision runs on CUDA '
                        'only; on the CPU use --amp bfloat16, or leave --amp out.'
                        % ', '.join(str(c) for c in ctx))
    if dtype == 'bfloat16' and any(c.device_type != 'cpu' for c in ctx):
        raise UserError('--amp bfloat16 is for the CPU (MXNet 1.9 has bfloat16 kernels in oneDNN '
                        'only); on a GPU use --amp (float16).')
    refusal = bfloat16_refusal() if dtype == 'bfloat16' else None
    if refusal:
        raise UserError(refusal)
    global _AMP_DTYPE
    if _AMP_DTYPE is not None:
        if _AMP_DTYPE != dtype:
            raise UserError('AMP is already on with %s in this process; it cannot switch to %s.'
                            % (_AMP_DTYPE, dtype))
        return
    from mxnet.contrib import amp
    amp.init(target_dtype=dtype)
    _AMP_DTYPE = dtype


_AMP_DTYPE = None


def _float32(outputs):
    """Network outputs (an NDArray, or a tuple / list of them) cast to float32 where they are not."""
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_float32(o) for o in outputs)
    if isinstance(outputs, mx.nd.NDArray) and outputs.dtype != np.float32:
        return outputs.astype('float32')
    return outputs


def load_batches(dataset, batches, num_workers=0):
    """``(data, label)`` NDArrays of each list of indices in ``batches``, in order. An in-memory
    dataset (one with ``gather``, :class:`gluon_dml.data.ArrayDataset`; not Gluon's own
    ``Dataset.take(count)``) read in the calling thread gives each batch in one indexing
    operation; otherwise a :class:`mxnet.gluon.data.DataLoader` stacks the items, with
    ``num_workers`` decoding threads. Both give the same arrays."""
    gather = getattr(dataset, 'gather', None)
    if num_workers == 0 and callable(gather):
        def batches_in_memory():
            for indices in batches:
                data, label = gather(indices)
                yield mx.nd.array(data, dtype=data.dtype), mx.nd.array(label, dtype=label.dtype)
        return batches_in_memory()
    # Worker threads, not processes: decoding (PIL) releases the GIL, and forked workers of a
    # multi-threaded MXNet process were seen to hang.
    return gluon.data.DataLoader(dataset, batch_sampler=_ListSampler(batches),
                                 num_workers=num_workers, thread_pool=num_workers > 0)


_REUSED = []      # (net, dataset, embeddings, labels) of the reuse_embeddings blocks open


class reuse_embeddings:
    """``with reuse_embeddings(net, dataset, emb, labels):`` :func:`embed_dataset` of this very
    network and dataset (the same objects) answers copies of ``emb, labels`` instead of
    embedding again. ``gluon-dml evaluate`` runs a plug-in method's own evaluator this way, on
    the split it has just embedded, so the split is embedded once."""

    def __init__(self, net, dataset, embeddings, labels):
        self.entry = (net, dataset, embeddings, labels)

    def __enter__(self):
        _REUSED.append(self.entry)
        return self

    def __exit__(self, *exc):
        _REUSED.remove(self.entry)
        return False


def embed_dataset(net, dataset, ctx, batch_size=256, num_workers=0, progress=False, desc='embed'):
    """Embeddings (N, D) float32 and labels (N,) int64 of a dataset, in its order."""
    for known_net, known_data, emb, labels in reversed(_REUSED):
        if known_net is net and known_data is dataset:
            return emb.copy(), labels.copy()
    ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
    n = len(dataset)
    batches = [range(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    embs, labels = [], []
    for data, label in _progress(load_batches(dataset, batches, num_workers), len(batches), desc,
                                 progress):
        parts = gluon.utils.split_and_load(data, ctx, even_split=False)
        embs.extend(net(p).astype('float32', copy=False).asnumpy() for p in parts)
        labels.append(label.asnumpy())
    return (np.concatenate(embs).astype(np.float32),
            np.concatenate(labels).astype(np.int64))


class _ListSampler(gluon.data.Sampler):
    def __init__(self, batches):
        self._batches = batches

    def __iter__(self):
        return iter(self._batches)

    def __len__(self):
        return len(self._batches)


@dataclass
class EngineConfig:
    """How the engine trains: the optimisation, the schedule, and what it does around the steps.

    ``select_best``: keep ``best.params`` (by ``best_metric``, higher is better) because the
    evaluation split is validation data; when False (the evaluation split is the test split)
    the reported network is the final one and no checkpoint is chosen by a test metric."""
    epochs: int = 1
    optimizer: str = 'adam'
    lr: float = 1e-3
    wd: float = 0.0
    momentum: float = 0.9
    steps: Sequence[int] = ()
    factor: float = 0.1
    loss_optimizer: Optional[str] = None
    loss_lr: Optional[float] = None
    seed: int = 0
    best_metric: str = 'recall@1'
    select_best: bool = False
    hybridize: bool = True
    num_workers: int = 0
    log_interval: int = 20
    progress: bool = True
    export_prefix: str = 'model'
    eval_untrained: bool = True
    eval_interval: int = 1
    checkpoint_every_batches: int = 0
    checkpoint_every_minutes: float = 0.0
    kvstore: str = 'device'              # [distributed] local, device or dist_* (distributed.py)
    amp: Optional[str] = None            # mixed precision: None, 'float16' (GPU), 'bfloat16' (CPU)

    @classmethod
    def from_args(cls, args, **overrides):
        """The config of a run's settings (an ``argparse.Namespace`` of ``train_*.py``)."""
        fields = dict(
            epochs=args.epochs, optimizer=args.optimizer, lr=args.lr, wd=args.wd,
            momentum=args.momentum, steps=tuple(args.steps_list), factor=args.factor,
            loss_optimizer=getattr(args, 'loss_optimizer', None),
            loss_lr=getattr(args, 'loss_lr', None), seed=args.seed,
            hybridize=not args.disable_hybridize, num_workers=args.num_workers,
            log_interval=args.log_interval, progress=not args.no_progress,
            export_prefix=args.save_model_prefix,
            eval_interval=getattr(args, 'eval_interval', 1) or 1,
            checkpoint_every_batches=int(getattr(args, 'checkpoint_every_batches', 0) or 0),
            checkpoint_every_minutes=float(getattr(args, 'checkpoint_every_minutes', 0) or 0),
            kvstore=getattr(args, 'kvstore', None) or 'device',     # [distributed]
            amp=getattr(args, 'amp', None))
        fields.update(overrides)
        return cls(**fields)


class Engine:
    """Trains ``net`` with ``loss`` on batches of ``train_set`` drawn by ``sampler``.

    ``evaluate(net, ctx, epoch) -> dict`` is called after every epoch (and once before
    training, logged as epoch 0). ``loss`` parameters (margin beta, proxies ...) get their own
    optimizer with ``config.loss_lr``.

    A method changes what a step does through the public hooks, never the loop itself:
    :meth:`forward_batch` (batch -> network outputs, under ``autograd.record``),
    :meth:`compute_loss` (outputs and labels -> loss), :meth:`clip_gradients`,
    :meth:`extra_metrics` (values logged each epoch), :meth:`state` / :meth:`load_state` (what
    a checkpoint keeps beyond the parameters) and :meth:`export` (the deployment files).
    ``self.epoch`` and ``self.iteration`` (steps taken) are public.
    """

    def __init__(self, net, loss, train_set, sampler, evaluate, run_dir, ctx, config, logger=None):
        self.net, self.loss, self.train_set, self.sampler = net, loss, train_set, sampler
        self.evaluate, self.run_dir, self.config, self.logger = evaluate, run_dir, config, logger
        self.ctx = ctx if isinstance(ctx, (list, tuple)) else [ctx]
        self.epochs, self.lr = int(config.epochs), float(config.lr)
        self.steps, self.factor = sorted(config.steps), config.factor
        self.seed, self.best_metric = config.seed, config.best_metric
        self.epoch, self.iteration = 0, 0
        self.inference_net = net        # what export() writes (a method may wrap ``net``)
        # [distributed] the job this process belongs to (one process: rank 0 of 1); only rank 0
        # writes the run folder, the others read its checkpoints to resume
        self.cluster = _cluster(config.kvstore)
        if self.cluster.is_writer:
            os.makedirs(run_dir, exist_ok=True)
        self.ckpt = (CheckpointManager(run_dir) if self.cluster.is_writer
                     else ReadOnlyCheckpoints(run_dir))
        opt_args = {'learning_rate': config.lr, 'wd': config.wd}
        if config.optimizer in ('sgd', 'nag'):
            opt_args['momentum'] = config.momentum
        self.trainer = self.cluster.adapt_trainer(gluon.Trainer(         # [distributed]
            net.collect_params(), config.optimizer, opt_args, **self.cluster.trainer_kwargs()))
        self.loss_lr = config.loss_lr if config.loss_lr is not None else config.lr
        self.loss.collect_params().reset_ctx(self.ctx[0])
        loss_params = self.loss.collect_params()
        self.loss_trainer = None
        if len(loss_params.keys()):
            # An explicit loss_optimizer wins; else the one the loss class names for its
            # parameters (``param_optimizer``, if any); else the network's.
            self.loss_optimizer = (config.loss_optimizer or getattr(loss, 'param_optimizer', None)
                                   or config.optimizer)
            loss_args = {'learning_rate': self.loss_lr, 'wd': 0.0}
            if self.loss_optimizer in ('sgd', 'nag'):
                loss_args['momentum'] = config.momentum
            self.loss_trainer = gluon.Trainer(loss_params, self.loss_optimizer, loss_args,
                                              kvstore=None)
        if config.amp:                  # dynamic loss scaling of the network's trainer
            enable_amp(config.amp, self.ctx)
            from mxnet.contrib import amp
            amp.init_trainer(self.trainer)
            self._loss_original_scale = (self.loss_trainer._scale if self.loss_trainer is not None
                                         else None)
        self.best = -math.inf
        self._stop_signal = None
        self._interruptible = False
        self._last_save = time.time()
        self._resumed_from = None

    # -- the hooks a method may override ------------------------------------------------------
    def forward_batch(self, data, label):
        """The network's outputs for one batch (called under ``autograd.record``): the batch is
        split over the contexts and the embeddings gathered on the first one."""
        parts = gluon.utils.split_and_load(data, self.ctx, even_split=False)
        embs = [self.net(p) for p in parts]
        return embs[0] if len(embs) == 1 else mx.nd.concat(
            *[e.as_in_context(self.ctx[0]) for e in embs], dim=0)

    def compute_loss(self, outputs, label):
        """The loss of one batch from :meth:`forward_batch`'s outputs and the batch's labels."""
        return self.loss(outputs, label.as_in_context(self.ctx[0]))

    def clip_gradients(self):
        """Change the gradients before the update (default: nothing)."""

    def extra_metrics(self):
        """Values logged with every epoch's metrics: the loss's own parameters (mean of each; of
        the copies together when an ensemble's members each have one)."""
        values = {}
        for name, p in self.loss.collect_params().items():
            if p.grad_req == 'null':       # [distributed] state such as a loss's memory
                continue
            short = name.split('_', 1)[-1] if '_' in name else name
            mean = float(p.data(self.ctx[0]).asnumpy().mean())
            values.setdefault('loss_' + short, []).append(mean)
        out = {k: float(np.mean(v)) for k, v in values.items()}
        schedule = getattr(self.loss, 'schedule_metrics', None)
        if callable(schedule):                        # where a loss's schedule stands
            out.update(schedule())
        return out

    def state(self):
        """What a checkpoint keeps beyond the parameters and optimizer states (JSON-able)."""
        return {'iteration': self.iteration}

    def load_state(self, meta):
        """Restore :meth:`state` from a checkpoint's ``meta.json``."""
        self.iteration = int(meta.get('iteration', 0))

    def export(self):
        """Write the deployment files of the reported network: ``PREFIX-symbol.json`` and
        ``PREFIX-0000.params`` (a hybridized network only)."""
        prefix = self.config.export_prefix
        shape = (1,) + tuple(self.train_set[0][0].shape)
        net = self.inference_net
        if net is not self.net:
            net.hybridize()
        net(mx.nd.zeros(shape, ctx=self.ctx[0]))
        net.export(os.path.join(self.run_dir, prefix))
        return ['%s-symbol.json' % prefix, '%s-0000.params' % prefix]

    def gather_batch(self, outputs, label):
        """[distributed] The batch the loss sees: in a distributed job every worker's
        embeddings and labels in rank order, the local rows alone carrying the gradient
        (:meth:`gluon_dml.engine.distributed.Cluster.gather_batch`); else (or when ``outputs``
        is not one array) unchanged. Returns ``(outputs, label, gathered)``."""
        if self.cluster.gathers and isinstance(outputs, mx.nd.NDArray):
            outputs, label = self.cluster.gather_batch(outputs, label)
            return outputs, label, True
        return outputs, label, False

    def train_step(self, data, label):
        """One optimisation step; returns the batch's loss (the update is skipped when it is not
        finite)."""
        if self.config.amp and label.dtype != np.float32:
            # AMP's graphs hand integer tensors to oneDNN kernels that take none (MXNet 1.9.1:
            # "unknown type for MKLDNN :6"); class ids below 2**24 are exact in float32
            label = label.astype('float32')
        with autograd.record():
            outputs = self.forward_batch(data, label)
            if self.config.amp:                   # the loss computes in float32 (as AMP's
                outputs = _float32(outputs)       # losses would; bfloat16 dot has no CPU kernel)
            outputs, label, gathered = self.gather_batch(outputs, label)   # [distributed]
            loss = self.compute_loss(outputs, label)
            scaled = self._scale_loss(loss)
        scaled.backward()
        value = float(loss.astype('float32', copy=False).mean().asscalar())
        if self.cluster.distributed:              # [distributed] every worker stops at one step
            self._stop_signal = self.cluster.agree_stop(self.net.collect_params())
        if not math.isfinite(value):
            return value
        self.cluster.allreduce_gradients(self.net.collect_params())       # [distributed]
        self.clip_gradients()
        self.trainer.step(self.cluster.step_divisor(gathered))          # [distributed]
        if self.loss_trainer is not None and (not self.config.amp or self._loss_grads_finite()):
            self.loss_trainer.step(1)
        self.iteration += 1
        return value

    def _scale_loss(self, loss):
        """``--amp``: the loss times the dynamic loss scale (``amp.scale_loss``'s work, inside
        ``autograd.record``); both trainers divide their gradients by it. Without AMP: ``loss``."""
        if not self.config.amp:
            return loss
        scale = self.trainer._amp_loss_scaler.loss_scale
        self.trainer._scale = self.trainer._amp_original_scale / scale
        if self.loss_trainer is not None:
            self.loss_trainer._scale = self._loss_original_scale / scale
        return loss * scale

    def _loss_grads_finite(self):
        """Whether the loss's own gradients are finite (with float16 loss scaling they may
        overflow; the network's trainer checks its own, the loss's step is skipped like it)."""
        for p in self.loss.collect_params().values():
            if p.grad_req != 'null' and not np.isfinite(p.grad(self.ctx[0]).asnumpy()).all():
                return False
        return True

    # -- learning rate --------------------------------------------------------------------------
    def lr_at(self, epoch):
        """Learning rate for ``epoch`` (1-based): ``lr * factor^(number of steps <= epoch - 1)``,
        so ``--steps 12`` drops the rate from epoch 13 on, after 12 epochs."""
        drops = sum(1 for s in self.steps if epoch > s)
        return self.lr * (self.factor ** drops)

    def _set_lr(self, epoch):
        scale = self.lr_at(epoch) / self.lr
        self.trainer.set_learning_rate(self.lr_at(epoch))
        if self.loss_trainer is not None:
            self.loss_trainer.set_learning_rate(self.loss_lr * scale)

    # -- checkpoints ----------------------------------------------------------------------------
    def _save_checkpoint(self, epoch, batch, extra=None, progress=None):
        """Save checkpoint ``(epoch, batch)``; ``progress`` (mid-epoch): the epoch's batch losses
        so far, images and training time, so that the resumed epoch logs the loss over all its
        batches. A failed write (a full disk) leaves the previous checkpoint and is one
        sentence."""
        writers = {'net.params': self.net.save_parameters,
                   'trainer.states': self.trainer.save_states}
        if self.loss_trainer is not None:
            writers['loss.params'] = self.loss.save_parameters
            writers['loss_trainer.states'] = self.loss_trainer.save_states
        meta = {'best': self.best if math.isfinite(self.best) else None,
                'best_metric': self.best_metric, 'time': time.time()}
        meta.update(self.state())
        meta.update(extra or {})
        if progress is not None and batch > 0:
            meta['progress'] = progress
        try:
            path = self.ckpt.save(epoch, batch, writers, meta)
        except (OSError, mx.base.MXNetError) as err:
            previous = self.ckpt.scan()
            tail = ('the previous checkpoint (%s) is intact: free some space, then continue with '
                    '--resume.' % previous[0][2]) if previous else \
                'there is no earlier checkpoint: free some space, then start again with --resume.'
            raise CheckpointError('Could not write the checkpoint e%04d-b%05d in %s (%s); %s'
                                  % (epoch, batch, self.ckpt.dir,
                                     getattr(err, 'strerror', None) or _one_line(err), tail)) from None
        self._last_save = time.time()
        fault_point('checkpoint-done', epoch=epoch, batch=batch)
        return path

    def _load_checkpoint(self, path):
        meta = CheckpointManager.meta(path)
        self.net.load_parameters(os.path.join(path, 'net.params'), ctx=self.ctx)
        self.trainer.load_states(os.path.join(path, 'trainer.states'))
        if self.loss_trainer is not None:
            self.loss.load_parameters(os.path.join(path, 'loss.params'), ctx=self.ctx[0])
            self.loss_trainer.load_states(os.path.join(path, 'loss_trainer.states'))
        self.best = meta['best'] if meta.get('best') is not None else -math.inf
        self.load_state(meta)
        return meta

    # -- signals --------------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        name = signal.Signals(signum).name
        if self.cluster.distributed and self._stop_signal is None:
            self.cluster.note_signal(name)     # [distributed] the workers agree on the step
            return
        if self._stop_signal is not None:      # a second Ctrl-C: stop now
            found = self.ckpt.scan()
            raise TrainingAborted(name, os.path.join(self.ckpt.dir, found[0][2]) if found else None)
        self._stop_signal = name
        now = self._interruptible
        # os.write: a print here could re-enter the stream the main thread is writing to
        os.write(2, ('\n%s received: %s and saving a checkpoint (press Ctrl-C again to abort '
                     'without saving).\n' % (name, 'stopping now' if now else 'finishing this step')
                     ).encode())
        if now:
            self._interruptible = False
            raise _StopNow(name)

    # -- the loop -------------------------------------------------------------------------------
    def _run_evaluation(self, epoch):
        """The evaluation of ``epoch``; a signal stops it at once (raises ``_StopNow``)."""
        t0 = time.time()
        try:
            self._interruptible = True
            if self._stop_signal is not None:
                raise _StopNow(self._stop_signal)
            fault_point('eval', epoch=epoch)
            metrics = self.evaluate(self.net, self.ctx, epoch)
        finally:
            self._interruptible = False
        metrics['eval_time'] = time.time() - t0
        return metrics

    def _warn(self, msg):
        if self.logger is not None and hasattr(self.logger, 'warn'):
            self.logger.warn(msg)
        else:
            warnings.warn(msg)

    def _resume_point(self):
        """Load the newest whole checkpoint: ``(path, meta)``, or ``(None, None)`` when there is
        none. A damaged one (truncated, garbled, unloadable) is set aside with a warning naming
        it and the one used instead; only when every checkpoint is damaged is it an error."""
        for msg in self.ckpt.recover():
            self._warn('%s: %s.' % (self.ckpt.dir, msg))
        name, problem = self.ckpt.pointer()
        if problem is not None and (problem != 'is missing' or self.ckpt.scan()):
            self._warn('%s/latest %s; the checkpoints themselves are scanned instead.'
                       % (self.ckpt.dir, problem))
        damaged = []
        for path, problem in self.ckpt.candidates():
            if problem is None:
                try:
                    meta = self._load_checkpoint(path)
                except Exception as err:      # noqa: BLE001  (MXNet, pickle, OS: all mean damaged)
                    problem = 'it cannot be loaded: %s' % _one_line(err)
            if problem is not None:
                damaged.append((path, problem))
                continue
            for bad, why in damaged:
                aside = self.ckpt.set_aside(bad)
                self._warn('the newest checkpoint %s is damaged (%s); resuming from the previous '
                           'one, %s (the damaged one is kept as %s until the next checkpoint).'
                           % (bad, why, path, os.path.basename(aside)))
            return path, meta
        if damaged:
            raise CheckpointError('Every checkpoint in %s is damaged (%s), so the run cannot be '
                                  'resumed; pass --overwrite instead of --resume to train it again.'
                                  % (self.ckpt.dir, '; '.join('%s: %s' % (os.path.basename(p), w)
                                                               for p, w in damaged)))
        return None, None

    def _adopt_best(self):
        """On resume: ``best.params`` / ``best.json`` on disk hold the best network evaluated so
        far (possibly at an epoch after the checkpoint, trained again now); its score becomes
        the one to beat. Damaged or half-missing, they are removed with a warning, and the best
        of the epochs still to come is kept."""
        if not self.config.select_best:
            return
        paths = [os.path.join(self.run_dir, n) for n in ('best.params', 'best.json', 'best.loss.params')]
        if not any(os.path.exists(p) for p in paths[:2]):
            if math.isfinite(self.best):
                self._warn('%s has no best.params although the checkpoint records a best %s of %.4f; '
                           'that network is lost, the best of the epochs still to come is kept.'
                           % (self.run_dir, self.best_metric, self.best))
                self.best = -math.inf
            return
        why = None
        try:
            with open(paths[1]) as f:
                record = json.load(f)
            score = float(record[self.best_metric])
            # best.json of older versions records no files: sizes unknown
            why = files_problem(self.run_dir, record.get('files') or {})
            ok = os.path.getsize(paths[0]) > 0 and math.isfinite(score) and why is None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            self._warn('best.params / best.json in %s are damaged or incomplete%s; they are removed '
                       'and the best of the epochs still to come is kept.'
                       % (self.run_dir, ' (%s)' % why if why else ''))
            for p in paths:
                if os.path.exists(p):
                    os.remove(p)
            self.best = -math.inf
            return
        self.best = max(self.best, score)

    def fit(self, resume=False):
        """Train; returns the last epoch's metrics. Raises TrainingInterrupted / NaNLossError."""
        if self.config.hybridize:
            self.net.hybridize(static_alloc=True)
            self.loss.hybridize(static_alloc=True)
        if self.cluster.distributed:             # [distributed] every worker starts from rank 0's
            self.cluster.start(self)
        handlers = {}
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                handlers[s] = signal.signal(s, self._on_signal)
            except ValueError:             # not the main thread
                pass
        try:
            metrics = self._fit(resume)
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
        self._finish()
        return metrics

    def _fit(self, resume):
        start_epoch, start_batch, progress = 1, 0, None
        last, meta = self._resume_point() if resume else (None, None)
        self._last_save = time.time()
        self._resumed_from = (meta['epoch'], meta['batch'], last) if last is not None else None
        if resume and last is None and self.logger:
            self.logger.info('--resume: no checkpoint in %s yet (a new run folder, or a run '
                             'stopped before its first checkpoint), starting from the beginning.'
                             % self.ckpt.dir)
        if last is not None:
            start_epoch, start_batch = meta['epoch'], meta['batch']
            progress = meta.get('progress')
            if self.logger:
                self.logger.info('Resumed from %s (epoch %d, batch %d).' % (last, start_epoch, start_batch))
                if start_epoch > self.epochs:
                    self.logger.info('The run has trained all its %d epochs: nothing left to train '
                                     '(a larger --epochs continues it).' % self.epochs)
        if resume:
            self._adopt_best()
        if self.logger:
            try:
                kept = self.logger.truncate(start_epoch if last is not None else 0)
            except OSError as err:
                raise UserError('Cannot rewrite %s (%s).' % (self.logger.path, err.strerror or err)) from None
            missing = sorted(set(range(1 if not self.config.eval_untrained else 0, start_epoch))
                             - {r.get('epoch') for r in kept}) if last is not None else []
            if missing:
                self._warn('%s has no row for epoch(s) %s, which the checkpoint says were trained; '
                           'their metrics are lost (the parameters are not).'
                           % (self.logger.path, ', '.join(map(str, missing))))
        if last is None and self.config.eval_untrained and self.logger:
            try:
                metrics = self._run_evaluation(0)
            except _StopNow as stop:
                raise TrainingInterrupted(str(stop), None) from None
            metrics.update(self.extra_metrics())
            self._log_epoch(0, metrics)
            if self._stop_signal is not None:
                raise TrainingInterrupted(self._stop_signal, None)
        metrics = {}
        for epoch in range(start_epoch, self.epochs + 1):
            metrics = self._train_epoch(epoch, start_batch if epoch == start_epoch else 0,
                                        progress if epoch == start_epoch else None)
        return metrics

    def _log_epoch(self, epoch, metrics):
        if self.logger:
            try:
                self.logger.log_epoch(epoch, metrics)
            except OSError as err:
                raise UserError('Cannot write %s (%s); the last checkpoint is intact: fix that, '
                                'then continue with --resume.'
                                % (self.logger.path, err.strerror or err)) from None

    def _stop_checkpoint(self, epoch, batch, progress):
        """The checkpoint of a stop at ``(epoch, batch)``: saved, unless it is the one the run
        resumed from (nothing was trained since)."""
        if self._resumed_from is not None and self._resumed_from[:2] == (epoch, batch):
            return self._resumed_from[2]
        return self._save_checkpoint(epoch, batch, extra={'interrupted': self._stop_signal},
                                     progress=progress)

    def _checkpoint_due(self, b, n_batches):
        if b >= n_batches:
            return False                   # the epoch's end has its own checkpoint
        every = self.config.checkpoint_every_batches
        if every and b % every == 0:
            return True
        minutes = self.config.checkpoint_every_minutes
        return bool(minutes) and time.time() - self._last_save >= 60.0 * minutes

    def _train_epoch(self, epoch, first_batch, progress=None):
        self.epoch = epoch
        self._set_lr(epoch)
        self.sampler.set_epoch(epoch)
        set_loss_epoch = getattr(self.loss, 'set_epoch', None)
        if callable(set_loss_epoch):                  # a loss with a schedule (DAML's warm-up)
            set_loss_epoch(epoch)
        if hasattr(self.train_set, 'set_epoch'):      # per-epoch random augmentation
            self.train_set.set_epoch(epoch)
        batches = list(self.sampler)
        loader = load_batches(self.train_set, batches[first_batch:], self.config.num_workers)
        progress = progress or {}
        losses = [float(v) for v in progress.get('losses', ())]
        n_images = int(progress.get('n_images', 0))
        t0, carried = time.time(), float(progress.get('train_time', 0.0))

        def state():
            return {'losses': list(losses), 'n_images': n_images,
                    'train_time': carried + time.time() - t0}

        bar = _progress(loader, len(batches) - first_batch,
                        'epoch %d/%d' % (epoch, self.epochs), self.config.progress)
        b = first_batch
        log_interval = self.config.log_interval
        it = iter(bar)
        while True:
            try:
                self._interruptible = True
                if self._stop_signal is not None:
                    raise _StopNow(self._stop_signal)
                fault_point('load', epoch=epoch, batch=b)
                item = next(it, None)
                self._interruptible = False
            except _StopNow:
                self._interruptible = False
                raise TrainingInterrupted(self._stop_signal,
                                          self._stop_checkpoint(epoch, b, state())) from None
            if item is None:
                break
            data, label = item
            mx.random.seed(batch_seed(self.seed, epoch, b))
            value = self.train_step(data, label)
            if not math.isfinite(value):
                if epoch == 1 and b == 0:
                    raise NaNLossError(
                        'The loss was %s at the first batch, before any update, so the learning '
                        'rate is not the cause; training stopped. Check the loss settings (a '
                        'weight or scale too large for float32?) and the data for bad values.'
                        % value)
                last = self.ckpt.latest()
                raise NaNLossError(
                    'The loss became %s at epoch %d, batch %d; training stopped. The last good '
                    'checkpoint is %s. Lower --lr (now %g) or check the data for bad values.'
                    % (value, epoch, b + 1, last or '(none yet)', self.lr_at(epoch)))
            losses.append(value)
            n_images += data.shape[0]
            b += 1
            fault_point('step', epoch=epoch, batch=b)
            step = (epoch - 1) * len(batches) + b
            # every --log-interval iterations of the run (not of the epoch: an epoch shorter
            # than the interval would log nothing, and each epoch's tail would be left out)
            if log_interval and step % log_interval == 0 and self.logger:
                recent = float(np.mean(losses[-log_interval:]))
                self.logger.log_iter(step, {'loss': recent, 'lr': self.lr_at(epoch)})
            if hasattr(bar, 'set_postfix'):
                bar.set_postfix(loss='%.4f' % float(np.mean(losses[-20:])), refresh=False)
            if self._stop_signal is not None and b < len(batches):
                raise TrainingInterrupted(self._stop_signal, self._stop_checkpoint(epoch, b, state()))
            if self._checkpoint_due(b, len(batches)):
                self._save_checkpoint(epoch, b, progress=state())
        train_time = carried + time.time() - t0
        self.cluster.average_statistics(self.net.collect_params())       # [distributed]
        metrics = {'loss': float(np.mean(losses)) if losses else float('nan'),
                   'lr': self.lr_at(epoch), 'train_time': train_time,
                   'images_per_sec': n_images / max(train_time, 1e-9)}
        metrics.update(self.extra_metrics())
        if epoch % max(1, self.config.eval_interval) == 0 or epoch == self.epochs:
            try:
                metrics.update(self._run_evaluation(epoch))
            except _StopNow:
                # the epoch's training is done; its evaluation is redone on --resume
                raise TrainingInterrupted(self._stop_signal, self._stop_checkpoint(
                    epoch, len(batches), state())) from None
        self._log_epoch(epoch, metrics)
        score = metrics.get(self.best_metric)
        if self.config.select_best and score is not None and math.isfinite(score) and score > self.best:
            self.best = score
            try:
                written = {'best.params': self.net.save_parameters}
                if self.loss_trainer is not None:
                    written['best.loss.params'] = self.loss.save_parameters
                for name, save in written.items():
                    atomic_save(os.path.join(self.run_dir, name), save)
                # with each file's size and CRC-32: a cut or changed copy is named as damaged
                atomic_write_text(os.path.join(self.run_dir, 'best.json'), json.dumps(
                    dict(metrics, epoch=epoch, selected_on='validation', selected_by=self.best_metric,
                         files={n: file_record(os.path.join(self.run_dir, n)) for n in written}),
                    indent=1))
            except (OSError, mx.base.MXNetError) as err:
                raise UserError('Cannot write best.params in %s (%s); the last checkpoint is '
                                'intact: fix that, then continue with --resume.'
                                % (self.run_dir, getattr(err, 'strerror', None) or _one_line(err))) from None
        before = self._stop_signal
        path = self._save_checkpoint(
            epoch + 1, 0, extra={'interrupted': self._stop_signal} if self._stop_signal else None)
        if self._stop_signal is not None:
            if before is None:             # it arrived during the save: say so in its meta.json
                meta = dict(CheckpointManager.meta(path), interrupted=self._stop_signal)
                atomic_write_text(os.path.join(path, 'meta.json'), json.dumps(meta, indent=1))
            raise TrainingInterrupted(self._stop_signal, path)
        return metrics

    def reported_params(self):
        """The parameters the run reports: ``best.params`` when the best epoch is chosen on
        validation data, else the final network (the newest checkpoint)."""
        best = os.path.join(self.run_dir, 'best.params')
        if self.config.select_best and os.path.exists(best):
            return best
        return None

    def _finish(self):
        """Load the reported network (best on validation, else the final one) and export it."""
        best = self.reported_params()
        if best is not None:
            self.net.load_parameters(best, ctx=self.ctx)
        if not self.cluster.is_writer:                                    # [distributed]
            return
        if not self.config.hybridize:
            if self.logger:
                self.logger.info('Not exported: --disable-hybridize trains without a symbol graph '
                                 '(gluon-dml evaluate and embed read the parameters; train '
                                 'without the flag for %s-symbol.json and ONNX).'
                                 % self.config.export_prefix)
            return
        written = self.export()
        if self.logger:
            self.logger.info('Exported %s (%s network) in %s' % (
                ' / '.join(written), 'best-on-validation' if best else 'final', self.run_dir))
