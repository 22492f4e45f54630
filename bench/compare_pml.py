#!/usr/bin/env python
"""gluon-dml against PyTorch + pytorch-metric-learning (PML): the table of issue 18 ("Speed").

    # our side only (no torch environment needed)
    python bench/compare_pml.py
    # both sides, alternating gluon-dml / PML run by run (A B A B), medians over the rounds
    python bench/compare_pml.py --torch-python /path/to/torch-env/bin/python --rounds 2
    # some rows only; small sizes (the test's smoke run)
    python bench/compare_pml.py --cases small-train,small-infer,triplet --rounds 1
    python bench/compare_pml.py --quick

Every measurement is a fresh process: ours in this interpreter (gluon-dml's environment), PML's
in ``--torch-python`` (torch 2.13, pytorch-metric-learning 2.9, faiss-cpu, scikit-learn), with
the same work on both sides: the same networks, batch, image size, loss and miner, the same data
arrays, and the same threads (``--threads``, default every core; OMP_NUM_THREADS and
``torch.set_num_threads`` are set to it). Workers: bench/pml_worker.py (PML's throughput and
AccuracyCalculator), bench/pml_triplet.py and bench/bench_losses.py (triplet), and
scripts/pml_reference.py against train_margin.py (the Omniglot protocol); our throughput and
metrics workers are in this file (``--worker``).

Rows (``--cases``, comma-separated; default all):

  small-train    small conv net, batch 128 (32 x 4), 28x28, margin loss + distance-weighted
                 sampling, Adam: training images/s (5 warm-up steps, 40 timed)
  small-infer    the same net, batch 128, inference images/s: ours as evaluation runs it (MKLDNN
                 operator fusion; GLUON_DML_FUSION=0 for the plain hybridized graph), PML's in eval
                 mode under torch.inference_mode
  r50-train      ResNet-50 v1b (GluonCV resnet50_v1b / the same network in torch), batch 16
                 (4 x 4), 224x224, embedding 128: training images/s (2 warm-up steps, 6 timed)
  r50-infer      the same, inference images/s
  omniglot       the Omniglot protocol end to end, 30 epochs with evaluation after every epoch:
                 train_margin.py --data omniglot against scripts/pml_reference.py train, wall
                 seconds of the whole process (the arrays are exported once, untimed)
  triplet        triplet loss with semi-hard mining, forward + backward, B = 512, D = 512, ms
                 per call (median of 5 calls after warm-up)
  nmi            NMI (k-means, k = 11,316) of 60,502 x 128 synthetic embeddings in 11,316
                 classes of 2-12 (the SOP test split's shape): our nmi() (one k-means run, as
                 evaluate_embeddings at this size) against AccuracyCalculator(include=('NMI',))
  retrieval      Recall@1/10/100/1000, R-precision, MAP@R over the same arrays: our
                 retrieval_metrics() against AccuracyCalculator(k=1000) with precision_at_1,
                 r_precision, mean_average_precision_at_r and Recall@10/100/1000 read off its
                 k-nearest-neighbour labels; seconds and the peak memory growth of the call

The ratio is always "> 1: gluon-dml faster" (ours / PML for images/s, PML / ours for seconds);
the target column is the issue's.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


DATA = dict(n=60502, dim=128, classes=11316, noise=0.085, seed=0, sizes=(2, 12))
QUICK_DATA = dict(n=2000, dim=32, classes=400, noise=0.085, seed=0, sizes=(2, 12))
# name -> (label, unit, higher_is_better, target ratio, target text, full sizes, quick sizes);
# the label is formatted with the sizes in use
CASES = {
    'small-train': ('small conv net, batch {batch}, {size} px, margin + distance-weighted sampling, '
                    'training', 'img/s', True, 2.0, '>= 2.0x',
                    dict(model='smallconv', mode='train', batch=128, size=28, warmup=5, steps=40),
                    dict(model='smallconv', mode='train', batch=32, size=28, warmup=1, steps=3)),
    'small-infer': ('the same net, batch {batch}, inference', 'img/s', True, 1.3, '>= 1.3x',
                    dict(model='smallconv', mode='infer', batch=128, size=28, warmup=5, steps=40),
                    dict(model='smallconv', mode='infer', batch=32, size=28, warmup=1, steps=3)),
    'r50-train': ('ResNet-50, batch {batch}, {size} px, training', 'img/s', True, 1.5, '>= 1.5x',
                  dict(model='resnet50', mode='train', batch=16, size=224, warmup=2, steps=6),
                  dict(model='resnet50', mode='train', batch=4, size=32, warmup=1, steps=1)),
    'r50-infer': ('ResNet-50, batch {batch}, {size} px, inference', 'img/s', True, 1.3, '>= 1.3x',
                  dict(model='resnet50', mode='infer', batch=16, size=224, warmup=2, steps=6),
                  dict(model='resnet50', mode='infer', batch=4, size=32, warmup=1, steps=1)),
    'omniglot': ('Omniglot protocol end to end, {epochs} epoch(s){cut}, evaluation every epoch', 's',
                 False, 1 / 0.75, '<= 0.75x wall', dict(epochs=30, batches=None, cut=''),
                 dict(epochs=1, batches=2, cut=' of 2 batches')),
    'triplet': ('triplet, semi-hard, forward + backward, B = {batch}, D = {dim}', 'ms', False, 1.0,
                '>= 1.0x', dict(batch=512, dim=512, repeat=5), dict(batch=64, dim=32, repeat=2)),
    'nmi': ('NMI (k-means, {classes:,} clusters) over {n:,} x {dim}', 's', False, 1.0, '>= 1.0x',
            DATA, QUICK_DATA),
    'retrieval': ('retrieval metrics (Recall@1/10/100/1000, R-precision, MAP@R) over {n:,} x {dim}',
                  's', False, 2.5, '>= 2.5x, no more memory', DATA, QUICK_DATA),
}
KS = (1, 10, 100, 1000)


# ---- our side: workers run in this interpreter, one process each ---------------------------
def _proc_helpers():
    """pml_worker.py's /proc readers (plain Python: the PML worker and our side share them)."""
    sys.path.insert(0, HERE)
    from pml_worker import reset_peak, status_kb
    return reset_peak, status_kb


