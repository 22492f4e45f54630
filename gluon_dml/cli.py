"""Command-line flags: the parser of every ``train_*.py`` script, and how entry points report.

This module only parses: the settings' defaults and checks are in :mod:`gluon_dml.config`, the
methods in :mod:`gluon_dml.methods`. Flags keep the spellings of the original MXNet scripts and
take ``-`` and ``_`` alike (``--batch-size`` / ``--batch_size``); ``--help`` shows one spelling.
Nothing heavy is imported at module level, so ``--threads`` can still reach MXNet.
"""
import argparse
import contextlib
import os
import sys
import warnings

from .errors import UserError

__all__ = ['build_parser', 'parse', 'train', 'main_guard', 'UserError', 'add_trained_run_flags',
           'add_fusion_flag', 'add_int8_flags', 'int8_setting',
           'print_metrics', 'given_dests', 'set_threads', 'positive_int', 'add_threads_flag']

_BOOL = dict(nargs='?', const=True, default=None, metavar='BOOL')


def positive_int(text):
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('expected a positive integer, got %r' % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError('expected a positive integer, got %d' % value)
    return value


def _recipe_list():
    """``'fewshot, fewshot-ensemble: omniglot'``: the named recipes grouped by dataset."""
    from . import config
    by_data = {}
    for name, (data, _) in sorted(config.NAMED_RECIPES.items()):
        by_data.setdefault(data, []).append(name)
    return '; '.join('%s: %s' % (', '.join(names), data) for data, names in sorted(by_data.items()))


def _str2bool(v):
    from .losses.options import str2bool
    try:
        return str2bool(v)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


class _HelpFormatter(argparse.HelpFormatter):
    """One spelling per flag (the ``_`` twins are accepted, not listed), wider columns."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=30, width=100)

    def _format_action_invocation(self, action):
        if not action.option_strings:
            return super()._format_action_invocation(action)
        shown = [s for s in action.option_strings if s == action.option_strings[0] or '_' not in s]
        if action.nargs == 0:
            return ', '.join(shown)
        default = {int: 'N', float: 'X'}.get(action.type, action.dest.upper())
        return ', '.join('%s %s' % (s, self._format_args(action, default)) for s in shown)


def _flag(group, *names, **kw):
    """Add a flag under both its ``-`` and ``_`` spellings (skipped if the parser has it)."""
    if any(n in group._option_string_actions for n in names):
        return
    spellings = []
    for n in names:
        for s in (n, '--' + n[2:].replace('-', '_'), '--' + n[2:].replace('_', '-')):
            if s not in spellings:
                spellings.append(s)
    group.add_argument(*spellings, **kw)


def build_parser(method):
    """The parser of ``method``'s script (a :class:`gluon_dml.methods.Method` or its name)."""
    from . import config
    from .methods import get_method
    m = get_method(method) if isinstance(method, str) else method

    def rule(key):
        return config.default_rule(key, m)

    # the name the user typed: the script (train_margin.py), or gluon-dml train-margin
    invoked = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ''
    prog = m.script if not m.script or invoked == m.script else m.command
    p = argparse.ArgumentParser(
        prog=prog, usage='%(prog)s [options]', formatter_class=_HelpFormatter,
        allow_abbrev=False,
        description=m.description + ' Flags take - or _; yes/no options take true/false, 1/0 or '
        'yes/no; defaults that depend on the dataset are given per dataset.')
    g = p.add_argument_group('data')
    _flag(g, '--data', default=None, metavar='NAME',
          help='dataset: %s (default %s)' % (', '.join(m.dataset_names()), m.default_data))
    if m.name == 'margin':                       # the named recipes train a loss of the zoo
        _flag(g, '--recipe', default=None, metavar='NAME',
              help='named settings (%s; default none)' % _recipe_list())
    _flag(g, '--data-path', default=None, metavar='PATH',
          help='where the dataset lives (default: %s)' % m.data_path_help)
    _flag(g, '--batch-size', type=int, default=None, metavar='N',
          help='images per batch (default %s)' % rule('batch_size'))
    _flag(g, '--batch-k', type=int, default=None, metavar='K',
          help='images per class in a batch: P classes x K images (default %s)' % rule('batch_k'))
    _flag(g, '--batches-per-epoch', type=int, default=None, metavar='N',
          help='batches in an epoch (default %s)'
               % rule('batches_per_epoch').replace('none', 'training images // batch size'))
    _flag(g, '--num-workers', type=int, default=None, metavar='N',
          help='data loading threads (default %s)' % rule('num_workers'))
    _flag(g, '--image-size', type=int, default=None, metavar='PX',
          help='photo datasets: side of the crop fed to the net (default 224)')
    _flag(g, '--resize', type=int, default=None, metavar='PX',
          help='photo datasets: test-time shorter side before the centre crop (default 8/7 of '
               '--image-size)')
    _flag(g, '--color-jitter', type=float, default=None, metavar='X',
          help='photo datasets: colour jitter in training (default 0: off)')
    _flag(g, '--crop-boxes', action='store_true',
          help='CUB / Cars196: crop every image to its bounding box')
    _flag(g, '--skip-bad-images', action='store_true',
          help='leave out (and count) unreadable image files instead of stopping')
    _flag(g, '--split-classes', default=None, metavar='X',
          help='folder / list / LFW: training classes, fraction or count (default 0.5)')
    _flag(g, '--rotations', type=int, default=None, metavar='K',
          help='grey datasets: classes turned 90/180/270 (4), 180 (2), +mirrored (8)')
    _flag(g, '--shift', type=int, default=None, metavar='PX',
          help='grey datasets: random training moves up to PX pixels (default 0)')
    _flag(g, '--tilt', type=float, default=None, metavar='DEG',
          help='grey datasets: random training turns up to DEG degrees (default 0)')
    _flag(g, '--zoom', type=float, default=None, metavar='F',
          help='grey datasets: random training scaling by 1-F to 1+F (default 0)')
    _flag(g, '--val-classes', default=None, metavar='X',
          help='evaluate on held-out training classes, a fraction (0.3) or names '
               '(Korean,Early_Aramaic), and keep the best epoch on them (default: none; the test '
               'classes are evaluated and the final epoch is reported)')

    g = p.add_argument_group('model')
    _flag(g, '--model', default=None, metavar='NAME',
          help='backbone: smallconv, conv4 or a GluonCV model name (default %s)' % rule('model'))
    _flag(g, '--embed-dim', type=int, default=None, metavar='D',
          help='embedding dimension (default %s)' % rule('embed_dim'))
    _flag(g, '--use-pretrained', action='store_true', help='start from GluonCV ImageNet weights')
    _flag(g, '--members', type=int, default=None, metavar='N',
          help='N networks trained side by side, their embeddings joined (default 1)')
    _flag(g, '--tta-shift', type=int, default=None, metavar='PX',
          help='test time: embeddings averaged with 4 copies moved PX pixels (default 0: off)')
    _flag(g, '--pool', default='avg', choices=['avg', 'gem', 'rmac', 'netvlad'],
          help='global pooling of the feature map: avg (the backbone\'s own), gem (learnable p), '
               'rmac, netvlad (default avg)')
    _flag(g, '--freeze-bn', action='store_true',
          help='batch norm uses its running statistics and leaves them unchanged (scale and shift '
               'still learn); a step then does not depend on how the batch is split over devices '
               'and workers')
    _flag(g, '--init', default=None, choices=['xavier', 'fan-in'],
          help="initialisation of the new layers: xavier, or fan-in (uniform +-1/sqrt(fan_in), "
               "PyTorch's default) (default xavier)")

    if m.default_loss is not None:
        _add_loss_flags(p, m)
    if getattr(m, 'flags', None):
        g = p.add_argument_group(m.flag_group)
        for name, kw in m.flags:
            if kw.get('type') is not None and getattr(kw['type'], '__name__', '') == 'str2bool':
                kw = dict(kw, type=_str2bool, metavar='BOOL')
            _flag(g, name, **kw)

    g = p.add_argument_group('optimisation')
    _flag(g, '--epochs', type=int, default=None, metavar='N',
          help='training epochs (default %s)' % rule('epochs'))
    _flag(g, '--optimizer', default=None, metavar='NAME',
          help='adam, sgd, nag, ... (any MXNet optimizer) (default %s)' % rule('optimizer'))
    _flag(g, '--lr', type=float, default=None, metavar='X',
          help='learning rate (default %s)' % rule('lr'))
    _flag(g, '--wd', type=float, default=None, metavar='X',
          help='weight decay (default %s)' % rule('wd'))
    _flag(g, '--momentum', type=float, default=None, metavar='X',
          help='momentum of sgd / nag (default 0.9)')
    _flag(g, '--steps', default=None, metavar='E,E',
          help='comma-separated epochs after which the learning rate drops (default %s)'
               % rule('steps'))
    _flag(g, '--factor', type=float, default=None, metavar='X',
          help='learning-rate drop factor at each step (default %s)' % rule('factor'))
    _flag(g, '--seed', type=int, default=None, metavar='N',
          help='seed of every random draw (default 123)')
    _flag(g, '--gpus', default='', metavar='IDS',
          help='GPU ids, e.g. "0" or "0,1"; empty for the CPU; cpu:N for N CPU contexts '
               '(default: the CPU)')
    _flag(g, '--kvstore', default='device', choices=['local', 'device', 'dist_sync',
                                                      'dist_device_sync', 'dist_async'],
          help='how gradients are summed: local / device (the devices of one process), dist_sync, '
               'dist_device_sync, dist_async (workers of a job started by python -m '
               'gluon_dml.launch; sync ones all-gather the embeddings) (default device)')
    _flag(g, '--amp', nargs='?', const='float16', default=None, choices=['float16', 'bfloat16'],
          metavar='DTYPE',
          help='automatic mixed precision (mxnet.contrib.amp): float16 (a bare --amp; needs a GPU, '
               '--gpus) or bfloat16 (the CPU through oneDNN; fast only where the CPU has bfloat16 '
               'instructions) (default: off, float32)')
    _flag(g, '--threads', type=int, default=None, metavar='N',
          help='CPU threads of MXNet and faiss (default: every core, %d here; OMP_NUM_THREADS '
               'if set)' % _cores())
    _flag(g, '--disable-hybridize', action='store_true', help='run imperatively (debugging)')

    g = p.add_argument_group('evaluation')
    _flag(g, '--eval-batch-size', type=int, default=None, metavar='N',
          help='images embedded at a time when evaluating (default 256)')
    _flag(g, '--eval-interval', type=int, default=None, metavar='N',
          help='evaluate every N epochs; the untrained net (epoch 0) and the last epoch always '
               '(default 1)')
    _flag(g, '--nmi-runs', type=int, default=None, metavar='N',
          help='NMI is the mean over this many k-means runs (default 10; 1 when points x '
               'classes exceeds 1e7, as on SOP and In-Shop)')
    _flag(g, '--eval-nmi-runs', type=int, default=None, metavar='N',
          help='k-means runs of NMI at the epochs before the last (0: no NMI there; default: '
               'as --nmi-runs); the last epoch always gets --nmi-runs')
    _flag(g, '--no-fusion', action='store_true',
          help='embed without MKLDNN operator fusion when evaluating (on by default on the CPU; '
               'embeddings within 1e-6 of unfused)')
    add_few_shot_flags(g)

    g = p.add_argument_group('run folder')
    _flag(g, '--name', default=None, metavar='NAME',
          help='run name (default %s; a new run gets the first free runs/NAME, runs/NAME-2, ...)'
               % m.name_help)
    _flag(g, '--save-dir', default=None, metavar='DIR',
          help='the run folder (default runs/NAME)')
    _flag(g, '--resume', action='store_true',
          help="continue the run folder's last checkpoint with its recorded settings (without "
               "--name / --save-dir: the newest run of the default name)")
    _flag(g, '--overwrite', action='store_true',
          help='replace the run already in the folder (its files are removed first)')
    _flag(g, '--checkpoint-every', default=None, metavar='N|Mm',
          help='also checkpoint every N batches, or every M minutes with "Mm" (default: at the end '
               'of each epoch only; 0: that again, e.g. on --resume)')
    _flag(g, '--save-model-prefix', default='model', metavar='PREFIX',
          help='file prefix of the exported deployment model in the run folder (default model)')
    _flag(g, '--log-interval', type=int, default=None, metavar='N',
          help='iterations between loss points on the dashboard (default 20)')
    _flag(g, '--no-progress', action='store_true', help='no progress bars (logs stay)')

    g = p.add_argument_group('dashboard')
    _flag(g, '--use_viz', action='store_true',
          help='stream the run to a Visdom dashboard (scripts/visdom_server.sh starts one)')
    _flag(g, '--viz-server', default='http://localhost', metavar='URL',
          help='Visdom server (default http://localhost)')
    _flag(g, '--viz-port', type=int, default=8097, metavar='PORT',
          help='Visdom server port (default 8097)')
    _flag(g, '--viz-env', default=None, metavar='ENV',
          help='Visdom environment (default: the run name)')
    _flag(g, '--tsne-interval', type=int, default=1, metavar='N',
          help='epochs between t-SNE / retrieval / distance views (0: none; default 1)')
    _flag(g, '--tsne-points', type=int, default=1000, metavar='N',
          help='test embeddings in the t-SNE and distance views, a class-balanced sample '
               '(default 1000)')
    for action in p._actions:                    # shared flags this method takes no notice of
        if action.dest in m.ignored_flags:
            action.help = 'no effect with %s: %s' % (m.command, m.ignored_flags[action.dest])
    return p


def add_few_shot_flags(group):
    """``--episodes`` (off by default), ``--way``, ``--shot``, ``--episode-queries``."""
    _flag(group, '--episodes', type=int, default=None, metavar='N',
          help='also report N-way K-shot accuracy (class prototypes and nearest neighbour, with a '
               '95%% interval) over N seeded episodes of the evaluation classes (default 0: off)')
    _flag(group, '--way', type=int, default=20, metavar='N', help='classes per episode (default 20)')
    _flag(group, '--shot', type=int, default=1, metavar='K', help='support images per class (default 1)')
    _flag(group, '--episode-queries', type=int, default=5, metavar='Q',
          help='query images per class in an episode (default 5)')


def few_shot_setting(args):
    """The ``few_shot`` argument of the evaluators (None when ``--episodes`` is 0)."""
    if not getattr(args, 'episodes', 0):
        return None
    for flag in ('episodes', 'way', 'shot', 'episode_queries'):
        if getattr(args, flag) < 1:
            raise UserError('--%s must be at least 1, got %d.' % (flag.replace('_', '-'), getattr(args, flag)))
    return dict(way=args.way, shot=args.shot, queries=args.episode_queries, episodes=args.episodes)


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _add_loss_flags(parser, method):
    """``--loss NAME``, the loss's learning rate and optimizer, and one flag per loss option.
    An option flag is read as text here and parsed by the chosen loss's own declaration."""
    from .losses import list_losses
    from .losses.factory import loss_family
    from .losses.options import option_users
    g = parser.add_argument_group(
        'loss', 'Each option below belongs to the losses named in its help, with its type and '
        'default there; an option of another loss than the chosen one has no effect (a warning '
        'says so).')
    names = [n for n in list_losses() if loss_family(n) == method.loss_family]
    _flag(g, '--loss', default=None, metavar='NAME',
          help='one of: %s (default %s)' % (', '.join(names), method.default_loss))
    if method.loss_family == 'embedding':
        _flag(g, '--xbm-size', type=int, default=0, metavar='M',
              help='cross-batch memory (Wang et al., CVPR 2020) of the last M embeddings for the '
                   'pair losses contrastive, triplet, multi_similarity, binomial, lifted '
                   '(default 0: none)')
        _flag(g, '--xbm-start', type=int, default=0, metavar='N',
              help='iterations before the memory fills and is used (warm-up) (default 0)')
        _flag(g, '--xbm-weight', type=float, default=1.0, metavar='X',
              help='weight of the memory term of the loss (default 1)')
    _flag(g, '--loss-lr', '--lr-beta', type=float, default=None, metavar='X',
          help="learning rate of the loss's own parameters (beta, proxies, centres, class "
               "weights) (default %s)" % _loss_lr_rule(method))
    _flag(g, '--loss-optimizer', default=None, metavar='NAME',
          help="optimizer of the loss's own parameters (sgd / nag take --momentum) (default: "
               "the one the loss class names, else --optimizer)")
    if method.loss_family == 'embedding':
        _flag(g, '--beta-per-class', type=_str2bool, **_BOOL,
              help='margin loss: one beta per training class (Wu et al.), or one global beta '
                   '(default: per class on omniglot, chosen on validation classes; global '
                   'elsewhere)')
    for opt, users in sorted(option_users().items()):
        users = [(n, o) for n, o in users if loss_family(n) == method.loss_family]
        if not users:
            continue
        text = '; '.join('%s: %s, %s' % (n, o.help, o.describe()) for n, o in users)
        _flag(g, '--' + opt.replace('_', '-'), default=argparse.SUPPRESS, metavar='X', help=text)


def _loss_lr_rule(method):
    from . import config
    return config.default_rule('loss_lr', method)


def given_dests(parser, argv):
    """The dests of the flags typed in ``argv`` (either spelling, ``--flag=value`` too)."""
    dests = set()
    for token in argv:
        if token.startswith('--'):
            action = parser._option_string_actions.get(token.split('=', 1)[0])
            if action is not None:
                dests.add(action.dest)
    return dests


def parse(method, argv=None, stream=None):
    """Parse ``argv`` for ``method`` (an instance or a name), fill the settings from the recipes,
    check them, choose the run folder, and print one warning line per flag that has no effect
    (to ``stream``, default stderr). With ``--resume`` the settings come from the run's record
    (``args.json``); a flag that would change them is refused (:func:`_resumed_args`). Returns
    the settings namespace."""
    from . import config
    from .engine.rundir import default_run_dir
    from .methods import get_method
    m = get_method(method) if isinstance(method, str) else method
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(m)
    args = parser.parse_args(argv)
    given = given_dests(parser, argv)
    _check_run_place(args)
    if args.resume and getattr(args, 'overwrite', False):
        raise UserError('--resume continues the run in the folder and --overwrite replaces it; '
                        'give one of them.')
    if args.resume and (args.save_dir or args.name):
        # the folder is known: its record gives the settings, before any recipe or check
        save_dir = args.save_dir or os.path.join('runs', args.name)
        record = _resume_record(save_dir)
        if record is not None:
            args = _resumed_args(parser, argv, given, record, m, save_dir,
                                 args.name or os.path.basename(os.path.normpath(save_dir)))
            _keep_recorded_threads(args, given, stream)
            for line in config.flag_warnings(args, given, m):
                print('warning: %s' % line, file=stream or sys.stderr)
            return args
    config.resolve(args, m)
    if getattr(args, '_batch_note', None):
        print('note: %s' % args._batch_note, file=stream or sys.stderr)
    args.few_shot = few_shot_setting(args)
    if m.default_loss is not None:
        _loss_kwargs(args, given)
        check_batch_for_loss(args, m)
    if args.name is None and args.save_dir is None:
        args.save_dir = default_run_dir(m.default_name(args), resume=args.resume)
        args.name = os.path.basename(args.save_dir)
    else:
        args.name = args.name or m.default_name(args)
        args.save_dir = args.save_dir or os.path.join('runs', args.name)
    if args.resume:
        record = _resume_record(args.save_dir)
        if record is not None:
            args = _resumed_args(parser, argv, given, record, m, args.save_dir, args.name)
            _keep_recorded_threads(args, given, stream)
    for line in config.flag_warnings(args, given, m):
        print('warning: %s' % line, file=stream or sys.stderr)
    return args


_MISSING = object()
# set by main_guard when it runs the process's own command line: only then may a resumed run
# start the process again with its recorded thread count
_TOP_LEVEL = {'command': False}


def _keep_recorded_threads(args, given, stream=None):
    """A resumed run computes with the thread count it recorded: threads change the rounding
    of reductions, so on another count it would not end where an uninterrupted run ends. The
    count is fixed when MXNet loads, already done here, so the command starts again (same
    command line, ``OMP_NUM_THREADS`` set). Unless ``--threads`` is given again or the user set
    ``OMP_NUM_THREADS``: their choice, recorded as a change."""
    import gluon_dml
    want = getattr(args, 'threads', None)
    if want is None or 'threads' in given or gluon_dml.OMP_FROM_USER or \
            os.environ.get('OMP_NUM_THREADS') == str(want):
        return
    if _TOP_LEVEL['command'] and os.environ.get('GLUON_DML_THREADS_EXEC') != str(want):
        print('note: %s was trained with --threads %d; resuming with %d threads, as recorded '
              '(--threads N chooses another count).' % (args.save_dir, want, want),
              file=stream or sys.stderr, flush=True)
        sys.stdout.flush()
        # the environment the command was started with: what importing the package set here
        # (MXNET_CPU_PARALLEL_SIZE, for one) would otherwise reach the new process
        env = dict(gluon_dml.ENV_AT_START, OMP_NUM_THREADS=str(want),
                   GLUON_DML_THREADS_EXEC=str(want))
        os.execve(sys.executable, list(getattr(sys, 'orig_argv', [sys.executable] + sys.argv)), env)
    print('warning: %s was trained with --threads %d, and this process computes with %s threads '
          '(fixed when MXNet loaded): the resumed run will not end bitwise where an uninterrupted '
          'one would.' % (args.save_dir, want, os.environ.get('OMP_NUM_THREADS', 'the default')),
          file=stream or sys.stderr)


def _check_run_place(args):
    """--name is a folder name under runs/, --save-dir a folder: neither may be empty, and a name
    may not lead out of runs/ (--name ../../x wrote the run elsewhere)."""
    if args.save_dir is not None and not args.save_dir.strip():
        raise UserError('--save-dir is empty; give the run\'s folder (or leave the flag out for '
                        'runs/METHOD-DATA).')
    name = args.name
    if name is not None and (not name.strip() or name in ('.', '..') or '/' in name or
                             (os.sep != '/' and os.sep in name)):
        raise UserError('--name %r is not a folder name under runs/ (no "/", not empty, not "." '
                        'or ".."); to put the run elsewhere give --save-dir.' % name)


def _resume_record(save_dir):
    """The record (``args.json``) of the run to resume, or None when the folder has none."""
    from .engine.rundir import read_record
    if not os.path.isfile(os.path.join(save_dir, 'args.json')):
        return None
    try:
        return read_record(save_dir)
    except ValueError as err:
        raise UserError('%s Cannot resume it.' % err) from None


def _same(dest, old, new):
    from . import config
    if old is _MISSING:
        return False
    if dest == 'data' and isinstance(old, str) and isinstance(new, str):
        # a record of before the dataset's names were merged may hold 'cub' for 'cub-200-2011'
        return config.canonical_data_name(old) == config.canonical_data_name(new)
    if dest == 'steps':
        try:
            return sorted(config.parse_int_list(old)) == sorted(config.parse_int_list(new))
        except UserError:
            return False
    if isinstance(old, (int, float)) and isinstance(new, (int, float)) and \
            not isinstance(old, bool) and not isinstance(new, bool):
        return float(old) == float(new)
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        return list(old) == list(new)
    return old == new


def _show(value):
    if value is _MISSING:
        return 'not recorded'
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _resumed_args(parser, argv, given, record, method, save_dir, name):
    """The settings of a resumed run: the record's (with the changes of earlier resumes), then
    the flags of ``argv`` that may change on resume
    (:data:`gluon_dml.engine.rundir.CHANGEABLE_ON_RESUME`); any other flag whose value differs
    from the record is refused with one sentence naming it."""
    from . import config
    from .engine.rundir import BOOKKEEPING, CHANGEABLE_ON_RESUME, IGNORED_ON_RESUME, settings_in_force
    if record.get('method') not in (None, method.name):
        raise UserError('%s holds a %s run (made with %s); resume it with that command, not %s.'
                        % (save_dir, record.get('method'), record.get('command', '').split(' ')[0]
                           or 'its script', method.command))
    recorded = settings_in_force(record)
    args = parser.parse_args(argv)
    for key, value in recorded.items():
        if key in BOOKKEEPING or key.startswith('_') or key in given:
            continue
        setattr(args, key, value)
    config.resolve(args, method)
    if method.default_loss is not None:
        _loss_kwargs(args, given)
    own_options = set(getattr(args, '_loss_kwargs', {}))
    from .losses.options import option_users
    other_options = set(option_users()) - own_options
    changes = {}
    for dest in sorted(given):
        if dest in IGNORED_ON_RESUME or dest in other_options:
            continue
        new = getattr(args, dest, None)
        old = recorded.get(dest, _MISSING)
        if dest in own_options:
            old = (recorded.get('loss_options') or {}).get(dest, old)
        if _same(dest, old, new):
            continue
        if dest in CHANGEABLE_ON_RESUME:
            changes[dest] = new
            continue
        raise UserError('--%s %s would change the run in %s (recorded: %s); a resumed run keeps its '
                        'settings: drop the flag, or start a new run in another --save-dir.'
                        % (dest.replace('_', '-'), _show(new), save_dir, _show(old)))
    args.resume, args.save_dir, args.name = True, save_dir, recorded.get('name') or name
    args._record, args._resume_changes = record, changes
    return args


def check_batch_for_loss(args, method):
    """P x K batches against what the chosen loss needs: positives (K >= 2) and negatives (P >=
    2), as its class declares (``needs_positives_in_batch``, ``min_classes_in_batch``); methods
    whose batches are not P x K (``batch_k`` ignored) are not checked."""
    from .losses import get_loss_class
    name = getattr(args, 'loss', None)
    if not name or 'batch_k' in method.ignored_flags or not args.batch_k:
        return
    try:
        cls = get_loss_class(name)
    except ValueError:
        return
    positives = getattr(cls, 'needs_positives_in_batch', True)
    classes = getattr(cls, 'min_classes_in_batch', 2)
    per_batch = args.batch_size // args.batch_k
    if positives and args.batch_k < 2:
        raise UserError('--batch-k %d leaves the %s loss no positive pairs: it compares images of one '
                        'class, so a batch needs at least 2 images per class (--batch-k 2 or more; '
                        'the proxy losses proxy_nca, proxy_anchor, arcface, cosface and '
                        'triplet_center need none).' % (args.batch_k, name))
    if per_batch < classes:
        raise UserError('--batch-size %d with --batch-k %d puts %d class in each batch, so the %s loss '
                        'has no negatives (images of another class) to push away: lower --batch-k or '
                        'raise --batch-size to hold at least %d classes.'
                        % (args.batch_size, args.batch_k, per_batch, name, classes))


def _loss_kwargs(args, given):
    """The chosen loss's options from the flags (typed by its declaration) and from the recipe;
    options given for other losses become warnings."""
    from .config import check_float
    from .losses.factory import check_loss, loss_flags
    from .losses.options import option_users
    check_loss(args.loss, 'hashing' if args.method == 'hash' else 'embedding',
               getattr(args, 'beta_per_class', False))
    names = [n for n in option_users() if hasattr(args, n)]
    typed, warnings = loss_flags(args.loss, {n: getattr(args, n) for n in names if n in given})
    recipe, _ = loss_flags(args.loss, {n: getattr(args, n) for n in names if n not in given})
    kwargs = dict(recipe, **typed)
    for n, v in typed.items():
        if isinstance(v, float):
            check_float(v, '--' + n.replace('_', '-'), 'the %s loss' % args.loss)
    if getattr(args, 'xbm_size', 0):                 # the memory takes pair losses only
        from .losses.xbm import check_memory_loss
        try:
            check_memory_loss(args.loss, kwargs)
        except ValueError as err:
            raise UserError(str(err)) from None
    for n, v in kwargs.items():
        setattr(args, n, v)                          # args.json records the typed value
    args._loss_kwargs, args._loss_flag_warnings = kwargs, warnings


def train(method, argv=None):
    """Parse and train: what every ``train_*.py`` script does. Returns the final metrics."""
    from .methods import get_method, run
    m = get_method(method)
    args = parse(m, argv)
    return run(m, args)[1]


def add_threads_flag(parser, what='MXNet and faiss'):
    """``--threads N`` on a command's parser (:func:`main_guard` applies it before MXNet loads)."""
    parser.add_argument('--threads', type=positive_int, default=None, metavar='N',
                        help='CPU threads of %s (default: every core; OMP_NUM_THREADS if set)' % what)


def set_threads(argv):
    """Honour ``--threads N`` (or ``--threads=N``) before MXNet is imported: MXNet and faiss
    read ``OMP_NUM_THREADS`` when they load."""
    for i, token in enumerate(argv):
        value = None
        if token in ('--threads',) and i + 1 < len(argv):
            value = argv[i + 1]
        elif token.startswith('--threads='):
            value = token.split('=', 1)[1]
        if value is not None and value.isdigit() and int(value) >= 1:
            os.environ['OMP_NUM_THREADS'] = value


def _warning_line(message, category, filename, lineno, line=None):
    """A command's warnings as one line, ``warning: ...`` (Python's format adds the source file
    and line of the package, which tells a user nothing); other libraries' keep their category."""
    if category is UserWarning:
        return 'warning: %s\n' % message
    return '%s: %s\n' % (category.__name__, message)


@contextlib.contextmanager
def stop_signals(handlers=None):
    """Within: SIGINT raises ``KeyboardInterrupt`` even in a process that started with it ignored
    (a shell script's background job, where ``kill -INT`` did nothing), and ``handlers``
    ({signal: handler}, e.g. SIGTERM) are installed; the previous ones come back on the way out.
    In the main thread only (elsewhere Python allows no signal handler)."""
    import signal
    import threading
    wanted = {signal.SIGINT: signal.default_int_handler}
    wanted.update(handlers or {})
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, handler) for sig, handler in wanted.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def hear_ctrl_c():
    """Make Ctrl-C (SIGINT) raise ``KeyboardInterrupt`` in a process that started with it
    ignored: a shell script's background job (``gluon-dml search ... &`` in a script, a CI
    runner's step) inherits SIGINT ignored, and Python leaves an ignored SIGINT ignored, so
    ``kill -INT`` did nothing to search, search-codes or replay-viz --follow and they ran on.
    Every command calls it first (:func:`main_guard`), as :func:`stop_signals` does within. In
    the main thread only."""
    import signal
    import threading
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) == signal.SIG_IGN):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def interrupted_means(message):
    """Decorator of a command's ``main(argv)``: a bare Ctrl-C there says ``message`` instead of
    :func:`main_guard`'s, which advises the training runs' ``--resume``."""
    def decorate(main):
        def guarded(argv=None):
            try:
                return main(argv)
            except KeyboardInterrupt as err:
                if str(err):
                    raise
                raise KeyboardInterrupt(message) from None
        guarded.__doc__, guarded.__name__ = main.__doc__, main.__name__
        return guarded
    return decorate


