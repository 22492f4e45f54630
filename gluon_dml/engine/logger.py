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


def read_log(run_dir):
    """The epochs of ``run_dir/log.jsonl`` as a list of dicts."""
    path = os.path.join(run_dir, 'log.jsonl')
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Logger:
    def __init__(self, run_dir, sinks=(), stream=sys.stdout):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, 'log.jsonl')
        self.sinks = list(sinks)
        self.stream = stream

    def truncate(self, before_epoch):
        """Keep only the epochs before ``before_epoch`` (a resumed run rewrites the rest)."""
        kept = [r for r in read_log(self.run_dir) if r.get('epoch', 0) < before_epoch]
        with open(self.path, 'w') as f:
            for r in kept:
                f.write(json.dumps(r) + '\n')

    def info(self, msg):
        print(msg, file=self.stream, flush=True)

    def _call(self, method, *args):
        for sink in list(self.sinks):
            try:
                getattr(sink, method)(*args)
            except Exception as err:  # a dashboard must never stop the training
                warnings.warn('%s failed (%s: %s); it is switched off for the rest of the run, '
                              'everything is still written to %s.'
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
        self.info('[epoch %d] %s' % (epoch, format_metrics(values)))
        self._call('log_epoch', epoch, record)

    def log_embeddings(self, epoch, embeddings, labels, images=None):
        self._call('log_embeddings', epoch, embeddings, labels, images)

    def close(self):
        self._call('close')
