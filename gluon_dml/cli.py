"""Flags shared by every ``train_*.py`` script, per-dataset recipes, and the run folder.

Each dataset has a recipe: ``--data omniglot`` alone selects the settings of the Omniglot
protocol; any flag given on the command line overrides its recipe. Flags keep the spellings of
the original MXNet scripts, with both ``-`` and ``_`` accepted.
"""
import argparse
import json
import os
import sys
import time
import warnings

__all__ = ['build_parser', 'parse_args', 'RECIPES', 'DEFAULTS', 'canonical_data_name',
           'prepare_run', 'main_guard', 'UserError']


class UserError(Exception):
    """An error the user can fix (bad flag, missing data): printed as one sentence, no traceback."""


# Defaults of the original research scripts (CUB-200-2011 with a ResNet-50, Wu et al. 2017).
DEFAULTS = dict(
    data='digits', data_path=None, model='resnet50_v2', embed_dim=128, batch_size=70, batch_k=5,
    epochs=20, optimizer='adam', lr=1e-4, lr_beta=0.1, wd=1e-4, momentum=0.9, steps='12,14,16,18',
    factor=0.5, margin=0.2, beta=1.2, nu=0.0, cutoff=0.5, nonzero_loss_cutoff=1.4,
    batches_per_epoch=None, seed=123, num_workers=0, log_interval=20, eval_batch_size=256,
)

_SMALL = dict(model='smallconv', embed_dim=64, optimizer='adam', lr=1e-3, lr_beta=1e-2, wd=0.0,
              steps='', margin=0.2, beta=1.2, nu=0.0, cutoff=0.5, nonzero_loss_cutoff=1.4)

RECIPES = {
    # The embedded default: open-set digits (train 0-4, test 5-9); a first run in about a minute.
    'digits': dict(_SMALL, batch_size=60, batch_k=12, epochs=10),
    # The Omniglot open-set protocol stated in the README: batch 128 = 32 classes x 4, 30 epochs.
    'omniglot': dict(_SMALL, batch_size=128, batch_k=4, epochs=30),
    # The Fashion-MNIST open-set protocol: batch 125 = 5 classes x 25, 5 epochs of 240 batches.
    'fashion-mnist': dict(_SMALL, batch_size=125, batch_k=25, epochs=5),
}

_ALIASES = {'fashion_mnist': 'fashion-mnist', 'fashionmnist': 'fashion-mnist',
            'fmnist': 'fashion-mnist'}


def canonical_data_name(name):
    key = name.strip().lower().replace('_', '-')
    return _ALIASES.get(key.replace('-', '_'), _ALIASES.get(key, key))


def _flag(parser, *names, **kw):
    """Add a flag under both its ``-`` and ``_`` spellings."""
    spellings = []
    for n in names:
        spellings.append(n)
        alt = '--' + n[2:].replace('-', '_') if '-' in n[2:] else '--' + n[2:].replace('_', '-')
        if alt not in spellings and alt != n:
            spellings.append(alt)
    parser.add_argument(*spellings, **kw)


def build_parser(description, method_flags=None):
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group('data')
    _flag(g, '--data', default=None, help='dataset: digits (default), omniglot, fashion-mnist')
    _flag(g, '--data-path', default=None, help='where the dataset lives (each dataset has a default)')
    _flag(g, '--batch-size', type=int, default=None, help='images per batch, P classes x K images')
    _flag(g, '--batch-k', type=int, default=None, help='K: images per class in a batch')
    _flag(g, '--batches-per-epoch', type=int, default=None,
          help='batches in an epoch (default: training images // batch size)')
    _flag(g, '--num-workers', type=int, default=None, help='data loading processes')
    g = p.add_argument_group('model')
    _flag(g, '--model', default=None, help='backbone: smallconv or a GluonCV model name')
    _flag(g, '--embed-dim', type=int, default=None, help='embedding dimension')
    _flag(g, '--use-pretrained', action='store_true', help='start from GluonCV ImageNet weights')
    g = p.add_argument_group('optimisation')
    _flag(g, '--epochs', type=int, default=None)
    _flag(g, '--optimizer', default=None, help='adam, sgd, nag, ...')
    _flag(g, '--lr', type=float, default=None, help='learning rate')
    _flag(g, '--wd', type=float, default=None, help='weight decay')
    _flag(g, '--momentum', type=float, default=None, help='momentum for sgd / nag')
    _flag(g, '--steps', default=None, help='comma-separated epochs after which the learning rate drops')
    _flag(g, '--factor', type=float, default=None, help='learning-rate drop factor at each step')
    _flag(g, '--seed', type=int, default=None)
    _flag(g, '--gpus', default='', help='GPU ids, e.g. "0" or "0,1"; empty for the CPU')
    _flag(g, '--disable-hybridize', action='store_true', help='run imperatively (debugging)')
    if method_flags is not None:
        method_flags(p)
    g = p.add_argument_group('run')
    _flag(g, '--name', default=None, help='run name (default: METHOD-DATA)')
    _flag(g, '--save-dir', default=None, help='the run folder (default: runs/NAME)')
    _flag(g, '--save-model-prefix', default='model',
          help='file prefix of the exported deployment model in the run folder')
    _flag(g, '--resume', action='store_true', help='continue from the run folder\'s last checkpoint')
    _flag(g, '--use_viz', action='store_true', help='stream the run to a Visdom dashboard')
    _flag(g, '--log-interval', type=int, default=None, help='iterations between loss points')
    _flag(g, '--eval-batch-size', type=int, default=None)
    _flag(g, '--no-progress', action='store_true', help='no progress bars (logs stay)')
    return p