def main_guard(main, argv=None, top_level=False):
    """Run ``main(argv)``; errors a user can cause become one line on stderr and exit code 2:
    bad flags and data (``UserError``, ``ValueError``, ``FileNotFoundError``), what the OS
    refuses (``OSError``: a full disk, a permission), damaged files. A signal is one line (exit
    130 / 143). ``GLUON_DML_DEBUG=1`` shows the full traceback instead. Anything else is a bug:
    one line saying so (exit 1), the traceback with ``GLUON_DML_DEBUG=1``."""
    set_threads(list(argv or []))
    _TOP_LEVEL['command'] = bool(top_level)
    if top_level:
        warnings.formatwarning = _warning_line
        hear_ctrl_c()
        _print_any_file_name()
    debug = bool(os.environ.get('GLUON_DML_DEBUG'))
    try:
        # MXNet loads here (a second or more): Ctrl-C meanwhile is one line too
        from .engine import NaNLossError, TrainingInterrupted
        from .models import PretrainedUnavailableError
    except KeyboardInterrupt:
        if debug:
            raise
        print('\nInterrupted (Ctrl-C) while starting; nothing was done.', file=sys.stderr)
        sys.exit(130)
    try:
        result = main(argv)
        sys.stdout.flush()            # a reader gone meanwhile is met here, not at Python's exit
        return result
    except TrainingInterrupted as err:
        from .engine import distributed
        if distributed.writes_the_run():     # in a job, rank 0 speaks for the workers
            print('\n' + str(err), file=sys.stderr)
        sys.exit(130 if err.signame == 'SIGINT' else 143)
    except KeyboardInterrupt as err:
        if debug:
            raise
        print('\n%s' % (str(err) or 'Interrupted (Ctrl-C); nothing was saved at this point: a '
                         'training run continues from its last checkpoint with --resume.'),
              file=sys.stderr)
        sys.exit(143 if getattr(err, 'signame', None) == 'SIGTERM' else 130)
    except (UserError, ValueError, FileNotFoundError, PretrainedUnavailableError, NaNLossError) as err:
        if debug:
            raise
        print('error: %s' % _one_line(err), file=sys.stderr)
        _exit_after_error(2)
    except OSError as err:
        if debug:
            raise
        if isinstance(err, BrokenPipeError) and _stdout_gone():
            # the reader of the output left (gluon-dml search ... | head): not an error of
            # ours; quiet, with the status of a process that SIGPIPE ended, as head's writers
            # have (it said 'error: Broken pipe.', exit 2, and Python's exit flush a second line)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(128 + 13)
        where = ' (%s)' % err.filename if getattr(err, 'filename', None) else ''
        print('error: %s%s.' % (err.strerror or err, where), file=sys.stderr)
        _exit_after_error(2)
    except SystemExit:
        raise
    except Exception as err:  # noqa: BLE001  (the last resort: a line, not a traceback)
        if debug:
            raise
        print('error: unexpected %s: %s (a bug? GLUON_DML_DEBUG=1 shows the traceback; please '
              'report it).' % (type(err).__name__, _one_line(err)), file=sys.stderr)
        _exit_after_error(1)


