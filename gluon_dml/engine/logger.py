"""Run logging: console, ``log.jsonl`` (one line per epoch with every metric) and optional sinks.

A sink (the Visdom dashboard, for instance) receives the same calls through one narrow interface:
``log_iter(step, values)``, ``log_epoch(epoch, values)``, ``log_embeddings(epoch, embeddings,
labels, images)`` and ``close()``; a sink that fails is reported once and dropped, never allowed to
stop or slow the training.
"""
import json
import math
import os
import sys
import warnings

from .checkpoint import atomic_write_text
from .faults import fault_point

__all__ = ['Logger', 'read_log', 'format_metrics']


def format_metrics(values):
    parts = []
    for k, v in values.items():
        if isinstance(v, float):
            parts.append('%s=%.4f' % (k, v))
        elif isinstance(v, (int, str)):
            parts.append('%s=%s' % (k, v))
    return ' '.join(parts)


def _jsonable(v):
    if hasattr(v, 'item'):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def read_log(run_dir, repair=False):
    """The epochs of ``run_dir/log.jsonl`` as a list of dicts.

    A last line cut short (a kill while it was written) is dropped with a warning, and with
    ``repair`` removed from the file; any other line that is not JSON is an error naming the file
    and the line."""
    path = os.path.join(run_dir, 'log.jsonl')
    if not os.path.exists(path):
        return []
    try:
        with open(path, 'rb') as f:
            raw = f.read()
        lines = raw.decode('utf-8', errors='replace').split('\n')
    except OSError as err:
        raise ValueError('Cannot read %s (%s).' % (path, err.strerror or err)) from None
    rows = []
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
    for k, (lineno, line) in enumerate(numbered):
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError('not a JSON object')
        except ValueError as err:
            if k == len(numbered) - 1:
                print('warning: %s: its last line (line %d) is incomplete, the mark of a kill while '
                      'it was written; it is dropped (that epoch is trained again on --resume).'
                      % (path, lineno), file=sys.stderr, flush=True)
                if repair:
                    atomic_write_text(path, ''.join(json.dumps(r) + '\n' for r in rows))
                break
            raise ValueError('%s, line %d is not a JSON row (%s); the log is damaged: delete that '
                             'line to continue.' % (path, lineno, err)) from None
        epoch = row.get('epoch')
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            # every row training writes starts with its epoch (0: before training)
            raise ValueError('%s, line %d has %s; every row of a run\'s log starts with its epoch '
                             '(a whole number): the log is damaged or was edited by hand.'
                             % (path, lineno, 'no "epoch"' if 'epoch' not in row else
                                '"epoch": %s' % json.dumps(epoch)))
        rows.append(row)
    return rows


class Logger:
    def __init__(self, run_dir, sinks=(), stream=None):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, 'log.jsonl')
        self.sinks = list(sinks)
        self._stream = stream

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stdout

    def truncate(self, before_epoch):
        """Keep only the epochs before ``before_epoch`` (a resumed run rewrites the rest), one
        row per epoch (the last written); the file is replaced atomically. Returns the rows
        kept."""
        rows = read_log(self.run_dir) if os.path.exists(self.path) else []
        by_epoch = {}
        for r in rows:
            if r['epoch'] < before_epoch:
                by_epoch[r['epoch']] = r
        kept = [by_epoch[e] for e in sorted(by_epoch)]
        if rows or os.path.exists(self.path):
            atomic_write_text(self.path, ''.join(json.dumps(r) + '\n' for r in kept))
        return kept

    def info(self, msg):
        print(msg, file=self.stream, flush=True)

    def warn(self, msg):
        print('warning: %s' % msg, file=sys.stderr, flush=True)

    def _call(self, method, *args):
        for sink in list(self.sinks):
            try:
                getattr(sink, method)(*args)
            except Exception as err:  # a dashboard must never stop the training
                warnings.warn('%s failed (%s: %s); it is switched off for the rest of the run, '
                              'which goes on: log.jsonl and the checkpoints are still written to '
                              '%s.'
                              % (type(sink).__name__, type(err).__name__, err, self.run_dir))
                self.sinks.remove(sink)

    def log_iter(self, step, values):
        self._call('log_iter', step, values)

    def log_epoch(self, epoch, values):
        record = {'epoch': epoch}
        record.update({k: _jsonable(v) for k, v in values.items()})
        with open(self.path, 'a') as f:
            f.write(json.dumps(record) + '\n')
            f.flush()
            os.fsync(f.fileno())
        fault_point('log', epoch=epoch)
        self.info('[epoch %d] %s' % (epoch, format_metrics(values)))
        self._call('log_epoch', epoch, record)

    def log_embeddings(self, epoch, embeddings, labels, images=None):
        self._call('log_embeddings', epoch, embeddings, labels, images)

    def close(self):
        self._call('close')
