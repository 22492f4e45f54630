"""Shared test helpers: paths and running the scripts as a user would."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), 'shared')
OMNIGLOT = os.path.join(SHARED, 'data', 'omniglot')
FASHION = '/usr/share/datasets/fashion-mnist'


def script_env(**extra):
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    env.setdefault('OMP_NUM_THREADS', '2')
    env.update(extra)
    return env


def run_script(script, *args, timeout=600, env=None, check=False):
    """Run a top-level script (``train_margin.py``, ``eval/evaluate.py`` ...) in a subprocess."""
    cmd = [sys.executable, os.path.join(REPO, script)] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=env or script_env(), cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError('%s failed (%d):\n%s\n%s' % (script, proc.returncode, proc.stdout[-3000:],
                                                          proc.stderr[-3000:]))
    return proc


def popen_script(script, *args, env=None):
    cmd = [sys.executable, os.path.join(REPO, script)] + [str(a) for a in args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or script_env(), cwd=REPO)


def exec_after(setup, cmd):
    """``cmd`` (a list, ``cmd[0]`` an executable's path) started by a small Python that runs the
    statements ``setup`` and then execs ``cmd`` in the same process (same pid): what a test would
    do with ``preexec_fn``, which forks this process with MXNet loaded, so that MXNet's fork
    handlers ran in the child, which once died of SIGABRT before it ran anything."""
    return [sys.executable, '-c', 'import os, sys; %s; os.execv(sys.argv[1], sys.argv[1:])' % setup] + \
        [str(c) for c in cmd]


def with_sigint(cmd, ignored=True):
    """``cmd`` started (:func:`exec_after`) with SIGINT ignored, as a shell script's background
    job starts (``ignored=False``: with the default disposition, as from a terminal), never with
    whatever this process passes on (a suite started in the background passed on an ignored
    SIGINT)."""
    return exec_after('import signal; signal.signal(signal.SIGINT, signal.%s)'
                      % ('SIG_IGN' if ignored else 'SIG_DFL'), cmd)


def interrupt_command(args, when, sigint_ignored=True):
    """Start ``gluon-dml ARGS`` (stdout and stderr piped; SIGINT as :func:`with_sigint` sets it),
    wait until ``when(proc)`` returns, send it SIGINT (Ctrl-C); its exit code and stderr."""
    import signal
    proc = subprocess.Popen(with_sigint([sys.executable, '-m', 'gluon_dml'] + list(args),
                                        sigint_ignored),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=script_env())
    try:
        when(proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, err.decode()


def parse(method, *argv):
    """``cli.parse`` of a method's flags (warnings go to a throwaway stream); run folders are
    chosen under the current directory's ``runs/`` as for a user."""
    import io
    from gluon_dml import cli
    return cli.parse(method, [str(a) for a in argv], stream=io.StringIO())


def loss_from_args(args, num_classes, embed_dim):
    """The loss a run of ``args`` builds (``args.loss_options`` filled as the run does)."""
    from gluon_dml.losses.factory import build_loss, loss_family
    loss, args.loss_options = build_loss(
        args.loss, getattr(args, '_loss_kwargs', {}), num_classes=num_classes, embed_dim=embed_dim,
        batch_k=args.batch_k, beta_per_class=getattr(args, 'beta_per_class', False),
        family=loss_family(args.loss) if args.method == 'hash' else 'embedding')
    return loss


def run_command(*args, timeout=600, env=None, check=False):
    """Run ``gluon-dml COMMAND ...`` (as ``python -m gluon_dml``) in a subprocess."""
    cmd = [sys.executable, '-m', 'gluon_dml'] + [str(a) for a in args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=env or script_env(), cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError('gluon-dml %s failed (%d):\n%s\n%s' % (
            args[0], proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
    return proc


def write_digit_folder(root, count=120):
    """The first ``count`` scikit-learn digits as 32x32 PNG files in class folders under
    ``root`` (dark ink on light paper); returns ``root``."""
    from PIL import Image
    from sklearn.datasets import load_digits
    d = load_digits()
    for i in range(count):
        folder = root / str(d.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        img = (255 - d.images[i] * 16).clip(0, 255).astype('uint8')
        Image.fromarray(img).resize((32, 32)).save(folder / ('%03d.png' % i))
    return root
