"""Start a distributed training job on MXNet's parameter server.

    python -m gluon_dml.launch -n 2 train_margin.py --kvstore dist_sync --batch-size 64
    python -m gluon_dml.launch -n 4 -s 2 --hosts hosts.txt train_margin.py --kvstore dist_sync ...

starts one scheduler, ``-s`` servers (default 1, or one per host with ``--hosts``)
and ``-n`` workers, each with the ``DMLC_*`` variables of the job: on this machine over the
loopback interface, or with ``--hosts FILE`` (one host per line, ``host`` or ``host:slots``)
over ssh, the workers and servers spread round-robin over the hosts and the scheduler on this
machine. Each worker runs the script with its arguments (``--kvstore`` is added when absent).

The launcher watches the processes: when one fails (a worker killed, an error) it stops every
other process of the job and prints one line naming the failed worker's rank; SIGINT and
SIGTERM are forwarded to the workers, which agree on a step, let rank 0 save a checkpoint and
exit (continue with the same command and ``--resume``). Its exit code is the first failing
worker's (130 / 143 after a signal; 128 + N for a worker killed by signal N, as a shell
reports it: 137 for SIGKILL), else 0.

MXNet's own ``tools/launch.py`` (dmlc_tracker) does not run on Python 3.11; this one needs
nothing but the standard library (and ssh for ``--hosts``).
"""
import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

__all__ = ['main', 'Job', 'free_port', 'read_hosts']

_GRACE = 5.0          # seconds between SIGTERM and SIGKILL when stopping a job
_STOPPED_NOTE_AFTER = 10.0      # seconds a stopped process waits before the launcher says so


def free_port(host='127.0.0.1'):
    """A TCP port free on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def read_hosts(path):
    """Hosts of a host file: one per line, ``host`` or ``host:slots`` (that many processes
    before the next host), ``#`` comments; returns the list with each host repeated per slot.
    A file that cannot be read or holds a bad line is a ValueError naming ``--hosts``."""
    hosts = []
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise ValueError('--hosts %s: no such file.' % path) from None
    except IsADirectoryError:
        raise ValueError('--hosts %s is a folder, not a host file.' % path) from None
    except UnicodeDecodeError:
        raise ValueError('--hosts %s is not a text file (one host or host:slots a line).'
                         % path) from None
    except OSError as err:
        raise ValueError('--hosts %s cannot be read: %s.' % (path, err.strerror or err)) from None
    for number, line in enumerate(lines, 1):
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        host, _, slots = line.partition(':')
        if not host or (slots and not (slots.isdigit() and int(slots) >= 1)) or \
                any(c.isspace() for c in line):
            raise ValueError('--hosts %s: bad line %d %r (host or host:slots, slots at least 1).'
                             % (path, number, line))
        hosts.extend([host] * (int(slots) if slots else 1))
    if not hosts:
        raise ValueError('--hosts %s names no host.' % path)
    return hosts


class _Proc(object):
    """One process of the job and the tail of its stderr."""

    def __init__(self, role, index, host, popen, rank_file=None):
        self.role, self.index, self.host, self.popen = role, index, host, popen
        self.rank_file = rank_file
        self.tail = []
        self._lock = threading.Lock()

    @property
    def rank(self):
        if self.rank_file and os.path.exists(self.rank_file):
            try:
                with open(self.rank_file) as f:
                    return int(f.read().strip())
            except (OSError, ValueError):
                return None
        return None

    def name(self):
        if self.role == 'worker' and self.rank_file is None:     # remote: its rank is not known here
            return 'worker process %d (local pid %d, on %s)' % (self.index, self.popen.pid, self.host)
        if self.role == 'worker':
            rank = self.rank
            return 'worker of rank %s (pid %d on %s)' % (
                rank if rank is not None else '? (it had not joined yet), process %d' % self.index,
                self.popen.pid, self.host)
        return '%s %d (pid %d on %s)' % (self.role, self.index, self.popen.pid, self.host)

    def pump(self, echo):
        """Copy the process's stderr to ours (``echo``), keeping its last lines."""
        partial = b''
        stream = self.popen.stderr
        while True:
            chunk = stream.read1(4096) if hasattr(stream, 'read1') else stream.read(4096)
            if not chunk:
                break
            if echo:
                try:
                    sys.stderr.buffer.write(chunk)
                    sys.stderr.buffer.flush()
                except (OSError, ValueError):
                    pass
            partial += chunk
            *lines, partial = partial.replace(b'\r', b'\n').split(b'\n')
            with self._lock:
                self.tail.extend(x.decode('utf-8', 'replace') for x in lines if x.strip())
                del self.tail[:-20]
        if partial.strip():
            with self._lock:
                self.tail.append(partial.decode('utf-8', 'replace'))

    def last_message(self):
        with self._lock:
            for line in reversed(self.tail):
                if line.strip():
                    return line.strip()
        return ''


