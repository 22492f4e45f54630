"""The sink and its sender against real Visdom servers (no training): the windows it draws, and
that nothing in the caller's thread ever waits on the network."""
import json
import socket
import time

import numpy as np
import pytest

from gluon_dml.viz import VisdomSink
from gluon_dml.viz.dashboard import LOSS_WIN, metric_window

from .conftest import free_port, traces


def _feed(sink, epochs=2, per_epoch=3):
    """What the engine sends: loss points, then the epoch record and the embeddings."""
    rng = np.random.RandomState(0)
    emb = rng.randn(60, 8).astype(np.float32)
    labels = np.repeat(np.arange(3), 20)
    images = rng.rand(60, 1, 8, 8).astype(np.float32)
    step = 0
    records = []
    for epoch in range(0, epochs + 1):
        if epoch:
            for _ in range(per_epoch):
                step += 2
                sink.log_iter(step, {'loss': 1.0 / step, 'lr': 1e-3})
        record = {'epoch': epoch, 'recall@1': 0.5 + 0.1 * epoch, 'nmi': 0.2 + 0.05 * epoch}
        records.append(record)
        with open(sink.run_dir + '/log.jsonl', 'a') as f:     # the Logger writes it first
            f.write(json.dumps(record) + '\n')
        sink.log_embeddings(epoch, emb, labels, images)
        sink.log_epoch(epoch, record)
    return records, step


def test_sink_draws_every_window(tmp_path, visdom_server):
    server = visdom_server()
    sink = VisdomSink(str(tmp_path), env='unit', port=server.port, server='http://127.0.0.1',
                      tsne_points=30, last_epoch=2, log_interval=2)
    records, _ = _feed(sink)
    sink.close()
    wins = server.windows('unit')
    assert traces(wins[LOSS_WIN])['loss'] == ([2, 4, 6, 8, 10, 12], [1.0 / s for s in (2, 4, 6, 8, 10, 12)])
    for key in ('recall@1', 'nmi'):
        assert traces(wins[metric_window(key)])[key] == ([0, 1, 2], [r[key] for r in records])
    assert {'tsne', 'retrieval', 'distances', 'run'} <= set(wins)
    assert sum(len(t[0]) for t in traces(wins['tsne']).values()) == 30
    assert sink.channel.dropped == 0 and not sink.channel.warned