def _print_any_file_name():
    """A file name that is not UTF-8 (a Latin-1 name from an old archive) reaches Python as
    surrogate escapes; under a strict UTF-8 locale (en_US.UTF-8) printing it, a catalogue's hit
    of gluon-dml search, ended the command with "error: 'utf-8' codec can't encode character
    '\\udce9' ... surrogates not allowed". Standard output writes such a name's own bytes
    instead, as ``ls`` into a pipe does (standard error already escapes them)."""
    stdout = sys.stdout
    if getattr(stdout, 'errors', None) == 'strict' and hasattr(stdout, 'reconfigure'):
        try:
            stdout.reconfigure(errors='surrogateescape')
        except (ValueError, OSError):      # a stream that cannot change: left as it is
            pass


def _stdout_gone():
    """Whether standard output is a pipe whose reader has closed it (poll says POLLERR)."""
    import select
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, ValueError, OSError):     # no poll, no real stdout (a test's stream)
        return False


def _exit_after_error(code):
    """``sys.exit(code)``; a worker of a distributed job leaves at once instead (see
    :func:`gluon_dml.engine.distributed.exit_worker`). A process that never loaded that module
    (it imports MXNet) is in no job: it is not loaded for the exit."""
    distributed = sys.modules.get(__package__ + '.engine.distributed')
    if distributed is None:
        sys.exit(code)
    distributed.exit_worker(code)


