"""The launcher's refusals of bad input, with the real launcher: one line naming the flag or
file, exit code 2, no traceback, nothing started."""
import os
import signal
import socket
import sys
import time

from .jobs import job, run_job, wait_for, worker_pids

JOB = ['train_margin.py', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '2',
       '--batch-size', '24', '--no-progress']


def _refused(*args, timeout=60):
    code, out, err = run_job(*args, timeout=timeout)
    lines = [l for l in err.splitlines() if l.startswith('launch: error: ')]
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err, err[-3000:]
    return lines[0][len('launch: error: '):]


def test_a_bad_hosts_file_is_named(tmp_path):
    for text, message in ((None, 'no such file.'),
                          (b'\xff\xfe\x00node\n', 'is not a text file'),
                          (b':3\n', "bad line 1 ':3' (host or host:slots, slots at least 1)."),
                          (b'# nodes\nnode1\nnode2:0\n', "bad line 3 'node2:0'"),
                          (b'node1 node2\n', "bad line 1 'node1 node2'"),
                          (b'# none\n\n', 'names no host.')):
        hosts = tmp_path / 'hosts'
        if hosts.exists():
            hosts.unlink()
        if text is not None:
            hosts.write_bytes(text)
        got = _refused('-n', 2, '--hosts', hosts, *JOB)
        assert got.startswith('--hosts %s' % hosts) and message in got, got
    assert _refused('-n', 2, '--hosts', tmp_path, *JOB) == '--hosts %s is a folder, not a host file.' % tmp_path


def test_an_ssh_command_that_is_not_there_is_named(tmp_path):
    hosts = tmp_path / 'hosts'
    hosts.write_text('localhost\n')
    for ssh in ('no-such-ssh -o BatchMode=yes', ''):
        got = _refused('-n', 2, '--hosts', hosts, '--ssh=' + ssh, *JOB)
        assert got.startswith('--ssh %r: no such program here' % ssh), got


def test_a_port_in_use_or_out_of_range_and_a_root_uri_not_here_are_named():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert _refused('-n', 2, '--port', port, *JOB) == (
            '--port %d is in use on this machine (the scheduler listens there); leave --port out '
            'for a free one.' % port)
    for port in (65536, -1):
        assert _refused('-n', 2, '--port', port, *JOB).startswith(
            '--port must be a TCP port, 1 to 65535 (0 or left out: a free one)')
    assert _refused('-n', 2, '--root-uri', '192.0.2.1', *JOB).startswith(
        '--root-uri 192.0.2.1 is not an address of this machine')
    assert _refused('-n', 2, '--root-uri', 'no-such-host.invalid', *JOB).startswith(
        '--root-uri no-such-host.invalid is not a host name or address')


def test_a_timeout_that_is_not_a_positive_number_is_refused():
    for value in ('nan', '-1', '0'):
        assert _refused('-n', 2, '--timeout', value, *JOB).startswith(
            '--timeout must be a positive number of seconds')


def test_env_cannot_change_the_jobs_own_variables():
    """--env DMLC_NUM_WORKER=3 with -n 2 had the scheduler wait forever for a third worker."""
    assert _refused('-n', 2, '--env', 'DMLC_NUM_WORKER=3', *JOB) == (
        '--env DMLC_NUM_WORKER=3: the launcher sets DMLC_NUM_WORKER for each process itself '
        '(give -n).')
    for item in ('DMLC_ROLE=worker', 'DMLC_NUM_SERVER=2', 'DMLC_PS_ROOT_PORT=9000',
                 'DMLC_PS_ROOT_URI=127.0.0.1'):
        assert _refused('-n', 2, '--env', item, *JOB).startswith('--env %s: the launcher sets' % item)


def test_workers_that_never_join_the_job_are_said_and_not_waited_for():
    """A command that creates no dist store (here python -c pass) left the scheduler waiting: the
    launcher waited 30 s for it, then exited 0 without a word."""
    started = time.time()
    code, out, err = run_job('-n', 2, sys.executable, '-c', 'pass', timeout=60)
    assert code == 0 and 'Traceback' not in err, err
    assert 'launch: note: the workers exited (code 0) without joining the job' in err, err
    assert time.time() - started < 20


