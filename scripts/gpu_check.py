#!/usr/bin/env python
"""Mixed precision against float32: the same runs with and without --amp over several seeds.

Prepared for a machine with a GPU and a CUDA build of MXNet (``pip install mxnet-cu112==1.9.1``
or the build matching the CUDA there); it cannot run on the CPU-only machines of this project,
where the bfloat16 variant below is what is checked.

    # on a GPU machine: float16 AMP against float32, Omniglot protocol, seeds 1 2 3
    python scripts/gpu_check.py --gpus 0
    # with cuDNN autotuning off (MXNet tunes convolutions by default; see docs/speed.md)
    MXNET_CUDNN_AUTOTUNE_DEFAULT=0 python scripts/gpu_check.py --gpus 0
    # on a CPU: bfloat16 AMP against float32 (a short run: the smoke test of this script)
    python scripts/gpu_check.py --dtype bfloat16 --data digits --epochs 1 --batches-per-epoch 6

For each seed it trains ``train_margin.py --data DATA --seed S`` twice, with ``--amp DTYPE``
and without, in run folders under ``--work``, and prints the final Recall@1, MAP@R and NMI of
every run, the mean of each side, the seed spread (max - min over the seeds, the larger of the
two sides') and the training images per second. It exits 0 when every metric's AMP mean lies
within the seed spread of the float32 mean ("the same metrics within the seed spread"), 1
otherwise. Finished runs are reused: rerunning picks up where a stopped check left off.
"""
import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = ('recall@1', 'map@r', 'nmi')


def final_row(run_dir):
    """The last evaluated epoch of a finished run's log (None when the run did not finish)."""
    path = os.path.join(run_dir, 'log.jsonl')
    if not os.path.exists(os.path.join(run_dir, 'model-symbol.json')) or not os.path.exists(path):
        return None, []
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    evaluated = [r for r in rows if all(k in r for k in METRICS)]
    return (evaluated[-1] if evaluated else None), rows


def train(a, seed, amp, run_dir):
    row, rows = final_row(run_dir)
    if row is not None:
        return row, rows
    cmd = [sys.executable, os.path.join(REPO, 'train_margin.py'), '--data', a.data, '--seed',
           str(seed), '--no-progress', '--overwrite', '--save-dir', run_dir]
    if a.gpus:
        cmd += ['--gpus', a.gpus]
    if a.epochs:
        cmd += ['--epochs', str(a.epochs)]
    if a.batches_per_epoch:
        cmd += ['--batches-per-epoch', str(a.batches_per_epoch)]
    if amp:
        cmd += ['--amp', a.dtype]
    cmd += a.extra
    print('$ ' + ' '.join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=REPO)
    if proc.returncode != 0:
        sys.exit('the run above failed (exit %d)' % proc.returncode)
    row, rows = final_row(run_dir)
    if row is None:
        sys.exit('%s has no evaluated epoch' % run_dir)
    return row, rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog='\n'.join(__doc__.splitlines()[1:]))
    p.add_argument('--dtype', choices=('float16', 'bfloat16'), default='float16',
                   help='AMP dtype: float16 (GPU, the default) or bfloat16 (CPU)')
    p.add_argument('--gpus', default=None,
                   help='GPU ids for the runs (default "0" with float16, the CPU with bfloat16)')
    p.add_argument('--seeds', default='1,2,3')
    p.add_argument('--data', default='omniglot')
    p.add_argument('--epochs', type=int, default=None, help='default: the protocol\'s')
    p.add_argument('--batches-per-epoch', type=int, default=None)
    p.add_argument('--work', default=os.path.join('runs', 'amp-check'),
                   help='folder of the runs (default runs/amp-check)')
    p.add_argument('extra', nargs='*', help='more train_margin.py flags, after --')
    a = p.parse_args(argv)
    if a.gpus is None:
        a.gpus = '0' if a.dtype == 'float16' else ''
    if a.dtype == 'bfloat16' and not a.gpus.strip():
        # before the float32 runs: training would refuse every bfloat16 run on such a CPU
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from gluon_dml.amx import bfloat16_refusal
        refusal = bfloat16_refusal()
        if refusal:
            sys.exit('error: ' + refusal)
    seeds = [int(s) for s in a.seeds.split(',') if s.strip()]
    results = {False: [], True: []}
    speed = {False: [], True: []}
    for seed in seeds:
        for amp in (False, True):
            name = '%s-%s-s%d' % (a.data, a.dtype if amp else 'float32', seed)
            row, rows = train(a, seed, amp, os.path.join(a.work, name))
            results[amp].append(row)
            speed[amp] += [r['images_per_sec'] for r in rows if r.get('images_per_sec')]
    side = {False: 'float32', True: 'AMP ' + a.dtype}
    print()
    print('%-16s %6s %10s %10s %10s' % ('run', 'seed', 'Recall@1', 'MAP@R', 'NMI'))
    for amp in (False, True):
        for seed, row in zip(seeds, results[amp]):
            print('%-16s %6d %10.4f %10.4f %10.4f' % (side[amp], seed, row['recall@1'],
                                                      row['map@r'], row['nmi']))
    print()
    ok = True
    for key in METRICS:
        vals = {amp: [r[key] for r in results[amp]] for amp in (False, True)}
        mean = {amp: sum(v) / len(v) for amp, v in vals.items()}
        spread = max(max(v) - min(v) for v in vals.values())
        diff = abs(mean[True] - mean[False])
        within = diff <= spread
        ok = ok and within
        print('%-9s float32 mean %.4f, AMP mean %.4f: difference %.4f, seed spread %.4f -> %s'
              % (key, mean[False], mean[True], diff, spread, 'within' if within else 'OUTSIDE'))
    for amp in (False, True):
        if speed[amp]:
            print('training images/s, %s: %.1f (mean over epochs and seeds)'
                  % (side[amp], sum(speed[amp]) / len(speed[amp])))
    print('AMP %s gives the same metrics as float32 within the seed spread: %s'
          % (a.dtype, 'yes' if ok else 'NO'))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