def throughput_step(model, mode, batch, size, k=4):
    """``(step, fused)``: one step of the throughput rows on a fixed batch, ``model`` 'smallconv'
    or 'resnet50' (v1b), ``mode`` 'train' (forward, margin loss with distance-weighted sampling,
    backward, Adam; the loss's beta on its own trainer) or 'infer' (fused as evaluation runs).
    bench/profile_step.py breaks the same step down."""
    import mxnet as mx
    import numpy as np
    from mxnet import autograd, gluon
    from gluon_dml.losses import MarginLoss
    from gluon_dml.models import get_model
    ctx = [mx.cpu()]
    mx.random.seed(0)
    if model == 'smallconv':
        net, shape = get_model('smallconv', 64, ctx=ctx), (1, size, size)
    else:
        net, shape = get_model('resnet50_v1b', 128, ctx=ctx), (3, size, size)
    fused = False
    if mode == 'infer':     # as evaluation and trained runs do: MKLDNN operator fusion by default
        from gluon_dml.engine.inference import hybridize_for_inference
        fused = hybridize_for_inference(net, ctx)
    else:
        net.hybridize(static_alloc=True)
    rng = np.random.RandomState(0)
    x = mx.nd.array(rng.rand(batch, *shape).astype(np.float32), ctx=ctx[0])
    y = mx.nd.array(np.repeat(np.arange(batch // k), k), ctx=ctx[0])
    if mode == 'infer':
        def step():
            net(x).wait_to_read()
        return step, fused
    loss = MarginLoss(negatives_per_anchor=k - 1)
    loss.initialize(ctx=ctx[0])
    loss.hybridize(static_alloc=True)
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 1e-4})
    beta_trainer = gluon.Trainer(loss.collect_params(), 'adam', {'learning_rate': 1e-3},
                                 kvstore=None)

    def step():
        with autograd.record():
            out = loss(net(x), y)
        out.backward()
        trainer.step(1)
        beta_trainer.step(1)
    return step, fused


def worker_throughput(model, mode, batch, size, warmup, steps, k=4):
    import mxnet as mx
    step, fused = throughput_step(model, mode, batch, size, k)
    for _ in range(warmup):
        step()
    mx.nd.waitall()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    mx.nd.waitall()
    dt = time.perf_counter() - t0
    return dict(images_per_s=batch * steps / dt, ms_per_step=1000 * dt / steps,
                mxnet=mx.__version__, fused=fused)


def worker_metrics(what, data):
    import numpy as np
    from gluon_dml.metrics import nmi, retrieval_metrics
    import sklearn.metrics  # noqa: F401  (nmi imports it lazily: keep that out of the timing)
    del sklearn
    with np.load(data) as z:
        x, y = np.ascontiguousarray(z['x'], np.float32), z['y'].astype(np.int64)
    _reset_peak, _status_kb = _proc_helpers()
    reset = _reset_peak()
    rss0 = _status_kb('VmRSS')
    t0 = time.perf_counter()
    if what == 'nmi':
        values = {'NMI': nmi(x, y, runs=1)}
    else:
        r = retrieval_metrics(x, y, ks=KS)
        values = {k: float(v) for k, v in r.items() if not k.startswith('num_')}
    seconds = time.perf_counter() - t0
    peak = (_status_kb('VmHWM') - rss0) / 1024.0 if reset else None
    return dict(seconds=seconds, peak_mb=peak, values=values)


def worker_make_data(out, quick):
    sys.path.insert(0, HERE)
    import numpy as np
    from bench_metrics import make_data
    d = QUICK_DATA if quick else DATA
    x, y = make_data(d['n'], d['dim'], d['classes'], d['noise'], d['seed'], d['sizes'])
    np.savez(out, x=x, y=y)
    return dict(n=int(x.shape[0]), dim=int(x.shape[1]), classes=int(np.unique(y).size))


def worker_export(out):
    sys.path.insert(0, os.path.join(REPO, 'scripts'))
    import pml_reference
    pml_reference.main(['export', '--out', out])
    return dict(out=out)


def worker_main(argv):
    p = argparse.ArgumentParser()
    p.add_argument('task')
    p.add_argument('args', nargs='*')
    p.add_argument('--quick', action='store_true')
    a = p.parse_args(argv)
    if a.task == 'throughput':
        model, mode, batch, size, warmup, steps = a.args
        out = worker_throughput(model, mode, int(batch), int(size), int(warmup), int(steps))
    elif a.task == 'metrics':
        out = worker_metrics(*a.args)
    elif a.task == 'make-data':
        out = worker_make_data(a.args[0], a.quick)
    elif a.task == 'export':
        out = worker_export(a.args[0])
    else:
        raise SystemExit('unknown worker task %r' % a.task)
    out['load'] = os.getloadavg()[0]
    print(json.dumps(out), flush=True)


# ---- the comparison ---------------------------------------------------------------------------
class Bench(object):
    def __init__(self, a, work):
        self.a, self.work = a, work
        self.env = dict(os.environ)
        self.env['OMP_NUM_THREADS'] = str(a.threads)
        self.env['PYTHONPATH'] = REPO + os.pathsep + self.env.get('PYTHONPATH', '')
        self._data = self._arrays = None

    def call(self, cmd, what, json_out=True, timeout=None):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, cwd=self.work,
                              timeout=timeout)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit('%s failed (exit %d): %s\n%s\n%s' % (
                what, proc.returncode, ' '.join(cmd), proc.stdout[-2000:], proc.stderr[-3000:]))
        if not json_out:
            return dict(seconds=wall, stdout=proc.stdout + proc.stderr)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def ours_worker(self, *args):
        return self.call([sys.executable, os.path.abspath(__file__), '--worker'] + [str(v) for v in args]
                         + (['--quick'] if self.a.quick else []), 'our worker %s' % args[0])

    def data(self):
        if self._data is None:
            self._data = os.path.join(self.work, 'embeddings.npz')
            info = self.ours_worker('make-data', self._data)
            print('  data for the metrics rows: %d x %d in %d classes (synthetic, SOP test shape)'
                  % (info['n'], info['dim'], info['classes']), flush=True)
        return self._data

    def arrays(self):
        if self._arrays is None:
            self._arrays = os.path.join(self.work, 'omniglot.npz')
            self.ours_worker('export', self._arrays)
        return self._arrays

    # each returns (value, extra dict)
    def ours(self, case, s, r):
        if case in ('small-train', 'small-infer', 'r50-train', 'r50-infer'):
            v = self.ours_worker('throughput', s['model'], s['mode'], s['batch'], s['size'],
                                 s['warmup'], s['steps'])
            return v['images_per_s'], v
        if case == 'omniglot':
            cmd = [sys.executable, os.path.join(REPO, 'train_margin.py'), '--data', 'omniglot',
                   '--epochs', str(s['epochs']), '--seed', '1', '--no-progress', '--threads',
                   str(self.a.threads), '--save-dir', os.path.join(self.work, 'ours-%d' % r)]
            if s['batches']:
                cmd += ['--batches-per-epoch', str(s['batches'])]
            v = self.call(cmd, 'train_margin.py', json_out=False)
            return v['seconds'], dict(summary=_summary(v['stdout']))
        if case == 'triplet':
            v = self.call([sys.executable, os.path.join(HERE, 'bench_losses.py'), '--triplet-worker',
                           'ours', 'semihard', str(s['batch']), str(s['dim']), '--repeat',
                           str(s['repeat'])], 'bench_losses.py --triplet-worker')
            return v['median_ms'], v
        v = self.ours_worker('metrics', case, self.data())
        return v['seconds'], v

    def pml(self, case, s, r):
        py = self.a.torch_python
        if case in ('small-train', 'small-infer', 'r50-train', 'r50-infer'):
            v = self.call([py, os.path.join(HERE, 'pml_worker.py'), '--threads', str(self.a.threads),
                           'throughput', 'smallconv' if case.startswith('small') else 'resnet50',
                           s['mode'], '--batch', str(s['batch']), '--size', str(s['size']),
                           '--warmup', str(s['warmup']), '--steps', str(s['steps'])], 'pml_worker.py')
            return v['images_per_s'], v
        if case == 'omniglot':
            cmd = [py, os.path.join(REPO, 'scripts', 'pml_reference.py'), 'train', self.arrays(),
                   '--epochs', str(s['epochs']), '--seed', '1', '--threads', str(self.a.threads)]
            if s['batches']:
                cmd += ['--batches-per-epoch', str(s['batches'])]
            v = self.call(cmd, 'pml_reference.py train', json_out=False)
            return v['seconds'], dict(summary=_summary(v['stdout']))
        if case == 'triplet':
            v = self.call([py, os.path.join(HERE, 'pml_triplet.py'), 'semihard', str(s['batch']),
                           str(s['dim']), '--repeat', str(s['repeat'])], 'pml_triplet.py')
            return v['median_ms'], v
        v = self.call([py, os.path.join(HERE, 'pml_worker.py'), '--threads', str(self.a.threads),
                       'metrics', case, self.data()], 'pml_worker.py metrics')
        return v['seconds'], v


