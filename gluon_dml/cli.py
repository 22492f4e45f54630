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

__all__ = ['build_parser', 'parse_args', 'RECIPES', 'DEFAULTS', 'canonical_data_name',
           'prepare_run', 'main_guard', 'UserError', 'add_trained_run_flags', 'print_metrics']


class UserError(Exception):
    """An error the user can fix (bad flag, missing data): printed as one sentence, no traceback."""


# Defaults of the original research scripts (CUB-200-2011 with a ResNet-50, Wu et al. 2017).
# Loss hyper-parameters are not here: each loss's own constructor defaults are its paper's.
DEFAULTS = dict(
    data='digits', data_path=None, model='resnet50_v2', embed_dim=128, batch_size=70, batch_k=5,
    epochs=20, optimizer='adam', lr=1e-4, loss_lr=0.1, wd=1e-4, momentum=0.9, steps='12,14,16,18',
    factor=0.5, batches_per_epoch=None, seed=123, num_workers=0, log_interval=20,
    eval_batch_size=256, beta_per_class=False,
)

_SMALL = dict(model='smallconv', embed_dim=64, optimizer='adam', lr=1e-3, loss_lr=1e-2, wd=0.0,
              steps='')

RECIPES = {
    # The embedded default: open-set digits (train 0-4, test 5-9); a first run in about a minute.
    'digits': dict(_SMALL, batch_size=60, batch_k=12, epochs=10),
    # The Omniglot open-set protocol stated in the README: batch 128 = 32 classes x 4, 30 epochs;
    # the margin loss with one beta per class (chosen on validation classes, see the README).
    'omniglot': dict(_SMALL, batch_size=128, batch_k=4, epochs=30, beta_per_class=True),
    # The Fashion-MNIST open-set protocol: batch 125 = 5 classes x 25, 5 epochs of 240 batches.
    'fashion-mnist': dict(_SMALL, batch_size=125, batch_k=25, epochs=5),
}

# The photo datasets (CUB_200_2011, Cars196, SOP / EbayInClass / EbayCrossClass, InShop, LFW,
# folder, list) use DEFAULTS, the research scripts' settings, plus parallel decoding.
IMAGE_RECIPE = dict(num_workers=min(4, os.cpu_count() or 1), image_size=224, color_jitter=0.0)

_ALIASES = {'fashion_mnist': 'fashion-mnist', 'fashionmnist': 'fashion-mnist',
            'fmnist': 'fashion-mnist'}


def canonical_data_name(name):
    key = name.strip().lower().replace('_', '-')
    return _ALIASES.get(key.replace('-', '_'), _ALIASES.get(key, key))


def _flag(parser, *names, **kw):
    """Add a flag under both its ``-`` and ``_`` spellings (skipped if the script has it)."""
    if any(n in parser._option_string_actions for n in names):
        return
    spellings = []
    for n in names:
        spellings.append(n)
        alt = '--' + n[2:].replace('-', '_') if '-' in n[2:] else '--' + n[2:].replace('_', '-')
        if alt not in spellings and alt != n:
            spellings.append(alt)
    parser.add_argument(*spellings, **kw)


