"""End to end: real trainings with ``--use_viz`` against real Visdom servers, the replay, and the
dashboard in headless Chromium."""
import json
import os
import re
import shutil
import subprocess
import time

import numpy as np
import pytest

from gluon_dml.engine import read_log
from gluon_dml.viz.dashboard import LOSS_WIN, metric_window
from gluon_dml.viz.plots import ordered_keys, series

from ..helpers import popen_script, run_script
from .conftest import traces

pytestmark = pytest.mark.slow

TRAIN = ['--data', 'digits', '--batches-per-epoch', '5', '--log-interval', '2', '--no-progress',
         '--use_viz', '--viz-server', 'http://127.0.0.1', '--tsne-points', '200']


def _iterations(run_dir):
    with open(os.path.join(run_dir, 'iterations.jsonl')) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r['step'] for r in rows], [r['loss'] for r in rows]


def assert_windows_match_run(wins, run_dir):
    """The loss window holds one point per logged interval and every per-epoch window the
    values of log.jsonl."""
    steps, losses = _iterations(run_dir)
    xs, ys = traces(wins[LOSS_WIN])['loss']
    assert xs == steps
    assert np.allclose(ys, losses)
    records = read_log(run_dir)
    keys = ordered_keys(records)
    assert {'recall@1', 'nmi', 'map@r', 'loss', 'lr', 'loss_beta'} <= set(keys)
    for key in keys:
        ex, ey = series(records, key)
        gx, gy = traces(wins[metric_window(key)])[key]
        assert gx == ex, key
        assert np.allclose(gy, ey), key


def test_training_streams_every_window(tmp_path, visdom_server):
    server = visdom_server()
    run_dir = str(tmp_path / 'run')
    proc = run_script('train_margin.py', *TRAIN, '--epochs', '2', '--viz-port', server.port,
                      '--save-dir', run_dir, '--name', 'viz-live', timeout=600, check=True)
    assert 'Visdom' not in proc.stderr, proc.stderr                  # no warning at all

    wins = server.windows('viz-live')                                  # env = the run name
    steps, _ = _iterations(run_dir)
    assert steps == [2, 4, 6, 8, 10]               # 2 epochs x 5 batches, every 2nd iteration
    assert_windows_match_run(wins, run_dir)
    assert sum(len(x) for x, _ in traces(wins['tsne']).values()) == 200
    assert wins['retrieval']['type'] == 'image'
    assert set(traces(wins['distances'])) == {'positive pairs (same class)', 'negative pairs'}
    plots = os.path.join(run_dir, 'plots')
    for name in ('loss.png', 'epochs.png', 'tsne_epoch000.png', 'tsne_epoch002.png',
                 'retrieval_epoch002.png', 'distances_epoch002.png', 'views_epoch002.npz'):
        assert os.path.getsize(os.path.join(plots, name)) > 1000, name

    # The replay into another environment draws the same curves.
    run_script('eval/replay_viz.py', run_dir, '--viz-server', 'http://127.0.0.1', '--viz-port',
               server.port, '--viz-env', 'viz-replayed', check=True)
    replayed = server.windows('viz-replayed')
    for win in [LOSS_WIN] + [metric_window(k) for k in ordered_keys(read_log(run_dir))] + ['tsne', 'distances']:
        assert traces(replayed[win]) == traces(wins[win]), win
    assert replayed['retrieval']['content']['src'] == wins['retrieval']['content']['src']


def test_server_killed_mid_run(tmp_path, visdom_server):
    server = visdom_server()
    run_dir = str(tmp_path / 'run')
    proc = popen_script('train_margin.py', *TRAIN, '--epochs', '3', '--batches-per-epoch', '30',
                        '--tsne-interval', '3', '--viz-port', server.port, '--save-dir', run_dir,
                        '--name', 'viz-killed')
    deadline = time.time() + 300
    seen = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            wins = server.windows('viz-killed')
            seen = len(traces(wins[LOSS_WIN])['loss'][0]) if LOSS_WIN in wins else 0
        except Exception:  # noqa: BLE001 - not created yet
            seen = 0
        if seen >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None and seen >= 2, 'the run ended before the server could be killed'
    server.stop()                                             # the dashboard goes away mid-run
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert err.count('cannot reach the Visdom server') == 1, err
    records = read_log(run_dir)
    assert [r['epoch'] for r in records] == [0, 1, 2, 3]
    assert all('recall@1' in r and 'nmi' in r for r in records)
    steps, _ = _iterations(run_dir)
    assert len(steps) == 3 * 15                                # nothing lost on disk

    fresh = visdom_server()
    replay = run_script('eval/replay_viz.py', run_dir, '--viz-server', 'http://127.0.0.1',
                        '--viz-port', fresh.port, check=True)
    assert 'viz-killed' in replay.stdout
    assert_windows_match_run(fresh.windows('viz-killed'), run_dir)
    assert {'tsne', 'retrieval', 'distances'} <= set(fresh.windows('viz-killed'))


