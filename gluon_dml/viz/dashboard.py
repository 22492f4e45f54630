"""The Visdom windows of a run, and a channel that sends them without ever blocking training.

:class:`Dashboard` draws every window from plain data (the live sink and ``eval/replay_viz.py``
draw the same windows through it). :class:`VisdomChannel` owns the network: a background thread
creates the Visdom client, and the training thread only puts small notes on a bounded queue
(``put_nowait``: a full queue drops the note and counts it). The thread sends whatever the run's
state holds and the server has not got yet, so a dropped note only delays points, never loses
them. When the server is unreachable (at the start, or gone in the middle) there is one warning;
the thread then keeps discarding notes and tries the server again every ``retry_s`` seconds; when
it is back, every window is redrawn from the run's state.
"""
import html
import math
import queue
import re
import sys
import threading
import time

import numpy as np

from ..errors import UserError
from .plots import class_colours, metric_title, ordered_keys, series

__all__ = ['Dashboard', 'VisdomChannel', 'metric_window', 'connect', 'DashboardRejected',
           'check_address', 'short_reason',
           'LOSS_WIN', 'TSNE_WIN', 'RETRIEVAL_WIN', 'DISTANCES_WIN', 'RUN_WIN']

LOSS_WIN = 'loss'
TSNE_WIN = 'tsne'
RETRIEVAL_WIN = 'retrieval'
DISTANCES_WIN = 'distances'
RUN_WIN = 'run'


def metric_window(key):
    """The window id of a ``log.jsonl`` key (``recall@1`` -> ``epoch_recall_1``)."""
    return 'epoch_' + re.sub(r'[^A-Za-z0-9_]', '_', key)


class DashboardRejected(RuntimeError):
    """The server answered an update with an HTTP error (it is up, the update was refused)."""


def check_address(server, port):
    """Refuse a ``--viz-server`` / ``--viz-port`` that no request could use (``UserError``, the
    one sentence the commands print): a port outside 1-65535, a scheme other than http(s), no
    host, or a port or path in the server address (the client adds ``:PORT`` to it, so
    ``http://host:8097`` became ``http://host:8097:8097``, which was only a warning after the
    run had started)."""
    from urllib.parse import urlparse
    if not 0 < int(port) < 65536:
        raise UserError('--viz-port must be a port number (1-65535), got %s.' % port)
    text = str(server).strip()
    try:
        url = urlparse(text if '://' in text else 'http://' + text)
        explicit_port = url.port
    except ValueError as err:
        raise UserError('--viz-server %s is not a server address (%s); give one like '
                        'http://localhost.' % (server, err)) from None
    if url.scheme not in ('http', 'https') or not url.hostname:
        raise UserError('--viz-server %s is not an http:// or https:// server address; give one '
                        'like http://localhost.' % server)
    if explicit_port is not None:
        raise UserError('--viz-server %s has a port in it; give the address without it (%s://%s) '
                        'and the port with --viz-port %d.'
                        % (server, url.scheme, url.netloc.rsplit(':', 1)[0], explicit_port))
    if url.path.strip('/') or url.query or url.fragment:
        raise UserError('--viz-server %s has a path in it; give the server address alone (%s://%s).'
                        % (server, url.scheme, url.netloc))


def connect(server='http://localhost', port=8097, env='main', timeout=5.0):
    """A Visdom client for ``env`` that raises ``ConnectionError`` at once when the server cannot be
    reached (no incoming socket, no retries, ``timeout`` seconds per request at most)."""
    import logging

    import requests
    from urllib.parse import urlparse
    from visdom import Visdom

    logging.getLogger('visdom').setLevel(logging.ERROR)   # its "no incoming socket" notice
    host = urlparse(server if '://' in server else 'http://' + server).hostname or ''
    loopback = host in ('localhost', '127.0.0.1', '::1') or host.startswith('127.')

    class _Client(Visdom):
        @property
        def session(self):
            if self._session is None:
                s = requests.Session()
                s.trust_env = not loopback       # never send loopback traffic through a proxy
                self._session = s
            return self._session

        def _handle_post(self, url, data=None):
            r = self.session.post(url, data=data if data is not None else {}, timeout=timeout)
            if r.status_code >= 400:
                raise DashboardRejected('%s answered HTTP %d' % (url, r.status_code))
            return r.text

    return _Client(server=server, port=port, env=env, raise_exceptions=True,
                   use_incoming_socket=False)