def _one_line(err):
    """An error as one line: its message, or for a message of several lines (MXNet's carry a C++
    stack trace) the first."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if len(lines) > 1 and not isinstance(err, (UserError,)):
        text = lines[0]
    else:
        text = ' '.join(lines)
    if isinstance(err, KeyError) and type(err).__str__ is KeyError.__str__:
        text = 'missing %s' % text           # a bare KeyError says only the key
    return text or type(err).__name__


def refuse_empty_path(path, flag='--out'):
    """``path`` (``~`` expanded), refused when it is empty or blank: ``--out ''`` names no file
    (embed wrote ".npz" here; export --onnx '' wrote the default file)."""
    path = os.path.expanduser(str(path))
    if not path.strip():
        raise UserError('%s is empty; give a file name.' % flag)
    return path


def output_path(path, suffix=None, flag='--out'):
    """An output file of a command, settled before any work: ``suffix`` added when missing
    (``np.savez`` adds ``.npz`` itself, so the name printed would not be the file's), its folder
    made, and a folder that cannot be made refused now rather than after the embedding."""
    if path is None:
        return None
    path = refuse_empty_path(path, flag)
    if os.path.isdir(path):                 # before the suffix: a folder is no FOLDER.npz to write
        raise UserError('%s %s is a folder; give a file name.' % (flag, path))
    if suffix and not path.endswith(suffix):
        path += suffix
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise UserError('%s %s: its folder %s cannot be made (%s).'
                        % (flag, path, folder, err.strerror or err)) from None
    if os.path.isdir(path):
        raise UserError('%s %s is a folder; give a file name.' % (flag, path))
    # a folder that takes no file (read-only, /proc) failed after the work, naming a temporary
    why = _takes_no_file(folder)
    if why:
        raise UserError('%s %s cannot be written: its folder %s takes no file (%s).'
                        % (flag, path, folder, why))
    return path


def _takes_no_file(folder):
    """Why ``folder`` takes no new file (the OS's words), or None: a probe file made and removed."""
    probe = os.path.join(folder, '.gluon-dml-probe-%d' % os.getpid())
    try:
        with open(probe, 'w'):
            pass
        os.remove(probe)
    except OSError as err:
        return err.strerror or str(err)
    return None


# the run's own files an output must not replace (eval-*.json and codes.npz are outputs too)
_RUN_RECORD = ('args.json', 'log.jsonl', 'best.params', 'best.loss.params', 'best.json',
               'vocab.json', 'iterations.jsonl')


def refuse_run_file(run_dir, path, flag='--out'):
    """Refuse an output ``path`` that is a file of the run ``run_dir`` itself: its record, log,
    best network or exported network (evaluate --out RUN/args.json replaced the record, export
    --onnx RUN/model-0000.params the exported parameters)."""
    import fnmatch
    real = os.path.realpath(path)
    name = os.path.basename(real)
    if os.path.dirname(real) == os.path.realpath(run_dir) and (name in _RUN_RECORD or any(
            fnmatch.fnmatch(name, pat) for pat in ('*-symbol.json', '*-0000.params'))):
        raise UserError('%s %s is a file of the run itself; choose another name.' % (flag, path))


def default_output_folder(folder, what, flag='--out'):
    """Refuse, before any work, a command's default output folder (in the run folder) that takes
    no file, e.g. a run on a read-only disk: the work was done, then 'Read-only file system'.
    ``folder`` may not exist yet (RUN/plots): then its parent is asked."""
    asked = folder if os.path.isdir(folder) else os.path.dirname(os.path.abspath(folder))
    why = _takes_no_file(asked) if os.path.isdir(asked) else None
    if why:
        raise UserError('%s takes no file (%s), and %s goes there by default: give %s FILE.'
                        % (asked, why, what, flag))


def add_trained_run_flags(parser):
    """The flags every command that loads a trained run shares: which parameters, on which
    device, in batches of how many."""
    parser.add_argument('--checkpoint', choices=['best', 'last'], default=None,
                        help='best.params, or the newest checkpoint (default: the network the run '
                             'reports: best on validation classes when it trained with them, else '
                             'the final one)')
    parser.add_argument('--gpus', default='', help='GPU ids, "" for the CPU')
    parser.add_argument('--batch-size', '--batch_size', type=positive_int, default=256,
                        help='images (or captions) embedded at a time')
    add_fusion_flag(parser)


def add_fusion_flag(parser):
    """``--no-fusion``: run the network without MKLDNN operator fusion on the CPU."""
    parser.add_argument('--no-fusion', '--no_fusion', action='store_true',
                        help='run the network without MKLDNN operator fusion (on by default on the '
                             'CPU: conv + batch norm + ReLU and Dense fused, static memory; '
                             'embeddings within 1e-6 of unfused; GLUON_DML_FUSION=0 turns it off '
                             'everywhere)')


def add_int8_flags(parser, data_path=True):
    """``--int8`` and its calibration (``--calib-images``, ``--calib-mode``; ``--data-path``
    where the command has none yet): INT8 inference of an embedding run."""
    parser.add_argument('--int8', action='store_true',
                        help='embed with the network quantized to INT8 (CPU, MKLDNN), calibrated on '
                             '--calib-images training images of the run\'s dataset; kept in '
                             'RUN_DIR/int8/ for the next time')
    parser.add_argument('--calib-images', '--calib_images', type=positive_int, default=256,
                        metavar='N', help='--int8: training images that calibrate the ranges '
                                          '(default 256)')
    parser.add_argument('--calib-mode', '--calib_mode', choices=('naive', 'entropy'), default='naive',
                        help='--int8: naive (min / max of each layer\'s outputs) or entropy (the '
                             'range of least KL divergence) (default naive)')
    if data_path:
        parser.add_argument('--data-path', '--data_path', default=None,
                            help='--int8: where the run\'s dataset lives (default: the path the '
                                 'run used)')


def inference_note(trained, brief=False):
    """How a trained run's network computes: '; INT8, ...' / '; fused' / ''."""
    if trained.precision == 'int8':
        info = trained.int8_info
        if brief:
            return ', INT8'
        from .amx import active
        return ('; INT8, %s calibration, %s%s' % (info['calib_mode'], info['source'],
                                                  ', on Intel AMX' if active() else ''))
    if brief:
        return ''
    return '; float32, MKLDNN fusion' if trained.fused else '; float32'


def int8_setting(a):
    """The ``int8`` argument of :func:`gluon_dml.methods.open_run` from the parsed flags (None
    without ``--int8``)."""
    if not getattr(a, 'int8', False):
        return None
    return {'calib_images': a.calib_images, 'calib_mode': a.calib_mode,
            'data_path': getattr(a, 'data_path', None)}


def print_metrics(metrics, digits=4, skip=()):
    """One ``name value`` line per metric, floats with ``digits`` decimals."""
    for k, v in metrics.items():
        if k not in skip:
            print('%-20s %s' % (k, '%.*f' % (digits, v) if isinstance(v, float) else v))
