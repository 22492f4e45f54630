"""Distributed training on MXNet's parameter server, with real processes: the launcher, the
sharded plan, the all-gather (2 workers of batch 64 = 1 process of batch 128 = 2 devices of one
process), a worker killed, a signal to the job, resuming the job."""
import json
import os
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from gluon_dml.data import BalancedBatchSampler, ShardedBatchSampler
from gluon_dml.engine import CheckpointManager, get_contexts, read_log
from gluon_dml.launch import read_hosts, worker_command

from ..helpers import REPO, run_script, script_env
from .jobs import alive, job, run_job, wait_for, worker_pids

DIGITS = ['--data', 'digits', '--batch-k', '12', '--no-progress']


def _params(run_dir, name='net.params'):
    latest = CheckpointManager(str(run_dir)).latest()
    return {k: v.asnumpy() for k, v in mx.nd.load(os.path.join(latest, name)).items()}


def _max_diff(a, b):
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


# -- fast: the pieces ---------------------------------------------------------------------------

def test_shards_of_the_global_plan_are_the_single_process_batches():
    labels = np.repeat(np.arange(40), 6)
    whole = BalancedBatchSampler(labels, 32, 4, num_batches=7, seed=5)
    shards = [ShardedBatchSampler(BalancedBatchSampler(labels, 32, 4, num_batches=7, seed=5), r, 4)
              for r in range(4)]
    for s in [whole] + shards:
        s.set_epoch(3)
    parts = [list(s) for s in shards]
    for b, batch in enumerate(whole):
        got = [parts[r][b] for r in range(4)]
        assert sum(got, []) == batch                       # rank order = the global batch
        assert all(len(g) == 8 for g in got)
        classes = [set(labels[g]) for g in got]
        assert all(len(c) == 2 for c in classes)           # whole classes (K = 4) per worker
        assert not set.intersection(*classes)              # classes spread across workers
    assert len(shards[0]) == 7


def test_cpu_contexts_and_the_kvstore_flag_errors():
    assert get_contexts('cpu:2') == [mx.cpu(0), mx.cpu(1)]
    with pytest.raises(ValueError, match='cpu:N'):
        get_contexts('cpu:x')
    proc = run_script('train_margin.py', *DIGITS, '--kvstore', 'dist_sync', timeout=120)
    assert proc.returncode == 2
    assert 'python -m gluon_dml.launch' in proc.stderr and 'Traceback' not in proc.stderr


def test_launcher_arguments(tmp_path):
    hosts = tmp_path / 'hosts'
    hosts.write_text('# two machines\nnode1:2\nnode2\n')
    assert read_hosts(str(hosts)) == ['node1', 'node1', 'node2']
    assert worker_command('train_margin.py', ['--lr', '1'])[-2:] == ['--kvstore', 'dist_sync']
    assert worker_command('gluon-dml', ['--kvstore=dist_async']) == ['gluon-dml', '--kvstore=dist_async']
    code, out, err = run_job('-n', 2, 'no_such_script.py', timeout=60)
    assert code == 2 and 'no script no_such_script.py' in err
    for args, message in ((['-n', 0], '-n must be at least 1, got 0.'),
                          (['-n', 2, '-s', 0], '-s must be at least 1, got 0.'),
                          (['-n', 2, '--threads', 0], '--threads must be at least 1, got 0.'),
                          (['-n', 2, 'no-such-command'], 'no command no-such-command'),
                          (['-n', 2, 'train_margin.py', '--kvstore', 'device'],
                           '--kvstore device is a single-process store'),
                          (['-n', 2, 'train_margin.py', '--kvstore='],       # was '--kvstore  is a ...'
                           '--kvstore is empty; a job started by the launcher trains with'),
                          # argparse's 'unrecognized arguments: --kvstore', dist_async the script
                          (['-n', 2, '--kvstore', 'dist_async', 'train_margin.py'],
                           "--kvstore is not a flag of the launcher; the training command's flags "
                           "go after it: python -m gluon_dml.launch -n 2 [launcher flags] SCRIPT "
                           "--kvstore ...")):
        code, out, err = run_job(*(args if len(args) > 2 and args[-1] != 0 else
                                   args + ['train_margin.py']), timeout=60)
        assert code == 2 and 'launch: error: ' + message in err and 'Traceback' not in err, err