def parse_args(parser, method, argv=None, method_defaults=None):
    """Parse, then fill every flag not given from the dataset's recipe, then from the defaults."""
    args = parser.parse_args(argv)
    args.method = method
    args.data = canonical_data_name(args.data or DEFAULTS['data'])
    recipe = RECIPES.get(args.data, {})
    defaults = dict(DEFAULTS, **(method_defaults or {}))
    for key, value in list(recipe.items()) + list(defaults.items()):
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.name = args.name or '%s-%s' % (method, args.data)
    args.save_dir = args.save_dir or os.path.join('runs', args.name)
    check_args(args)
    return args


def parse_steps(steps):
    if steps is None or str(steps).strip() == '':
        return []
    try:
        return [int(s) for s in str(steps).split(',') if s.strip()]
    except ValueError:
        raise UserError('--steps takes comma-separated epoch numbers such as "12,14", got %r.'
                        % steps) from None


def check_args(args):
    for key in ('batch_size', 'batch_k', 'epochs', 'embed_dim'):
        v = getattr(args, key, None)
        if v is not None and v < 1:
            raise UserError('--%s must be a positive integer, got %s.' % (key.replace('_', '-'), v))
    if args.batch_size % args.batch_k:
        raise UserError('--batch-size (%d) must be a multiple of --batch-k (%d): a batch is P classes '
                        'x K images; try --batch-size %d.'
                        % (args.batch_size, args.batch_k, args.batch_k * max(1, args.batch_size // args.batch_k)))
    if args.lr <= 0:
        raise UserError('--lr must be positive, got %g.' % args.lr)
    args.steps_list = parse_steps(args.steps)


def prepare_run(args):
    """Create the run folder and write ``args.json``; on --resume check that it matches."""
    run_dir = args.save_dir
    path = os.path.join(run_dir, 'args.json')
    if os.path.exists(os.path.join(run_dir, 'checkpoints', 'latest')) and not args.resume:
        raise UserError('The run folder %s already holds a run; pass --resume to continue it, or '
                        'choose another --name / --save-dir.' % run_dir)
    os.makedirs(run_dir, exist_ok=True)
    record = {k: v for k, v in vars(args).items() if not k.startswith('_')}
    record['command'] = ' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:])
    record['started'] = time.strftime('%Y-%m-%d %H:%M:%S')
    if args.resume and os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        changed = [k for k in ('data', 'model', 'embed_dim', 'method') if old.get(k) != record.get(k)]
        if changed:
            raise UserError('--resume with other settings than the run in %s (%s); resume with the '
                            'same flags.' % (run_dir, ', '.join(changed)))
    with open(path, 'w') as f:
        json.dump(record, f, indent=1, sort_keys=True)
    return run_dir


def viz_sinks(args):
    """The dashboard sinks for ``--use_viz`` (Visdom support arrives with its own issue)."""
    if getattr(args, 'use_viz', False):
        warnings.warn('--use_viz: Visdom support arrives with its issue; this run logs to the '
                      'console and %s/log.jsonl only.' % args.save_dir)
    return []


def main_guard(main, argv=None):
    """Run ``main(argv)``; errors a user can cause become one line on stderr and exit code 2.
    ``GLUON_DML_DEBUG=1`` shows the full traceback instead."""
    from .engine import NaNLossError, TrainingInterrupted
    from .models import PretrainedUnavailableError
    try:
        return main(argv)
    except TrainingInterrupted as err:
        print('\n' + str(err), file=sys.stderr)
        sys.exit(130 if err.signame == 'SIGINT' else 143)
    except (UserError, ValueError, FileNotFoundError, PretrainedUnavailableError, NaNLossError) as err:
        if os.environ.get('GLUON_DML_DEBUG'):
            raise
        print('error: %s' % err, file=sys.stderr)
        sys.exit(2)
