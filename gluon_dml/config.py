"""Settings of a training run: the defaults, the per-dataset recipes, and the checks.

A run's settings come from four layers, first match wins: the command line, the method's own
settings for the dataset (``Method.recipe``: N-pair's two images per class, HashNet's plain
batches), the dataset's recipe (:data:`RECIPES`, :data:`IMAGE_RECIPE`), then :data:`DEFAULTS`
(the original research scripts' settings: CUB-200-2011 with a ResNet-50, Wu et al. 2017).
:func:`resolve` applies them; :func:`check` refuses what cannot train; :func:`flag_warnings` names
the flags that the chosen combination ignores. Nothing here parses argv or prints.
"""
import math
import os
import re

from gluon_dml import FLOAT32_MAX
from .amx import bfloat16_refusal
from .data import IMAGE_OPTIONS, get_transform, is_image_dataset, normalize_name
from .data.augment import ROTATIONS
from .data.research import DATASET_ALIASES
from .errors import UserError

__all__ = ['DEFAULTS', 'RECIPES', 'NAMED_RECIPES', 'named_recipe', 'IMAGE_RECIPE', 'canonical_data_name', 'resolve', 'check',
           'flag_warnings', 'default_rule', 'dataset_options', 'parse_int_list', 'check_nmi_runs',
           'check_tta_shift', 'parse_checkpoint_every', 'MAX_LR']

# A learning rate this large diverges at the first step whatever the optimizer.
MAX_LR = 10.0

DEFAULTS = dict(
    data='omniglot', data_path=None, model='resnet50_v2', embed_dim=128, batch_size=70, batch_k=5,
    epochs=20, optimizer='adam', lr=1e-4, loss_lr=0.1, wd=1e-4, momentum=0.9, steps='12,14,16,18',
    factor=0.5, batches_per_epoch=None, seed=123, num_workers=0, log_interval=20,
    eval_batch_size=256, beta_per_class=False, eval_interval=1, episodes=0, rotations=1, shift=0,
    tilt=0.0, zoom=0.0, members=1, tta_shift=0,
)

_SMALL = dict(model='smallconv', embed_dim=64, optimizer='adam', lr=1e-3, loss_lr=1e-2, wd=0.0,
              steps='')

RECIPES = {
    # The Omniglot open-set protocol (the embedded default; the two small background archives
    # ship inside the package): batch 128 = 32 classes x 4, 30 epochs; the margin loss with one
    # beta per class (chosen on validation classes, docs/results.md).
    'omniglot': dict(_SMALL, batch_size=128, batch_k=4, epochs=30, beta_per_class=True),
    # Open-set digits (train 0-4, test 5-9): the one-minute smoke test.
    'digits': dict(_SMALL, batch_size=60, batch_k=12, epochs=10),
    # The Fashion-MNIST open-set protocol: batch 125 = 5 classes x 25, 5 epochs of 240 batches.
    'fashion-mnist': dict(_SMALL, batch_size=125, batch_k=25, epochs=5),
}

# Named recipes (``--recipe NAME``): a whole setting for one dataset, over the method's and the
# dataset's own; flags typed on the command line still win. Each was chosen on validation classes.
NAMED_RECIPES = {
    # Omniglot 20-way 1-shot from the two small background sets alone (docs/research.md,
    # "A few-shot recipe"): the Omniglot margin recipe (small conv net, margin loss with one beta
    # per class, batch 32 classes x 4, 30 epochs) with every training character also turned by
    # 90, 180 and 270 degrees as three new characters (732 classes) and moves of up to 2 pixels;
    # 20-way 1-shot episodes reported at every evaluation (every 10 epochs and the last).
    # Chosen on --val-classes Korean,Early_Aramaic (docs/research.md gives the runs).
    'fewshot': ('omniglot', dict(rotations=4, shift=2, episodes=1000, way=20, shot=1,
                                 eval_interval=10)),
    # The few-shot recipe with more of the same (docs/research.md, "An ensemble recipe"): every
    # training character and its mirror image at the four turns (1,464 classes), three small
    # conv nets trained side by side (their embeddings joined), test-time moves of 1 pixel,
    # 20 epochs (8 minutes of training on 2 cores). Chosen on --val-classes Korean,Early_Aramaic.
    'fewshot-ensemble': ('omniglot', dict(rotations=8, shift=2, members=3, tta_shift=1, epochs=20,
                                          episodes=1000, way=20, shot=1, eval_interval=10)),
}


