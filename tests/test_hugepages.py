"""Huge pages for a command's memory (gluon_dml/hugepages.py): when a command starts itself
again, that it keeps its process id, arguments and the user's environment, and that the kernel
then really backs MXNet's arrays with huge pages."""
import os
import signal
import subprocess
import sys
import time

import pytest

import gluon_dml
from gluon_dml import hugepages
from tests.helpers import REPO

HERE_OK, WHY = hugepages.decide(environ={})


def user_env(**extra):
    """This process's environment as the user gave it: without what importing gluon_dml set
    and without the tunable or the switch."""
    env = {k: v for k, v in os.environ.items()
           if k not in gluon_dml.DEFAULTED and k not in ('GLIBC_TUNABLES', hugepages.SWITCH)}
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    env.update(extra)
    return env


@pytest.mark.parametrize('kwargs, wanted, why', [
    (dict(environ={}, system='Linux', glibc=(2, 36), mode='madvise'), True, 'madvise'),
    (dict(environ={'GLUON_DML_HUGEPAGES': '0'}, system='Linux', glibc=(2, 36), mode='madvise'),
     False, 'GLUON_DML_HUGEPAGES=0'),
    (dict(environ={'GLUON_DML_HUGEPAGES': 'off'}, system='Linux', glibc=(2, 36), mode='madvise'),
     False, 'GLUON_DML_HUGEPAGES=off'),
    (dict(environ={'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}, system='Linux', glibc=(2, 36),
          mode='madvise'), False, 'already sets'),
    (dict(environ={}, system='Darwin', glibc=None, mode=None), False, 'not Linux'),
    (dict(environ={}, system='Linux', glibc=(2, 31), mode='madvise'), False, 'glibc >= 2.35'),
    (dict(environ={}, system='Linux', glibc=(2, 36), mode='always'), False, 'are always'),
    (dict(environ={}, system='Linux', glibc=(2, 36), mode='never'), False, 'are never'),
])
def test_decide(kwargs, wanted, why):
    got, reason = hugepages.decide(**kwargs)
    assert got is wanted and why in reason, (got, reason)


def test_environment_adds_the_tunable_after_the_users_own():
    env = hugepages.environment({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2', 'A': '1'})
    assert env == {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1', 'A': '1'}
    assert hugepages.environment({})['GLIBC_TUNABLES'] == 'glibc.malloc.hugetlb=1'


def test_thp_mode_reads_the_bracketed_word(tmp_path):
    path = tmp_path / 'enabled'
    path.write_text('always [madvise] never\n')
    assert hugepages.thp_mode(str(path)) == 'madvise'
    assert hugepages.thp_mode(str(tmp_path / 'missing')) is None


# what the started-again process reports: its pid, the tunable, whether it started with
# OMP_NUM_THREADS set, and the huge pages behind a 256 MiB MXNet array it filled
PROBE = r'''
import os, sys
print('start', os.getpid(), flush=True)
from gluon_dml.hugepages import reexec
reexec()
import mxnet as mx
a = mx.nd.ones((64, 1024, 1024)); a.wait_to_read()
huge = [l.split()[1] for l in open('/proc/self/smaps_rollup') if l.startswith('AnonHugePages')]
started_with = open('/proc/self/environ', 'rb').read().split(b'\0')   # this start's environment
print('run', os.getpid(), os.environ.get('GLIBC_TUNABLES'),
      'OMP' if any(v.startswith(b'OMP_NUM_THREADS=') for v in started_with) else 'no-OMP',
      huge[0] if huge else '?', sys.argv[1:])
'''


def _probe(*argv, **env):
    proc = subprocess.run([sys.executable, '-c', PROBE] + list(argv), capture_output=True,
                          text=True, timeout=300, env=user_env(**env), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [line.split() for line in proc.stdout.splitlines()]


@pytest.mark.skipif(not HERE_OK, reason='no huge pages to ask for here: %s' % WHY)
def test_a_command_starts_again_once_with_huge_pages_same_pid_same_arguments():
    env = {k: v for k, v in user_env().items() if k != 'OMP_NUM_THREADS'}
    proc = subprocess.run([sys.executable, '-c', PROBE, 'x y', '--flag'], capture_output=True,
                          text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line.split(maxsplit=5) for line in proc.stdout.splitlines()]
    starts = [ln for ln in lines if ln[0] == 'start']
    run = [ln for ln in lines if ln[0] == 'run']
    assert len(starts) == 2 and len(run) == 1, proc.stdout        # started twice, ran once
    assert starts[0][1] == starts[1][1] == run[0][1]               # one process id throughout
    _, _, tunable, omp, huge_kb, args = run[0]
    assert tunable == 'glibc.malloc.hugetlb=1'
    assert omp == 'no-OMP'          # importing gluon_dml set it in the first start: not passed on
    assert args == "['x y', '--flag']"
    assert int(huge_kb) >= 64 * 1024, 'the 256 MiB array is not in huge pages: %s kB' % huge_kb


def test_switched_off_it_runs_once_in_small_pages():
    lines = _probe('--flag', GLUON_DML_HUGEPAGES='0')
    assert [ln[0] for ln in lines] == ['start', 'run'], lines
    assert lines[1][2] == 'None'


def test_a_script_read_from_stdin_is_not_started_again():
    env = user_env()
    proc = subprocess.run([sys.executable, '-'], input=PROBE, capture_output=True, text=True,
                          timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [ln.split()[0] for ln in proc.stdout.splitlines()] == ['start', 'run'], proc.stdout


def _environ(pid):
    try:
        with open('/proc/%d/environ' % pid, 'rb') as f:
            return dict(item.split(b'=', 1) for item in f.read().split(b'\0') if b'=' in item)
    except OSError:
        return None


@pytest.mark.skipif(not HERE_OK, reason='no huge pages to ask for here: %s' % WHY)
@pytest.mark.parametrize('entry', [['train_margin.py'], ['-m', 'gluon_dml', 'train-margin']])
def test_training_entry_points_run_with_the_tunable(entry, tmp_path):
    cmd = [sys.executable] + [os.path.join(REPO, e) if e.endswith('.py') else e for e in entry] + \
        ['--data', 'digits', '--epochs', '30', '--no-progress', '--save-dir', str(tmp_path / 'run')]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=user_env(OMP_NUM_THREADS='1'), cwd=REPO)
    seen = None
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            env = _environ(proc.pid)
            if env and b'GLIBC_TUNABLES' in env:
                seen = env
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    assert seen is not None, 'the training process never ran with GLIBC_TUNABLES set'
    assert seen[b'GLIBC_TUNABLES'] == b'glibc.malloc.hugetlb=1'
    assert seen[b'OMP_NUM_THREADS'] == b'1'                  # the user's own setting, kept
