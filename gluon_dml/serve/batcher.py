"""A micro-batcher: one thread that gathers the queries of concurrent requests and runs them
through the network together.

    batcher = MicroBatcher({'image': embed_arrays, 'text': embed_texts}, max_batch=32,
                           max_delay=0.005)
    future = batcher.submit('image', array)        # a concurrent.futures.Future of one row
    vector = future.result()
    batcher.close()

The thread takes the first waiting query, then waits at most ``max_delay`` seconds for more,
up to ``max_batch`` queries in all; the queries of each kind go to that kind's function as one
list (``fn(list of payloads) -> (n, D) array``) and each future gets its row. A lone query
waits at most ``max_delay``; under load the batches fill up and the wait is shorter. Every
network call happens on this one thread (MXNet networks are not meant to be called from many
threads at once). If a batch fails, its queries are run one by one so that one bad query fails
alone; a cancelled future (its client went away) is skipped.
"""
import collections
import queue
import threading
import time

import numpy as np

__all__ = ['MicroBatcher', 'BatcherClosed']


class BatcherClosed(RuntimeError):
    """The batcher was closed: the service is stopping."""


_STOP = object()


class MicroBatcher(object):
    """Batches queries of several kinds through their functions on one thread.

    ``functions``: ``{kind: fn}``, ``fn(list of payloads) -> array (n, ...)`` (row i for
    payload i). ``max_batch`` >= 1 queries a call; ``max_delay`` seconds of waiting for more.
    ``stats()``: batches run, queries, the largest batch and how many batches had each size."""

    def __init__(self, functions, max_batch=32, max_delay=0.005, name='gluon-dml-batcher'):
        if int(max_batch) < 1:
            raise ValueError('max_batch must be >= 1, got %r.' % (max_batch,))
        if float(max_delay) < 0:
            raise ValueError('max_delay must be >= 0 seconds, got %r.' % (max_delay,))
        self.functions = dict(functions)
        self.max_batch, self.max_delay = int(max_batch), float(max_delay)
        self._queue = queue.Queue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._batches, self._items, self._sizes = 0, 0, collections.Counter()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # -- the clients' side ----------------------------------------------------------------------
    def submit(self, kind, payload):
        """Queue one query; returns a ``concurrent.futures.Future`` of its row."""
        from concurrent.futures import Future
        if kind not in self.functions:
            raise ValueError('This batcher runs %s queries, not %r.'
                             % (', '.join(sorted(self.functions)), kind))
        future = Future()
        with self._close_lock:
            if self._closed:
                raise BatcherClosed('The service is stopping.')
            self._queue.put((kind, payload, future))
        return future

    def stats(self):
        with self._stats_lock:
            sizes = dict(sorted(self._sizes.items()))
            return {'max_batch': self.max_batch, 'max_delay_ms': 1000 * self.max_delay,
                    'batches': self._batches, 'queries': self._items,
                    'largest_batch': max(sizes) if sizes else 0,
                    'mean_batch': self._items / self._batches if self._batches else 0.0,
                    'batch_sizes': {str(k): v for k, v in sizes.items()}}

    def close(self, timeout=30):
        """Run what is queued, then stop the thread; later submits raise :class:`BatcherClosed`."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- the thread -----------------------------------------------------------------------------
    def _gather(self, first):
        batch = [first]
        deadline = time.monotonic() + self.max_delay
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()         # take what is already waiting
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if item is _STOP:
                self._queue.put(_STOP)                  # stop after this batch
                break
            batch.append(item)
        return batch

    def _loop(self):
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = self._gather(first)
            # a future its client cancelled is dropped; the others are marked running
            batch = [b for b in batch if b[2].set_running_or_notify_cancel()]
            by_kind = collections.OrderedDict()
            for kind, payload, future in batch:
                by_kind.setdefault(kind, []).append((payload, future))
            for kind, items in by_kind.items():
                self._run(self.functions[kind], items)
                with self._stats_lock:
                    self._batches += 1
                    self._items += len(items)
                    self._sizes[len(items)] += 1

    @staticmethod
    def _run(fn, items):
        try:
            out = np.asarray(fn([p for p, _ in items]))
            if len(out) != len(items):
                raise RuntimeError('The batch function returned %d rows for %d queries.'
                                   % (len(out), len(items)))
        except Exception as err:  # noqa: BLE001 - handed to the waiting requests
            if len(items) == 1:
                items[0][1].set_exception(err)
                return
            for payload, future in items:                # one bad query fails alone
                try:
                    future.set_result(np.asarray(fn([payload]))[0])
                except Exception as one:  # noqa: BLE001
                    future.set_exception(one)
            return
        for (_, future), row in zip(items, out):
            future.set_result(row)
