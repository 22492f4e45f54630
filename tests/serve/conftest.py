"""Fixtures of the service tests: a tiny trained run, a catalogue of digit images made by
``gluon-dml index``, and ``gluon-dml serve`` started as a real process on a free loopback port."""
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import pytest

from ..helpers import REPO, run_script, script_env

CATALOG_IMAGES = 300


def gluon_dml(*args):
    """The command line of ``gluon-dml ARGS`` run from this checkout."""
    return [sys.executable, '-c', 'import sys; from gluon_dml.commands import main; sys.exit(main())'] + \
        [str(a) for a in args]


def write_digits(folder, indices, size=48):
    """scikit-learn digits as PNG files in class folders (dark strokes on white); returns the
    paths in order."""
    from PIL import Image
    from sklearn.datasets import load_digits
    d = load_digits()
    paths = []
    for i in indices:
        sub = os.path.join(str(folder), str(d.target[i]))
        os.makedirs(sub, exist_ok=True)
        img = (255 - d.images[i] * 16).clip(0, 255).astype('uint8')
        path = os.path.join(sub, '%04d.png' % i)
        Image.fromarray(img).resize((size, size), Image.NEAREST).save(path)
        paths.append(path)
    return paths


def bomb_png(width, height):
    """A PNG of a few hundred bytes whose header declares width x height pixels."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 1, 0, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\x00' * 4096)) + chunk(b'IEND', b''))


@pytest.fixture(scope='session')
def digits_catalog(tmp_path_factory):
    """``(run, images folder, catalogue)``: a 1-epoch digits run and a faiss catalogue of
    300 digit images made by ``gluon-dml index``. Tests copy the catalogue before changing it."""
    root = tmp_path_factory.mktemp('serve')
    run = root / 'run'
    run_script('train_margin.py', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '3',
               '--no-progress', '--save-dir', run, check=True, env=script_env(OMP_NUM_THREADS='1'))
    images = root / 'images'
    write_digits(images, range(CATALOG_IMAGES))
    cat = root / 'catalog'
    proc = subprocess.run(gluon_dml('index', run, '--images', images, '--out', cat, '--no-progress'),
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env=script_env(OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, images, cat


@pytest.fixture
def catalog_copy(digits_catalog, tmp_path):
    """A copy of the catalogue this test may change."""
    dst = tmp_path / 'catalog'
    shutil.copytree(str(digits_catalog[2]), str(dst))
    return dst


class Server(object):
    """``gluon-dml serve CATALOG --port 0 ARGS`` in a subprocess: ``url`` once it printed its
    address; its output goes to files (a pipe nobody reads would block it)."""

    def __init__(self, catalog, *args, folder=None):
        self.folder = str(folder or os.path.dirname(str(catalog)))
        self.stamp = '%d-%d' % (os.getpid(), int(time.time() * 1e6))
        self.out_path = os.path.join(self.folder, 'serve-%s.out' % self.stamp)
        self.err_path = os.path.join(self.folder, 'serve-%s.err' % self.stamp)
        with open(self.out_path, 'w') as out, open(self.err_path, 'w') as err:
            self.proc = subprocess.Popen(gluon_dml('serve', catalog, '--port', 0, *args), cwd=REPO,
                                         stdout=out, stderr=err, env=script_env(OMP_NUM_THREADS='1'))
        self.url = self._wait_for_address()

    def _wait_for_address(self, timeout=180):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(r'at (http://127\.0\.0\.1:\d+)/', self.stdout())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.kill()
        raise AssertionError('gluon-dml serve did not start:\n%s\n%s' % (self.stdout(), self.stderr()[-3000:]))

    def stdout(self):
        with open(self.out_path) as f:
            return f.read()

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Send ``sig`` and wait for the process; returns its exit code."""
        if self.alive():
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError('gluon-dml serve did not stop within %d s of %s' % (timeout, sig))

    def kill(self):
        if self.alive():
            self.proc.kill()
            self.proc.wait(30)

    def rss_kib(self):
        with open('/proc/%d/status' % self.proc.pid) as f:
            return int(re.search(r'VmRSS:\s+(\d+)', f.read()).group(1))


@pytest.fixture
def serve(tmp_path):
    """``serve(catalog, *flags) -> Server``; every server still running is killed at the end."""
    servers = []

    def start(catalog, *args):
        server = Server(catalog, *args, folder=tmp_path)
        servers.append(server)
        return server
    yield start
    for server in servers:
        server.kill()


@pytest.fixture(scope='session')
def shared_server(digits_catalog, tmp_path_factory):
    """One server for the tests that change nothing: a copy of the catalogue, a 1 MiB body
    limit (the 413 test stays cheap) and a 40 ms batching delay (concurrent queries batch)."""
    folder = tmp_path_factory.mktemp('shared')
    cat = folder / 'catalog'
    shutil.copytree(str(digits_catalog[2]), str(cat))
    server = Server(cat, '--max-upload-mb', '1', '--max-delay-ms', '40', '--max-batch', '8',
                    folder=folder)
    yield server
    server.kill()