def _is_stopped(pid):
    """Whether process ``pid`` is stopped (state T in /proc; False where there is no /proc)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'T'
    except (OSError, IndexError):
        return False


def _describe_code(code):
    if code is None:
        return 'is still running'
    if code < 0:
        try:
            return 'was killed by %s' % signal.Signals(-code).name
        except ValueError:
            return 'was killed by signal %d' % -code
    return 'exited with code %d' % code


def _die_with_parent():
    """In a child, before exec: Linux kills it when the launcher dies, even by SIGKILL (its own
    session keeps it from the terminal's signals, so without this a killed launcher left the
    whole job running). SIGKILL, not SIGTERM: the scheduler and servers go at the same moment, so
    workers asked to stop could not agree on a step and would hang; the last checkpoint is whole
    (written under a temporary name), and --resume continues from it. A launcher that is only
    asked to stop (SIGINT, SIGTERM, SIGHUP) stops the job cleanly instead. Elsewhere nothing is
    done."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)          # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Job(object):
    """The scheduler, servers and workers of one job; :meth:`run` starts and watches them."""

    def __init__(self, command, num_workers, num_servers=1, hosts=None, port=None,
                 root_uri=None, ssh='ssh -o BatchMode=yes -o StrictHostKeyChecking=no',
                 env=None, threads=None, quiet_servers=True):
        if num_workers < 1 or num_servers < 1:
            raise ValueError('-n (workers) and -s (servers) must be at least 1, got %d and %d.'
                             % (num_workers, num_servers))
        self.command, self.num_workers, self.num_servers = list(command), num_workers, num_servers
        self.hosts = hosts
        self.root_uri = root_uri or ('127.0.0.1' if not hosts else _this_host_address())
        self.port = port or free_port('127.0.0.1' if not hosts else '')
        self.ssh = shlex.split(ssh)
        self.extra_env = dict(env or {})
        self.threads = threads
        self.quiet_servers = quiet_servers
        self.procs = []
        self._signal = None
        self._aborted = False                   # stopped at once by a second signal
        remove_stale_folders()
        self._tmp = tempfile.mkdtemp(prefix='%s%d-' % (_TMP_PREFIX, os.getpid()))

    # -- environment ---------------------------------------------------------------------------
    def _env(self, role, host):
        env = {'DMLC_ROLE': role, 'DMLC_PS_ROOT_URI': self.root_uri,
               'DMLC_PS_ROOT_PORT': str(self.port), 'DMLC_NUM_SERVER': str(self.num_servers),
               'DMLC_NUM_WORKER': str(self.num_workers)}
        if host in (None, 'localhost', '127.0.0.1'):
            env['DMLC_NODE_HOST'] = '127.0.0.1'     # every process listens on the loopback
        if self.threads:
            # the servers too: their thread count was seen to change the last bits of the sums
            # (a job of 2 workers then drifts from 2 devices of one process)
            env.setdefault('OMP_NUM_THREADS', str(self.threads))
        env.update(self.extra_env)
        return env

    def _start(self, role, index, argv, host):
        env = self._env(role, host)
        rank_file = None
        if role == 'worker' and self.hosts is None:
            rank_file = os.path.join(self._tmp, 'worker-%d.rank' % index)
            env['GLUON_DML_RANK_FILE'] = rank_file
        if self.hosts is None or role == 'scheduler':
            full_env = dict(os.environ)
            if _omp_from_user():
                env.pop('OMP_NUM_THREADS', None)          # the user's setting wins
            else:
                full_env.pop('OMP_NUM_THREADS', None)     # the package's own default, not theirs
            full_env.update(env)
            cmd = argv
        else:
            remote = 'cd %s && exec env %s %s' % (
                shlex.quote(os.getcwd()), ' '.join('%s=%s' % (k, shlex.quote(v))
                                                   for k, v in sorted(env.items())),
                ' '.join(shlex.quote(a) for a in argv))
            cmd = self.ssh + [host, remote]
            full_env = dict(os.environ)
        popen = subprocess.Popen(cmd, env=full_env, stdin=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, start_new_session=True,
                                 preexec_fn=_die_with_parent)
        proc = _Proc(role, index, host or '127.0.0.1', popen, rank_file)
        echo = role == 'worker' or not self.quiet_servers
        t = threading.Thread(target=proc.pump, args=(echo,), daemon=True)
        t.start()
        proc.thread = t
        self.procs.append(proc)
        return proc

    # -- running -------------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        name = signal.Signals(signum).name
        if self._signal is not None:            # a second one: stop everything now
            self._signal = name
            self._aborted = True
            self._kill_all(grace=0.5)
            return
        self._signal = name
        sys.stderr.write('\nlaunch: %s received: passed to the workers, which stop together '
                         'after a checkpoint (again to abort).\n' % name)
        for p in self.procs:
            if p.role == 'worker' and p.popen.poll() is None:
                self._send(p, signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    def _send(self, proc, sig):
        try:
            os.killpg(proc.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill_all(self, grace=_GRACE):
        alive = [p for p in self.procs if p.popen.poll() is None]
        for p in alive:
            self._send(p, signal.SIGTERM)
        deadline = time.time() + grace
        while time.time() < deadline and any(p.popen.poll() is None for p in alive):
            time.sleep(0.05)
        for p in alive:
            if p.popen.poll() is None:
                self._send(p, signal.SIGKILL)
        for p in alive:
            try:
                p.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def start(self):
        python = [sys.executable, '-c', 'import mxnet']      # servers and scheduler
        self._start('scheduler', 0, python, None)
        where = self.hosts or [None]
        for i in range(self.num_servers):
            self._start('server', i, python, where[i % len(where)])
        for i in range(self.num_workers):
            self._start('worker', i, self.command, where[i % len(where)])

    def run(self, timeout=None):
        """Start the job, forward signals, wait; returns the exit code (see the module doc)."""
        handlers = {}
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):     # SIGHUP: the terminal closed
            try:
                handlers[s] = signal.signal(s, self._on_signal)
            except ValueError:
                pass
        started = time.time()
        try:
            self.start()
            return self._watch(started, timeout)
        finally:
            self._kill_all(grace=1.0)
            for s, h in handlers.items():
                signal.signal(s, h)
            for p in self.procs:
                if getattr(p, 'thread', None) is not None:
                    p.thread.join(timeout=2)
            _rmtree(self._tmp)

    def _watch(self, started, timeout):
        workers = [p for p in self.procs if p.role == 'worker']
        others = [p for p in self.procs if p.role != 'worker']
        grace_until = None
        stopped_since = {}                  # a worker stopped by SIGSTOP / SIGTSTP: since when
        while True:
            time.sleep(0.1)
            self._note_stopped(self.procs, stopped_since)
            if self._aborted and all(p.popen.poll() is not None for p in workers):
                # the launcher killed them (their codes say SIGTERM or SIGKILL, not a failure)
                code = 130 if self._signal == 'SIGINT' else 143
                sys.stderr.write('launch: the job was stopped at once on a second %s (exit %d); '
                                 'continue it with the same command and --resume (from its last '
                                 'checkpoint).\n' % (self._signal, code))
                return code
            failed = [p for p in workers if p.popen.poll() not in (None, 0)]
            if failed:
                stops = (130, 143, -signal.SIGINT, -signal.SIGTERM) if self._signal else (130, 143)
                first = min(failed, key=lambda p: (p.popen.returncode in stops, p.index))
                code = first.popen.returncode
                if code in stops:
                    code = {-signal.SIGINT: 130, -signal.SIGTERM: 143}.get(code, code)
                    # a signal (ours, forwarded, or one sent to a worker): the workers stop
                    # together after rank 0's checkpoint; let them all finish
                    self._wait_workers(workers, _GRACE * 6)
                    if all(p.popen.poll() is not None for p in workers):
                        sys.stderr.write('launch: the job stopped on a signal (exit %d); continue it '
                                         'with the same command and --resume.\n' % code)
                        return code
                time.sleep(0.3)                    # let its last words reach the pipe
                self._fail(first, code)
                return code if code > 0 else 128 - code      # killed by signal N: 128 + N, as a shell
            dead = [p for p in others if p.popen.poll() is not None
                    and any(w.popen.poll() is None for w in workers)]
            if dead:
                # a worker's failure usually takes the scheduler with it: name the worker
                if grace_until is None:
                    grace_until = time.time() + 2.0
                elif time.time() > grace_until:
                    self._fail(dead[0], dead[0].popen.returncode)
                    return 1
            if all(p.popen.poll() == 0 for p in workers):
                # the servers stop when the workers leave the job; workers of this machine that
                # never said their rank never joined it (a command that is not a training command
                # with --kvstore dist_*, or --help): the scheduler would wait for them for ever
                joined = self.hosts is not None or any(p.rank is not None for p in workers)
                deadline = time.time() + (30 if joined else 3)
                while time.time() < deadline and any(p.popen.poll() is None for p in others):
                    time.sleep(0.1)
                if any(p.popen.poll() is None for p in others):
                    sys.stderr.write(
                        'launch: note: the workers exited (code 0) without joining the job: %s '
                        'created no --kvstore dist_* store (a train_*.py script or gluon-dml '
                        'train-* command does); stopped the scheduler and servers.\n'
                        % ' '.join(shlex.quote(a) for a in self.command))
                return 0
            if timeout is not None and time.time() - started > timeout:
                sys.stderr.write('launch: error: the job ran past its time limit (%gs); stopped '
                                 'every process.\n' % timeout)
                return 124

    @staticmethod
    def _note_stopped(procs, stopped_since, after=_STOPPED_NOTE_AFTER):
        """Say once when a process of this machine has been stopped (SIGSTOP, SIGTSTP) for
        ``after`` seconds: the job waits for it, until --timeout if one was given."""
        now = time.time()
        for p in procs:
            if p.rank_file is None and p.role == 'worker' or p.popen.poll() is not None:
                continue                        # a remote worker: its local process is ssh
            if not _is_stopped(p.popen.pid):
                stopped_since.pop(p, None)
                continue
            since = stopped_since.setdefault(p, now)
            if since is not None and now - since >= after:
                sys.stderr.write('launch: note: %s has been stopped for %.0f s (a SIGSTOP or '
                                 'Ctrl-Z); the job waits for it: kill -CONT %d continues it.\n'
                                 % (p.name(), now - since, p.popen.pid))
                stopped_since[p] = None         # said once, until it runs again

    def _wait_workers(self, workers, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline and any(p.popen.poll() is None for p in workers):
            time.sleep(0.1)

    def _fail(self, proc, code):
        others = [p for p in self.procs if p is not proc and p.popen.poll() is None]
        name = proc.name()
        self._kill_all()
        last = proc.last_message()
        sys.stderr.write('launch: error: %s %s; stopped the job (%d other process%s)%s\n' % (
            name, _describe_code(code), len(others), '' if len(others) == 1 else 'es',
            ('; its last message: %s' % last[-300:]) if last else ''))
        sys.stderr.flush()


def _omp_from_user():
    """Whether OMP_NUM_THREADS was set by the user (importing gluon_dml sets it otherwise)."""
    try:
        import gluon_dml
        return bool(getattr(gluon_dml, 'OMP_FROM_USER', 'OMP_NUM_THREADS' in os.environ))
    except ImportError:
        return 'OMP_NUM_THREADS' in os.environ


def _cannot_listen(address, port, port_flag, uri_flag):
    """Why the scheduler could not listen at ``address:port`` (the flags as given), or None: its
    own message was 'bind failed' from MXNet, after the job had started."""
    import errno
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
            return None
        except socket.gaierror:
            return ('--root-uri %s is not a host name or address this machine knows (the scheduler '
                    'listens there).' % uri_flag)
        except OSError as err:
            if err.errno == errno.EADDRINUSE and port_flag:
                return ('--port %d is in use on this machine (the scheduler listens there); '
                        'leave --port out for a free one.' % port_flag)
            if err.errno == errno.EADDRNOTAVAIL and uri_flag:
                return ('--root-uri %s is not an address of this machine (the scheduler listens '
                        'there; leave it out for this machine\'s).' % uri_flag)
            what = ('--root-uri %s' % uri_flag if uri_flag else '') + \
                (' ' if uri_flag and port_flag else '') + ('--port %d' % port_flag if port_flag else '')
            return ('%s: the scheduler cannot listen there (%s).'
                    % (what, err.strerror or err))


def _is_loopback(host):
    """Whether ``host`` (a name or an address) is this machine's loopback; a name that does not
    resolve here (an ssh alias, say) is another machine."""
    import ipaddress
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


def _this_host_address():
    try:
        return socket.gethostbyname(socket.getfqdn())
    except OSError:
        return socket.gethostbyname(socket.gethostname())


def _rmtree(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


_TMP_PREFIX = 'gluon-dml-launch-'


def remove_stale_folders(root=None):
    """Remove the scratch folders (``TMP/gluon-dml-launch-PID-*``) of launchers that are gone:
    a launcher killed with SIGKILL cannot remove its own. A folder whose launcher still runs, or
    that is not this user's, stays. Returns the folders removed."""
    import glob
    root = root or tempfile.gettempdir()
    removed = []
    for path in glob.glob(os.path.join(root, _TMP_PREFIX + '*-*')):
        pid = os.path.basename(path)[len(_TMP_PREFIX):].split('-', 1)[0]
        try:
            if not pid.isdigit() or os.stat(path).st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)                # the launcher runs (or the pid was reused)
        except ProcessLookupError:
            _rmtree(path)
            removed.append(path)
        except OSError:                         # another user's process, or the folder went
            continue
    return removed


def build_parser():
    p = argparse.ArgumentParser(
        prog='python -m gluon_dml.launch', allow_abbrev=False,
        usage='%(prog)s -n WORKERS [-s SERVERS] [--hosts FILE] SCRIPT [ARGS ...]',
        description='Start a distributed training job: one scheduler, SERVERS servers and '
                    'WORKERS workers running SCRIPT (a train_*.py script or a command) with the '
                    'DMLC_* variables of MXNet\'s parameter server, on this machine (loopback) '
                    'or over ssh on the hosts of FILE. Every process stops when one fails.')
    p.add_argument('-n', '--num-workers', type=int, required=True, metavar='WORKERS',
                   help='number of workers')
    p.add_argument('-s', '--num-servers', type=int, default=None, metavar='SERVERS',
                   help='number of servers (default 1 on this machine, one per host with --hosts)')
    p.add_argument('--hosts', default=None, metavar='FILE',
                   help='host file (one "host" or "host:slots" per line); servers and workers are '
                        'started there over ssh, the scheduler here (default: all on this '
                        'machine, over the loopback interface)')
    p.add_argument('--port', type=int, default=None, help='scheduler port (default: a free one)')
    p.add_argument('--root-uri', default=None, metavar='ADDRESS',
                   help='address the other hosts reach the scheduler at (default: this host\'s; '
                        '127.0.0.1 without --hosts)')
    p.add_argument('--ssh', default='ssh -o BatchMode=yes -o StrictHostKeyChecking=no',
                   help='the ssh command for --hosts (it gets HOST COMMAND)')
    p.add_argument('--env', action='append', default=[], metavar='VAR=VALUE',
                   help='an environment variable for every process (repeatable), e.g. '
                        'DMLC_INTERFACE=eth0')
    p.add_argument('--threads', type=int, default=None, metavar='N',
                   help='OMP_NUM_THREADS of each worker and server (default: the cores of this '
                        'machine divided among its workers; OMP_NUM_THREADS if set)')
    p.add_argument('--timeout', type=float, default=None, metavar='SECONDS',
                   help='stop the job (exit code 124) after this long (default: no limit)')
    p.add_argument('--verbose-servers', action='store_true',
                   help='show the scheduler and servers\' messages (default: only when one fails)')
    p.add_argument('script', metavar='SCRIPT',
                   help='train_*.py (run with this Python) or a command (gluon-dml, python ...)')
    p.add_argument('args', nargs=argparse.REMAINDER, metavar='ARGS',
                   help='the arguments of every worker')
    return p


# what --env must not change: a different DMLC_NUM_WORKER made the scheduler wait forever for
# workers that never come, a DMLC_ROLE turned the scheduler into a worker
_JOB_VARIABLES = {
    'DMLC_ROLE': 'scheduler, server or worker',
    'DMLC_NUM_WORKER': 'give -n',
    'DMLC_NUM_SERVER': 'give -s',
    'DMLC_PS_ROOT_PORT': 'give --port',
    'DMLC_PS_ROOT_URI': 'give --root-uri',
}


def _kvstore_of(args):
    """The ``--kvstore`` value among a worker's arguments, or None."""
    args = list(args)
    for i, a in enumerate(args):
        if a == '--kvstore' and i + 1 < len(args):
            return args[i + 1]
        if a.startswith('--kvstore='):
            return a.split('=', 1)[1]
    return None


def worker_command(script, args, kvstore='dist_sync'):
    """The command of each worker: a ``.py`` script runs with this Python; ``--kvstore`` is
    added (``dist_sync``) when the arguments do not give one."""
    args = list(args)
    if not any(a == '--kvstore' or a.startswith('--kvstore=') for a in args):
        args += ['--kvstore', kvstore]
    if script.endswith('.py'):
        return [sys.executable, script] + args
    return [script] + args


class _Refused(Exception):
    """A launcher command that cannot start: its message, printed as ``launch: error: ...``."""


def _job_of(a, unknown):
    """The :class:`Job` the parsed command ``a`` asks for, or :class:`_Refused` naming the flag
    that cannot work: everything is checked before any process starts."""
    if unknown:             # a training flag before the command (argparse: 'unrecognized')
        raise _Refused('%s is not a flag of the launcher; the training command\'s flags go after '
                       'it: python -m gluon_dml.launch -n %d [launcher flags] SCRIPT %s ...'
                       % (unknown[0], a.num_workers, unknown[0]))
    for flag, value in (('-n', a.num_workers), ('-s', a.num_servers), ('--threads', a.threads)):
        if value is not None and value < 1:
            raise _Refused('%s must be at least 1, got %d.' % (flag, value))
    kvstore = _kvstore_of(a.args)
    if kvstore is not None and not kvstore.startswith('dist'):
        what = ('--kvstore %s is a single-process store' % kvstore if kvstore.strip() else
                '--kvstore is empty')
        raise _Refused('%s; a job started by the launcher trains with dist_sync, dist_device_sync '
                       'or dist_async (or leave --kvstore out: dist_sync).' % what)
    if a.timeout is not None and not a.timeout > 0:          # nan too
        raise _Refused('--timeout must be a positive number of seconds (leave it out for no '
                       'limit), got %s.' % a.timeout)
    if a.port is not None and not 0 <= a.port <= 65535:
        raise _Refused('--port must be a TCP port, 1 to 65535 (0 or left out: a free one), got %d.'
                       % a.port)
    env = {}
    for item in a.env:
        key, eq, value = item.partition('=')
        if not eq or not key:
            raise _Refused('--env takes VAR=VALUE, got %r.' % item)
        if key in _JOB_VARIABLES:
            raise _Refused('--env %s: the launcher sets %s for each process itself (%s).'
                           % (item, key, _JOB_VARIABLES[key]))
        env[key] = value
    try:
        hosts = read_hosts(a.hosts) if a.hosts else None
    except (OSError, ValueError) as err:
        raise _Refused(str(err))
    root_uri = a.root_uri
    if hosts:
        try:
            ssh = shlex.split(a.ssh)
        except ValueError as err:
            raise _Refused('--ssh %r: %s.' % (a.ssh, err))
        if not ssh or shutil.which(ssh[0]) is None:
            raise _Refused('--ssh %r: no such program here; --hosts starts the servers and '
                           'workers with it (HOST COMMAND).' % a.ssh)
        # the scheduler's address goes to every host: a loopback one reaches this machine only,
        # and workers elsewhere waited for a scheduler on their own loopback for ever
        try:
            root_uri = root_uri or _this_host_address()
        except OSError:                  # no address for this machine's name: loopback only
            root_uri = '127.0.0.1'
        others = [h for h in dict.fromkeys(hosts) if not _is_loopback(h)]
        if others and _is_loopback(root_uri):
            where = ('--root-uri %s is' % a.root_uri if a.root_uri else
                     'the scheduler\'s address is %s (what this machine\'s name resolves to),'
                     % root_uri)
            raise _Refused('--hosts %s names other machines (%s), but %s a loopback address they '
                           'cannot reach; give --root-uri with this machine\'s address on their '
                           'network.' % (a.hosts, ', '.join(others[:3]) +
                                         (', ...' if len(others) > 3 else ''), where))
    if a.port or a.root_uri:
        problem = _cannot_listen(a.root_uri or ('127.0.0.1' if not hosts else ''), a.port or 0,
                                 a.port, a.root_uri)
        if problem:
            raise _Refused(problem)
    servers = a.num_servers or (len(set(hosts)) if hosts else 1)
    threads = a.threads
    if threads is None and not hosts:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
        threads = max(1, cores // a.num_workers)
    if a.script.endswith('.py') and not os.path.exists(a.script):
        raise _Refused('no script %s here (%s).' % (a.script, os.getcwd()))
    if not a.script.endswith('.py') and not hosts and shutil.which(a.script) is None:
        raise _Refused('no command %s (neither a train_*.py script nor a program on the PATH).'
                       % a.script)
    try:
        return Job(worker_command(a.script, a.args), a.num_workers, servers, hosts=hosts,
                   port=a.port, root_uri=root_uri, ssh=a.ssh, env=env, threads=threads,
                   quiet_servers=not a.verbose_servers)
    except ValueError as err:
        raise _Refused(str(err))


def main(argv=None):
    a, unknown = build_parser().parse_known_args(argv)
    try:
        job = _job_of(a, unknown)
    except _Refused as err:
        print('launch: error: %s' % err, file=sys.stderr)
        return 2
    return job.run(timeout=a.timeout)

if __name__ == '__main__':
    sys.exit(main())
