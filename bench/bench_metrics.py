"""Benchmark of gluon_dml.metrics.evaluate_embeddings on synthetic embeddings.

Default shape = Stanford Online Products test split: 60,502 embeddings of
dimension 512 in 11,316 classes (class sizes 2..12).  Class centres are random
on the unit sphere; points are centre + Gaussian noise, L2-normalised, float32.

One call of evaluate_embeddings is made; its two phases (retrieval metrics and
NMI) are timed by wrapping the functions it calls, so nothing is computed twice.

Memory: ``ru_maxrss`` (peak RSS of the process), the peak RSS growth of each
phase over the RSS just before it (Linux: the VmHWM high-water mark is reset
through /proc/self/clear_refs, then read from /proc/self/status) and the
tracemalloc peak of each phase (numpy buffers; faiss's C++ allocations are not
seen by tracemalloc, the RSS figure includes them).

    python bench/bench_metrics.py                      # full SOP size
    python bench/bench_metrics.py --n 5000 --classes 1000 --dim 128

k-means alone (the NMI step), gluon_dml's against faiss's, each run in a process of its own
(bench/kmeans_worker.py) on the same data, the implementations interleaved round by round:
``ours`` (kmeans_assign), ``faiss-gluon`` (the same k-means run by the faiss installed here, as
kmeans_assign called it before) and, with ``--ref-python`` (a Python with another faiss-cpu and
scikit-learn, e.g. faiss 1.15 beside numpy 2), ``faiss`` (plain faiss.Clustering, as
pytorch-metric-learning runs it). Prints the seconds and the NMI of each:

    OMP_NUM_THREADS=2 python bench/bench_metrics.py --kmeans --dim 128 --ref-python /path/bin/python
    python bench/bench_metrics.py --kmeans --n 1100 --dim 64 --classes 55 --sizes 20 20 --noise 0.2
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

# gluon_dml.metrics before faiss: it may pick the OpenBLAS kernels faiss loads with
from gluon_dml.metrics import clustering as _clustering  # noqa: E402
from gluon_dml.metrics import evaluate_embeddings  # noqa: E402

import faiss  # noqa: E402
import sklearn.metrics  # noqa: E402,F401  (nmi imports it lazily: keep that out of the timing)


def class_sizes(n, classes, lo, hi, rng):
    """Random class sizes in [lo, hi] summing to n."""
    if not classes * lo <= n <= classes * hi:
        raise SystemExit("cannot split %d items into %d classes of size %d..%d"
                         % (n, classes, lo, hi))
    extra = n - classes * lo
    # each class has (hi - lo) free slots; pick `extra` of all slots at random
    slots = rng.choice(classes * (hi - lo), size=extra, replace=False)
    return lo + np.bincount(slots // (hi - lo), minlength=classes)


def make_data(n, dim, classes, noise, seed, sizes=(2, 12)):
    rng = np.random.RandomState(seed)
    sizes = class_sizes(n, classes, sizes[0], sizes[1], rng)
    centres = rng.randn(classes, dim).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.permutation(np.repeat(np.arange(classes), sizes)).astype(np.int64)
    x = np.empty((n, dim), np.float32)
    for start in range(0, n, 8192):  # in chunks, to keep the generation's memory small
        stop = min(start + 8192, n)
        chunk = centres[labels[start:stop]] + noise * rng.randn(stop - start, dim)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        x[start:stop] = chunk
    return x, labels


# ---- memory helpers (no psutil) -------------------------------------------
def _status_kb(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm():
    """Reset the VmHWM peak-RSS mark (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_kb():
    """Peak RSS (kB) since the start or the last VmHWM reset."""
    hwm = _status_kb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class Phase(object):
    """Wraps a function: records wall time, peak RSS growth and tracemalloc peak."""

    process_peak_kb = 0  # peak RSS over the whole run (the resets below lower VmHWM)

    def __init__(self, name, fn):
        self.name, self.fn = name, fn
        self.seconds = self.rss_growth_mb = self.traced_peak_mb = None

    def __call__(self, *args, **kwargs):
        Phase.process_peak_kb = max(Phase.process_peak_kb, _peak_rss_kb())
        hwm_ok = _reset_hwm()
        rss0 = _status_kb("VmRSS")
        if hasattr(tracemalloc, "reset_peak"):  # Python >= 3.9
            tracemalloc.reset_peak()
        t0 = time.perf_counter()
        result = self.fn(*args, **kwargs)
        self.seconds = time.perf_counter() - t0
        self.traced_peak_mb = tracemalloc.get_traced_memory()[1] / 2.0 ** 20
        hwm = _status_kb("VmHWM")
        if hwm_ok and hwm is not None and rss0 is not None:
            self.rss_growth_mb = (hwm - rss0) / 1024.0
        Phase.process_peak_kb = max(Phase.process_peak_kb, _peak_rss_kb())
        print("  [%s done in %.2f s]" % (self.name, self.seconds), flush=True)
        return result


def kmeans_compare(args):
    """--kmeans: time the k-means of NMI alone, ours against faiss, interleaved rounds."""
    x, y = make_data(args.n, args.dim, args.classes, args.noise, args.seed, args.sizes)
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    runs = [("ours", sys.executable), ("faiss-gluon", sys.executable)]
    if args.ref_python:
        runs.append(("faiss", args.ref_python))
    print("k-means of NMI: N=%d D=%d k=%d, niter=%d, seed %d, OMP_NUM_THREADS=%s, %d CPUs; "
          "load average at the start %.2f %.2f %.2f"
          % (args.n, args.dim, np.unique(y).size, args.niter, args.kmeans_seed,
             env["OMP_NUM_THREADS"], os.cpu_count(), *os.getloadavg()), flush=True)
    res = {name: [] for name, _ in runs}
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data.npz")
        np.savez(data, x=x, y=y)
        for r in range(args.rounds):
            for name, python in runs:
                out = subprocess.run([python, os.path.join(here, "kmeans_worker.py"), name, data,
                                      "--niter", str(args.niter), "--seed", str(args.kmeans_seed)],
                                     capture_output=True, text=True, env=env)
                if out.returncode != 0:
                    raise SystemExit("%s failed:\n%s" % (name, out.stderr[-2000:]))
                v = json.loads(out.stdout.strip().splitlines()[-1])
                res[name].append(v)
                print("  round %d  %-12s %8.2f s   NMI %.4f   (faiss %s, numpy %s, load %.2f)"
                      % (r + 1, name, v["seconds"], v["nmi"], v["faiss"], v["numpy"], v["load"]),
                      flush=True)
    print("median seconds: " + ", ".join("%s %.2f" % (name, np.median([v["seconds"] for v in vs]))
                                         for name, vs in res.items()))
    print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=60502, help="number of embeddings")
    p.add_argument("--dim", type=int, default=512, help="embedding dimension")
    p.add_argument("--classes", type=int, default=11316, help="number of classes")
    p.add_argument("--noise", type=float, default=0.085,
                   help="std of the per-dimension Gaussian noise around the centres")
    p.add_argument("--niter", type=int, default=20, help="k-means iterations for NMI")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 10, 100, 1000],
                   help="Recall@K values (SOP convention: 1 10 100 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", type=int, nargs=2, default=[2, 12], metavar=("MIN", "MAX"),
                   help="class sizes (SOP: 2 12; Omniglot-like: 20 20)")
    p.add_argument("--kmeans", action="store_true",
                   help="time the k-means of NMI alone: ours against faiss (see above)")
    p.add_argument("--rounds", type=int, default=1, help="with --kmeans: interleaved rounds")
    p.add_argument("--kmeans-seed", type=int, default=0, help="with --kmeans: the k-means seed")
    p.add_argument("--ref-python", default=None,
                   help="with --kmeans: a Python with another faiss-cpu and scikit-learn")
    args = p.parse_args()
    if args.kmeans:
        return kmeans_compare(args)

    print("faiss %s, OpenMP threads %d, numpy %s, CPUs %d, OPENBLAS_CORETYPE=%s"
          % (faiss.__version__, faiss.omp_get_max_threads(), np.__version__, os.cpu_count(),
             os.environ.get("OPENBLAS_CORETYPE")))
    t0 = time.perf_counter()
    x, y = make_data(args.n, args.dim, args.classes, args.noise, args.seed, args.sizes)
    sizes = np.bincount(y)
    print("data: N=%d D=%d classes=%d (sizes %d..%d, mean %.2f), %.1f MB, generated in %.1fs"
          % (x.shape[0], x.shape[1], sizes.size, sizes.min(), sizes.max(), sizes.mean(),
             x.nbytes / 2.0 ** 20, time.perf_counter() - t0))

    retrieval = Phase("retrieval", _clustering._retrieval_core)
    nmi_phase = Phase("nmi", _clustering.nmi)
    base_rss = _status_kb("VmRSS")
    tracemalloc.start()
    _clustering._retrieval_core, _clustering.nmi = retrieval, nmi_phase
    try:
        t0 = time.perf_counter()
        res = evaluate_embeddings(x, y, ks=tuple(args.ks), nmi_niter=args.niter)
        total = time.perf_counter() - t0
    finally:
        _clustering._retrieval_core, _clustering.nmi = retrieval.fn, nmi_phase.fn
        tracemalloc.stop()

    print("results:")
    for key, val in res.items():
        print("  %-20s %s" % (key, ("%.4f" % val) if isinstance(val, float) else val))
    print("timing:")
    print("  retrieval metrics (ks=%s) %8.2f s" % (",".join(map(str, args.ks)), retrieval.seconds))
    print("  NMI (k-means k=%d, niter=%d) %8.2f s" % (sizes.size, args.niter, nmi_phase.seconds))
    print("  total                %8.2f s" % total)
    try:
        with open("/proc/loadavg") as f:
            print("  (load average at the end: %s; other processes share the CPUs)"
                  % " ".join(f.read().split()[:3]))
    except OSError:
        pass
    print("memory:")
    # clear_refs also resets ru_maxrss, so the process peak is the max over phases
    peak_kb = max(Phase.process_peak_kb, _peak_rss_kb(),
                  resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print("  peak RSS of the process (ru_maxrss/VmHWM) %8.1f MB" % (peak_kb / 1024.0))
    print("  RSS before evaluate_embeddings            %8.1f MB" % ((base_rss or 0) / 1024.0))
    for ph in (retrieval, nmi_phase):
        growth = ("%8.1f MB" % ph.rss_growth_mb) if ph.rss_growth_mb is not None else "     n/a"
        print("  %-9s peak RSS growth over its start  %s   tracemalloc peak %8.1f MB"
              % (ph.name, growth, ph.traced_peak_mb))


if __name__ == "__main__":
    main()