def test_a_worker_that_fails_stops_the_job_with_its_rank():
    """A bad flag: both workers exit 2; one line names a rank, nothing is left running."""
    with job('-n', 2, 'train_margin.py', *DIGITS, '--loss', 'no_such_loss') as proc:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 2, err
        line = [l for l in err.splitlines() if l.startswith('launch: error:')]
        assert len(line) == 1, err
        assert 'worker of rank' in line[0] and 'exited with code 2' in line[0]
        assert 'no_such_loss' in line[0]                   # its last message
        assert not [p for p in proc.seen if alive(p)]
    # a batch the data cannot fill is said in the flag's terms: --batch-size is each worker's
    code, out, err = run_job('-n', 3, 'train_margin.py', *DIGITS, '--batch-size', 24, timeout=180)
    assert code == 2, err[-3000:]
    assert "--batch-size 24 is each worker's: the batch of the 3 workers together is 72" in err, err[-3000:]


# -- slow: real training ------------------------------------------------------------------------

def _omniglot_trio(tmp_path, steps, tag, devices=True):
    """One process of 128, two CPU devices of one process, two workers of 64 (all-gather): the
    Omniglot protocol (32 classes x 4, margin loss with one beta per class and its sampling),
    ``steps`` steps, seed 7, batch norm frozen. Returns their (net, loss) parameters (with
    ``devices=False`` no devices run: the one process stands in its place)."""
    common = ['--data', 'omniglot', '--epochs', '1', '--batches-per-epoch', str(steps), '--seed',
              '7', '--no-progress', '--freeze-bn']
    one, workers = (tmp_path / ('%s-%s' % (tag, n)) for n in ('one', 'workers'))
    run_script('train_margin.py', *common, '--save-dir', one, check=True,
               env=script_env(OMP_NUM_THREADS='1'))
    if devices is not True:
        devices = one
    else:
        devices = tmp_path / ('%s-devices' % tag)
        run_script('train_margin.py', *common, '--gpus', 'cpu:2', '--save-dir', devices,
                   check=True, env=script_env(OMP_NUM_THREADS='1'))
    code, out, err = run_job('-n', 2, '--threads', 1, 'train_margin.py', *common, '--batch-size',
                             64, '--save-dir', workers, timeout=600)
    assert code == 0, err[-3000:]
    assert [r['epoch'] for r in read_log(str(workers))] == [0, 1]     # rank 0 alone logged
    return [(_params(d), _params(d, 'loss.params')) for d in (one, devices, workers)]


@pytest.mark.slow
def test_two_workers_equal_two_devices_and_one_process_on_omniglot(tmp_path):
    """Two workers of 64 = two devices of 64 in one process, bit for bit, after 50 steps (the
    same halves, the same sums). Against one process of 128: equal to rounding after one step;
    after 50 steps the rounding of the split sums has been amplified by Adam and by the losses'
    discrete parts (sampled negatives, counts of active terms) to about 1e-2, as between one and
    two devices in one process (docs/distributed.md). Batch norm is frozen (--freeze-bn): with
    batch statistics each worker / device normalises its own 64 images, another computation."""
    (one, one_beta), _, (wrk, wrk_beta) = _omniglot_trio(tmp_path, 1, 'step', devices=False)
    first = _max_diff(one, wrk)
    assert first < 1e-5 and _max_diff(one_beta, wrk_beta) < 1e-5, first
    (one, one_beta), (dev, dev_beta), (wrk, wrk_beta) = _omniglot_trio(tmp_path, 50, 'fifty')
    assert _max_diff(dev, wrk) == 0 and _max_diff(dev_beta, wrk_beta) == 0
    last = _max_diff(one, wrk)
    print('one step: %.3g; 50 steps: %.3g (workers = devices exactly)' % (first, last))
    assert last < 0.05


