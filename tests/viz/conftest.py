"""Fixtures of the dashboard tests: real Visdom servers on free loopback ports, and reading their
windows back through Visdom's own client."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from ..helpers import REPO, script_env


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class VisdomServer:
    """``python -m gluon_dml.viz.server`` (visdom's server without its download step) as a
    subprocess on a free loopback port; ``stop()`` kills it."""

    def __init__(self, workdir, install=False, port=None):
        self.port = port or free_port()
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.log_path = os.path.join(self.workdir, 'server-%d.log' % self.port)
        self.url = 'http://127.0.0.1:%d' % self.port
        cmd = [sys.executable, '-m', 'gluon_dml.viz.server', '-port', str(self.port),
               '--hostname', '127.0.0.1', '-env_path', os.path.join(self.workdir, 'envs'),
               '-logging_level', 'INFO']
        if not install:
            cmd.insert(3, '--no-install')
        self._log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO,
                                     env=script_env())
        self.wait_up(timeout=300 if install else 60)

    def wait_up(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('the Visdom server exited (%s):\n%s' % (self.proc.returncode, self.log()))
            try:
                with urllib.request.urlopen(self.url + '/', timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError('the Visdom server did not come up in %ds:\n%s' % (timeout, self.log()))

    def log(self):
        self._log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self._log.close()

    # -- reading the windows back ----------------------------------------------------------------
    def client(self, env):
        from gluon_dml.viz.dashboard import connect
        return connect('http://127.0.0.1', self.port, env)

    def windows(self, env):
        """{window id: window dict} of ``env``, as the server holds it."""
        return json.loads(self.client(env).get_window_data(None, env))

    def envs(self):
        return self.client('main').get_env_list()


def traces(window):
    """{trace name: (xs, ys)} of a plot window."""
    return {t.get('name'): (t['x'], t['y']) for t in window['content']['data']}


@pytest.fixture
def visdom_server(tmp_path):
    servers = []

    def start(**kw):
        s = VisdomServer(tmp_path / ('visdom%d' % len(servers)), **kw)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop()
