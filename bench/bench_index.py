"""The index layer's benchmark: every index type of gluon_dml.index, faiss and Milvus Lite side by
side, on synthetic or real embeddings.

For each type it prints recall@10 against exact search, queries per second, build time (train +
add + save) and memory: the index's own bytes (``Index.info()['memory_bytes']``: faiss, the
serialised index; Milvus, the raw vectors) and the growth of the resident memory of the worker
process and its children (Milvus Lite runs as a child process) over the build.

Data: ``--synthetic N`` (default 1,000,000) seeded vectors, d = 128, drawn around 1,000 Gaussian
centres and L2-normalised (so approximate search is meaningful and IP is the cosine), with
10,000 queries drawn from the same mixture; or ``--embeddings FILE.npz`` holding
``embeddings`` (N, d) and optionally ``query_embeddings`` (else ``--queries`` rows are held
out of the database as queries). Ground truth: an exact faiss search. Binary types index
``--bits`` sign-of-random-projection codes of the same vectors; their recall counts a hit as
found when it is as near as the exact k-th Hamming neighbour (ties are interchangeable).

Each type runs in its own worker process (clean memory figures; a slow type can be killed);
results go to ``WORK/results.jsonl`` and a rerun skips the types already there (``--force``
reruns them). Slow types (Milvus, the binary hash index) are timed on the first
``--slow-queries`` queries.

    python bench/bench_index.py --synthetic 20000                       # a quick check
    python bench/bench_index.py                                         # 1,000,000 synthetic
    python bench/bench_index.py --embeddings fmnist.npz --work runs/bench-fmnist
    python bench/bench_index.py --types faiss:hnsw,milvus:flat --set faiss:hnsw:ef_search=64
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)

TYPES = {
    # name: (backend, kind, index_type)
    'faiss:flat': ('faiss', 'float', 'flat'),
    'faiss:ivf_flat': ('faiss', 'float', 'ivf_flat'),
    'faiss:ivf_pq': ('faiss', 'float', 'ivf_pq'),
    'faiss:hnsw': ('faiss', 'float', 'hnsw'),
    'faiss:bin_flat': ('faiss', 'binary', 'flat'),
    'faiss:bin_ivf': ('faiss', 'binary', 'ivf'),
    'faiss:bin_hash': ('faiss', 'binary', 'hash'),
    'milvus:flat': ('milvus', 'float', 'flat'),
    'milvus:ivf_flat': ('milvus', 'float', 'ivf_flat'),
    'milvus:bin_flat': ('milvus', 'binary', 'flat'),
}
SLOW = ('milvus:flat', 'milvus:ivf_flat', 'milvus:bin_flat', 'faiss:bin_hash')


# ------------------------------------------------------------------------------ memory
def _rss_of(pid):
    try:
        with open('/proc/%d/statm' % pid) as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, IndexError, ValueError):
        return 0


def _children(pid):
    kids = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/stat' % entry) as f:
                    fields = f.read().rsplit(')', 1)[1].split()
                if int(fields[1]) == pid:
                    kids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def tree_rss(pid=None):
    """Resident bytes of a process and all its descendants (Linux /proc)."""
    pid = pid or os.getpid()
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += _rss_of(p)
        todo.extend(_children(p))
    return total


# ------------------------------------------------------------------------------ data
def synthetic(n, nq, d, seed):
    rng = np.random.RandomState(seed)
    centres = rng.randn(1000, d).astype(np.float32)
    x = np.empty((n, d), np.float32)
    for s in range(0, n, 100000):              # in chunks: no float64 temporaries of N x d
        m = min(n, s + 100000) - s
        x[s:s + m] = centres[rng.randint(0, 1000, m)] + 0.6 * rng.randn(m, d).astype(np.float32)
    q = (centres[rng.randint(0, 1000, nq)] + 0.6 * rng.randn(nq, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q


def from_npz(path, nq, seed, normalize):
    with np.load(path) as f:
        if 'embeddings' not in f.files:
            raise SystemExit('%s holds no "embeddings" array (it has: %s).' % (path, ', '.join(f.files)))
        x = np.ascontiguousarray(f['embeddings'], dtype=np.float32)
        q = np.ascontiguousarray(f['query_embeddings'], dtype=np.float32) if 'query_embeddings' in f.files else None
    if q is None:
        rng = np.random.RandomState(seed)
        pick = np.zeros(len(x), bool)
        pick[rng.choice(len(x), min(nq, len(x) // 10), replace=False)] = True
        x, q = x[~pick], x[pick]
    if normalize:
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    return x, q[:nq]


def lsh_codes(x, bits, seed):
    r = np.random.RandomState(seed + 1).randn(x.shape[1], bits).astype(np.float32)
    out = np.empty((len(x), bits // 8), np.uint8)
    for s in range(0, len(x), 100000):
        out[s:s + 100000] = np.packbits(x[s:s + 100000] @ r > 0, axis=1)
    return out


def prepare(a):
    """Write data.npy, queries.npy, codes, and the exact ground truth into the work folder."""
    import faiss
    os.makedirs(a.work, exist_ok=True)
    spec = {'synthetic': a.synthetic if not a.embeddings else None, 'embeddings': a.embeddings,
            'queries': a.queries, 'seed': a.seed, 'bits': a.bits, 'metric': a.metric,
            'normalize': a.normalize, 'dim': a.dim, 'k': a.k}
    spec_file = os.path.join(a.work, 'spec.json')
    if os.path.exists(spec_file):
        with open(spec_file) as f:
            if json.load(f) == spec and os.path.exists(os.path.join(a.work, 'truth.npz')):
                return spec
        for name in os.listdir(a.work):        # another data set: start over
            os.remove(os.path.join(a.work, name))
    t0 = time.perf_counter()
    if a.embeddings:
        x, q = from_npz(a.embeddings, a.queries, a.seed, a.normalize)
    else:
        x, q = synthetic(a.synthetic, a.queries, a.dim, a.seed)
    codes, qcodes = lsh_codes(x, a.bits, a.seed), lsh_codes(q, a.bits, a.seed)
    np.save(os.path.join(a.work, 'data.npy'), x)
    np.save(os.path.join(a.work, 'queries.npy'), q)
    np.save(os.path.join(a.work, 'codes.npy'), codes)
    np.save(os.path.join(a.work, 'query_codes.npy'), qcodes)
    exact = faiss.IndexFlatIP(x.shape[1]) if a.metric == 'ip' else faiss.IndexFlatL2(x.shape[1])
    exact.add(x)
    _, ids = exact.search(q, a.k)
    bexact = faiss.IndexBinaryFlat(a.bits)
    bexact.add(codes)
    bdist, _ = bexact.search(qcodes, a.k)
    np.savez(os.path.join(a.work, 'truth.npz'), ids=ids, hamming_kth=bdist[:, -1])
    with open(spec_file, 'w') as f:
        json.dump(spec, f)
    print('data: %d x %d database, %d queries, %d-bit codes; exact ground truth in %.1f s'
          % (len(x), x.shape[1], len(q), a.bits, time.perf_counter() - t0), flush=True)
    return spec


# ------------------------------------------------------------------------------ one type
def parse_sets(sets, name):
    out = {}
    for item in sets or []:
        target, _, assignment = item.rpartition(':')
        key, _, value = assignment.partition('=')
        if target != name or not key:
            continue
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def worker(a):
    import faiss
    from gluon_dml.index import create_index
    if a.threads:
        faiss.omp_set_num_threads(a.threads)
    name = a.worker
    backend, kind, index_type = TYPES[name]
    binary = kind == 'binary'
    x = np.load(os.path.join(a.work, 'codes.npy' if binary else 'data.npy'))
    q = np.load(os.path.join(a.work, 'query_codes.npy' if binary else 'queries.npy'))
    truth = np.load(os.path.join(a.work, 'truth.npz'))
    nq = min(len(q), a.slow_queries) if name in SLOW else len(q)
    q = q[:nq]
    params = parse_sets(a.set, name)
    folder = tempfile.mkdtemp(prefix='bench-index-', dir=a.work)
    rss0 = tree_rss()
    t0 = time.perf_counter()
    idx = create_index(backend, kind, dim=a.bits if binary else x.shape[1],
                       metric='hamming' if binary else a.metric, index_type=index_type,
                       path=os.path.join(folder, 'catalog'), **params)
    idx.add(x)
    idx.save()
    build = time.perf_counter() - t0
    rss1 = tree_rss()
    info = idx.info()
    idx.search(q[:10], k=a.k)                                   # warm up
    t1 = time.perf_counter()
    hits = idx.search(q, k=a.k)
    took = time.perf_counter() - t1
    if binary:
        kth = truth['hamming_kth'][:nq]
        rec = float(np.mean([sum(h.distance <= kth[i] for h in row) / a.k for i, row in enumerate(hits)]))
    else:
        true = truth['ids'][:nq]
        rec = float(np.mean([len({h.id for h in row} & set(true[i].tolist())) / a.k
                             for i, row in enumerate(hits)]))
    relevant = {'flat': (), 'ivf_flat': ('nlist', 'nprobe', 'nprobe_auto'),
                'ivf_pq': ('nlist', 'nprobe', 'nprobe_auto', 'm', 'nbits'),
                'hnsw': ('hnsw_m', 'ef_construction', 'ef_search'),
                'ivf': ('nlist', 'nprobe', 'nprobe_auto'), 'hash': ('hash_bits', 'nflip')}[index_type]
    shown = {k: info['params'][k] for k in relevant if info['params'].get(k) is not None}
    result = {'type': name, 'n': int(len(x)), 'nq': int(nq), 'build_s': build, 'qps': nq / took,
              'recall': rec, 'index_bytes': int(info.get('memory_bytes') or 0),
              'rss_delta_bytes': int(rss1 - rss0), 'params': shown, 'index_type': info['index_type']}
    idx.close()
    shutil.rmtree(folder, ignore_errors=True)
    with open(os.path.join(a.work, 'results.jsonl'), 'a') as f:
        f.write(json.dumps(result) + '\n')


# ------------------------------------------------------------------------------ driver
def read_results(work):
    out = {}
    path = os.path.join(work, 'results.jsonl')
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    out[r['type']] = r
    return out


def table(results, order):
    lines = ['%-16s %9s %7s %10s %10s %9s %10s %10s  %s' % (
        'type', 'N', 'nq', 'build s', 'QPS', 'recall@10', 'index MB', 'RSS +MB', 'parameters')]
    for name in order:
        r = results.get(name)
        if r is None:
            continue
        params = ' '.join('%s=%s' % kv for kv in sorted(r['params'].items()))
        lines.append('%-16s %9d %7d %10.1f %10.0f %9.3f %10.1f %10.1f  %s' % (
            name, r['n'], r['nq'], r['build_s'], r['qps'], r['recall'], r['index_bytes'] / 2 ** 20,
            r['rss_delta_bytes'] / 2 ** 20, params))
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group()
    src.add_argument('--synthetic', type=int, default=1000000, metavar='N', help='synthetic vectors (default 1,000,000)')
    src.add_argument('--embeddings', metavar='FILE.npz', help='embeddings (and query_embeddings) to index')
    p.add_argument('--dim', type=int, default=128, help='synthetic dimension')
    p.add_argument('--queries', type=int, default=10000)
    p.add_argument('--slow-queries', type=int, default=1000, help='queries for Milvus and the binary hash index')
    p.add_argument('--k', type=int, default=10)
    p.add_argument('--metric', choices=('ip', 'l2'), default='ip')
    p.add_argument('--normalize', action='store_true', help='L2-normalise --embeddings')
    p.add_argument('--bits', type=int, default=64, help='bits of the binary codes (multiple of 8)')
    p.add_argument('--types', default=','.join(TYPES), help='comma-separated, from: %s' % ', '.join(TYPES))
    p.add_argument('--set', action='append', metavar='TYPE:KEY=VALUE',
                   help='an index parameter for one type, e.g. faiss:ivf_flat:nprobe=32 (repeatable)')
    p.add_argument('--threads', type=int, default=None, help='faiss threads (default: OMP_NUM_THREADS)')
    p.add_argument('--timeout', type=float, default=None, help='seconds allowed to each type')
    p.add_argument('--work', default=None, help='folder for data, ground truth and results '
                   '(default: gluon-dml-bench-index-<N or file name> in the temporary folder)')
    p.add_argument('--force', action='store_true', help='rerun types that already have results')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--worker', help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.work is None:
        tag = os.path.splitext(os.path.basename(a.embeddings))[0] if a.embeddings else str(a.synthetic)
        a.work = os.path.join(tempfile.gettempdir(), 'gluon-dml-bench-index-%s' % tag)
    if a.worker:
        return worker(a)
    names = [t.strip() for t in a.types.split(',') if t.strip()]
    unknown = [t for t in names if t not in TYPES]
    if unknown:
        raise SystemExit('Unknown type(s) %s; choose from: %s.' % (', '.join(unknown), ', '.join(TYPES)))
    start = time.perf_counter()
    prepare(a)
    done = read_results(a.work)
    forward = [arg for arg in (argv if argv is not None else sys.argv[1:])]
    for name in names:
        if name in done and not a.force:
            print('%s: done before (results.jsonl), skipped' % name, flush=True)
            continue
        t0 = time.perf_counter()
        cmd = [sys.executable, os.path.abspath(__file__)] + forward + ['--work', a.work, '--worker', name]
        try:
            proc = subprocess.run(cmd, timeout=a.timeout, cwd=ROOT)
            status = 'ok' if proc.returncode == 0 else 'FAILED (exit %d)' % proc.returncode
        except subprocess.TimeoutExpired:
            status = 'TIMED OUT after %.0f s' % a.timeout
        print('%s: %s in %.1f s' % (name, status, time.perf_counter() - t0), flush=True)
    results = read_results(a.work)
    spec = json.load(open(os.path.join(a.work, 'spec.json')))
    import faiss
    versions = 'faiss %s' % faiss.__version__
    try:
        import milvus_lite
        import pymilvus
        versions += ', pymilvus %s, milvus-lite %s' % (pymilvus.__version__, milvus_lite.__version__)
    except ImportError:
        versions += ', no pymilvus'
    print('\n%s; %s; metric %s, k=%d, %d-bit codes for the binary types; faiss threads %s'
          % ('embeddings %s' % spec['embeddings'] if spec['embeddings'] else
             'synthetic %d x %d' % (spec['synthetic'], spec['dim']), versions, spec['metric'],
             spec['k'], spec['bits'], a.threads or os.environ.get('OMP_NUM_THREADS', 'all')))
    print(table(results, names))
    print('\ntotal %.1f s' % (time.perf_counter() - start))
    return results


if __name__ == '__main__':
    main()