def find_chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure_chromium():
    """Debian's chromium; installed with apt-get when missing (CI: apt-get install -y chromium)."""
    path = find_chromium()
    if path or not shutil.which('apt-get') or os.geteuid() != 0:
        return path
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    for cmd in (['apt-get', 'install', '-y', '-q', 'chromium'],
                ['apt-get', 'update', '-q'], ['apt-get', 'install', '-y', '-q', 'chromium']):
        subprocess.run(cmd, env=env, capture_output=True, timeout=900)
        if cmd[1] == 'install' and find_chromium():
            break
    return find_chromium()


def screenshot(url, out, profile, size=(1600, 1400)):
    """A headless Chromium screenshot of ``url``; every non-loopback request goes to a dead proxy,
    so the page can only use what the local server serves."""
    browser = ensure_chromium()
    if browser is None:
        pytest.skip('chromium is not installed and could not be installed with apt-get '
                    '(needs root and the Debian archive): apt-get install -y chromium')
    os.makedirs(profile, exist_ok=True)
    cmd = [browser, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
           '--no-first-run', '--disable-background-networking', '--disable-component-update',
           '--disable-sync', '--user-data-dir=%s' % profile, '--proxy-server=http://127.0.0.1:9',
           '--window-size=%d,%d' % size, '--hide-scrollbars', '--run-all-compositor-stages-before-draw',
           '--virtual-time-budget=30000', '--screenshot=%s' % out, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert os.path.exists(out), 'chromium wrote no screenshot:\n%s' % proc.stderr[-3000:]
    return out


def test_dashboard_renders_in_chromium(tmp_path, visdom_server):
    # The offline start: assets from the npm registry if missing, visdom's download step skipped.
    server = visdom_server(install=True)
    from gluon_dml.viz.server import missing_assets
    assert not missing_assets(), ('the page files could not be installed from the npm registry '
                                  '(is npm installed?): %s\n%s' % (missing_assets(), server.log()[-2000:]))
    run_dir = str(tmp_path / 'run')
    run_script('train_margin.py', *TRAIN, '--epochs', '2', '--viz-port', server.port,
               '--save-dir', run_dir, '--name', 'viz-browser', timeout=600, check=True)
    out = screenshot(server.url + '/env/viz-browser', str(tmp_path / 'dashboard.png'),
                     str(tmp_path / 'chromium-profile'))

    from PIL import Image
    rgb = np.asarray(Image.open(out).convert('RGB')).astype(int)
    page = rgb[60:]                                           # below visdom's top bar
    white = (page.min(axis=2) > 245)
    assert white.mean() < 0.8, 'the page is (almost) blank'
    # Plotly drew the traces: the loss/metric lines and the t-SNE classes in tab10 colours.
    blue = (np.abs(page - np.array([31, 119, 180])).max(axis=2) < 30).sum()
    orange = (np.abs(page - np.array([255, 127, 14])).max(axis=2) < 30).sum()
    assert blue > 2000 and orange > 50, (blue, orange)
    # Every file the page asked for was there: no 404 for the page's scripts, styles or fonts.
    log = server.log()
    assert 'Checking for scripts' not in log                  # visdom's download step was skipped
    missing = [ln for ln in log.splitlines() if '404 GET /static/' in ln]
    assert not missing, missing
    assert re.search(r'(200|304) GET /static/js/plotly-plotly\.min\.js', log), log[-3000:]


def test_page_files_install_from_the_npm_registry(tmp_path):
    """What the offline start does on a fresh environment: every file of visdom's page, at the
    versions visdom asks for, from the npm registry into an empty static folder."""
    from gluon_dml.viz.server import ASSETS, install_assets, missing_assets
    static = tmp_path / 'static'
    static.mkdir()
    written = install_assets(static=str(static), log=lambda msg: None)
    assert missing_assets(str(static)) == []
    assert len(written) == sum(len(files) for _, _, files in ASSETS)
    plotly = (static / 'js' / 'plotly-plotly.min.js').read_text()[:400]
    assert 'plotly.js v2.11.1' in plotly, plotly
    assert (static / 'version.built').exists()
