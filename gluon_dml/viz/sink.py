"""The ``--use_viz`` sink of the engine's Logger: the run live in Visdom, and the same plots as PNGs.

The Logger calls ``log_iter``, ``log_epoch``, ``log_embeddings`` and ``close``. Each call only
records what it got and wakes two background threads, so training runs at full speed:

* the *plotter* computes the embedding views (t-SNE of a bounded sample, retrieval grid, pair
  distance histograms) every ``tsne_interval`` epochs and writes the PNGs into ``RUN/plots``
  (a newer epoch's request replaces one not started yet);
* the :class:`~gluon_dml.viz.dashboard.VisdomChannel` sends the windows to the server.

Files in the run folder: ``iterations.jsonl`` (the loss every ``--log-interval`` iterations),
``plots/loss.png``, ``plots/epochs.png`` (every ``log.jsonl`` key per epoch), and per view epoch
``plots/{tsne,retrieval,distances}_epochNNN.png`` plus ``plots/views_epochNNN.npz`` (their data,
which ``eval/replay_viz.py`` pushes to a server later).
"""
import atexit
import glob
import json
import math
import os
import re
import sys
import threading

import numpy as np

from ..fileio import atomic_save, atomic_write_text
from . import plots, views
from .dashboard import VisdomChannel

__all__ = ['VisdomSink', 'RunState', 'ITERATIONS_FILE', 'PLOTS_DIR']

ITERATIONS_FILE = 'iterations.jsonl'
PLOTS_DIR = 'plots'