# The photo datasets (CUB_200_2011, Cars196, SOP / EbayInClass / EbayCrossClass, InShop, LFW,
# folder, list) use DEFAULTS, the research scripts' settings, plus parallel decoding.
IMAGE_RECIPE = dict(num_workers=min(4, os.cpu_count() or 1), image_size=224, color_jitter=0.0)

_ALIASES = {'fashion_mnist': 'fashion-mnist', 'fashionmnist': 'fashion-mnist',
            'fmnist': 'fashion-mnist'}


def canonical_data_name(name):
    """The name a run records for ``--data``: lower case with hyphens, one name per dataset
    (``CUB`` and ``cub_200_2011`` are ``cub-200-2011``; ``fmnist`` is ``fashion-mnist``)."""
    for alias, name_ in DATASET_ALIASES.items():
        if normalize_name(alias) == normalize_name(name):
            name = name_
            break
    key = name.strip().lower().replace('_', '-')
    return _ALIASES.get(key.replace('-', '_'), _ALIASES.get(key, key))


def _dataset_recipe(data):
    """The recipe of dataset ``data`` (its canonical name): :data:`RECIPES` under any spelling of
    the name (a plug-in's ``RECIPES['my_glyphs']`` serves ``--data my_glyphs``), else the photo
    datasets' :data:`IMAGE_RECIPE` or nothing."""
    for key, recipe in RECIPES.items():
        if canonical_data_name(key) == data:
            return recipe
    return IMAGE_RECIPE if is_image_dataset(data) else {}


def _image_side(args):
    """The side of the images the network sees: ``--image-size`` for the photo datasets, else
    that of the dataset's registered test-time transform (None when it has none)."""
    if is_image_dataset(args.data):
        return getattr(args, 'image_size', None)
    try:
        size = getattr(get_transform(args.data), 'size', None)
    except ValueError:
        return None
    return size[0] if size else None


def _recipe_missing(args, method):
    """True for an in-memory dataset that neither :data:`RECIPES` nor the method gives settings:
    it trains with :data:`DEFAULTS`, made for photos (a plug-in that registered no recipe)."""
    return not (is_image_dataset(args.data) or _dataset_recipe(args.data) or
                method.recipe(args.data))


def named_recipe(name, data):
    """The settings of ``--recipe name`` for dataset ``data`` (``{}`` for no recipe); a recipe
    made for another dataset, or an unknown name, is refused."""
    if not name:
        return {}
    if name not in NAMED_RECIPES:
        raise UserError('--recipe %s: no such recipe; the recipes are %s.'
                        % (name, ', '.join('%s (--data %s)' % (n, d) for n, (d, _) in
                                           sorted(NAMED_RECIPES.items()))))
    for_data, settings = NAMED_RECIPES[name]
    if data != for_data:
        raise UserError('--recipe %s is the %s recipe; it cannot train --data %s (drop --recipe, '
                        'or use --data %s).' % (name, for_data, data, for_data))
    return settings


def resolve(args, method):
    """Fill every setting of ``args`` not given on the command line (None) from the layers, name
    the run, and check the result. ``method``: a :class:`gluon_dml.methods.Method`."""
    args.method = method.name
    recipe_name = getattr(args, 'recipe', None)
    if recipe_name and method.name != 'margin':
        raise UserError('--recipe %s is a recipe of gluon-dml train-margin (a loss of the zoo); '
                        '%s has no --loss to take it.' % (recipe_name, method.command))
    args.data = canonical_data_name(args.data or (NAMED_RECIPES[recipe_name][0] if recipe_name in
                                                  NAMED_RECIPES else method.default_data))
    for dest in method.ignored_flags:        # no effect with this method: its recipe value stays
        if hasattr(args, dest):
            setattr(args, dest, None)
    asked_beta_per_class = getattr(args, 'beta_per_class', None)
    k_only = getattr(args, 'batch_k', None) is not None and getattr(args, 'batch_size', None) is None
    named = named_recipe(recipe_name, args.data)
    if hasattr(args, 'loss') and named.get('loss') is None and args.loss is None:
        args.loss = method.default_loss
    for layer in (named, method.recipe(args.data), _dataset_recipe(args.data), DEFAULTS):
        for key, value in layer.items():
            if getattr(args, key, None) is None:
                setattr(args, key, value)
    if asked_beta_per_class is None and getattr(args, 'loss', None) != 'margin':
        args.beta_per_class = False          # a recipe's margin-loss setting; other losses have no beta
    if k_only and args.batch_k >= 1 and args.batch_size % args.batch_k:   # < 1: check() says so
        _fit_batch_size(args)
    method.setup(args)
    check(args, method)
    return args


