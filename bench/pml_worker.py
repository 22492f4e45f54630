#!/usr/bin/env python
"""The PyTorch + pytorch-metric-learning side of bench/compare_pml.py, one measurement per process.

Runs in an environment with torch, pytorch-metric-learning, faiss-cpu and scikit-learn (not
gluon-dml's, nothing of gluon-dml is imported); prints one JSON line.

    # images per second of a training step (forward, MarginLoss + DistanceWeightedMiner, backward,
    # Adam) or of inference (eval mode, no autograd), after warm-up steps
    python bench/pml_worker.py throughput smallconv train --batch 128 --size 28 --steps 40
    python bench/pml_worker.py throughput resnet50 infer --batch 16 --size 224 --steps 6
    # AccuracyCalculator on the arrays x (N, D) and y (N,) of DATA.npz: seconds, peak memory
    python bench/pml_worker.py metrics nmi DATA.npz
    python bench/pml_worker.py metrics retrieval DATA.npz --ks 1 10 100 1000

The networks are the ones gluon-dml's side runs: ``smallconv`` is gluon-dml's small conv net
(3 x [conv 3x3 without bias, batch norm, ReLU], max pooling after the first two, global average
pooling, linear to 64, L2 normalisation; 1 x 28 x 28 input) and ``resnet50`` is ResNet-50 v1b
(torchvision's ResNet-50: stride in the 3x3 convolution, written out here so that torchvision is
not needed), its classifier replaced by a linear layer to 128 and L2 normalisation. Inputs are
uniform random images with labels P x K (K = 4), as bench/bench_train.py draws them. Threads:
``--threads`` (default OMP_NUM_THREADS, else every core).
"""
import argparse
import json
import os
import time


def status_kb(field):
    """A field of /proc/self/status in kB (VmRSS, VmHWM); 0 when absent."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak():
    """Reset the VmHWM high-water mark (Linux >= 4.0); False where that is not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def default_threads():
    env = os.environ.get('OMP_NUM_THREADS')
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def small_conv(nn, embed_dim):
    layers, cin = [], 1
    for i, c in enumerate((32, 64, 128)):
        layers += [nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
        if i < 2:
            layers.append(nn.MaxPool2d(2, 2))
        cin = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, embed_dim))


def resnet50(nn, embed_dim):
    """ResNet-50 v1b (= torchvision's resnet50) with a linear embedding head."""

    class Bottleneck(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            cout = width * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.relu(self.body(x) + (x if self.down is None else self.down(x)))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            layers.append(Bottleneck(cin, width, stride if b == 0 else 1))
            cin = width * 4
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, embed_dim))


def throughput(a):
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    from pytorch_metric_learning import losses, miners
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    embed_dim = a.embed or (64 if a.model == 'smallconv' else 128)
    trunk = (small_conv if a.model == 'smallconv' else resnet50)(nn, embed_dim)
    channels = 1 if a.model == 'smallconv' else 3
    rng = np.random.RandomState(0)
    x = torch.tensor(rng.rand(a.batch, channels, a.size, a.size).astype(np.float32))
    y = torch.tensor(np.repeat(np.arange(a.batch // a.k), a.k))
    if a.mode == 'infer':
        trunk.eval()

        def step():
            with torch.inference_mode():
                F.normalize(trunk(x), dim=1)
    else:
        loss_fn = losses.MarginLoss(margin=0.2, nu=0.0, beta=1.2, learn_beta=True)
        miner = miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)
        opt = torch.optim.Adam(trunk.parameters(), lr=1e-4)
        beta_opt = torch.optim.Adam(loss_fn.parameters(), lr=1e-3)

        def step():
            e = F.normalize(trunk(x), dim=1)
            loss = loss_fn(e, y, miner(e, y))
            opt.zero_grad()
            beta_opt.zero_grad()
            loss.backward()
            opt.step()
            beta_opt.step()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    return dict(images_per_s=a.batch * a.steps / dt, ms_per_step=1000 * dt / a.steps,
                threads=torch.get_num_threads(), torch=torch.__version__)


def metrics(a):
    import numpy as np
    import torch
    import faiss
    import pytorch_metric_learning
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    torch.set_num_threads(a.threads)
    faiss.omp_set_num_threads(a.threads)
    with np.load(a.data) as z:
        x, y = np.ascontiguousarray(z['x'], np.float32), z['y'].astype(np.int64)
    ks = sorted(a.ks)

    class Calculator(AccuracyCalculator):
        """AccuracyCalculator plus Recall@K for the K > 1 of the SOP convention, read off the
        same k-nearest-neighbour labels (precision_at_1 is Recall@1)."""

        def requires_knn(self):
            return super().requires_knn() + ['recall_at_%d' % k for k in ks if k > 1]

    def recall_at(k):
        def calc(self, knn_labels, query_labels, not_lone_query_mask, **kwargs):
            mask = not_lone_query_mask
            hits = (knn_labels[mask][:, :k] == query_labels[mask][:, None]).any(dim=1)
            return float(hits.float().mean())
        return calc
    for k in ks:
        if k > 1:
            setattr(Calculator, 'calculate_recall_at_%d' % k, recall_at(k))
    if a.what == 'nmi':
        calc = Calculator(include=('NMI',), device=torch.device('cpu'))
    else:
        calc = Calculator(include=('precision_at_1', 'r_precision', 'mean_average_precision_at_r')
                          + tuple('recall_at_%d' % k for k in ks if k > 1),
                          k=max(ks), device=torch.device('cpu'))
    xt, yt = torch.tensor(x), torch.tensor(y)
    reset = reset_peak()
    rss0 = status_kb('VmRSS')
    t0 = time.perf_counter()
    res = calc.get_accuracy(xt, yt)
    seconds = time.perf_counter() - t0
    peak = (status_kb('VmHWM') - rss0) / 1024.0 if reset else None
    return dict(seconds=seconds, peak_mb=peak, values={k: float(v) for k, v in res.items()},
                threads=torch.get_num_threads(), faiss=faiss.__version__,
                pml=pytorch_metric_learning.__version__)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--threads', type=int, default=None,
                   help='torch and faiss threads (default OMP_NUM_THREADS, else every core)')
    sub = p.add_subparsers(dest='task', required=True)
    t = sub.add_parser('throughput')
    t.add_argument('model', choices=('smallconv', 'resnet50'))
    t.add_argument('mode', choices=('train', 'infer'))
    t.add_argument('--batch', type=int, default=128)
    t.add_argument('--k', type=int, default=4, help='images per class in a batch')
    t.add_argument('--size', type=int, default=28, help='image side in pixels')
    t.add_argument('--embed', type=int, default=None, help='embedding size (64 / 128)')
    t.add_argument('--warmup', type=int, default=5)
    t.add_argument('--steps', type=int, default=40)
    m = sub.add_parser('metrics')
    m.add_argument('what', choices=('nmi', 'retrieval'))
    m.add_argument('data')
    m.add_argument('--ks', type=int, nargs='+', default=[1, 10, 100, 1000])
    a = p.parse_args()
    a.threads = a.threads or default_threads()
    os.environ['OMP_NUM_THREADS'] = str(a.threads)
    out = throughput(a) if a.task == 'throughput' else metrics(a)
    out['load'] = os.getloadavg()[0]
    print(json.dumps(out), flush=True)


if __name__ == '__main__':
    main()
