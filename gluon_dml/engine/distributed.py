"""Training on several processes through MXNet's parameter server (``--kvstore dist_*``).

One process per worker runs the same script; ``python -m gluon_dml.launch`` starts them with the
scheduler and the servers (the ``DMLC_*`` variables). A worker sees the job through one
:class:`Cluster`:

* ``rank`` / ``num_workers`` come from the key-value store (MXNet assigns the ranks);
* :meth:`Cluster.allgather` concatenates, in rank order, the rows every worker holds: each worker
  pushes its rows, zero-padded into its own block of the global array, to an integer key; the
  servers sum the pushes of a step (``dist_sync``), so the pulled sum is the concatenation. Zero
  plus a number is that number exactly, so every worker holds bit for bit the same global batch;
* :meth:`Cluster.gather_batch` builds the global batch under ``autograd.record``: the other
  workers' rows are constants and the local rows are the recorded embeddings, so the loss of the
  global batch sends its gradient to the local rows only. The gradients summed over the workers
  by the trainer's all-reduce are then the gradient of the global loss, exactly what one process
  with the global batch computes: no rescaling (``Trainer.step(1)``);
* :meth:`Cluster.agree_stop` carries each worker's pending SIGINT/SIGTERM in the same push, so
  every worker stops at the same step (rank 0 then writes the checkpoint).

``local`` and ``device`` are the single-process stores (several devices of one process);
``dist_sync`` and ``dist_device_sync`` all-gather and all-reduce synchronously;
``dist_async`` updates the weights on the servers as gradients arrive: no all-gather is possible
there (a server keeps the last push, not a sum), so each worker's loss sees its own batch and the
optimizer (with its state) lives on the servers.
"""
import numpy as np

import mxnet as mx
from mxnet import autograd

from .checkpoint import CheckpointManager

__all__ = ['KVSTORES', 'Cluster', 'cluster', 'ReadOnlyCheckpoints', 'GATHER_KEY_BASE',
           'exit_worker']

KVSTORES = ('local', 'device', 'dist_sync', 'dist_device_sync', 'dist_async')

# Our keys (all-gathers, gradient sums, broadcasts), numbered from here: above the trainer's
# (one per parameter, from 0, used with dist_async), and small: with several servers MXNet
# splits the key space among them and refuses keys past a server's range.
GATHER_KEY_BASE = 1 << 16

_CLUSTER = None


def writes_the_run():
    """Whether this process writes the run folder: not in a job, or rank 0 of one (the
    checkpoint a stop names is rank 0's; other workers' messages would repeat it, or name one
    that a dist_async worker never wrote)."""
    return _CLUSTER is None or not _CLUSTER.distributed or _CLUSTER.is_writer


def cluster(kvstore='device'):
    """The process's :class:`Cluster` (one per process: a distributed store can be created once)."""
    global _CLUSTER
    if _CLUSTER is None or _CLUSTER.type != (kvstore or 'device'):
        if _CLUSTER is not None and _CLUSTER.distributed:
            raise RuntimeError('This process already joined a %s job; it cannot join a %s one.'
                               % (_CLUSTER.type, kvstore))
        _CLUSTER = Cluster(kvstore)
    return _CLUSTER