def _silent_server():
    """A port that accepts connections and never answers (a hung server)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(('127.0.0.1', 0))
    s.listen(100)
    return s


def test_unreachable_or_hung_server_costs_the_caller_nothing(tmp_path, capfd):
    hung = _silent_server()
    try:
        for port in (free_port(), hung.getsockname()[1]):
            run = tmp_path / str(port)
            run.mkdir()
            t0 = time.time()
            sink = VisdomSink(str(run), env='x', port=port, server='http://127.0.0.1',
                              tsne_interval=0, timeout=1.0, queue_size=8)
            for i in range(1, 3001):
                sink.log_iter(i, {'loss': 1.0})
            sink.log_epoch(1, {'epoch': 1, 'recall@1': 0.5})
            spent = time.time() - t0
            assert spent < 2.0, 'logging waited on the network (%.1fs)' % spent
            t0 = time.time()
            sink.close()
            assert time.time() - t0 < 15
            assert len(open(sink.iter_path).readlines()) == 3000      # the files are complete
            err = capfd.readouterr().err
            assert err.count('cannot reach the Visdom server') == 1, err
            assert 'gluon-dml replay-viz' in err
    finally:
        hung.close()


def test_a_server_started_later_gets_the_whole_run(tmp_path, visdom_server):
    port = free_port()
    sink = VisdomSink(str(tmp_path), env='late', port=port, server='http://127.0.0.1',
                      tsne_points=30, last_epoch=2, log_interval=2, retry_s=0.5)
    records, _ = _feed(sink, epochs=1)
    server = visdom_server(port=port)        # the dashboard comes up after the run started
    time.sleep(0.6)
    sink.log_iter(100, {'loss': 0.01})        # the next update finds it and redraws everything
    sink.close()
    wins = server.windows('late')
    xs, ys = traces(wins[LOSS_WIN])['loss']
    assert xs == [2, 4, 6, 100]
    assert traces(wins[metric_window('recall@1')])['recall@1'] == ([0, 1], [0.5, 0.6])
    assert 'tsne' in wins


def test_a_busy_port_is_one_sentence(tmp_path):
    """gluon-dml visdom-server on a port another server listens on: one line, exit 2, and no
    environment folder written (it was a tornado traceback after writing one)."""
    import subprocess
    import sys
    from ..helpers import REPO, script_env
    busy = socket.socket()
    busy.bind(('127.0.0.1', 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'visdom-server', '--no-install',
                               '-port', str(port), '-env_path', str(tmp_path / 'envs')],
                              capture_output=True, text=True, timeout=120, cwd=REPO, env=script_env())
    finally:
        busy.close()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith('error: Cannot start the Visdom server on port %d' % port), proc.stderr
    assert not (tmp_path / 'envs').exists()


def test_replay_names_a_missing_run_folder_and_a_damaged_views_file(tmp_path):
    import subprocess
    import sys
    import pytest
    from gluon_dml.viz.sink import load_views
    from ..helpers import REPO, script_env
    proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'replay-viz', str(tmp_path / 'nothing')],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=script_env())
    assert proc.returncode == 2
    assert proc.stderr.strip() == 'error: The run folder %s does not exist.' % (tmp_path / 'nothing')
    (tmp_path / 'args.json').write_text('{}')       # a file of the run given: it said 'does not exist'
    proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'replay-viz', str(tmp_path / 'args.json')],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=script_env())
    assert proc.returncode == 2 and proc.stderr.strip() == (
        'error: %s is a file, not a run folder; give the folder that holds its args.json.'
        % (tmp_path / 'args.json')), proc.stderr
    (tmp_path / 'args.json').unlink()
    for follow in ('-1', '0'):          # it updated every second, as if --follow 1 had been given
        proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'replay-viz', str(tmp_path),
                               '--follow', follow], capture_output=True, text=True, timeout=120,
                              cwd=REPO, env=script_env())
        assert proc.returncode == 2 and proc.stderr.strip() == (
            'error: --follow takes the seconds between updates, a positive number; got %s.'
            % float(follow)), proc.stderr
    good = tmp_path / 'views_epoch001.npz'
    np.savez_compressed(str(good), tsne=np.zeros((3, 2)), epoch=np.array(1))
    assert load_views(str(good))['tsne'].shape == (3, 2)
    good.write_bytes(good.read_bytes()[:40])                  # truncated
    with pytest.raises(ValueError, match='views_epoch001.npz is damaged'):
        load_views(str(good))
    np.savez_compressed(str(good), tsne=np.zeros((3, 2)))     # no epoch: it was a KeyError later
    with pytest.raises(ValueError, match=r'views_epoch001.npz is damaged \(ValueError: it holds '
                                         r'no epoch number\)'):
        load_views(str(good))


def test_damaged_lines_of_the_run_files_are_skipped_not_fatal(tmp_path, visdom_server):
    """iterations.jsonl / log.jsonl with lines a crash or an editor left (not UTF-8, no step, a
    step that is text, a JSON list): a resumed --use_viz run keeps its dashboard (the sink raised
    KeyError / UnicodeDecodeError on the first loss point and was switched off for the rest of the
    run) and replay-viz draws the readable lines (it said 'unexpected KeyError (a bug?)' or a bare
    codec error)."""
    import subprocess
    import sys
    from ..helpers import REPO, script_env
    server = visdom_server()
    (tmp_path / 'args.json').write_text(json.dumps({'name': 'damaged', 'log_interval': 2}))
    damage = b'{"loss": 1}\n\xff\xfe\n[1]\n{"step": "x", "loss": 2}\n'
    (tmp_path / 'iterations.jsonl').write_bytes(b'{"step": 2, "loss": 0.5}\n' + damage
                                                + b'{"step": 4, "loss": 0.25}\n')
    (tmp_path / 'log.jsonl').write_bytes(b'{"epoch": 0, "recall@1": 0.5}\n{"epoch": "one"}\n\xff\n'
                                         b'{"epoch": 1, "recall@1": 0.6}\n')
    proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'replay-viz', str(tmp_path),
                           '--viz-server', 'http://127.0.0.1', '--viz-port', str(server.port)],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=script_env())
    assert proc.returncode == 0, proc.stderr
    assert '2 loss points, 2 epochs' in proc.stdout
    wins = server.windows('damaged')
    assert traces(wins[LOSS_WIN])['loss'] == ([2, 4], [0.5, 0.25])
    assert traces(wins[metric_window('recall@1')])['recall@1'] == ([0, 1], [0.5, 0.6])
    # the run resumed at step 6: the sink keeps the readable earlier points and goes on
    sink = VisdomSink(str(tmp_path), env='resumed', port=server.port, server='http://127.0.0.1',
                      tsne_interval=0, log_interval=2)
    before = (tmp_path / 'iterations.jsonl').read_bytes()
    with open(tmp_path / 'iterations.jsonl', 'rb') as old:
        sink.log_iter(6, {'loss': 0.125})
        # the file was replaced whole (it was truncated and rewritten in place: a crash in
        # between lost the loss history), so the old one is still whole
        assert old.read() == before
    sink.log_epoch(2, {'epoch': 2, 'recall@1': 0.7})
    sink.close()
    assert sink.state.loss_points() == [(2, 0.5), (4, 0.25), (6, 0.125)]
    assert traces(server.windows('resumed')[LOSS_WIN])['loss'] == ([2, 4, 6], [0.5, 0.25, 0.125])
    assert [json.loads(line)['step'] for line in (tmp_path / 'iterations.jsonl').read_text().splitlines()] == [2, 4, 6]


def test_a_viz_server_address_no_request_could_use_is_one_sentence(tmp_path):
    """--viz-server with a port or a path in it, or another scheme: the client appends :PORT, so
    http://host:8097 became http://host:8097:8097 and the run trained with one warning and no
    dashboard; now one sentence before the run folder is written (and replay-viz says the same,
    where it said 'cannot reach ... (ConnectionError)'), as a --viz-port out of range already was,
    which left a run folder that only --overwrite could reuse."""
    import subprocess
    import sys
    from ..helpers import REPO, script_env

    def gluon_dml(*argv):
        return subprocess.run([sys.executable, '-m', 'gluon_dml'] + list(argv), capture_output=True,
                              text=True, timeout=300, cwd=REPO, env=script_env())
    run = tmp_path / 'run'
    cases = [(['--viz-server', 'http://127.0.0.1:8098'],
              '--viz-server http://127.0.0.1:8098 has a port in it; give the address without it '
              '(http://127.0.0.1) and the port with --viz-port 8098.'),
             (['--viz-server', 'http://127.0.0.1/visdom'],
              '--viz-server http://127.0.0.1/visdom has a path in it; give the server address alone '
              '(http://127.0.0.1).'),
             (['--viz-server', 'ftp://127.0.0.1'],
              '--viz-server ftp://127.0.0.1 is not an http:// or https:// server address; give one '
              'like http://localhost.'),
             (['--viz-port', '99999'], '--viz-port must be a port number (1-65535), got 99999.')]
    for flags, sentence in cases:
        proc = gluon_dml('train-margin', '--data', 'digits', '--epochs', '1', '--no-progress',
                         '--save-dir', str(run), '--use_viz', *flags)
        assert proc.returncode == 2 and proc.stderr.strip() == 'error: ' + sentence, proc.stderr
        assert not run.exists()
        proc = gluon_dml('replay-viz', str(tmp_path), *flags)
        assert proc.returncode == 2 and proc.stderr.strip() == 'error: ' + sentence, proc.stderr


def test_a_port_or_env_path_the_server_cannot_use_is_one_sentence(tmp_path):
    """gluon-dml visdom-server -port 99999 (it was 'unexpected OverflowError (a bug?)') and an
    -env_path it cannot write (it printed "It's Alive!" and ended in 'unexpected AssertionError
    (a bug?)'): one line, exit 2."""
    import subprocess
    import sys
    from ..helpers import REPO, script_env
    a_file = tmp_path / 'a_file'
    a_file.write_text('not a folder\n')
    cases = [(['-port', '99999'], 'error: -port must be a port number (1-65535), got 99999.'),
             (['-port', str(free_port()), '-env_path', str(a_file / 'envs')],
              'error: -env_path %s is not a folder the Visdom server can write its environments to '
              '(Not a directory); give another.' % (a_file / 'envs'))]
    for argv, sentence in cases:
        proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'visdom-server', '--no-install']
                              + argv, capture_output=True, text=True, timeout=120, cwd=REPO,
                              env=script_env())
        assert proc.returncode == 2 and proc.stderr.strip() == sentence, proc.stderr[-2000:]


