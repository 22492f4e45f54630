"""Running real jobs in tests: the launcher in a subprocess, and every process it started
stopped whatever happens."""
import contextlib
import os
import signal
import subprocess
import sys
import time

from ..helpers import REPO, script_env


def descendants(pid):
    """Pids of every process below ``pid`` (from /proc)."""
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def launch_cmd(*args):
    return [sys.executable, '-m', 'gluon_dml.launch'] + [str(a) for a in args]


@contextlib.contextmanager
def job(*args, env=None):
    """``with job('-n', 2, 'train_margin.py', ...) as proc:`` the launcher as a Popen (text
    pipes); on leaving, it and every process it started are killed if still there."""
    proc = subprocess.Popen(launch_cmd(*args), cwd=REPO, env=env or script_env(OMP_NUM_THREADS='1'),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = set()
    proc.seen = seen
    try:
        yield proc
    finally:
        seen.update(descendants(proc.pid))
        if proc.poll() is None:
            proc.kill()
        for pid in seen:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            proc.communicate(timeout=10)
        except (subprocess.TimeoutExpired, ValueError):
            pass


def run_job(*args, timeout=300):
    """Run a launcher job to its end: (returncode, stdout, stderr)."""
    with job(*args) as proc:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err


def wait_for(predicate, proc, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        proc.seen.update(descendants(proc.pid))
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def worker_pids(proc, script='train_margin.py'):
    pids = []
    for pid in descendants(proc.pid):
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                cmd = f.read().split(b'\0')
        except OSError:
            continue
        if any(c.endswith(script.encode()) for c in cmd):
            pids.append(pid)
    return pids