def _fit_batch_size(args):
    """``--batch-k`` given alone, and the default batch size is no multiple of it: take the
    multiple nearest that default, of at least two classes (``--batch-k 5`` with 128 gives 130,
    26 classes x 5 images), and leave a note for the command line to print."""
    default, k = args.batch_size, args.batch_k
    args.batch_size = k * max(2, int(default / k + 0.5))    # a batch of one class has no negatives
    args._batch_note = ('--batch-k %d: the batch takes %d images (%d classes x %d), the multiple '
                        'of %d nearest the default batch size %d; --batch-size chooses another.'
                        % (k, args.batch_size, args.batch_size // k, k, k, default))


def _optimizers():
    import mxnet as mx
    return set(mx.optimizer.Optimizer.opt_registry)


def check_float(value, flag, what=None):
    """Refuse (:class:`UserError`) a number flag's value that is not finite or lies beyond
    float32's range, in which MXNet trains (1e39 became inf there and the run failed later,
    blaming another flag). ``what``: whose flag, e.g. ``the margin loss``."""
    name = flag if what is None else '%s for %s' % (flag, what)
    if not math.isfinite(value):
        raise UserError('%s must be a finite number, got %s.' % (name, value))
    if abs(value) > FLOAT32_MAX:
        raise UserError("%s is %s, beyond float32's range (|x| <= %.4g), in which training "
                        "computes." % (name, value, FLOAT32_MAX))


def _flag_name(key):
    return '--' + key.replace('_', '-')


def check(args, method=None):
    """Refuse settings that cannot train, with one sentence each saying why."""
    for key in ('batch_size', 'batch_k', 'epochs', 'embed_dim', 'eval_batch_size', 'batches_per_epoch'):
        v = getattr(args, key, None)
        if v is not None and v < 1:
            raise UserError('%s must be a positive integer, got %s.' % (_flag_name(key), v))
    for key in ('num_workers', 'log_interval'):
        v = getattr(args, key, None)
        if v is not None and v < 0:
            raise UserError('%s must be 0 or more, got %s.' % (_flag_name(key), v))
    for key in ('lr', 'loss_lr', 'wd', 'momentum', 'factor', 'color_jitter'):
        v = getattr(args, key, None)
        if isinstance(v, float):
            check_float(v, _flag_name(key))
    if args.batch_size % args.batch_k:
        raise UserError('--batch-size (%d) must be a multiple of --batch-k (%d): a batch is P classes '
                        'x K images; try --batch-size %d.'
                        % (args.batch_size, args.batch_k, args.batch_k * max(1, args.batch_size // args.batch_k)))
    for key in ('optimizer', 'loss_optimizer'):
        name = getattr(args, key, None)
        if name is not None and str(name).lower() not in _optimizers():
            raise UserError('%s %s is no MXNet optimizer; known: %s.'
                            % (_flag_name(key), name, ', '.join(sorted(_optimizers()))))
    if args.lr <= 0:
        raise UserError('--lr must be positive, got %g.' % args.lr)
    loss_lr = getattr(args, 'loss_lr', None)
    if loss_lr is not None and loss_lr <= 0:
        raise UserError("--loss-lr must be positive (the learning rate of the loss's own "
                        "parameters), got %g." % loss_lr)
    for key, v in (('lr', args.lr), ('loss_lr', loss_lr)):
        if v is not None and v > MAX_LR:
            raise UserError('%s %g cannot train: a learning rate above %g sends the parameters to '
                            'infinity at the first step.' % (_flag_name(key), v, MAX_LR))
    if getattr(args, 'wd', None) is not None and args.wd < 0:
        raise UserError('--wd must be 0 or more, got %g: a negative weight decay makes the weights '
                        'grow at every step.' % args.wd)
    momentum = getattr(args, 'momentum', None)
    if momentum is not None and not 0 <= momentum < 1:
        raise UserError('--momentum must lie in [0, 1), got %g: at 1 or more the updates grow '
                        'without bound.' % momentum)
    factor = getattr(args, 'factor', None)
    if factor is not None and factor <= 0:
        raise UserError('--factor must be positive, got %g: the learning rate is multiplied by it at '
                        'each step, so %s.' % (factor, 'it would become negative (gradient ascent)'
                                               if factor < 0 else 'learning would stop'))
    check_nmi_runs(getattr(args, 'nmi_runs', None))
    eval_runs = getattr(args, 'eval_nmi_runs', None)
    if eval_runs is not None and eval_runs < 0:
        raise UserError('--eval-nmi-runs must be 0 (no NMI before the last epoch) or more, got %d.'
                        % eval_runs)
    rotations, shift = getattr(args, 'rotations', None), getattr(args, 'shift', None)
    if rotations is not None and rotations not in ROTATIONS:
        raise UserError('--rotations must be 1 (off), 2 (half turns), 4 (quarter turns) or 8 '
                        '(quarter turns of the classes and their mirror images), got %d.'
                        % rotations)
    if shift is not None and shift < 0:
        raise UserError('--shift must be 0 (off) or more pixels, got %d.' % shift)
    members = getattr(args, 'members', None)
    if members is not None and members < 1:
        raise UserError('--members must be 1 (one network) or more, got %d.' % members)
    if (members or 1) > 1 and getattr(args, 'xbm_size', 0):
        raise UserError('--members and --xbm-size do not go together: the cross-batch memory '
                        'holds one network\'s embeddings.')
    check_tta_shift(getattr(args, 'tta_shift', None))
    tilt, zoom = getattr(args, 'tilt', None), getattr(args, 'zoom', None)
    if tilt is not None and not 0 <= tilt <= 180:
        raise UserError('--tilt must lie in [0, 180] degrees (0: off), got %g.' % tilt)
    if zoom is not None and not 0 <= zoom < 1:
        raise UserError('--zoom must lie in [0, 1) (0: off; 0.1 scales by 0.9 to 1.1), got %g.'
                        % zoom)
    if ((rotations or 1) > 1 or shift or tilt or zoom) and is_image_dataset(args.data):
        raise UserError('--rotations, --shift, --tilt and --zoom are for the in-memory grey '
                        'datasets (digits, fashion-mnist, omniglot); the photo datasets augment '
                        'with random crops, flips and --color-jitter.')
    if shift and args.data == 'digits' and shift > 2:
        raise UserError('--shift %d would move 8x8 digits off the image; use at most 2.' % shift)
    if getattr(args, 'eval_interval', 1) < 1:
        raise UserError('--eval-interval must be at least 1 (epochs between evaluations), got %d.'
                        % args.eval_interval)
    args.steps_list = parse_int_list(args.steps)
    bad = [s for s in args.steps_list if s < 1]
    if bad:
        raise UserError('--steps takes the epochs (1 or more) after which the learning rate drops, '
                        'got %d.' % bad[0])
    check_amp(getattr(args, 'amp', None), getattr(args, 'gpus', ''), getattr(args, 'method', None))
    threads = getattr(args, 'threads', None)
    if threads is not None and threads < 1:
        raise UserError('--threads must be at least 1, got %d.' % threads)
    for key in ('image_size', 'resize'):
        v = getattr(args, key, None)
        if v is not None and v < 1:
            raise UserError('%s must be a positive number of pixels, got %d.' % (_flag_name(key), v))
    if getattr(args, 'image_size', None) and getattr(args, 'resize', None) and args.resize < args.image_size:
        raise UserError('--resize (%d) must be at least --image-size (%d): the test-time centre crop '
                        'of --image-size is cut from the image resized to --resize.'
                        % (args.resize, args.image_size))
    jitter = getattr(args, 'color_jitter', None)
    if jitter is not None and not 0 <= jitter <= 1:
        raise UserError('--color-jitter must lie in [0, 1], got %g.' % jitter)
    (args.checkpoint_every_batches,
     args.checkpoint_every_minutes) = parse_checkpoint_every(getattr(args, 'checkpoint_every', None))
    check_distributed(args, method)


def parse_checkpoint_every(text):
    """``--checkpoint-every``: ``N`` batches or ``Mm`` / ``Mmin`` minutes; ``(batches, minutes)``
    (0 for the one not used; None or 0: checkpoints at the end of each epoch only)."""
    if text is None or str(text).strip() in ('', '0'):
        return 0, 0.0
    t = str(text).strip().lower()
    m = re.match(r'^(\d+(?:\.\d*)?)\s*(m|min|mins|minutes?)$', t)
    if m:
        minutes = float(m.group(1))
        if minutes > 0:
            return 0, minutes
    elif t.isdigit() and int(t) > 0:
        return int(t), 0.0
    raise UserError('--checkpoint-every takes a number of batches (500) or of minutes (30m), '
                    'above 0, got %r.' % text)


def check_amp(amp, gpus, method=None):
    """``--amp``: float16 needs a GPU (MXNet's float16 kernels and loss scaling are CUDA's);
    bfloat16 runs on the CPU only, one with AVX-512 (:func:`gluon_dml.amx.bfloat16_refusal`), and
    not with VSE++'s GRU."""
    if not amp:
        return
    on_cpu = (gpus or '').strip() in ('', '-1', 'cpu') or (gpus or '').strip().startswith('cpu:')
    if amp == 'float16' and on_cpu:
        raise UserError('--amp float16 needs a GPU (--gpus 0): MXNet\'s float16 mixed precision runs '
                        'on CUDA only; on the CPU use --amp bfloat16, or leave --amp out.')
    if amp == 'bfloat16' and not on_cpu:
        raise UserError('--amp bfloat16 is for the CPU (MXNet 1.9 has bfloat16 kernels in oneDNN '
                        'only); on a GPU use --amp (float16).')
    if amp == 'bfloat16' and method == 'vse':
        raise UserError('--amp bfloat16 does not work with VSE++: MXNet 1.9.1\'s bfloat16 AMP casts '
                        'the zero initial state of Gluon\'s GRU layer and fails; leave --amp out.')
    refusal = bfloat16_refusal() if amp == 'bfloat16' else None
    if refusal:
        raise UserError(refusal)


def check_distributed(args, method=None):
    """``--kvstore`` and the cross-batch memory flags."""
    kvstore = getattr(args, 'kvstore', None) or 'device'
    if kvstore.startswith('dist') and 'DMLC_ROLE' not in os.environ:
        command = getattr(method, 'command', None) or 'gluon-dml train-margin'
        workers = getattr(args, 'job_workers', None)
        if getattr(args, 'resume', False) and workers:
            # the setting came from the run's record, not from the command line
            raise UserError('%s was trained by a job of %d workers (--kvstore %s): resume it with '
                            'python -m gluon_dml.launch -n %d %s --resume ...'
                            % (args.save_dir, workers, kvstore, workers, command))
        raise UserError('--kvstore %s trains as one worker of a job: start the job with python -m '
                        'gluon_dml.launch -n WORKERS %s ... --kvstore %s.'
                        % (kvstore, command, kvstore))
    # dist_async: the trainer's optimizer is pickled to the servers when the store starts; the
    # learning rate set on the workers' copy afterwards never reaches them (the drops of --steps
    # did not happen, while the log showed the lowered rate)
    drops = [s for s in (getattr(args, 'steps_list', None) or []) if s < (getattr(args, 'epochs', 0) or 0)]
    if kvstore == 'dist_async' and drops and getattr(args, 'factor', 1.0) != 1.0:
        raise UserError('--kvstore dist_async keeps the learning rate the servers started with (the '
                        'optimizer lives there): the drops of --steps %s after epoch%s %s would not '
                        'happen. Train with --kvstore dist_sync, or give --steps "" for a constant '
                        'rate.' % (args.steps, 's' if len(drops) > 1 else '',
                                   ', '.join(map(str, drops))))
    size = getattr(args, 'xbm_size', 0) or 0
    if size < 0 or (getattr(args, 'xbm_start', 0) or 0) < 0:
        raise UserError('--xbm-size and --xbm-start must be >= 0, got %d and %d.'
                        % (size, args.xbm_start))
    if size and getattr(args, 'xbm_weight', 1.0) < 0:
        raise UserError('--xbm-weight must be >= 0, got %g.' % args.xbm_weight)


def check_nmi_runs(value):
    """``--nmi-runs``: None (the default) or a count of at least 1."""
    if value is not None and value < 1:
        raise UserError('--nmi-runs must be at least 1 (k-means runs averaged), got %d.' % value)


def check_tta_shift(value):
    """``--tta-shift`` (training or ``evaluate``): None (the default) or 0 (off) or more pixels."""
    if value is not None and value < 0:
        raise UserError('--tta-shift must be 0 (off) or more pixels, got %d.' % value)


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
    get = args.get if isinstance(args, dict) else (lambda k, d=None: getattr(args, k, d))
    if not is_image_dataset(get('data')):
        return {}
    opts = {k: get(k) for k in IMAGE_OPTIONS if k != 'augment' and get(k) is not None}
    if augment is not None:
        opts['augment'] = augment
    return opts


# ---------------------------------------------------------------------------------------------
# flags that the chosen combination ignores
# ---------------------------------------------------------------------------------------------

_PHOTO_FLAGS = ('image_size', 'resize', 'color_jitter', 'crop_boxes', 'skip_bad_images')
_VIZ_FLAGS = ('viz_server', 'viz_port', 'viz_env', 'tsne_interval', 'tsne_points')


def _flag(dest):
    return '--' + dest.replace('_', '-')


def flag_warnings(args, given, method):
    """One sentence for each flag in ``given`` (the dests typed on the command line) that has no
    effect with the other settings of ``args``."""
    out = []
    for dest, reason in method.ignored_flags.items():
        if dest in given:
            out.append('%s has no effect with %s: %s.' % (_flag(dest), method.command, reason))
    if _recipe_missing(args, method) and not getattr(args, 'resume', False):
        unset = [k for k in ('model', 'batch_size', 'epochs', 'lr') if k not in given]
        if unset:
            out.append('--data %s has no recipe (config.RECIPES[%r]): %s come from the defaults '
                       'made for photos (%s).' % (args.data, args.data, ', '.join(
                           _flag(k) for k in unset), ', '.join('%s %s' % (_flag(k), DEFAULTS[k])
                                                               for k in unset)))
    shift = getattr(args, 'tta_shift', 0) or 0
    side = _image_side(args) if shift else None
    if side and 2 * shift >= side:
        out.append('--tta-shift %d moves the %d x %d images by half their side or more: the '
                   'shifted copies are mostly padding (1 or 2 px is the usual setting).'
                   % (shift, side, side))
    if 'data_path' in given and args.data == 'digits':
        out.append('--data-path has no effect with --data digits: the digits ship with '
                   'scikit-learn.')
    if not is_image_dataset(args.data):
        for dest in _PHOTO_FLAGS + ('split_classes',):
            if dest in given and dest not in method.ignored_flags:
                out.append('%s has no effect with --data %s: it is an option of the photo '
                           'datasets (read from image files).' % (_flag(dest), args.data))
    else:
        key = normalize_name(args.data)
        if 'crop_boxes' in given and key not in ('cub2002011', 'cub', 'cars196', 'cars'):
            out.append('--crop-boxes has no effect with --data %s: only CUB-200-2011 and Cars196 '
                       'have bounding boxes.' % args.data)
        if 'split_classes' in given and key not in ('folder', 'list', 'lfw'):
            out.append('--split-classes has no effect with --data %s: its class split is the '
                       'official one.' % args.data)
    if not getattr(args, 'use_viz', False):
        for dest in _VIZ_FLAGS:
            if dest in given:
                out.append('%s has no effect without --use_viz.' % _flag(dest))
    if 'momentum' in given and args.optimizer not in ('sgd', 'nag') and \
            getattr(args, 'loss_optimizer', None) not in ('sgd', 'nag'):
        out.append('--momentum has no effect with --optimizer %s (only sgd and nag take it).'
                   % args.optimizer)
    if 'factor' in given and not args.steps_list:
        out.append('--factor has no effect without --steps (the epochs where the rate drops).')
    elif args.steps_list and getattr(args, 'factor', None) and args.factor > 1:
        out.append('--factor %g raises the learning rate at each step (a drop factor is below 1).'
                   % args.factor)
    late = [s for s in args.steps_list if s >= args.epochs]
    if 'steps' in given and late:
        out.append('--steps %s has no effect: the run ends after epoch %d, before the rate would '
                   'drop.' % (','.join(map(str, late)), args.epochs))
    if not getattr(args, 'xbm_size', 0):
        for dest in ('xbm_start', 'xbm_weight'):
            if dest in given:
                out.append('%s has no effect without --xbm-size (the cross-batch memory).'
                           % _flag(dest))
    out.extend(getattr(args, '_loss_flag_warnings', []))
    return out


def default_rule(key, method):
    """The default of setting ``key`` for ``method`` as a person reads it: one value, or the
    rule by dataset (``omniglot: 30, digits: 10, fashion-mnist: 5, photo datasets: 20``)."""
    groups = {}
    for label, data in method.help_datasets:
        layers = [method.recipe(data), _dataset_recipe(data), DEFAULTS]
        value = next((layer[key] for layer in layers if layer.get(key) is not None), None)
        groups.setdefault(_show(value), []).append(label)
    if len(groups) == 1:
        return next(iter(groups))
    return ', '.join('%s: %s' % (', '.join(names), value) for value, names in groups.items())


def _show(value):
    if value is None:
        return 'none'
    if isinstance(value, bool):
        return str(value).lower()
    if value == '':
        return '""'
    return str(value)