_REFUSING_SERVER = '''
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def _answer(self, code):
        self.send_response(code)
        self.send_header('Content-Length', '0')
        self.end_headers()
    def do_GET(self):
        self._answer(200)
    def do_POST(self):
        self.rfile.read(int(self.headers.get('Content-Length') or 0))
        # a proxy's limit on the size of a request: every update, or those past the first
        # (Visdom's client first asks for its environment, /env/NAME)
        self._answer(413 if sys.argv[1] == 'all' or not self.path.startswith('/env/') else 200)
    def log_message(self, *args):
        pass
s = http.server.HTTPServer(('127.0.0.1', 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
'''


@pytest.mark.parametrize('refuses', ['all', 'draws'])
def test_replay_names_a_server_that_refuses_its_updates(tmp_path, refuses):
    """A server (or a proxy before it) that answers updates with an HTTP error: one sentence naming
    it and the answer. It was 'unexpected DashboardRejected (a bug?)', exit 1, or, refused at the
    first request, 'cannot reach the Visdom server ... start one'."""
    import subprocess
    import sys
    from ..helpers import REPO, script_env
    (tmp_path / 'args.json').write_text(json.dumps({'name': 'refused', 'log_interval': 2}))
    (tmp_path / 'log.jsonl').write_text('{"epoch": 0, "recall@1": 0.5}\n')
    server = subprocess.Popen([sys.executable, '-c', _REFUSING_SERVER, refuses],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        proc = subprocess.run([sys.executable, '-m', 'gluon_dml', 'replay-viz', str(tmp_path),
                               '--viz-server', 'http://127.0.0.1', '--viz-port', str(port)],
                              capture_output=True, text=True, timeout=120, cwd=REPO,
                              env=script_env())
    finally:
        server.kill()
        server.wait()
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        'error: the Visdom server at http://127.0.0.1:%d refused an update (http://127.0.0.1:%d/'
        % (port, port)), proc.stderr
    assert lines[0].endswith(" answered HTTP 413); the dashboard of env 'refused' is %s."
                             % ('not drawn' if refuses == 'all' else 'partly drawn')), proc.stderr