def _read_jsonl(path):
    """The JSON objects of ``path``'s lines; a line that is not one (being written right now, cut
    by a crash, not UTF-8, a list) is skipped: the dashboard shows what it can read."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path, 'rb') as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line.decode('utf-8'))
            except ValueError:      # UnicodeDecodeError and JSONDecodeError are ValueErrors
                continue
            if isinstance(record, dict):
                out.append(record)
    return out


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_iterations(path):
    """The rows of ``iterations.jsonl`` that have a numeric step (the others are skipped)."""
    return [r for r in _read_jsonl(path) if _number(r.get('step'))]


def _loss_points(rows):
    return [(r['step'], r['loss']) for r in rows if _number(r.get('loss'))]


def _atomic_npz(path, arrays):
    def write(tmp):                  # a file object: np.savez would add .npz to the name
        with open(tmp, 'wb') as f:
            np.savez_compressed(f, **arrays)
    atomic_save(path, write)


def views_files(run_dir):
    return sorted(glob.glob(os.path.join(run_dir, PLOTS_DIR, 'views_epoch*.npz')))


def load_views(path):
    """The views dict of ``views_epochNNN.npz``; a damaged file is a ValueError naming it."""
    import zipfile
    try:
        with np.load(path) as z:
            v = {k: z[k] for k in z.files}
        if 'epoch' not in v or v['epoch'].shape != () or v['epoch'].dtype.kind not in 'iu':
            # every file the sink writes has its epoch; replay-viz said 'unexpected KeyError'
            raise ValueError('it holds no epoch number')
        return v
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise ValueError('%s is damaged (%s: %s); delete it and the dashboard goes on without '
                         'that epoch\'s views.' % (path, type(err).__name__, err)) from None


class RunState:
    """What a run has logged so far: the loss points, the epoch records, the latest views.

    The live sink fills it from the Logger's calls; :meth:`from_run_dir` reads a run folder (for
    ``eval/replay_viz.py``). Readers get copies, so the sender thread never sees a list change.
    """

    def __init__(self, name='', command=None, log_interval=None):
        self.name, self.command, self.log_interval = name, command, log_interval
        self._lock = threading.Lock()
        self._loss, self._records, self._views = [], [], None

    @classmethod
    def from_run_dir(cls, run_dir):
        args = {}
        if os.path.exists(os.path.join(run_dir, 'args.json')):
            with open(os.path.join(run_dir, 'args.json')) as f:
                args = json.load(f)
        state = cls(args.get('name') or os.path.basename(os.path.normpath(run_dir)),
                    args.get('command'), args.get('log_interval'))
        state.args = args
        state._loss = _loss_points(_read_iterations(os.path.join(run_dir, ITERATIONS_FILE)))
        state._records = [r for r in _read_jsonl(os.path.join(run_dir, 'log.jsonl'))
                          if _number(r.get('epoch'))]
        files = views_files(run_dir)
        if files:
            state._views = load_views(files[-1])
        return state

    def add_loss(self, step, value):
        with self._lock:
            self._loss.append((step, value))

    def set_loss(self, points):
        with self._lock:
            self._loss = list(points)

    def set_records(self, records):
        with self._lock:
            self._records = list(records)

    def set_views(self, v):
        with self._lock:
            self._views = v

    def loss_points(self):
        with self._lock:
            return list(self._loss)

    def epoch_records(self):
        with self._lock:
            return list(self._records)

    def latest_views(self):
        with self._lock:
            return self._views


def _lower_this_threads_priority(step=10):
    """On Linux a thread has its own nice value: let the training threads have the cores first.
    Returns ``(thread id, previous nice)`` for :func:`_restore_priority`, or None."""
    if not sys.platform.startswith('linux'):
        return None
    try:
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, before + step))
        return tid, before
    except (AttributeError, OSError):
        return None


def _restore_priority(saved):
    """Give the plotter thread its normal priority back once training is over (a niced thread
    on a loaded machine can take minutes to draw the last plots). Lowering a nice value needs
    privileges on Linux: without them the thread keeps its low priority."""
    if saved is None:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, saved[0], saved[1])
    except (AttributeError, OSError):
        pass


class _Plotter(threading.Thread):
    """Background thread that computes the embedding views and writes every PNG."""

    def __init__(self, sink):
        super().__init__(name='viz-plotter', daemon=True)
        self.sink = sink
        self.cond = threading.Condition()
        self.views_job = None
        self.curves_due = False
        self.stopping = False
        self.superseded = 0
        self.failed = False
        self.saved_priority = None

    def request_views(self, job):
        with self.cond:
            if self.views_job is not None:
                self.superseded += 1
            self.views_job = job
            self.cond.notify()

    def request_curves(self):
        with self.cond:
            self.curves_due = True
            self.cond.notify()

    def stop(self, drop_pending=False):
        with self.cond:
            if drop_pending and self.views_job is not None:
                self.views_job = None
                self.superseded += 1
            self.stopping = True
            self.cond.notify()
        _restore_priority(self.saved_priority)

    def run(self):
        self.saved_priority = _lower_this_threads_priority()
        while True:
            with self.cond:
                while not (self.views_job or self.curves_due or self.stopping):
                    self.cond.wait()
                job, self.views_job = self.views_job, None
                curves, self.curves_due = self.curves_due, False
                if job is None and not curves and self.stopping:
                    return
            try:
                if curves:
                    self.sink._draw_curves()
                if job is not None:
                    self.sink._draw_views(*job)
            except Exception as err:  # noqa: BLE001 - a plot must never stop the training
                if not self.failed:
                    self.failed = True
                    print('warning: writing the plots failed (%s: %s); training goes on.'
                          % (type(err).__name__, err), file=sys.stderr, flush=True)


class VisdomSink:
    """Streams a run to Visdom environment ``env`` and writes its plots into ``run_dir/plots``.

    ``tsne_interval``: epochs between embedding views (t-SNE, retrieval, distances), also drawn
    for the untrained model (epoch 0) and the last epoch (``last_epoch``); 0 turns them off.
    ``tsne_points``: the t-SNE and the distance histograms use at most this many test embeddings
    (a class-stratified seeded sample). ``connect=False`` writes the files only.
    """

    def __init__(self, run_dir, env, server='http://localhost', port=8097, tsne_interval=1,
                 tsne_points=1000, last_epoch=None, log_interval=None, seed=0, name=None,
                 command=None, n_queries=8, k=5, connect=True, queue_size=64, timeout=5.0,
                 retry_s=30.0, close_timeout=300.0):
        self.run_dir, self.env = run_dir, env
        self.close_timeout = float(close_timeout)   # the longest close() waits for the last plots
        self.tsne_interval, self.tsne_points = int(tsne_interval), int(tsne_points)
        self.last_epoch, self.seed, self.n_queries, self.k = last_epoch, seed, n_queries, k
        self.plots_dir = os.path.join(run_dir, PLOTS_DIR)
        os.makedirs(self.plots_dir, exist_ok=True)
        self.iter_path = os.path.join(run_dir, ITERATIONS_FILE)
        self.state = RunState(name or env, command, log_interval)
        self._first_iter = True
        self._closed = False
        self.plotter = _Plotter(self)
        self.plotter.start()
        self.channel = None
        if connect:
            hint = (' Everything is still written to %s; push it to a dashboard later with: '
                    'gluon-dml replay-viz %s' % (run_dir, run_dir))
            self.channel = VisdomChannel(self.state, server, port, env, maxsize=queue_size,
                                         timeout=timeout, retry_s=retry_s, hint=hint,
                                         views=self.tsne_interval > 0)
        atexit.register(self._close_at_exit)

    def _notify(self, kind):
        if self.channel is not None:
            self.channel.notify(kind)

    # -- the Logger's interface ------------------------------------------------------------------
    def log_iter(self, step, values):
        loss = values.get('loss')
        if loss is None:
            return
        loss = float(loss)
        if self._first_iter:
            # A resumed run logs again from its checkpoint on: keep the earlier points only.
            self._first_iter = False
            kept = [r for r in _read_iterations(self.iter_path) if r['step'] < step]
            # replaced whole: a crash while it is rewritten keeps the old one
            atomic_write_text(self.iter_path, ''.join(json.dumps(r) + '\n' for r in kept))
            self.state.set_loss(_loss_points(kept))
        record = {'step': int(step)}
        record.update({k: (float(v) if isinstance(v, (int, float, np.floating)) else v)
                       for k, v in values.items()})
        if not math.isfinite(loss):
            record['loss'] = None
        with open(self.iter_path, 'a') as f:
            f.write(json.dumps(record) + '\n')
        if math.isfinite(loss):
            self.state.add_loss(int(step), loss)
            self._notify('loss')

    def log_epoch(self, epoch, record):
        # log.jsonl already holds this epoch (the Logger writes it first), resumed history included.
        records = [r for r in _read_jsonl(os.path.join(self.run_dir, 'log.jsonl'))
                   if _number(r.get('epoch'))]
        if not records or records[-1].get('epoch') != epoch:
            records = self.state.epoch_records() + [dict(record, epoch=epoch)]
        self.state.set_records(records)
        self.plotter.request_curves()
        self._notify('epoch')

    def wants_views(self, epoch):
        if epoch is None or self.tsne_interval <= 0:
            return False
        return epoch % self.tsne_interval == 0 or (self.last_epoch is not None and epoch == self.last_epoch)

    def log_embeddings(self, epoch, embeddings, labels, images=None):
        if self.wants_views(epoch):
            self.plotter.request_views((int(epoch), np.asarray(embeddings), np.asarray(labels), images))

    def close(self, fast=False):
        if self._closed:
            return
        self._closed = True
        self.plotter.stop(drop_pending=fast)
        wait = 30 if fast else self.close_timeout
        self.plotter.join(wait)
        if self.plotter.is_alive():
            print('warning: the plots in %s were still being drawn %d s after the run ended (a '
                  'loaded machine); they are left as they are: log.jsonl holds every value, and '
                  'gluon-dml replay-viz %s shows them on a dashboard.'
                  % (self.plots_dir, wait, os.path.dirname(self.plots_dir.rstrip(os.sep))),
                  file=sys.stderr, flush=True)
        if self.channel is not None:
            # Its counters (sent, dropped, discarded, rejected) stay readable; an unreachable
            # server was already reported once, with the replay command.
            self.channel.close(timeout=3.0 if fast else 10.0)

    def _close_at_exit(self):
        # The run stopped without Logger.close() (an interrupt, a NaN loss): finish quickly.
        self.close(fast=True)

    # -- the plotter thread's work -----------------------------------------------------------------
    def _title(self, what, epoch=None):
        return '%s - %s%s' % (what, self.state.name, '' if epoch is None else ', epoch %d' % epoch)

    def _draw_curves(self):
        points = self.state.loss_points()
        if points:
            plots.plot_loss_curve([p[0] for p in points], [p[1] for p in points],
                                  os.path.join(self.plots_dir, 'loss.png'),
                                  title=self._title('training loss'),
                                  interval=self.state.log_interval)
        records = self.state.epoch_records()
        if records:
            plots.plot_epoch_curves(records, os.path.join(self.plots_dir, 'epochs.png'),
                                    title=self._title('per-epoch values (log.jsonl)'))

    def _draw_views(self, epoch, emb, labels, images):
        v = compute_views(emb, labels, images, self.tsne_points, self.n_queries, self.k, self.seed)
        v['epoch'] = np.array(epoch)
        save_views(v, self.plots_dir, self.state.name)
        self.state.set_views(v)
        self._notify('views')


def compute_views(emb, labels, images=None, tsne_points=1000, n_queries=8, k=5, seed=0,
                  tsne_iter=500):
    """The embedding views of one evaluation as a dict of arrays (what ``views_epochNNN.npz``
    holds): ``tsne_xy``/``tsne_labels``/``tsne_index``, ``grid``/``queries``/``neighbours``/
    ``correct`` (with images), ``hist_edges``/``hist_pos``/``hist_neg``."""
    emb, labels = np.asarray(emb, np.float32), np.asarray(labels)
    idx = views.sample_indices(labels, tsne_points, seed)
    v = {'tsne_index': idx, 'tsne_labels': labels[idx], 'tsne_xy': views.tsne_2d(emb[idx], seed, max_iter=tsne_iter)}
    q, nb, ok = views.retrieval_examples(emb, labels, n_queries, k, seed)
    v.update(queries=q, neighbours=nb, correct=ok)
    if images is not None and len(q):
        v['grid'] = views.retrieval_grid(images, q, nb, ok)
    edges, pos, neg, stats = views.distance_histograms(emb[idx], labels[idx])
    v.update(hist_edges=edges, hist_pos=pos, hist_neg=neg,
             hist_stats=np.array([stats['positive_mean'], stats['negative_mean']]))
    return v


def save_views(v, plots_dir, name=''):
    """Write ``views_epochNNN.npz`` and the three PNGs of one views dict into ``plots_dir``."""
    epoch = int(v['epoch'])
    suffix = '_epoch%03d' % epoch
    os.makedirs(plots_dir, exist_ok=True)
    _atomic_npz(os.path.join(plots_dir, 'views%s.npz' % suffix), v)
    run = (' - %s' % name) if name else ''
    plots.plot_tsne(v['tsne_xy'], v['tsne_labels'], os.path.join(plots_dir, 'tsne%s.png' % suffix),
                    title='t-SNE of %d test embeddings%s, epoch %d' % (len(v['tsne_xy']), run, epoch))
    if 'grid' in v:
        plots.plot_retrieval(v['grid'], os.path.join(plots_dir, 'retrieval%s.png' % suffix),
                             title='nearest neighbours in the test split%s, epoch %d' % (run, epoch),
                             n_queries=len(v['queries']), k=v['neighbours'].shape[1],
                             precision=float(np.mean(v['correct'])))
    stats = {}
    if 'hist_stats' in v:
        stats = {'positive_mean': float(v['hist_stats'][0]), 'negative_mean': float(v['hist_stats'][1])}
    plots.plot_distances(v['hist_edges'], v['hist_pos'], v['hist_neg'],
                         os.path.join(plots_dir, 'distances%s.png' % suffix),
                         title='test pair distances%s, epoch %d' % (run, epoch), stats=stats)


def env_name(name):
    """A Visdom environment name from a run name (no path separators)."""
    return re.sub(r'[\\/]+', '_', name)