def test_an_error_of_rank_0_alone_is_the_jobs_message(tmp_path):
    """Rank 0 alone refuses the run folder (it holds a run): its error is the launcher's line, exit
    code 2. Rank 0 used to leave through MXNet's shutdown of the store, whose barrier let rank 1 go
    on to push a key rank 0 never initialised; the server aborted and the launcher said 'server 0
    was killed by SIGABRT ... init 65536 first', exit 1."""
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'args.json').write_text('{}')
    code, out, err = run_job('-n', 2, '--threads', 1, *JOB, '--save-dir', run, timeout=120)
    lines = [l for l in err.splitlines() if l.startswith('launch: error: ')]
    assert code == 2 and len(lines) == 1, err[-3000:]
    assert lines[0].startswith('launch: error: worker of rank 0 ') and 'exited with code 2' in lines[0]
    assert 'already holds a run' in lines[0] and 'SIGABRT' not in err, err[-3000:]


def test_dist_async_with_learning_rate_drops_is_refused(tmp_path):
    """dist_async sends the optimizer to the servers once: the drops of --steps never reached
    them (the parameters kept moving at the first rate after --steps 1 --factor 1e-30, while the
    log said lr=0.0000). Refused before the run folder is made; without drops it trains."""
    run = tmp_path / 'run'
    code, out, err = run_job('-n', 2, '--threads', 1, *JOB, '--epochs', 2, '--kvstore', 'dist_async',
                             '--steps', 1, '--factor', 0.1, '--save-dir', run, timeout=120)
    lines = [l for l in err.splitlines() if l.startswith('launch: error: ')]
    assert code == 2 and len(lines) == 1, err[-3000:]
    assert ('error: --kvstore dist_async keeps the learning rate the servers started with' in lines[0]
            and 'the drops of --steps 1 after epoch 1 would not happen' in lines[0]), lines[0]
    assert not run.exists()


def _rank_of(pid):
    with open('/proc/%d/environ' % pid, 'rb') as f:
        env = dict(kv.split(b'=', 1) for kv in f.read().split(b'\0') if b'=' in kv)
    try:
        with open(env[b'GLUON_DML_RANK_FILE'].decode()) as f:
            return int(f.read())
    except (KeyError, OSError, ValueError):
        return None


def _rank_1_training(proc, run):
    """The pid of the worker of rank 1 of the job ``proc``, once it trains (``run``'s log has
    its epoch 0)."""
    assert wait_for(lambda: (run / 'log.jsonl').exists() and (run / 'log.jsonl').stat().st_size,
                    proc, timeout=120), proc.communicate()[1][-3000:]
    time.sleep(1)
    rank1 = [p for p in worker_pids(proc) if _rank_of(p) == 1]
    assert len(rank1) == 1
    return rank1[0]