def test_replay_follow_waits_for_a_server_that_went_away_and_replays_what_it_missed(tmp_path,
                                                                                   visdom_server):
    """replay-viz --follow exited ('lost the Visdom server') when the server stopped mid-follow.
    Now one line says it waits for the server; it keeps reading the run's files; when a server
    answers again on the same port (a new process, its windows empty) every window is drawn whole,
    the points added while it was away included; Ctrl-C still stops it cleanly (exit 0)."""
    import signal
    import subprocess
    import sys
    from ..helpers import REPO, script_env, with_sigint

    def wait_for(text, stream, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in stream.read_text():
                return
            assert proc.poll() is None, (out.read_text(), err.read_text())
            time.sleep(0.2)
        raise AssertionError('no %r in %s:\n%s\n%s' % (text, stream.name, out.read_text(),
                                                       err.read_text()))

    port = free_port()
    server = visdom_server(port=port)
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'args.json').write_text(json.dumps({'name': 'followed', 'log_interval': 2}))
    (run / 'iterations.jsonl').write_text('{"step": 2, "loss": 0.5}\n{"step": 4, "loss": 0.25}\n')
    (run / 'log.jsonl').write_text('{"epoch": 0, "recall@1": 0.5}\n')
    out, err = tmp_path / 'out.txt', tmp_path / 'err.txt'
    with open(out, 'w') as fo, open(err, 'w') as fe:
        # started as a script's background job starts (SIGINT ignored): Ctrl-C must stop it anyway
        proc = subprocess.Popen(with_sigint([sys.executable, '-m', 'gluon_dml', 'replay-viz', str(run),
                                             '--viz-server', 'http://127.0.0.1', '--viz-port',
                                             str(port), '--follow', '1']),
                                stdout=fo, stderr=fe, cwd=REPO, env=script_env())
    try:
        wait_for('2 loss points, 1 epochs', out)
        assert traces(server.windows('followed')[LOSS_WIN])['loss'] == ([2, 4], [0.5, 0.25])
        server.stop()
        wait_for('lost the Visdom server at http://127.0.0.1:%d (connection refused); waiting for '
                 'it to come back, still following %s (Ctrl-C stops).' % (port, run), err)
        with open(run / 'iterations.jsonl', 'a') as f:        # the run goes on meanwhile
            f.write('{"step": 6, "loss": 0.125}\n')
        with open(run / 'log.jsonl', 'a') as f:
            f.write('{"epoch": 1, "recall@1": 0.6}\n')
        time.sleep(2.5)                                        # a few tries while it is away
        assert proc.poll() is None, (out.read_text(), err.read_text())
        server = visdom_server(port=port)                      # a new server on the same port
        wait_for("the Visdom server at http://127.0.0.1:%d is back: env 'followed' drawn again "
                 "whole, what it missed included." % port, err)
        wait_for('3 loss points, 2 epochs', out)
        wins = server.windows('followed')
        assert traces(wins[LOSS_WIN])['loss'] == ([2, 4, 6], [0.5, 0.25, 0.125])
        assert traces(wins[metric_window('recall@1')])['recall@1'] == ([0, 1], [0.5, 0.6])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, (out.read_text(), err.read_text())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert err.read_text().count('lost the Visdom server') == 1, err.read_text()
    assert 'Traceback' not in err.read_text() and 'error:' not in err.read_text(), err.read_text()
