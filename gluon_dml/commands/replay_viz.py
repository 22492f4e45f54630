"""Push a finished (or running) run's curves and plots to a Visdom server, after the fact.

    gluon-dml replay-viz runs/margin-digits                      # http://localhost:8097
    gluon-dml replay-viz runs/margin-omniglot --viz-port 8098 --viz-env omniglot-seed1
    gluon-dml replay-viz runs/margin-omniglot --follow           # keep it updated while it trains

The windows are the live ones (``--use_viz``): the loss every ``--log-interval`` iterations
(``iterations.jsonl``), one window per ``log.jsonl`` value per epoch, and the latest t-SNE,
retrieval and distance views (``plots/views_epochNNN.npz``). The environment defaults to the
one the run streamed to (its ``--viz-env``, else its name). ``--follow`` outlives the server: when
it stops answering, one line says so and the run's files are still read; when a server answers
again at the address, every window is drawn again whole (what it missed included).
"""
import argparse
import os
import sys
import time

from .. import cli
from ..engine import load_run_args
from ..errors import UserError
from ..viz import RunState, env_name
from ..viz.dashboard import Dashboard, DashboardRejected, check_address, connect, short_reason


def main(argv=None):
    p = argparse.ArgumentParser(prog='gluon-dml replay-viz', description=__doc__.splitlines()[0])
    p.add_argument('run_dir')
    p.add_argument('--viz-server', '--viz_server', default='http://localhost')
    p.add_argument('--viz-port', '--viz_port', type=int, default=8097)
    p.add_argument('--viz-env', '--viz_env', default=None,
                   help='Visdom environment (default: the run\'s own, i.e. its --viz-env or name)')
    p.add_argument('--follow', nargs='?', type=float, const=10.0, default=None, metavar='SECONDS',
                   help='keep pushing what the run adds, every SECONDS (default 10), until Ctrl-C')
    a = p.parse_args(argv)
    if a.follow is not None and not a.follow > 0:
        raise UserError('--follow takes the seconds between updates, a positive number; got %s.'
                        % a.follow)
    check_address(a.viz_server, a.viz_port)
    if os.path.exists(a.run_dir) and not os.path.isdir(a.run_dir):
        raise UserError('%s is a file, not a run folder; give the folder that holds its args.json.'
                        % a.run_dir)
    if not os.path.isdir(a.run_dir):
        raise UserError('The run folder %s does not exist.' % a.run_dir)
    run_args = load_run_args(a.run_dir)          # a clear error when this is not a run folder
    env = env_name(a.viz_env or run_args.get('viz_env') or run_args.get('name')
                   or os.path.basename(os.path.normpath(a.run_dir)))
    url = '%s:%s' % (a.viz_server.rstrip('/'), a.viz_port)

    def refused(err):                   # a proxy's size limit, a server that is not Visdom
        return cli.UserError('the Visdom server at %s refused an update (%s); the dashboard of '
                             'env %r is %s.' % (url, err, env, 'partly drawn' if drawing else
                                                'not drawn'))
    drawing = False

    def reach():
        try:
            return connect(a.viz_server, a.viz_port, env)
        except DashboardRejected as err:
            raise refused(err) from None

    try:
        vis = reach()
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - ConnectionError, timeouts
        raise cli.UserError('cannot reach the Visdom server at %s (%s); start one with: python -m '
                            'gluon_dml.viz.server -port %d' % (url, type(err).__name__, a.viz_port)) from None
    dash = Dashboard(vis, env, run_args.get('log_interval'))
    away = False                                   # --follow: the server stopped answering
    try:
        while True:
            state = RunState.from_run_dir(a.run_dir)
            if dash is None:                       # a new client, whose windows start empty
                try:
                    dash = Dashboard(reach(), env, state.log_interval)
                except UserError:
                    raise
                except Exception:  # noqa: BLE001 - still away
                    time.sleep(max(1.0, a.follow))
                    continue
            dash.log_interval = state.log_interval
            drawing = True
            try:
                dash.draw_all(state)
            except OSError as err:
                if a.follow is None:
                    raise cli.UserError('lost the Visdom server at %s (%s).'
                                        % (url, type(err).__name__)) from None
                # a server stopped or restarted mid-follow: wait for it, reading the run's files
                # as before; when it answers again every window is drawn whole (what it missed too)
                if not away:
                    print('lost the Visdom server at %s (%s); waiting for it to come back, still '
                          'following %s (Ctrl-C stops).' % (url, short_reason(err), a.run_dir),
                          file=sys.stderr, flush=True)
                away, dash = True, None
                time.sleep(max(1.0, a.follow))
                continue
            except DashboardRejected as err:
                raise refused(err) from None
            if away:
                away = False
                print('the Visdom server at %s is back: env %r drawn again whole, what it missed '
                      'included.' % (url, env), file=sys.stderr, flush=True)
            views = state.latest_views()
            print('%s -> %s env %r: %d loss points, %d epochs, %s'
                  % (a.run_dir, url, env, len(state.loss_points()), len(state.epoch_records()),
                     'views of epoch %d' % int(views['epoch']) if views is not None else
                     'no t-SNE / retrieval views (the run was not started with --use_viz)'), flush=True)
            if a.follow is None:
                return env
            time.sleep(max(1.0, a.follow))
    except KeyboardInterrupt:
        if a.follow is None:
            raise
        return env