def _finite(values):
    return np.array([v if v is not None and math.isfinite(v) else np.nan for v in values], np.float64)


class Dashboard:
    """Draws a run's windows in one Visdom environment through ``vis`` (a Visdom client).

    Line windows are created whole the first time and then appended to; :meth:`reset` forgets
    what was sent (after the server came back) so the next update redraws them whole.
    """

    def __init__(self, vis, env, log_interval=None):
        self.vis, self.env, self.log_interval = vis, env, log_interval
        self.reset()

    def reset(self):
        self._sent = {}            # window id -> number of points the server has
        self._placeholders = set()

    # -- curves ------------------------------------------------------------------------------
    def _line(self, win, xs, ys, opts, name):
        have = self._sent.get(win, 0)
        if have == len(xs) or not len(xs):
            return
        if have == 0 or have > len(xs):
            self.vis.line(Y=_finite(ys), X=np.asarray(xs, np.float64), win=win, env=self.env,
                          opts=opts, name=name)
        else:
            self.vis.line(Y=_finite(ys[have:]), X=np.asarray(xs[have:], np.float64), win=win,
                          env=self.env, update='append', name=name)
        self._sent[win] = len(xs)

    def loss(self, points):
        """``points``: [(iteration, smoothed loss), ...], all of them so far."""
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        every = (' (mean of every %d iterations)' % self.log_interval) if self.log_interval else ''
        opts = dict(title='training loss' + every, xlabel='iteration', ylabel='loss',
                    showlegend=True, legend=['loss'], width=520, height=360)
        if not xs and LOSS_WIN not in self._placeholders:
            # Reserve the window's place near the top before training starts.
            self._placeholders.add(LOSS_WIN)
            self.vis.line(Y=np.array([np.nan]), X=np.array([0.0]), win=LOSS_WIN, env=self.env,
                          opts=opts, name='loss')
        self._line(LOSS_WIN, xs, ys, opts, 'loss')

    def epochs(self, records):
        """One window per numeric ``log.jsonl`` key, one point per epoch."""
        for key in ordered_keys(records):
            xs, ys = series(records, key)
            opts = dict(title=metric_title(key), xlabel='epoch', ylabel=key, markers=True,
                        markersize=7, showlegend=True, legend=[key], width=360, height=300)
            if key == 'lr' or key.endswith('_lr'):
                opts['ytype'] = 'log'
            self._line(metric_window(key), xs, ys, opts, key)

    def reserve(self):
        """Put the run and loss windows at the top of the environment before there is anything to
        show in them (Visdom lays windows out in the order they first appear)."""
        self.vis.text('<b>%s</b><br>waiting for the first evaluation' % html.escape(self.env),
                      win=RUN_WIN, env=self.env, opts=dict(title='run', width=520, height=160))
        self.loss([])

    def run_info(self, name, command=None, records=(), best_metric='recall@1'):
        last = records[-1] if records else {}
        rows = ['<b>%s</b>' % html.escape(name)]
        if command:
            rows.append('<code>%s</code>' % html.escape(command))
        if last:
            rows.append('epoch %s: %s' % (last.get('epoch'), html.escape(', '.join(
                '%s %.4f' % (k, last[k]) for k in ordered_keys([last])[:4]
                if isinstance(last.get(k), float)))))
        xs, ys = series(records, best_metric)
        if ys:
            i = int(np.nanargmax(ys))
            rows.append('best %s %.4f at epoch %d' % (best_metric, ys[i], xs[i]))
        self.vis.text('<br>'.join(rows), win=RUN_WIN, env=self.env,
                      opts=dict(title='run %s' % name, width=520, height=160))

    # -- embedding views ---------------------------------------------------------------------
    def views(self, v):
        """``v``: the dict written by the sink (``views_epochNNN.npz``): t-SNE, retrieval grid and
        distance histograms of one epoch."""
        epoch = int(v['epoch'])
        if self._sent.get('views') == epoch:
            return
        self._sent['views'] = epoch
        if 'tsne_xy' in v and len(v['tsne_xy']):
            labels = np.asarray(v['tsne_labels'])
            classes, idx = np.unique(labels, return_inverse=True)
            colours = (np.array(class_colours(len(classes)))[:, :3] * 255).astype(int)
            self.vis.scatter(X=np.asarray(v['tsne_xy'], np.float64), Y=idx + 1, win=TSNE_WIN,
                             env=self.env,
                             opts=dict(title='t-SNE of %d test embeddings, epoch %d' % (len(labels), epoch),
                                       legend=['class %s' % c for c in classes], markersize=5,
                                       markercolor=colours, xlabel='t-SNE 1', ylabel='t-SNE 2',
                                       width=520, height=440))
        if 'grid' in v and np.asarray(v['grid']).size:
            grid = np.asarray(v['grid'], np.float32)
            caption = 'query (blue) | neighbours: green = same class, red = another'
            h, w = grid.shape[:2]
            self.vis.image(grid.transpose(2, 0, 1), win=RETRIEVAL_WIN, env=self.env,
                           opts=dict(title='retrieval, epoch %d' % epoch, caption=caption,
                                     width=max(w + 24, 360), height=h + 84))
        if 'hist_edges' in v and len(v['hist_edges']) > 1:
            e = np.asarray(v['hist_edges'], np.float64)
            c = 0.5 * (e[:-1] + e[1:])
            y = np.column_stack([v['hist_pos'], v['hist_neg']]).astype(np.float64)
            self.vis.line(Y=y, X=np.column_stack([c, c]), win=DISTANCES_WIN, env=self.env,
                          opts=dict(title='pair distances, epoch %d' % epoch,
                                    legend=['positive pairs (same class)', 'negative pairs'],
                                    xlabel='Euclidean distance', ylabel='density', fillarea=True,
                                    showlegend=True, width=520, height=360,
                                    linecolor=np.array([[44, 160, 44], [214, 39, 40]])))

    def draw_all(self, state):
        """Every window from ``state`` (a :class:`RunState` or anything with its attributes)."""
        records = state.epoch_records()
        if getattr(state, 'name', None):
            self.run_info(state.name, getattr(state, 'command', None), records)
        self.loss(state.loss_points())
        v = state.latest_views()
        if v is not None:
            self.views(v)
        self.epochs(records)