def test_a_sigint_to_one_worker_stops_the_job_as_sigint(tmp_path):
    """Ctrl-C reaching one worker only (kill -INT of rank 1): the job stops together, and the
    others stop on SIGINT too. They stopped as on SIGTERM: rank 0 said 'SIGTERM received' and
    the launcher's exit code was 143 (or 130, by which process it looked at first)."""
    run = tmp_path / 'run'
    with job('-n', 2, '--threads', 1, *JOB, '--batches-per-epoch', 3000, '--save-dir', run) as proc:
        os.kill(_rank_1_training(proc, run), signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert 'SIGINT received: checkpoint saved in' in err and 'SIGTERM' not in err, err[-3000:]


def test_ctrl_c_twice_is_still_a_ctrl_c(tmp_path):
    """The second SIGINT to the launcher stops every process at once (SIGTERM, then SIGKILL): one
    line says so, exit code 130 as for one Ctrl-C. It was 143, or 137 with 'launch: error: worker
    of rank 0 ... was killed by SIGKILL' (the launcher's own kill reported as a failure)."""
    run = tmp_path / 'run'
    with job('-n', 2, '--threads', 1, *JOB, '--batches-per-epoch', 3000, '--save-dir', run) as proc:
        assert wait_for(lambda: (run / 'log.jsonl').exists() and (run / 'log.jsonl').stat().st_size,
                        proc, timeout=120), proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "launch: error" not in err, err[-3000:]
    assert "stopped at once on a second SIGINT (exit 130)" in err, err[-3000:]


def test_a_stopped_worker_is_said_once_and_the_job_goes_on_when_it_continues(tmp_path):
    """A worker stopped by SIGSTOP (or Ctrl-Z in its own terminal) held the whole job in silence
    until --timeout, if one was given. The launcher now says which worker is stopped, once, with
    the command that continues it; the job goes on after SIGCONT."""
    run = tmp_path / 'run'
    with job('-n', 2, '--threads', 1, *JOB, '--batches-per-epoch', 3000, '--save-dir', run) as proc:
        rank1 = _rank_1_training(proc, run)
        os.kill(rank1, signal.SIGSTOP)
        time.sleep(14)                       # the note comes after 10 s
        os.kill(rank1, signal.SIGCONT)
        time.sleep(2)
        assert proc.poll() is None           # still training
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    notes = [l for l in err.splitlines() if 'has been stopped' in l]
    assert notes == ['launch: note: worker of rank 1 (pid %d on 127.0.0.1) has been stopped for '
                     '10 s (a SIGSTOP or Ctrl-Z); the job waits for it: kill -CONT %d continues '
                     'it.' % (rank1, rank1)], err[-3000:]


def test_hosts_elsewhere_with_a_loopback_scheduler_address_are_refused(tmp_path):
    """Another machine in --hosts while the scheduler's address is a loopback one (this
    machine's name resolves to 127.0.0.1 here, as on many machines; or --root-uri 127.0.0.1):
    the remote workers waited for a scheduler on their own loopback for ever (seen with an ssh
    stand-in that runs the command in a network namespace of its own)."""
    hosts = tmp_path / 'hosts'
    hosts.write_text('localhost\nnode-b.invalid\n')
    got = _refused('-n', 2, '--hosts', hosts, '--root-uri', '127.0.0.1', *JOB)
    assert got == ('--hosts %s names other machines (node-b.invalid), but --root-uri 127.0.0.1 is '
                   'a loopback address they cannot reach; give --root-uri with this machine\'s '
                   'address on their network.' % hosts), got


def test_a_launcher_killed_with_sigkill_has_its_scratch_folder_removed_by_the_next(tmp_path):
    """A launcher killed with SIGKILL cannot remove its scratch folder (TMP/gluon-dml-launch-*);
    they piled up in /tmp. The next launcher removes those whose launcher is gone, and leaves a
    running launcher's, and folders of the older name without a pid."""
    from gluon_dml.launch import remove_stale_folders
    from ..helpers import script_env
    env = script_env(OMP_NUM_THREADS='1', TMPDIR=str(tmp_path))
    old = tmp_path / 'gluon-dml-launch-abc123'          # the older name: no pid in it
    old.mkdir()
    with job('-n', 1, sys.executable, '-c', 'import time; time.sleep(120)', env=env) as first:
        assert wait_for(lambda: list(tmp_path.glob('gluon-dml-launch-%d-*' % first.pid)), first, 60)
        mine = list(tmp_path.glob('gluon-dml-launch-%d-*' % first.pid))
        assert remove_stale_folders(str(tmp_path)) == [] and mine[0].exists()   # it still runs
        first.kill()
        first.wait(30)
    assert mine[0].exists()                            # SIGKILL: left behind
    with job('-n', 1, sys.executable, '-c', 'pass', env=env) as second:
        second.communicate(timeout=120)
        assert second.returncode == 0
    assert not mine[0].exists() and old.exists()
    assert not list(tmp_path.glob('gluon-dml-launch-%d-*' % second.pid))   # its own, removed at its end
