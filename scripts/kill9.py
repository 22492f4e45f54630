#!/usr/bin/env python
"""kill -9 a training run at random moments, --resume it after each, and check that it ends with
the parameters (bitwise) and the log of the same run left alone.

    python scripts/kill9.py                        # 10 kills, seed 0, a temporary folder
    python scripts/kill9.py --kills 10 --seed 3 --workdir /tmp/k9 --markdown table.md

The run: ``train-margin --data digits``, 6 epochs of 6 batches, ``--checkpoint-every 2``. Half of
the kills come at a random moment of the training: a random step ahead is drawn, and the kill
comes at a random time (0-0.3 s) after the run reports it (the run stays 0.1 s at each step, so
that the kill finds it alive however fast its steps are). The other half come while the run is
inside a checkpoint write or an evaluation: the run is told
(``GLUON_DML_FAULTS=POINT@*:pause=1.0``) to stay 1 s at that point, and the kill comes from
outside at a random moment of that pause. Where the run was and the last step it had finished
come from its trace (``GLUON_DML_TRACE``); the step the next --resume started from from its
output; the work a kill lost is the steps between the two. Prints a table (markdown with
--markdown) and exits 1 when the parameters or the log differ.

The children get this process's environment without OPENBLAS_CORETYPE (which gluon_dml sets
for faiss when imported): MXNet's BLAS kernels must be the same in every run compared.
"""
import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS, BATCHES = 6, 6
RUN = ['--data', 'digits', '--epochs', str(EPOCHS), '--batches-per-epoch', str(BATCHES),
       '--no-progress', '--nmi-runs', '1']
POINTS = ['checkpoint-files', 'checkpoint-meta', 'checkpoint-rename', 'checkpoint-pointer', 'eval']
TIMING = ('train_time', 'images_per_sec', 'eval_time')


def env(**extra):
    e = dict(os.environ)
    e.pop('OPENBLAS_CORETYPE', None)
    e['PYTHONPATH'] = REPO + os.pathsep + e.get('PYTHONPATH', '')
    e.setdefault('OMP_NUM_THREADS', '1')
    e.update(extra)
    return e


def start(run_dir, *argv, **extra):
    cmd = [sys.executable, '-m', 'gluon_dml', 'train-margin'] + RUN + ['--save-dir', run_dir] + list(argv)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=env(**extra))


def trace(path, pid=None):
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            fields = dict(p.split('=', 1) for p in parts[1:] if '=' in p)
            if pid is None or fields.get('pid') == str(pid):
                out.append((parts[0], fields))
    return out


def step_index(epoch, batch):
    return (int(epoch) - 1) * BATCHES + int(batch)


def params(run_dir):
    from gluon_dml.engine.checkpoint import checkpoint_arrays
    return checkpoint_arrays(run_dir)


def rows(run_dir):
    with open(os.path.join(run_dir, 'log.jsonl')) as f:
        return [{k: v for k, v in json.loads(ln).items() if k not in TIMING} for ln in f if ln.strip()]