def build_parser(description, method_flags=None, default_loss=None):
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
    _flag(g, '--image-size', type=int, default=None,
          help='photo datasets: side of the (random resized / centre) crop fed to the net (224)')
    _flag(g, '--resize', type=int, default=None,
          help='photo datasets: test-time shorter side before the centre crop (image-size * 8/7)')
    _flag(g, '--color-jitter', type=float, default=None,
          help='photo datasets: brightness/contrast/saturation jitter in training (0: off)')
    _flag(g, '--crop-boxes', action='store_true',
          help='CUB / Cars196: crop every image to its bounding box')
    _flag(g, '--skip-bad-images', action='store_true',
          help='leave out (and count) missing, corrupt or truncated image files instead of stopping')
    _flag(g, '--split-classes', default=None,
          help='folder / list / LFW: open-set class split, a training fraction (0.5) or a number '
               'of training classes')
    _flag(g, '--val-classes', default=None,
          help='hold out training classes and evaluate on them instead of the test split (choose '
               'settings without looking at the test classes): a fraction (0.3) or class names / '
               'name prefixes (Korean,Early_Aramaic)')
    g = p.add_argument_group('model')
    _flag(g, '--model', default=None, help='backbone: smallconv or a GluonCV model name')
    _flag(g, '--embed-dim', type=int, default=None, help='embedding dimension')
    _flag(g, '--use-pretrained', action='store_true', help='start from GluonCV ImageNet weights')
    _flag(g, '--init', default=None, choices=['xavier', 'fan-in'],
          help='weight initialisation of the new layers: xavier, or fan-in (uniform +-1/sqrt(fan_in), '
               'PyTorch\'s default); default xavier')
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
    if default_loss is not None:
        p.set_defaults(_global_dests=sorted(a.dest for a in p._actions))
        add_loss_flags(p, default_loss)
    g = p.add_argument_group('run')
    _flag(g, '--name', default=None, help='run name (default: METHOD-DATA)')
    _flag(g, '--save-dir', default=None, help='the run folder (default: runs/NAME)')
    _flag(g, '--save-model-prefix', default='model',
          help='file prefix of the exported deployment model in the run folder')
    _flag(g, '--resume', action='store_true', help='continue from the run folder\'s last checkpoint')
    _flag(g, '--use_viz', action='store_true', help='stream the run to a Visdom dashboard')
    _flag(g, '--viz-server', default='http://localhost', help='Visdom server (--use_viz)')
    _flag(g, '--viz-port', type=int, default=8097, help='Visdom server port (--use_viz)')
    _flag(g, '--viz-env', default=None, help='Visdom environment (default: the run name)')
    _flag(g, '--tsne-interval', type=int, default=1,
          help='epochs between t-SNE / retrieval / distance views (--use_viz; 0: none)')
    _flag(g, '--tsne-points', type=int, default=1000,
          help='test embeddings in the t-SNE and distance views (a class-balanced sample)')
    _flag(g, '--log-interval', type=int, default=None, help='iterations between loss points')
    _flag(g, '--eval-batch-size', type=int, default=None)
    _flag(g, '--nmi-runs', type=int, default=None,
          help='NMI is the mean over this many k-means runs (default: 10; 1 when points x '
               'classes exceeds 1e7, as on SOP and In-Shop)')
    _flag(g, '--no-progress', action='store_true', help='no progress bars (logs stay)')
    return p


def _str2bool(v):
    if isinstance(v, bool):
        return v
    if v.lower() in ('1', 'true', 'yes', 'on'):
        return True
    if v.lower() in ('0', 'false', 'no', 'off'):
        return False
    raise argparse.ArgumentTypeError('expected true or false, got %r' % v)


# Losses over binary codes with multi-hot labels: train_hash.py only.
HASH_LOSSES = ('hashnet', 'dsh', 'dch')

# Constructor arguments that are not loss options: the script fills them.
_LOSS_ARGS_FROM_RUN = ('num_classes', 'embed_dim', 'negatives_per_anchor', 'prefix', 'params')


def loss_options():
    """{option: (type, [(loss, default), ...])} over every registered loss's constructor."""
    import inspect
    from .losses import _LOSSES
    options = {}
    for name in sorted(_LOSSES):
        for pname, p in inspect.signature(_LOSSES[name].__init__).parameters.items():
            if pname == 'self' or pname in _LOSS_ARGS_FROM_RUN or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            default = p.default if p.default is not inspect.Parameter.empty else None
            kind = type(default) if default is not None else str
            entry = options.setdefault(pname, [kind, []])
            if entry[0] is not kind and {entry[0], kind} <= {int, float}:
                entry[0] = float
            entry[1].append((name, default))
    return options


def add_loss_flags(parser, default_loss):
    """``--loss NAME`` plus one flag per loss option (``--margin``, ``--mining`` ...), each
    defaulting to the chosen loss's own (paper) default."""
    from .losses import list_losses
    g = parser.add_argument_group('loss (each option defaults to the chosen loss\'s paper value)')
    _flag(g, '--loss', default=default_loss, help='one of: ' + ', '.join(list_losses()))
    _flag(g, '--loss-lr', '--lr-beta', type=float, default=None,
          help='learning rate of the loss\'s own parameters (beta, proxies, centres, class '
               'weights); default: the recipe\'s, 1e-2 on the small datasets, 0.1 otherwise')
    _flag(g, '--loss-optimizer', default=None,
          help='optimizer of the loss\'s own parameters (sgd / nag take --momentum); default: the '
               'one the loss class names (param_optimizer), else --optimizer')
    _flag(g, '--beta-per-class', type=_str2bool, nargs='?', const=True, default=None,
          help='margin loss: one beta per training class (Wu et al.), or one global beta; default: '
               'per class on Omniglot (chosen on validation classes), global elsewhere')
    for opt, (kind, users) in sorted(loss_options().items()):
        helptext = '; '.join('%s: %s' % (n, d) for n, d in users)
        flag = '--' + opt.replace('_', '-')
        helptext = 'default ' + helptext
        if kind is bool:
            _flag(g, flag, type=_str2bool, nargs='?', const=True, default=argparse.SUPPRESS,
                  help=helptext)
        else:
            _flag(g, flag, type=kind, default=argparse.SUPPRESS, help=helptext)