def _summary(text):
    """Recall@1 / NMI / MAP@R of a training run's final metrics: our summary line
    ("Recall@1 0.301 -> 0.652, ...") or pml_reference.py's last line ("Recall@1 0.652 NMI ...")."""
    lines = [ln for ln in text.splitlines() if 'Recall@1' in ln]
    if not lines:
        return ''
    out = []
    for name in ('Recall@1', 'NMI', 'MAP@R'):
        m = re.search(re.escape(name) + r' (?:(?:n/a|[0-9.]+) -> )?([0-9.]+)', lines[-1])
        if m:
            out.append('%s %s' % (name, m.group(1)))
    return ' '.join(out)


def _median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def _fmt(value, unit):
    if unit == 'img/s':
        return '{:,.1f} img/s'.format(value) if value < 100 else '{:,.0f} img/s'.format(value)
    if unit == 'ms':
        return '%.3f s' % (value / 1000.0)
    return '%.1f s' % value if value >= 1 else '%.3f s' % value


def _mem(extras):
    peaks = [e.get('peak_mb') for e in extras if e.get('peak_mb') is not None]
    return max(peaks) if peaks else None


def _versions(torch_python):
    import numpy as np
    out = 'gluon-dml side: Python %s, numpy %s' % (platform.python_version(), np.__version__)
    try:
        import mxnet
        out += ', mxnet %s' % mxnet.__version__
    except ImportError:
        pass
    if torch_python:
        code = ('import torch, pytorch_metric_learning as p, faiss, numpy, platform; '
                'print("Python %s, torch %s, pytorch-metric-learning %s, faiss %s, numpy %s" % '
                '(platform.python_version(), torch.__version__, p.__version__, faiss.__version__, '
                'numpy.__version__))')
        try:
            v = subprocess.run([torch_python, '-c', code], capture_output=True, text=True,
                               check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as err:
            raise SystemExit('error: --torch-python %s cannot import torch, pytorch_metric_learning '
                             'and faiss (%s)' % (torch_python, err))
        out += '; PML side: ' + v
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--worker']:
        return worker_main(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='\n'.join(__doc__.splitlines()[1:]))
    p.add_argument('--torch-python', default=None, metavar='PYTHON',
                   help='a Python with torch, pytorch-metric-learning, faiss-cpu and scikit-learn: '
                        'runs the reference side (default: our side only)')
    p.add_argument('--cases', default=','.join(CASES), help='comma-separated rows (default: all)')
    p.add_argument('--rounds', type=int, default=2, help='A B rounds per row; medians (default 2)')
    p.add_argument('--threads', type=int, default=_cores(),
                   help='threads of both sides (default: every core, %d here)' % _cores())
    p.add_argument('--quick', action='store_true', help='small sizes: a smoke run, not a benchmark')
    p.add_argument('--work', default=None, help='folder for the runs and arrays (default: a temporary one)')
    a = p.parse_args(argv)
    cases = [c.strip() for c in a.cases.split(',') if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        p.error('unknown case(s) %s; choose from %s' % (', '.join(unknown), ', '.join(CASES)))
    if a.rounds < 1 or a.threads < 1:
        p.error('--rounds and --threads must be at least 1')
    if a.torch_python:
        a.torch_python = os.path.abspath(a.torch_python) if os.sep in a.torch_python else a.torch_python
    versions = _versions(a.torch_python)
    load0 = os.getloadavg()
    start = time.time()
    print('gluon-dml against PyTorch + pytorch-metric-learning%s; %d round(s) of A B per row, '
          'threads %d on both sides (%d cores)%s' % (
              '' if a.torch_python else ' (our side only: no --torch-python)', a.rounds,
              a.threads, _cores(), '; QUICK sizes' if a.quick else ''), flush=True)
    print(versions)
    print('load average at the start: %.2f %.2f %.2f' % load0, flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix='compare-pml-') as tmp:
        work = a.work or tmp
        os.makedirs(work, exist_ok=True)
        bench = Bench(a, work)
        for case in cases:
            label, unit, higher, target, target_text, full, quick = CASES[case]
            s = quick if a.quick else full
            ours, pml, ours_x, pml_x = [], [], [], []
            for r in range(a.rounds):
                v, x = bench.ours(case, s, r)
                ours.append(v)
                ours_x.append(x)
                line = '  %-11s round %d  gluon-dml %s' % (case, r + 1, _fmt(v, unit))
                if a.torch_python:
                    v, x = bench.pml(case, s, r)
                    pml.append(v)
                    pml_x.append(x)
                    line += '   PML %s' % _fmt(v, unit)
                print(line + '   (load %.2f)' % os.getloadavg()[0], flush=True)
                for name, extra in (('gluon-dml', ours_x[-1]), ('PML', pml_x[-1] if pml_x else {})):
                    if extra.get('summary'):
                        print('      %s: %s' % (name, extra['summary']), flush=True)
            rows.append((case, label.format(**s), unit, higher, target, target_text, ours, pml,
                         _mem(ours_x), _mem(pml_x)))
    load1 = os.getloadavg()
    print()
    print('| work | gluon-dml | PyTorch + PML | ratio (> 1: gluon-dml faster) | target | met |')
    print('| --- | --- | --- | --- | --- | --- |')
    for case, label, unit, higher, target, target_text, ours, pml, mo, mp in rows:
        o = _median(ours)
        ocell = _fmt(o, unit) + (', %.2f GiB' % (mo / 1024.0) if mo is not None else '')
        if pml:
            q = _median(pml)
            pcell = _fmt(q, unit) + (', %.2f GiB' % (mp / 1024.0) if mp is not None else '')
            ratio = o / q if higher else q / o
            met = ratio >= target
            if case == 'retrieval' and mo is not None and mp is not None:
                met = met and mo <= mp
            rcell, mcell = '%.2f' % ratio, 'yes' if met else 'no'
        else:
            pcell, rcell, mcell = '-', '-', '-'
        print('| %s [%s] | %s | %s | %s | %s | %s |' % (label, case, ocell, pcell, rcell,
                                                        target_text, mcell))
    print()
    print('medians of %d round(s); threads %d (OMP_NUM_THREADS=%d, torch.set_num_threads(%d)); '
          'load average at the start %.2f %.2f %.2f, at the end %.2f %.2f %.2f; %.0f s in all'
          % (a.rounds, a.threads, a.threads, a.threads, load0[0], load0[1], load0[2],
             load1[0], load1[1], load1[2], time.time() - start))
    print('command: python bench/compare_pml.py ' + ' '.join(argv))


if __name__ == '__main__':
    main()