class Cluster(object):
    """A worker's view of the job: its rank, the number of workers, the all-gather."""

    def __init__(self, kvstore='device'):
        kvstore = kvstore or 'device'
        if kvstore not in KVSTORES:
            raise ValueError('--kvstore must be one of %s, got %r.' % (', '.join(KVSTORES), kvstore))
        self.type = kvstore
        self.distributed = kvstore.startswith('dist')
        self.kv = None
        self.rank, self.num_workers = 0, 1
        if self.distributed:
            import os
            if 'DMLC_ROLE' not in os.environ:
                raise ValueError('--kvstore %s needs the scheduler, servers and workers of a job: '
                                 'start it with python -m gluon_dml.launch -n WORKERS SCRIPT ...'
                                 % kvstore)
            self.kv = mx.kv.create(kvstore)
            self.rank, self.num_workers = self.kv.rank, self.kv.num_workers
            _report_rank(self.rank)
        # the all-gather needs a store that sums the pushes of a step
        self.gathers = self.distributed and 'async' not in kvstore
        self._keys = {}
        self._pending_signal = None

    # -- who does what -------------------------------------------------------------------------
    @property
    def is_writer(self):
        """Whether this process evaluates, logs and writes the run folder (rank 0)."""
        return self.rank == 0

    def trainer_kwargs(self):
        """``kvstore`` / ``update_on_kvstore`` of the network's ``gluon.Trainer``: the store
        itself in a distributed job, the gradients all-reduced and the update applied by every
        worker (identically: the same summed gradient, the same optimizer state) except with
        ``dist_async``, where the servers update; else the store's name as before. In a
        synchronous job the trainer has no store: :meth:`allreduce_gradients` sums."""
        if not self.distributed:
            return {'kvstore': self.type}
        if 'async' in self.type:
            return {'kvstore': self.kv, 'update_on_kvstore': True}
        return {'kvstore': None}          # :meth:`allreduce_gradients` sums, the trainer updates

    def adapt_trainer(self, trainer):
        """With ``dist_async`` the optimizer and its state live on the servers, which MXNet
        cannot save: checkpoints then keep the parameters only, and a resumed job starts its
        optimizer state afresh (a warning says so)."""
        if not (self.distributed and 'async' in self.type):
            return trainer

        def save_states(fname):
            with open(fname, 'wb') as f:
                f.write(b'')

        def load_states(fname):
            import warnings
            warnings.warn('--kvstore dist_async: the optimizer state lives on the servers and is '
                          'not in checkpoints; the resumed job starts it afresh.')
        trainer.save_states, trainer.load_states = save_states, load_states
        return trainer

    def step_divisor(self, gathered):
        """What ``Trainer.step`` divides the summed gradients by: 1 when the loss saw the global
        batch (the sum over workers is the global loss's gradient), else the number of workers
        (each worker's loss is the mean over its own batch)."""
        return 1 if gathered or not self.distributed else self.num_workers

    # -- communication -------------------------------------------------------------------------
    def _key(self, name, shape, ctx):
        key = self._keys.get(name)
        if key is None:
            key = GATHER_KEY_BASE + len(self._keys)
            self._keys[name] = key
            self.kv.init(key, mx.nd.zeros(shape, ctx=ctx))
        return key

    def allgather(self, name, local):
        """The concatenation (rank order, axis 0) of every worker's ``local`` (same shape on each
        worker), as a new array on ``local``'s context. ``name`` identifies the exchange: each
        name gets its own key, and every worker must call the same names in the same order."""
        n, rows = self.num_workers, local.shape[0]
        shape = (n * rows,) + tuple(local.shape[1:])
        buf = mx.nd.zeros(shape, ctx=local.context, dtype='float32')
        buf[self.rank * rows:(self.rank + 1) * rows] = local.astype('float32')
        key = self._key(name, shape, local.context)
        self.kv.push(key, buf)
        # The push of a single CPU array is sent from ``buf`` itself, and nothing orders the
        # pull's request after it: a pull sent first gets the previous step's sum. A push
        # completes when the servers have every worker's part, so wait for it first.
        mx.nd.waitall()
        self.kv.pull(key, out=buf)
        return buf

    def gather_batch(self, embeddings, labels):
        """``(global embeddings, global labels)`` of a step: every worker's rows in rank order,
        the local rows still recorded (they alone carry the gradient). Also exchanges the
        workers' pending stop signals (see :meth:`agree_stop`). Single process: unchanged."""
        if not self.gathers:
            return embeddings, labels
        rows = embeddings.shape[0]
        ctx = embeddings.context
        with autograd.pause():
            # one push for the labels (any shape per row: class ids, one-hot rows) and the stop
            # flags: [labels..., flag]
            flat = labels.astype('float32').as_in_context(ctx).reshape((-1,))
            # 0: none, 1: SIGTERM (or another), 2: SIGINT: the workers that got no signal
            # stop on the one that was sent (their message and exit code name it)
            flag = {None: 0.0, 'SIGINT': 2.0}.get(self._pending_signal, 1.0)
            meta = mx.nd.concat(flat, mx.nd.array([flag], ctx=ctx), dim=0)
            width = flat.shape[0]
            meta_all = self.allgather('labels', meta).reshape((self.num_workers, width + 1))
            everyone = self.allgather('embeddings', embeddings.detach())
            meta_np = meta_all.asnumpy()
        flags = meta_np[:, width]
        self._agreed_stop = bool(flags.max() > 0)
        self._agreed_signal = 'SIGINT' if flags.max() >= 2 else 'SIGTERM'
        all_labels = mx.nd.array(
            meta_np[:, :width].reshape((self.num_workers * rows,) + tuple(labels.shape[1:])),
            ctx=labels.context, dtype=labels.dtype)
        parts = []
        lo, hi = self.rank * rows, (self.rank + 1) * rows
        if lo > 0:
            parts.append(everyone[:lo])
        parts.append(embeddings)
        if hi < everyone.shape[0]:
            parts.append(everyone[hi:])
        gathered = parts[0] if len(parts) == 1 else mx.nd.concat(*parts, dim=0)
        return gathered, all_labels

    # -- stopping together ---------------------------------------------------------------------
    def note_signal(self, signame):
        """A signal arrived in this worker: it is announced to the others at the next exchange
        instead of stopping this worker alone (which would leave the others waiting). A second
        one stops this worker at once (KeyboardInterrupt; the launcher then stops the job)."""
        if self._pending_signal is not None:
            raise KeyboardInterrupt
        self._pending_signal = signame

    def start(self, engine):
        """Before training: run the method's forward pass once on a few training items (a
        deferred-initialised network gets its parameters; rank 0 draws them as one process
        would), then give every worker rank 0's parameters of the network and the loss."""
        from mxnet import gluon
        loader = gluon.data.DataLoader(engine.train_set, batch_size=len(engine.ctx))
        data, label = next(iter(loader))
        engine.forward_batch(data, label)
        self.broadcast_parameters(engine.net.collect_params(), 'net')
        self.broadcast_parameters(engine.loss.collect_params(), 'loss')

    def agree_stop(self, params=None):
        """After a step: the signal name when any worker announced one in this step's exchange
        (every worker answers the same at the same step), else None. Without an all-gather
        (``dist_async``) a worker stops at its own signal. When the job stops, the running
        statistics of ``params`` are averaged first (:meth:`average_statistics`), so that rank
        0's checkpoint holds every worker's."""
        if not self.distributed:
            return None
        if not self.gathers:
            return self._pending_signal
        if getattr(self, '_agreed_stop', False):
            if params is not None:
                self.average_statistics(params)
            return self._pending_signal or getattr(self, '_agreed_signal', 'SIGTERM')
        return None

    def broadcast_parameters(self, params, name):
        """Give every worker rank 0's values of ``params`` (a ``ParameterDict``, initialised).
        A deferred-initialised network must have run once (on any input) first."""
        if not self.distributed:
            return
        for i, (pname, p) in enumerate(sorted(params.items())):
            key = self._keys.get(('broadcast', name, pname))
            if key is None:
                key = GATHER_KEY_BASE + len(self._keys)
                self._keys[('broadcast', name, pname)] = key
            # through a plain copy: the store cannot read MKL-DNN laid-out arrays
            value = mx.nd.array(p.data().asnumpy(), ctx=mx.cpu(), dtype=p.dtype)
            out = mx.nd.zeros(value.shape, ctx=mx.cpu(), dtype=p.dtype)
            self.kv.broadcast(key, value, out=out)
            p.set_data(out)
        mx.nd.waitall()

    def allreduce_gradients(self, params):
        """Sum the gradients of ``params`` over every device and worker, in place (each device
        of each worker then holds the total). Our own keys, pushed, waited for, then pulled: a
        pull cannot overtake its push (left to ``gluon.Trainer``, the first all-reduce was seen to
        return a wrong sum now and then under load)."""
        if not self.gathers:
            return
        items = [(n, p) for n, p in sorted(params.items()) if p.grad_req != 'null']
        keys = []
        for n, p in items:
            grads = p.list_grad()
            keys.append(self._key(('grad', n), grads[0].shape, grads[0].context))
        for key, (n, p) in zip(keys, items):
            self.kv.push(key, p.list_grad())
        mx.nd.waitall()
        for key, (n, p) in zip(keys, items):
            self.kv.pull(key, out=p.list_grad())

    def average_statistics(self, params):
        """Replace the parameters of ``params`` that are not learned (batch norm's running mean
        and variance) by their mean over the workers, on every worker: the statistics of the
        whole data, as a multi-device process saves them (the mean over its devices). Running
        statistics are linear in the batches, so averaging now and then changes nothing else."""
        if not self.gathers:
            return
        items = [(n, p) for n, p in sorted(params.items()) if p.grad_req == 'null']
        if not items:
            return
        values = []
        for n, p in items:
            value = mx.nd.array(p.data().asnumpy(), ctx=mx.cpu(), dtype='float32')
            key = self._key(('stat', n), value.shape, value.context)
            self.kv.push(key, value)
            values.append((key, value, p))
        mx.nd.waitall()
        for key, value, p in values:
            self.kv.pull(key, out=value)
            p.set_data(value / self.num_workers)
        mx.nd.waitall()

    def barrier(self):
        """Wait for every worker (a no-op in one process)."""
        if self.distributed:
            self.kv._barrier()