def build_loss(args, num_classes, embed_dim):
    """The loss named by ``--loss`` with its options: flags given on the command line, else the
    loss's own defaults."""
    import inspect
    from .losses import _LOSSES, get_loss
    key = args.loss.lower().replace('-', '_')
    if key not in _LOSSES:
        get_loss(key)                                # raises the clear "Unknown loss" error
    params = inspect.signature(_LOSSES[key].__init__).parameters
    kwargs = {}
    reserved = set(getattr(args, '_global_dests', ())) | set(_LOSS_ARGS_FROM_RUN)
    for pname in params:
        value = getattr(args, pname, None)
        if pname not in reserved and value is not None:
            kwargs[pname] = value
    if 'num_classes' in params:
        if key == 'margin':
            kwargs['num_classes'] = num_classes if args.beta_per_class else None
        else:
            kwargs['num_classes'] = num_classes
    if 'embed_dim' in params:
        kwargs['embed_dim'] = embed_dim
    if 'negatives_per_anchor' in params:
        kwargs['negatives_per_anchor'] = max(1, args.batch_k - 1)
    hashing = key in HASH_LOSSES
    if hashing != (getattr(args, 'method', None) == 'hash'):
        raise UserError('--loss %s is %s; %s.' % (
            args.loss, 'a hashing loss over binary codes' if hashing else 'not a hashing loss',
            'train it with train_hash.py' if hashing else
            'train_hash.py takes --loss hashnet, dsh or dch'))
    if args.beta_per_class and key != 'margin':
        raise UserError('--beta-per-class is an option of the margin loss, not of %s.' % args.loss)
    try:
        loss = get_loss(key, **kwargs)
    except TypeError as err:
        raise UserError('Bad options for the %s loss: %s.' % (args.loss, err)) from None
    # What the run really used, defaults included, for args.json.
    args.loss_options = {n: (kwargs[n] if n in kwargs else p.default) for n, p in params.items()
                         if n not in ('self', 'prefix', 'params') and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return loss


def parse_args(parser, method, argv=None, method_defaults=None):
    """Parse, then fill every flag not given from the dataset's recipe, then from the defaults."""
    args = parser.parse_args(argv)
    args.method = method
    args.data = canonical_data_name(args.data or DEFAULTS['data'])
    # Precedence: the command line, then the method's own settings (N-pair's batch-k 2), then
    # the dataset's recipe, then the research defaults.
    if callable(method_defaults):
        method_defaults = method_defaults(args.data)
    from .data import is_image_dataset
    recipe = RECIPES.get(args.data, IMAGE_RECIPE if is_image_dataset(args.data) else {})
    asked_beta_per_class = getattr(args, 'beta_per_class', None)
    layers = [method_defaults or {}, recipe, DEFAULTS]
    for layer in layers:
        for key, value in layer.items():
            if getattr(args, key, None) is None:
                setattr(args, key, value)
    if asked_beta_per_class is None and getattr(args, 'loss', None) != 'margin':
        args.beta_per_class = False          # a recipe's margin-loss setting; other losses have no beta
    args.name = args.name or '%s-%s' % (method, args.data)
    args.save_dir = args.save_dir or os.path.join('runs', args.name)
    check_args(args)
    return args


def parse_int_list(text, flag='--steps', example='12,14'):
    """Comma-separated integers (``--steps``, ``--ks``); empty text gives []."""
    if text is None or str(text).strip() == '':
        return []
    try:
        return [int(s) for s in str(text).split(',') if s.strip()]
    except ValueError:
        raise UserError('%s takes comma-separated integers such as "%s", got %r.'
                        % (flag, example, text)) from None


def dataset_options(args, augment=None):
    """Keyword options of ``get_dataset`` for the run's dataset (``args``: a namespace or the
    dict of ``args.json``): the photo datasets take the image size, augmentation, box crops,
    bad-image skipping and class split; the in-memory ones take none. ``augment=False`` forces
    the test transform (evaluating the training split)."""
    from .data import IMAGE_OPTIONS, is_image_dataset
    get = args.get if isinstance(args, dict) else (lambda k, d=None: getattr(args, k, d))
    if not is_image_dataset(get('data')):
        return {}
    opts = {k: get(k) for k in IMAGE_OPTIONS if k != 'augment' and get(k) is not None}
    if augment is not None:
        opts['augment'] = augment
    return opts


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
    check_nmi_runs(getattr(args, 'nmi_runs', None))
    args.steps_list = parse_int_list(args.steps)


def check_nmi_runs(value):
    """``--nmi-runs``: None (the default) or a count of at least 1."""
    if value is not None and value < 1:
        raise UserError('--nmi-runs must be at least 1 (k-means runs averaged), got %d.' % value)


def prepare_run(args):
    """Create the run folder and write ``args.json``; on --resume check that it matches."""
    run_dir = args.save_dir
    path = os.path.join(run_dir, 'args.json')
    if os.path.exists(os.path.join(run_dir, 'checkpoints', 'latest')) and not args.resume:
        raise UserError('The run folder %s already holds a run; pass --resume to continue it, or '
                        'choose another --name / --save-dir.' % run_dir)
    os.makedirs(run_dir, exist_ok=True)
    if args.resume and os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        changed = [k for k in ('data', 'model', 'embed_dim', 'method', 'loss')
                   if old.get(k) is not None and old.get(k) != getattr(args, k, None)]
        if changed:
            raise UserError('--resume with other settings than the run in %s (%s); resume with the '
                            'same flags.' % (run_dir, ', '.join(changed)))
    args.command = ' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:])
    args.started = time.strftime('%Y-%m-%d %H:%M:%S')
    write_args(args)
    return run_dir


def write_args(args):
    """(Re)write ``args.json`` in the run folder: every setting, the command, the loss options."""
    record = {k: v for k, v in vars(args).items() if not k.startswith('_')}
    with open(os.path.join(args.save_dir, 'args.json'), 'w') as f:
        json.dump(record, f, indent=1, sort_keys=True, default=str)


def viz_sinks(args):
    """The dashboard sinks for ``--use_viz``: a :class:`gluon_dml.viz.VisdomSink` streaming to
    ``--viz-server:--viz-port`` (environment ``--viz-env``, default the run name) and writing the
    same plots into the run folder. It never blocks: an unreachable server is one warning."""
    if not getattr(args, 'use_viz', False):
        return []
    port = getattr(args, 'viz_port', 8097)
    if not 0 < port < 65536:
        raise UserError('--viz-port must be a port number (1-65535), got %s.' % port)
    if getattr(args, 'tsne_interval', 1) < 0 or getattr(args, 'tsne_points', 1000) < 3:
        raise UserError('--tsne-interval must be >= 0 (0: no t-SNE) and --tsne-points >= 3.')
    try:
        import matplotlib  # noqa: F401  (the sink's threads import them: fail here, clearly)
        import sklearn  # noqa: F401
        import visdom  # noqa: F401
        from .viz import VisdomSink, env_name
    except ImportError as err:
        raise UserError('--use_viz needs visdom, matplotlib and scikit-learn (pip install -e '
                        '".[cpu]"): %s.' % err) from None
    return [VisdomSink(args.save_dir, env=env_name(getattr(args, 'viz_env', None) or args.name),
                       server=getattr(args, 'viz_server', 'http://localhost'), port=port,
                       tsne_interval=getattr(args, 'tsne_interval', 1),
                       tsne_points=getattr(args, 'tsne_points', 1000), last_epoch=args.epochs,
                       log_interval=args.log_interval, seed=args.seed, name=args.name,
                       command=getattr(args, 'command', None))]


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


def add_trained_run_flags(parser):
    """The flags every eval/ script that loads a trained run shares: which parameters, on which
    device, in batches of how many."""
    parser.add_argument('--checkpoint', choices=['best', 'last'], default='best',
                        help='best.params, or the newest checkpoint')
    parser.add_argument('--gpus', default='', help='GPU ids, "" for the CPU')
    parser.add_argument('--batch-size', '--batch_size', type=int, default=256,
                        help='images (or captions) embedded at a time')


def print_metrics(metrics, digits=4, skip=()):
    """One ``name value`` line per metric, floats with ``digits`` decimals."""
    for k, v in metrics.items():
        if k not in skip:
            print('%-20s %s' % (k, '%.*f' % (digits, v) if isinstance(v, float) else v))