def resumed_from(output):
    m = re.search(r'Resumed from \S+ \(epoch (\d+), batch (\d+)\)', output)
    return step_index(m.group(1), m.group(2)) if m else 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--kills', type=int, default=10)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--workdir', default=None, help='default: a new temporary folder')
    p.add_argument('--markdown', default=None, help='also write the table here (markdown)')
    a = p.parse_args(argv)
    rng = random.Random(a.seed)
    work = a.workdir or tempfile.mkdtemp(prefix='kill9-')
    os.makedirs(work, exist_ok=True)
    ref, run, tr = os.path.join(work, 'reference'), os.path.join(work, 'run'), os.path.join(work, 'trace')
    for path in (ref, run):
        if os.path.exists(path):
            sys.exit('%s exists: give an empty --workdir' % path)

    proc = start(ref)
    out, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit('the reference run failed:\n' + err[-2000:])

    modes = ['step'] * (a.kills - a.kills // 2) + [rng.choice(POINTS) for _ in range(a.kills // 2)]
    rng.shuffle(modes)
    total = EPOCHS * BATCHES
    # the moments: sorted random steps over the run; a kill "inside" a point comes at the first
    # time the run is there after that step
    targets = sorted(rng.sample(range(1, total), len(modes)))
    processes, progress = [], 0          # progress: the last step on record (trained and logged)
    for i, (mode, target) in enumerate(zip(modes, targets)):
        extra = {'GLUON_DML_TRACE': tr}
        if mode != 'step':
            extra['GLUON_DML_FAULTS'] = '%s@*:pause=1.0' % mode
        else:       # 0.1 s at each step: the kill, 0-0.3 s after the step drawn, finds the run alive
            extra['GLUON_DML_FAULTS'] = 'step@*:pause=0.1'
        proc = start(run, '--checkpoint-every', '2', *(['--resume'] if processes else []), **extra)
        started = time.time()

        def there():
            lines = trace(tr, proc.pid)
            steps = [k for k, (pt, f) in enumerate(lines) if pt == 'step' and (
                progress >= target or step_index(f['epoch'], f['batch']) >= target)]
            if mode == 'step':
                return bool(steps)
            first = 0 if progress >= target else (steps[0] if steps else None)
            return first is not None and any(pt == mode for pt, _ in lines[first:])
        while proc.poll() is None and not there():
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3) if mode == 'step' else rng.uniform(0.0, 0.8))
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        lines = trace(tr, proc.pid)
        steps = [step_index(f['epoch'], f['batch']) for pt, f in lines if pt == 'step']
        m = re.search(r'Resumed from \S+ \(epoch (\d+), batch (\d+)\)', out)
        processes.append(dict(
            n=i + 1, mode=('after step %d' % target) if mode == 'step' else
            'inside %s after step %d' % (mode, target),
            killed=killed, code=proc.returncode, after_s=time.time() - started,
            where=lines[-1][0] if lines else 'start-up',
            start=step_index(m.group(1), m.group(2)) if m else (0 if i == 0 else None),
            last_step=steps[-1] if steps else progress))
        progress = processes[-1]['last_step']
        if not killed:
            break
    if processes[-1]['killed']:                       # resume to the end
        proc = start(run, '--checkpoint-every', '2', '--resume', GLUON_DML_TRACE=tr)
        out, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit('the final --resume failed:\n' + err[-2000:])
        m = re.search(r'Resumed from \S+ \(epoch (\d+), batch (\d+)\)', out)
        processes.append(dict(killed=False, start=step_index(m.group(1), m.group(2)) if m else 0))
    kills = [k for k in processes if k['killed']]
    for idx, k in enumerate(processes):
        if not k['killed']:
            continue
        later = [q['start'] for q in processes[idx + 1:] if q.get('start') is not None]
        k['resumed_at'] = later[0]
        k['lost_steps'] = max(0, k['last_step'] - k['resumed_at'])

    a_params, b_params = params(ref), params(run)
    same_params = sorted(a_params) == sorted(b_params) and all(
        np.array_equal(a_params[k], b_params[k]) for k in a_params)
    same_log = rows(ref) == rows(run)

    header = ('| kill | when | where the run was | last step done | next --resume starts after step | steps lost |\n'
              '|---:|---|---|---:|---:|---:|')
    table = [header]
    for k in kills:
        table.append('| %d | %s | %s | %d | %d | %d |' % (
            k['n'], k['mode'], k['where'], k['last_step'], k['resumed_at'], k['lost_steps']))
    lost = [k['lost_steps'] for k in kills if k['killed']]
    summary = ('%d kills of one run of %d steps (%d epochs x %d batches, --checkpoint-every 2); '
               'steps lost per kill: max %d, mean %.1f, total %d; final parameters bitwise equal '
               'to the uninterrupted run: %s; log equal (timing fields aside): %s.'
               % (len(lost), EPOCHS * BATCHES, EPOCHS, BATCHES, max(lost or [0]),
                  float(np.mean(lost)) if lost else 0.0, sum(lost), 'yes' if same_params else 'NO',
                  'yes' if same_log else 'NO'))
    text = '\n'.join(table) + '\n\n' + summary + '\n'
    print(text)
    if a.markdown:
        with open(a.markdown, 'w') as f:
            f.write(text)
    return 0 if same_params and same_log else 1


if __name__ == '__main__':
    sys.exit(main())