class ReadOnlyCheckpoints(CheckpointManager):
    """The checkpoints of a worker that is not rank 0: it finds and reads rank 0's (to resume),
    and writes, repairs or moves nothing (rank 0's hold the state of every worker: the same
    parameters, optimizer state and loss memory; rank 0 alone completes interrupted writes and
    sets damaged checkpoints aside)."""

    def __init__(self, run_dir, keep=2):
        super().__init__(run_dir, keep=keep, create=False)

    def save(self, epoch, batch, writers, meta):
        import os
        return os.path.join(self.dir, 'e%04d-b%05d' % (epoch, batch))

    def recover(self):
        return []

    def set_aside(self, path):
        return path


def exit_worker(code):
    """Leave with ``code`` after an error. A worker of a job leaves at once (``os._exit``), without
    MXNet's shutdown of the store: that shutdown waits at a barrier of the workers, and the other
    workers' next barrier (the one that ends a store's first ``init`` of a key) paired with it and
    let them go on to push a key rank 0 never initialised; the server aborted ('init 65536
    first') and the launcher named the server instead of this worker's error. Leaving at once,
    the launcher sees this worker fail and stops the job with its message. Elsewhere this is
    ``sys.exit(code)``."""
    import os
    import sys
    if _CLUSTER is not None and _CLUSTER.distributed:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)


def _report_rank(rank):
    """Tell the launcher which rank this worker got (``GLUON_DML_RANK_FILE``), so that its
    messages can name it."""
    import os
    path = os.environ.get('GLUON_DML_RANK_FILE')
    if path:
        try:
            with open(path, 'w') as f:
                f.write('%d\n' % rank)
        except OSError:
            pass


def numpy_allgather(cluster_, name, array):
    """:meth:`Cluster.allgather` of a numpy array (float32 exactly representable values)."""
    out = cluster_.allgather(name, mx.nd.array(np.asarray(array, np.float32)))
    return out.asnumpy()
