"""A bounded load test of ``gluon-dml serve`` on loopback: search latency and throughput under
concurrent clients, then a flood of bad requests that must all be refused with a 4xx while the
server stays up and its memory stays put.

    python bench/load_test.py                             # builds a digits catalogue, serves it
    python bench/load_test.py --work /tmp/serve-bench --requests 2000 --concurrency 8 --bad 10000
    python bench/load_test.py --url http://127.0.0.1:8080 --pid 12345 --query-images photos/

Without ``--url`` it makes what it needs under ``--work`` (kept for the next run): a 1-epoch
digits run (train_margin.py), the scikit-learn digits as PNG files in class folders (1,797
images, or ``--images N``), a catalogue of them (``gluon-dml index``), and starts
``gluon-dml serve`` on a free loopback port with ``--max-upload-mb 0.25`` (so that oversized
bodies are cheap to send), stopping it with SIGTERM at the end.

Searches upload images (multipart, the network's path: decode, preprocess, the micro-batcher,
faiss), cycling over the query images; each of ``--concurrency`` threads keeps one connection.
Bad requests cycle over the kinds the service must refuse (not an image, truncated, a
decompression bomb, too many pixels, an empty body, a vector of the wrong dimension, k of 0 and
of a million, an unknown id, a wrong content type, malformed JSON, bad base64, a body over the
limit). Prints p50 / p90 / p99 latency, requests per second, the errors (answers other than 200,
or 4xx for the bad ones, and failed connections), the batcher's statistics, the server's
resident memory (VmRSS, and its peak VmHWM) before and after, and the load of the machine.
Exits 1 if any request went wrong or the server died.
"""
import argparse
import collections
import concurrent.futures
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import numpy as np
import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))


def gluon_dml(*args):
    return [sys.executable, '-c', 'import sys; from gluon_dml.commands import main; sys.exit(main())'] + \
        [str(a) for a in args]


def env():
    e = dict(os.environ)
    e['PYTHONPATH'] = ROOT + os.pathsep + e.get('PYTHONPATH', '')
    return e


def run(cmd, what):
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit('%s failed:\n%s\n%s' % (what, proc.stdout[-2000:], proc.stderr[-2000:]))
    return proc


def load_average():
    with open('/proc/loadavg') as f:
        return ' '.join(f.read().split()[:3])


def memory(pid):
    """(VmRSS, VmHWM) of a process, in MiB."""
    with open('/proc/%d/status' % pid) as f:
        text = f.read()
    return tuple(int(re.search(r'%s:\s+(\d+)' % k, text).group(1)) / 1024.0 for k in ('VmRSS', 'VmHWM'))


# -- what is served ---------------------------------------------------------------------------

def write_digits(folder, n):
    from PIL import Image
    from sklearn.datasets import load_digits
    d = load_digits()
    paths = []
    for i in range(min(n, len(d.images))):
        sub = os.path.join(folder, str(d.target[i]))
        os.makedirs(sub, exist_ok=True)
        path = os.path.join(sub, '%04d.png' % i)
        if not os.path.exists(path):
            img = (255 - d.images[i] * 16).clip(0, 255).astype('uint8')
            Image.fromarray(img).resize((48, 48), Image.NEAREST).save(path)
        paths.append(path)
    return paths


def prepare(work, n_images):
    """A run, the digit images and their catalogue under ``work`` (reused when there)."""
    run_dir, images, cat = (os.path.join(work, x) for x in ('run', 'images', 'catalog'))
    if not os.path.exists(os.path.join(run_dir, 'args.json')):
        print('training a 1-epoch digits run in %s ...' % run_dir, flush=True)
        run([sys.executable, os.path.join(ROOT, 'train_margin.py'), '--data', 'digits', '--epochs', '1',
             '--batches-per-epoch', '3', '--no-progress', '--save-dir', run_dir], 'train_margin.py')
    paths = write_digits(images, n_images)
    if not os.path.exists(os.path.join(cat, 'run.json')):
        print('indexing %d images into %s ...' % (len(paths), cat), flush=True)
        run(gluon_dml('index', run_dir, '--images', images, '--out', cat, '--no-progress'), 'gluon-dml index')
    return cat, paths