_STOP = object()


def _warn(msg):
    print('warning: ' + msg, file=sys.stderr, flush=True)


class VisdomChannel:
    """Sends ``state``'s windows to a Visdom server from a background thread.

    ``notify(kind)`` is all the training thread does: it puts ``kind`` ('loss', 'epoch',
    'views', 'all') on a queue of ``maxsize`` notes without waiting; a full queue drops the note
    and counts it in ``dropped``. Nothing here ever waits on the network in the caller's thread.
    """

    def __init__(self, state, server='http://localhost', port=8097, env='main', maxsize=64,
                 timeout=5.0, retry_s=30.0, hint='', views=True, hold_s=120.0):
        self.state, self.server, self.port, self.env = state, server, port, env
        # The per-epoch windows wait (at most hold_s) for the first embedding views, so that the
        # t-SNE and retrieval windows come right after the loss instead of below a dozen curves.
        self._hold_until = time.time() + hold_s if views else 0.0
        self.timeout, self.retry_s, self.hint = timeout, retry_s, hint
        self.url = '%s:%s' % (server.rstrip('/'), port)
        self.queue = queue.Queue(maxsize)
        self.dropped = 0           # notes that found the queue full
        self.discarded = 0         # notes that arrived while the server was away
        self.sent = 0              # notes handled with the server up
        self.rejected = 0          # updates the server refused
        self.online = None         # None: not tried yet
        self.warned = False
        self._dash = None
        self._next_try = 0.0
        self._thread = threading.Thread(target=self._run, name='visdom-sender', daemon=True)
        self._thread.start()

    # -- the caller's side ---------------------------------------------------------------------
    def notify(self, kind):
        try:
            self.queue.put_nowait(kind)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout=10.0):
        """Send what is still unsent (for at most ``timeout`` seconds), then stop the thread."""
        deadline = time.time() + timeout
        try:
            self.queue.put('all', timeout=max(0.0, deadline - time.time()))
            self.queue.put(_STOP, timeout=max(0.0, deadline - time.time()))
        except queue.Full:
            pass
        self._thread.join(max(0.0, deadline - time.time()))
        if self._thread.is_alive():
            _warn('the Visdom server at %s was still busy after %.0fs; the last dashboard updates '
                  'were not sent.%s' % (self.url, timeout, self.hint))
        return self

    # -- the thread's side ---------------------------------------------------------------------
    def _connect(self):
        self._next_try = time.time() + self.retry_s
        try:
            vis = connect(self.server, self.port, self.env, self.timeout)
        except Exception as err:  # noqa: BLE001 - any failure means: not reachable now
            self._went_away(err)
            return False
        from_outage = self.online is False
        self._dash = Dashboard(vis, self.env, getattr(self.state, 'log_interval', None))
        self.online = True
        if from_outage:
            print('Visdom server at %s is reachable again: redrawing environment %r.'
                  % (self.url, self.env), file=sys.stderr, flush=True)
        return True

    def _went_away(self, err):
        self.online = False
        self._dash = None
        self._next_try = time.time() + self.retry_s
        if not self.warned:
            self.warned = True
            _warn('cannot reach the Visdom server at %s (%s); training goes on, the dashboard '
                  'is not updated (tried again every %.0fs).%s'
                  % (self.url, short_reason(err), self.retry_s, self.hint))

    def _handle(self, kind):
        d = self._dash
        if kind == 'loss':
            d.loss(self.state.loss_points())
        elif kind == 'epoch':
            records = self.state.epoch_records()
            d.run_info(self.state.name, getattr(self.state, 'command', None), records)
            d.loss(self.state.loss_points())
            if self.state.latest_views() is not None or time.time() > self._hold_until:
                d.epochs(records)
        elif kind == 'views':
            v = self.state.latest_views()
            if v is not None:
                d.views(v)
                d.epochs(self.state.epoch_records())
        else:
            d.draw_all(self.state)

    def _run(self):
        if self._connect():
            try:
                self._dash.reserve()
            except Exception as err:  # noqa: BLE001
                self._went_away(err) if isinstance(err, OSError) else self._refused(err)
            if self._dash is not None:
                self._send('all')   # whatever the run logged before the client was up
        while True:
            kind = self.queue.get()
            if kind is _STOP:
                return
            if self._dash is None:
                if time.time() < self._next_try or not self._connect():
                    self.discarded += 1
                    continue
                kind = 'all'
            self._send(kind)

    def _send(self, kind):
        try:
            self._handle(kind)
            self.sent += 1
        except DashboardRejected as err:
            self._refused(err)
        except OSError as err:      # ConnectionError, requests' errors, timeouts: the server went away
            self._went_away(err)
        except Exception as err:  # noqa: BLE001 - a bad update must not stop the others
            self._refused(err)

    def _refused(self, err):
        self.rejected += 1
        if self.rejected == 1:
            _warn('a dashboard update failed (%s); the others go on.' % short_reason(err))


def short_reason(err):
    """One short reason: visdom wraps requests' error (the real reason) in its own."""
    cause = err.__cause__ or err.__context__ or err
    text = str(cause)
    if 'refused' in text.lower():
        return 'connection refused'
    if 'timed out' in text.lower() or 'timeout' in type(cause).__name__.lower():
        return 'no answer in time'
    if 'name or service not known' in text.lower() or 'resolve' in text.lower():
        return 'unknown host'
    first = text.strip().splitlines()
    return '%s: %s' % (type(cause).__name__, first[0][:160] if first else '')