@pytest.mark.slow
def test_a_killed_worker_and_a_signal_stop_the_job_and_resume_continues_it(tmp_path):
    """Uninterrupted: A. B: SIGTERM to the launcher mid-run -> every worker stops at one step,
    rank 0 checkpoints, exit 143; --resume finishes it with A's parameters. C: a worker killed
    -> one line naming it, every process gone, the last checkpoint whole; --resume finishes."""
    args = ['-n', 2, '--threads', 1, 'train_margin.py', *DIGITS, '--epochs', '3',
            '--batches-per-epoch', '12', '--batch-size', '24']
    code, _, err = run_job(*args, '--save-dir', tmp_path / 'A', timeout=300)
    assert code == 0, err[-3000:]

    with job(*args, '--save-dir', tmp_path / 'B') as proc:
        pointer = tmp_path / 'B' / 'checkpoints' / 'latest'
        assert wait_for(pointer.exists, proc), proc.stderr.read()[-3000:]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, err[-3000:]
        assert 'SIGTERM received' in err
        assert not [p for p in proc.seen if alive(p)]
    meta = CheckpointManager.meta(CheckpointManager(str(tmp_path / 'B')).latest())
    assert meta.get('interrupted') == 'SIGTERM', meta
    code, _, err = run_job(*args, '--save-dir', tmp_path / 'B', '--resume', timeout=300)
    assert code == 0, err[-3000:]
    assert _max_diff(_params(tmp_path / 'A'), _params(tmp_path / 'B')) < 1e-5
    assert [r['epoch'] for r in read_log(str(tmp_path / 'B'))] == [0, 1, 2, 3]

    with job(*args, '--save-dir', tmp_path / 'C') as proc:
        pointer = tmp_path / 'C' / 'checkpoints' / 'latest'
        assert wait_for(pointer.exists, proc), proc.stderr.read()[-3000:]
        victims = worker_pids(proc)
        assert len(victims) == 2
        os.kill(victims[-1], signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + signal.SIGKILL          # the worker's death, as a shell says
        line = [l for l in err.splitlines() if l.startswith('launch: error:')]
        assert len(line) == 1 and 'was killed by SIGKILL' in line[0], err[-3000:]
        assert 'worker of rank' in line[0]
        time.sleep(0.5)
        assert not [p for p in proc.seen if alive(p)]
    latest = CheckpointManager(str(tmp_path / 'C')).latest()
    assert latest is not None and _params(tmp_path / 'C')              # whole and readable
    code, _, err = run_job(*args, '--save-dir', tmp_path / 'C', '--resume', timeout=300)
    assert code == 0, err[-3000:]
    assert _max_diff(_params(tmp_path / 'A'), _params(tmp_path / 'C')) < 1e-5


@pytest.mark.slow
def test_a_killed_launcher_takes_its_job_and_another_worker_count_cannot_resume(tmp_path):
    """kill -9 of the launcher (or the terminal closing): its scheduler, server and workers
    stop too (they were left training as orphans); the workers' checkpoint is whole, and the
    run, trained by 2 workers, is refused when resumed by 1 (another global batch)."""
    args = ['--threads', 1, 'train_margin.py', *DIGITS, '--epochs', '3', '--batches-per-epoch',
            '12', '--batch-size', '24', '--save-dir', tmp_path / 'K']
    with job('-n', 2, *args) as proc:
        pointer = tmp_path / 'K' / 'checkpoints' / 'latest'
        assert wait_for(pointer.exists, proc), proc.stderr.read()[-3000:]
        children = [p for p in __import__('tests.distributed.jobs', fromlist=['descendants'])
                    .descendants(proc.pid)]
        assert len(children) >= 4
        proc.kill()
        deadline = time.time() + 60
        while time.time() < deadline and [p for p in children if alive(p)]:
            time.sleep(0.2)
        assert not [p for p in children if alive(p)]
    assert _params(tmp_path / 'K')
    assert json.load(open(tmp_path / 'K' / 'args.json'))['job_workers'] == 2
    code, _, err = run_job('-n', 1, *args, '--resume', timeout=300)
    assert code == 2, err[-3000:]
    assert 'was trained by 2 workers (a global batch of 48); resumed by 1' in err, err[-3000:]


@pytest.mark.slow
def test_a_signal_while_rank_0_evaluates_the_last_epoch_loses_nothing(tmp_path):
    """Rank 1 has done its steps and left the engine (its handlers gone; it waits in MXNet's
    shutdown for rank 0) while rank 0 still evaluates the last epoch: a Ctrl-C to the launcher
    killed rank 1 by SIGINT, the launcher took that for a failure and killed rank 0 mid-
    evaluation, so the last epoch was lost and the job 'failed'. Now it waits for rank 0."""
    trace = tmp_path / 'trace'
    args = ['-n', 2, '--threads', 1, 'train_margin.py', *DIGITS, '--epochs', '1',
            '--batches-per-epoch', '6', '--batch-size', '24', '--save-dir', tmp_path / 'E']
    # rank 0's final evaluation (its second) lasts 8 s more: the signal lands inside it
    env = script_env(OMP_NUM_THREADS='1', GLUON_DML_FAULTS='eval@2:pause=8',
                     GLUON_DML_TRACE=str(trace))
    with job(*args, env=env) as proc:
        def final_eval():
            return trace.exists() and trace.read_text().count('eval ') >= 2
        assert wait_for(final_eval, proc, timeout=300), proc.stderr.read()[-3000:]
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
        assert 'launch: error' not in err, err[-3000:]
        assert proc.returncode in (0, 130), err[-3000:]
    meta = CheckpointManager.meta(CheckpointManager(str(tmp_path / 'E')).latest())
    assert meta['epoch'] == 2 and meta['batch'] == 0, meta      # after epoch 1: nothing lost


@pytest.mark.slow
def test_hosts_over_ssh_with_a_stand_in_ssh(tmp_path):
    """--hosts: servers and workers started through the ssh command (here a stand-in that runs
    the remote command on this machine, as ssh HOST COMMAND would there)."""
    fake = tmp_path / 'fake-ssh'
    fake.write_text('#!/bin/sh\n# ssh HOST COMMAND: run COMMAND here\nshift\nexec sh -c "$1"\n')
    fake.chmod(0o755)
    hosts = tmp_path / 'hosts'
    hosts.write_text('localhost\n127.0.0.1\n')
    code, _, err = run_job('-n', 2, '--hosts', hosts, '--ssh', str(fake), '--root-uri',
                           '127.0.0.1', '--env', 'DMLC_NODE_HOST=127.0.0.1', '--env',
                           'OMP_NUM_THREADS=1', 'train_margin.py', *DIGITS, '--epochs', '1',
                           '--batches-per-epoch', '3', '--batch-size', '24', '--save-dir',
                           tmp_path / 'run', timeout=300)
    assert code == 0, err[-3000:]
    assert [r['epoch'] for r in read_log(str(tmp_path / 'run'))] == [0, 1]


@pytest.mark.slow
def test_the_memory_of_a_job_holds_every_workers_batches(tmp_path):
    """--xbm-size in a job of 2 workers: the memory is filled with the gathered batches, so the
    job equals 2 devices of one process bit for bit, memory included (and is resumable: the
    memory is in the checkpoint's loss.params)."""
    common = [*DIGITS, '--epochs', '1', '--batches-per-epoch', '8', '--loss', 'contrastive',
              '--xbm-size', '96', '--xbm-start', '2', '--freeze-bn']
    run_script('train_margin.py', *common, '--batch-size', 48, '--gpus', 'cpu:2', '--save-dir',
               tmp_path / 'devices', check=True, env=script_env(OMP_NUM_THREADS='1'))
    code, _, err = run_job('-n', 2, '--threads', 1, 'train_margin.py', *common, '--batch-size', 24,
                           '--save-dir', tmp_path / 'workers', timeout=300)
    assert code == 0, err[-3000:]
    assert _max_diff(_params(tmp_path / 'devices'), _params(tmp_path / 'workers')) == 0
    memory = _params(tmp_path / 'workers', 'loss.params')
    assert _max_diff(_params(tmp_path / 'devices', 'loss.params'), memory) == 0
    valid = [v for k, v in memory.items() if k.endswith('valid')][0]
    assert valid.sum() == 96                    # 6 steps of 48 gathered rows, a ring of 96