class Server(object):
    def __init__(self, catalog, work, flags):
        self.out = os.path.join(work, 'serve.log')
        with open(self.out, 'w') as log:
            self.proc = subprocess.Popen(gluon_dml('serve', catalog, '--port', 0, *flags), cwd=ROOT,
                                         env=env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline and self.proc.poll() is None:
            m = re.search(r' at (http://[^/\s]+)/', open(self.out).read())
            if m:
                self.url, self.pid = m.group(1), self.proc.pid
                return
            time.sleep(0.1)
        sys.exit('gluon-dml serve did not start:\n' + open(self.out).read()[-3000:])

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


# -- the bad requests -------------------------------------------------------------------------

def bomb_png(width, height):
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\x00' * 4096)) + chunk(b'IEND', b''))


def bad_requests(image, dim, max_upload):
    """[(kind, method, path, keyword arguments of requests)]."""
    big = b'\x89PNG' + b'\x00' * (max_upload + 1024)
    return [
        ('not an image', 'post', '/search', {'files': {'image': ('a.png', b'plain text, not an image')}}),
        ('truncated image', 'post', '/search', {'files': {'image': ('t.png', image[:len(image) // 2])}}),
        ('decompression bomb', 'post', '/search', {'files': {'image': ('b.png', bomb_png(100000, 100000))}}),
        ('too many pixels', 'post', '/search', {'files': {'image': ('b.png', bomb_png(9000, 9000))}}),
        ('empty body', 'post', '/search', {}),
        ('vector of the wrong dimension', 'post', '/search', {'json': {'vector': [0.1] * (dim - 1)}}),
        ('k of 0', 'post', '/search?k=0', {'json': {'vector': [0.1] * dim}}),
        ('k of a million', 'post', '/search', {'json': {'vector': [0.1] * dim, 'k': 1000000}}),
        ('unknown id', 'post', '/search', {'json': {'id': 10 ** 9}}),
        ('unknown id (delete)', 'delete', '/items/1000000000', {}),
        ('wrong content type', 'post', '/search', {'data': b'id=3', 'headers': {'Content-Type': 'text/plain'}}),
        ('malformed JSON', 'post', '/search', {'data': b'{"id": ', 'headers': {'Content-Type': 'application/json'}}),
        ('bad base64', 'post', '/search', {'json': {'image': '%%% not base64 %%%'}}),
        ('body over the limit', 'post', '/search', {'data': big, 'headers': {'Content-Type': 'image/png'}}),
    ]


# -- the clients ------------------------------------------------------------------------------

def hammer(url, jobs, concurrency, check):
    """Send ``jobs`` (method, path, kwargs, tag) from ``concurrency`` threads, one keep-alive
    connection each. Returns (seconds, [(tag, status or exception name, latency)])."""
    local = threading.local()
    lock = threading.Lock()
    out = []
    todo = iter(jobs)

    def worker():
        local.session = requests.Session()
        while True:
            with lock:
                job = next(todo, None)
            if job is None:
                return
            method, path, kwargs, tag = job
            t0 = time.perf_counter()
            try:
                r = getattr(local.session, method)(url + path, timeout=120, **kwargs)
                status = r.status_code
                check(tag, r)
            except requests.RequestException as err:
                status = type(err).__name__
            latency = time.perf_counter() - t0
            with lock:
                out.append((tag, status, latency))

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    return time.perf_counter() - t0, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--work', default=os.path.join(tempfile.gettempdir(), 'gluon-dml-load-test'),
                   help='folder for the run, the images and the catalogue (kept)')
    p.add_argument('--images', type=int, default=1797, help='digit images in the catalogue')
    p.add_argument('--url', default=None, help='test a running service instead of starting one')
    p.add_argument('--pid', type=int, default=None, help='with --url: its process (for memory)')
    p.add_argument('--query-images', default=None, help='with --url: a folder of query images')
    p.add_argument('--requests', type=int, default=2000, help='search requests (default 2000)')
    p.add_argument('--concurrency', type=int, default=8, help='concurrent clients (default 8)')
    p.add_argument('--bad', type=int, default=10000, help='bad requests (default 10000)')
    p.add_argument('--serve-flags', default='--max-upload-mb 0.25',
                   help='flags of the gluon-dml serve it starts (default "--max-upload-mb 0.25")')
    a = p.parse_args(argv)

    print('machine: %d CPUs; load average (1, 5, 15 min) %s' % (os.cpu_count(), load_average()))
    server = None
    if a.url:
        url, pid = a.url.rstrip('/'), a.pid
        from gluon_dml.data.sources import list_images
        queries = list_images(a.query_images)[0] if a.query_images else []
        if not queries:
            sys.exit('--url needs --query-images DIR.')
    else:
        os.makedirs(a.work, exist_ok=True)
        cat, queries = prepare(a.work, a.images)
        server = Server(cat, a.work, a.serve_flags.split())
        url, pid = server.url, server.pid
    info = requests.get(url + '/info', timeout=60).json()
    print('service: %s, %d items (%s run, %s, %d-d %s, %s %s index); batching: --max-batch %d '
          '--max-delay-ms %g; pid %s'
          % (url, info['count'], info['method'], info['model'], info['dim'], info['kind'], info['backend'],
             info['index_type'], info['batching']['max_batch'], info['batching']['max_delay_ms'], pid))
    blobs = [open(q, 'rb').read() for q in queries]
    errors = 0

    # warm up (first calls of the network allocate)
    for b in blobs[:16]:
        requests.post(url + '/search', files={'image': b}, timeout=120).raise_for_status()
    mem0 = memory(pid) if pid else None
    before = requests.get(url + '/info', timeout=60).json()['batching']

    def check_search(tag, r):
        if r.status_code == 200 and not r.json()['hits']:
            raise requests.RequestException('no hits')
    jobs = [('post', '/search?k=10', {'files': {'image': ('q.png', blobs[i % len(blobs)])}}, 'search')
            for i in range(a.requests)]
    took, results = hammer(url, jobs, a.concurrency, check_search)
    lat = np.array([r[2] for r in results]) * 1000
    failed = [r for r in results if r[1] != 200]
    errors += len(failed)
    after = requests.get(url + '/info', timeout=60).json()['batching']
    batches, queries_n = after['batches'] - before['batches'], after['queries'] - before['queries']
    print('search: %d image uploads, %d concurrent: %.1f s, %.1f requests/s; latency p50 %.1f ms, '
          'p90 %.1f ms, p99 %.1f ms, max %.1f ms; errors %d'
          % (len(results), a.concurrency, took, len(results) / took, np.percentile(lat, 50),
             np.percentile(lat, 90), np.percentile(lat, 99), lat.max(), len(failed)))
    print('batching: %d queries in %d network calls (mean batch %.1f, largest so far %d)'
          % (queries_n, batches, queries_n / max(1, batches), after['largest_batch']))
    mem1 = memory(pid) if pid else None

    max_upload = info['limits']['max_upload_bytes']
    kinds = bad_requests(blobs[0], info['dim'], max_upload)
    jobs = [(m, path, kw, kind) for kind, m, path, kw in
            (kinds[i % len(kinds)] for i in range(a.bad))]

    def check_bad(tag, r):
        body = r.json()
        if set(body) != {'error'} or not body['error'].endswith('.'):
            raise requests.RequestException('not a one-sentence JSON error: %r' % body)
    half = len(jobs) // 2                   # memory after each half: does it keep growing?
    took1, results = hammer(url, jobs[:half], a.concurrency, check_bad)
    mem_half = memory(pid) if pid else None
    took2, rest = hammer(url, jobs[half:], a.concurrency, check_bad)
    took, results = took1 + took2, results + rest
    by_kind = collections.defaultdict(collections.Counter)
    kind_ms = collections.defaultdict(list)
    for kind, status, latency in results:
        by_kind[kind][status] += 1
        kind_ms[kind].append(1000 * latency)
    not_4xx = [r for r in results if not (isinstance(r[1], int) and 400 <= r[1] < 500)]
    errors += len(not_4xx)
    statuses = collections.Counter(r[1] for r in results)
    print('bad requests: %d, %d concurrent: %.1f s, %.1f requests/s; answers %s; not 4xx: %d'
          % (len(results), a.concurrency, took, len(results) / took,
             ', '.join('%s x %d' % (s, n) for s, n in sorted(statuses.items(), key=str)), len(not_4xx)))
    for kind, _, _, _ in kinds:
        print('  %-30s %-10s p50 %6.1f ms' % (kind, ', '.join('%s x %d' % (s, n) for s, n in sorted(
            by_kind[kind].items(), key=str)), np.percentile(kind_ms[kind], 50)))
    health = requests.get(url + '/health', timeout=60)
    alive = health.status_code == 200 and health.json()['status'] == 'ok'
    if pid:
        mem2 = memory(pid)
        print('server memory (VmRSS): %.1f MiB after warm-up, %.1f MiB after the searches, %.1f MiB '
              'after %d bad requests, %.1f MiB after %d (peak VmHWM %.1f MiB)'
              % (mem0[0], mem1[0], mem_half[0], half, mem2[0], len(jobs), mem2[1]))
    print('after: health %s (%d items); load average %s'
          % ('ok' if alive else 'FAILED', health.json().get('count', -1) if alive else -1, load_average()))
    if server is not None:
        code = server.stop()
        print('server stopped by SIGTERM: exit code %d' % code)
        alive = alive and code == 0
    if errors or not alive:
        print('FAILED: %d request(s) went wrong%s' % (errors, '' if alive else '; the server is not well'))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
