"""What a method is, and the one function that trains any of them.

A :class:`Method` supplies the pieces: its recipe, data, sampler, network, loss, evaluator, the
engine class with its hooks, what happens after training, and a loader that turns a run folder
into encoders. :func:`run` does the rest for every method: the run folder, logging, devices,
seeding, the engine, the summary line.
"""
import json
import os
import sys

from ..data import list_datasets
from ..engine import EngineConfig, Logger, get_contexts, seed_everything
from ..engine.logger import read_log
from ..engine.distributed import cluster as job_cluster
from ..engine.inference import fused_or_plain, hybridize_for_inference, quantize
from ..engine.loop import Engine, TrainingInterrupted, _progress, embed_dataset, enable_amp
from ..engine.rundir import (abandon_run, load_run_args, prepare_run, resume_point,
                             trained_params_path, write_args)
from ..errors import UserError, first_line
from ..fileio import missing_folders, params_digest
from ..viz import VisdomSink, env_name
from ..viz.dashboard import check_address
from .registry import get_method

__all__ = ['Method', 'run', 'TrainedRun', 'Encoders', 'viz_sinks', 'summary_line']


class Method(object):
    """One training method. Subclasses set the attributes and implement the ``build_*`` steps.

    Attributes: ``name`` (recorded in ``args.json`` as ``method``), ``script``,
    ``description``, ``protocol`` (the dataset registry's protocol its ``--data`` names are
    of), ``default_loss`` (``None``: the method takes no ``--loss``),
    ``loss_family`` (``'embedding'`` or ``'hashing'``), ``default_data``, ``help_datasets``
    (``(label, dataset)`` pairs the ``--help`` text states the recipe defaults for),
    ``ignored_flags`` ({flag dest: why it has no effect}), ``best_metric``,
    ``summary_metrics`` (the metrics of the summary line), ``engine_class``, ``flags`` and
    ``flag_group`` (the method's own flags: ``(name, argparse keyword arguments)`` pairs, shown
    as their own group of ``--help``), ``data_path_help`` and ``name_help`` (help text).
    """
    name = None
    script = None
    description = ''
    # the methods with a command of their own (gluon-dml train-NAME); others: their script
    COMMAND_METHODS = ('margin', 'npair', 'hash', 'vse')

    @property
    def command(self):
        """How a user types this method's training command, for messages: ``gluon-dml
        train-margin`` for the four built-in commands, else ``script`` (a plug-in's
        ``train_centroid.py``, ``gluon-dml train hdc``)."""
        if self.name in self.COMMAND_METHODS:
            return 'gluon-dml train-%s' % self.name
        return self.script
    default_loss = None
    loss_family = 'embedding'
    default_data = 'omniglot'
    protocol = 'open-set'
    help_datasets = (('omniglot', 'omniglot'), ('digits', 'digits'),
                     ('fashion-mnist', 'fashion-mnist'), ('photo datasets', 'CUB_200_2011'))
    ignored_flags = {}
    best_metric = 'recall@1'
    summary_metrics = ('recall@1', 'map@r', 'nmi')
    engine_class = Engine
    flags = ()
    flag_group = None
    data_path_help = ('omniglot: the copy in the package; fashion-mnist: '
                      '/usr/share/datasets/fashion-mnist; photo datasets: $MXNET_HOME/datasets/NAME')
    name_help = 'METHOD-DATA'

    def dataset_names(self):
        """The ``--data`` names this method trains on: the datasets of its protocol."""
        return list_datasets(self.protocol)

    # -- settings -----------------------------------------------------------------------------
    def recipe(self, data):
        """The method's own settings for dataset ``data`` (over the dataset's recipe)."""
        return {}

    def default_name(self, args):
        return '%s-%s' % (self.name, args.data)

    def setup(self, args):
        """Check and complete the settings before anything is written (may raise UserError)."""

    def selects_on_validation(self, args):
        """Whether the evaluation split is validation data (then the best epoch is kept)."""
        return False

    def evaluation_split(self, args):
        """How the summary line names the evaluation split."""
        return 'validation classes' if self.selects_on_validation(args) else 'unseen test classes'

    # -- the pieces of a run ----------------------------------------------------------------------
    def build_data(self, args, logger):
        """``{'train': dataset, ...}`` plus whatever the evaluator needs."""
        raise NotImplementedError

    def build_sampler(self, args, data):
        raise NotImplementedError

    def build_loss(self, args, data):
        raise NotImplementedError

    def build_network(self, args, data, ctx):
        raise NotImplementedError

    def build_evaluator(self, args, data, logger):
        raise NotImplementedError

    def engine_options(self, args, data):
        """Keyword arguments of ``engine_class`` beyond the shared ones."""
        return {}

    takes_tta = False                   # whether inference_network applies --tta-shift

    def inference_network(self, args, net):
        """The network that embeds at test time (evaluation, export, a reopened run): ``net``
        itself, or ``net`` inside a wrapper (``--tta-shift``). ``args``: the run's namespace or
        its ``args.json``."""
        return net

    def finish(self, args, engine, data, ctx, logger):
        """After training: anything more to compute or write; returns the final metrics (or
        None to keep the last epoch's)."""
        return None

    # -- a trained run ----------------------------------------------------------------------------
    def network_for_run(self, args, ctx):
        """The untrained network of a run's settings (``args``: the dict of ``args.json``)."""
        raise NotImplementedError

    def encoders(self, trained):
        """:class:`Encoders` of a :class:`TrainedRun` of this method."""
        raise NotImplementedError

    def check_evaluation(self, args, a):
        """Refuse ``gluon-dml evaluate`` flags that do not fit a run of this method (``args``:
        its ``args.json``), before anything is loaded."""
        if getattr(a, 'tta_shift', None) is not None and not self.takes_tta:
            raise UserError('--tta-shift is for the single-head embedding runs (train-margin, '
                            'train-npair); %s is a %s run.' % (a.run_dir, self.name))

    @staticmethod
    def refuse_embedding_flags(a, what):
        """Refuse the ``evaluate`` flags of the embedding runs (Recall@K's --ks, NMI's
        --nmi-runs, few-shot --episodes), which the run ``a.run_dir``, ``what`` (e.g. "a VSE run,
        evaluated by ..."), would ignore."""
        for flag in ('--ks', '--nmi-runs', '--episodes'):
            if getattr(a, flag[2:].replace('-', '_'), None) is not None:
                raise UserError('%s is for the embedding runs (train-margin, train-npair); %s is %s.'
                                % (flag, a.run_dir, what))

    def evaluate_run(self, trained, a):
        """``gluon-dml evaluate`` on a run of this method (``a``: the parsed flags)."""
        raise NotImplementedError

    def calibration_images(self, trained, count, data_path=None):
        """``count`` training images of the run's dataset with its test-time preprocessing,
        (N, C, H, W) float32, to calibrate INT8 inference (:meth:`TrainedRun.quantize`); a method
        whose runs cannot be quantized raises UserError (the default)."""
        raise UserError('--int8 quantizes the image network of an embedding run (train-margin, '
                        'train-npair); %s is a %s run.' % (trained.run_dir, self.name))


def check_viz_flags(args):
    """Refuse ``--use_viz``'s flags that no dashboard could use (a port outside 1-65535, a
    ``--viz-server`` that is no http(s) address, a missing package): one sentence, before the run
    writes its folder (a refusal after it left a run folder that only --overwrite could reuse)."""
    if not getattr(args, 'use_viz', False):
        return
    check_address(getattr(args, 'viz_server', 'http://localhost'), getattr(args, 'viz_port', 8097))
    if getattr(args, 'tsne_interval', 1) < 0 or getattr(args, 'tsne_points', 1000) < 3:
        raise UserError('--tsne-interval must be >= 0 (0: no t-SNE) and --tsne-points >= 3.')
    try:
        import matplotlib  # noqa: F401  (the sink's threads import them: fail here, clearly)
        import sklearn  # noqa: F401
        import visdom  # noqa: F401
    except ImportError as err:
        raise UserError('--use_viz needs visdom, matplotlib and scikit-learn (pip install -e '
                        '".[cpu]"): %s.' % err) from None


def viz_sinks(args):
    """The dashboard sinks for ``--use_viz``: a :class:`gluon_dml.viz.VisdomSink` streaming to
    ``--viz-server:--viz-port`` (environment ``--viz-env``, default the run name) and writing the
    same plots into the run folder. It never blocks: an unreachable server is one warning."""
    if not getattr(args, 'use_viz', False):
        return []
    check_viz_flags(args)
    port = getattr(args, 'viz_port', 8097)
    return [VisdomSink(args.save_dir, env=env_name(getattr(args, 'viz_env', None) or args.name),
                       server=getattr(args, 'viz_server', 'http://localhost'), port=port,
                       tsne_interval=getattr(args, 'tsne_interval', 1),
                       tsne_points=getattr(args, 'tsne_points', 1000), last_epoch=args.epochs,
                       log_interval=args.log_interval, seed=args.seed, name=args.name,
                       command=getattr(args, 'command', None))]


def summary_line(method, args, untrained, trained, run_dir):
    """``untrained -> trained`` for the method's summary metrics, and where the run is."""
    parts = []
    for key in method.summary_metrics:
        if trained.get(key) is None:
            continue
        before = untrained.get(key)
        parts.append('%s %s -> %.3f' % (_metric_name(key), '%.3f' % before if before is not None
                                        else 'n/a', trained[key]))
    if trained.get('fs_proto') is not None:                 # --episodes: the few-shot accuracy
        before = untrained.get('fs_proto')
        parts.append('%s %s -> %.3f (+-%.3f)' % (
            trained.get('fs_setting', 'few-shot').split(',')[0],
            '%.3f' % before if before is not None else 'n/a', trained['fs_proto'],
            trained.get('fs_proto_ci95', float('nan'))))
    return ('summary: untrained -> trained on the %s (%s, %s network): %s; run folder %s'
            % (method.evaluation_split(args), args.data,
               'best-on-validation' if method.selects_on_validation(args) else 'final',
               ', '.join(parts), run_dir))


def _metric_name(key):
    return {'recall@1': 'Recall@1', 'map@r': 'MAP@R', 'nmi': 'NMI', 'map': 'mAP',
            'rsum': 'rsum'}.get(key, key)


def run(method, args):
    """Train (or resume) the run ``args`` describes with ``method``; returns (engine, final
    metrics). The summary line compares the untrained network (epoch 0) with the result."""
    # A distributed job (--kvstore dist_*): joining it waits for every worker; rank 0 alone
    # writes the run folder, logs and evaluates; the batches are shards of one global plan.
    job = job_cluster(getattr(args, 'kvstore', None) or 'device')
    writer = job.is_writer
    _check_job_size(args, job.num_workers)
    if writer:
        made = missing_folders(args.save_dir)     # given back if the run is refused before it starts
        run_dir = prepare_run(args)
        fresh = not os.path.exists(os.path.join(run_dir, 'args.json'))     # not a resumed run
        try:
            check_viz_flags(args)
            logger = Logger(run_dir)
            engine, data, ctx = _build(method, args, run_dir, logger, job)
            # the dashboard once the run is sure to start: a run refused on the way neither
            # leaves plots/ behind nor redraws the windows of the run before it
            logger.sinks.extend(viz_sinks(args))
        except BaseException:
            if not os.path.exists(os.path.join(run_dir, 'args.json')):
                abandon_run(run_dir, made)         # refused before anything of the run was written
            raise
    else:
        run_dir, logger = args.save_dir, _QuietLogger()
        engine, data, ctx = _build(method, args, run_dir, logger, job)
    try:
        metrics = engine.fit(resume=args.resume)
    except TrainingInterrupted:
        raise                                  # stopped by the user: --resume continues it
    except Exception:
        # failed before it trained anything (an image of the test split that cannot be read,
        # found by the epoch-0 evaluation): the folder is given back, so that the run the error
        # advises (--skip-bad-images, say) can start in it without --overwrite
        if writer and fresh and resume_point(run_dir) is None and \
                not any(r.get('epoch', 0) >= 1 for r in read_log(run_dir)):
            logger.close()
            abandon_run(run_dir, made)
        raise
    logger.close()
    if not writer:
        if job.distributed:
            # done with its steps, this worker only waits for rank 0 (which may still evaluate
            # and save) at the store's shutdown: a stop signal now would end it, and rank 0,
            # waiting for it there, would hang; rank 0 answers the signal alone
            import signal
            for s in (signal.SIGINT, signal.SIGTERM):
                signal.signal(s, signal.SIG_IGN)
        return engine, metrics
    final = method.finish(args, engine, data, ctx, logger) or metrics
    rows = read_log(run_dir)
    untrained = next((r for r in rows if r.get('epoch') == 0), {})
    reported = final or (rows[-1] if rows else {})          # a resumed run that had nothing left
    if engine.reported_params() is not None:              # the best epoch on validation data
        with open(os.path.join(run_dir, 'best.json')) as f:
            reported = json.load(f)
    logger.info(summary_line(method, args, untrained, reported, run_dir))
    return engine, final


def _check_job_size(args, workers):
    """Record how many workers train the run (``--batch-size`` is each worker's, so the
    global batch is their product) and refuse a resume by another number: it would be another
    run, as another --batch-size would. Runs recorded before this have no count: not checked."""
    recorded = getattr(args, 'job_workers', None)
    if args.resume and getattr(args, '_record', None) is not None and recorded is not None \
            and int(recorded) != workers:
        raise UserError('%s was trained by %d worker%s (a global batch of %d); resumed by %d it '
                        'would be another run: resume it with python -m gluon_dml.launch -n %d%s.'
                        % (args.save_dir, recorded, '' if recorded == 1 else 's',
                           args.batch_size * recorded, workers, recorded,
                           '' if recorded > 1 else ' or without the launcher'))
    args.job_workers = workers


def _build(method, args, run_dir, logger, job):
    """The data, loss, network, evaluator and engine of a run; the writer's record
    (``args.json``) is written last, once everything that can refuse the run has been built.
    Returns (engine, data, ctx)."""
    writer = job.is_writer
    ctx = get_contexts(args.gpus)
    if getattr(args, 'amp', None):      # before any network runs: AMP rewrites MXNet's operators
        enable_amp(args.amp, ctx)
    seed_everything(args.seed)
    data = method.build_data(args, logger)
    sampler = _job_sampler(method, args, data, job)
    loss = method.build_loss(args, data)
    loss = _with_memory(loss, args)
    net = method.build_network(args, data, ctx)
    if getattr(args, 'freeze_bn', False):
        freeze_batch_norm(net)
    loss.initialize(ctx=ctx[0])
    evaluator = method.build_evaluator(args, data, logger) if writer else _no_evaluation
    config = EngineConfig.from_args(args, best_metric=method.best_metric,
                                    select_best=method.selects_on_validation(args))
    engine = method.engine_class(net, loss, data['train'], sampler, evaluator, run_dir, ctx,
                                 config, logger=logger if writer else None,
                                 **method.engine_options(args, data))
    engine.inference_net = method.inference_network(args, net)
    if writer:
        write_args(args)
    return engine, data, ctx


def _job_sampler(method, args, data, job):
    """The method's sampler; in a distributed job the global plan (the method's sampler for a
    batch of ``--batch-size`` x workers) cut into one contiguous shard per worker."""
    if not job.distributed:
        return method.build_sampler(args, data)
    import copy
    from ..data import ShardedBatchSampler
    global_args = copy.copy(args)
    global_args.batch_size = args.batch_size * job.num_workers
    try:
        plan = method.build_sampler(global_args, data)
    except ValueError as err:
        # the sampler speaks of the job's batch; --batch-size is each worker's
        raise UserError('%s (In this job --batch-size %d is each worker\'s: the batch of the %d '
                        'workers together is %d.)' % (str(err).rstrip(), args.batch_size,
                                                      job.num_workers, global_args.batch_size)) from None
    return ShardedBatchSampler(plan, job.rank, job.num_workers)


def _with_memory(loss, args):
    """``--xbm-size M``: the loss wrapped in a cross-batch memory of M embeddings."""
    size = getattr(args, 'xbm_size', 0) or 0
    if not size:
        return loss
    from ..losses.xbm import CrossBatchMemory
    try:
        return CrossBatchMemory(loss, size, embed_dim=args.embed_dim,
                                start=getattr(args, 'xbm_start', 0) or 0,
                                weight=getattr(args, 'xbm_weight', 1.0))
    except ValueError as err:
        raise UserError(str(err)) from None


def freeze_batch_norm(net):
    """``--freeze-bn``: every BatchNorm layer normalises with its running statistics and
    leaves them as they are (scale and shift still learn): the usual setting when fine-tuning a
    pretrained backbone, and what makes a step independent of how the batch is split over
    devices and workers."""
    from mxnet.gluon import nn
    for block in _blocks(net):
        if isinstance(block, nn.BatchNorm):
            block._kwargs['use_global_stats'] = True


def _blocks(block):
    yield block
    for child in block._children.values():
        yield from _blocks(child)


def _no_evaluation(net, ctx, epoch):
    return {}


class _QuietLogger(object):
    """The logger of a worker that is not rank 0: it writes and prints nothing."""
    sinks = ()

    def info(self, msg):
        pass

    def truncate(self, before_epoch):
        pass

    def log_iter(self, step, values):
        pass

    def log_epoch(self, epoch, values):
        pass

    def log_embeddings(self, *args):
        pass

    def close(self):
        pass


class Encoders(object):
    """What a trained run turns inputs into: ``image(batch)`` (N, C, H, W) -> (N, D) numpy,
    ``preprocess(path or PIL image)`` -> (C, H, W) (the run's test-time preprocessing), and for
    cross-modal runs ``text(list of str)`` -> (M, D). ``kind``: ``'float'`` or ``'binary'``
    (hashing: ``image`` returns {-1, +1} codes of ``dim`` bits); ``normalized``: unit-length
    float embeddings (search by inner product)."""

    def __init__(self, image, preprocess, dim, kind='float', normalized=True, text=None, ctx=None):
        self.image, self.preprocess, self.text = image, preprocess, text
        self.dim, self.kind, self.normalized, self.ctx = int(dim), kind, bool(normalized), ctx

    def embed_paths(self, paths, batch_size=64, progress=False, skip_bad=True):
        """Embeddings of image files, in batches: ``(embeddings (n, D), kept paths, [(path,
        reason)] of the images that could not be read)``."""
        import numpy as np
        out, kept, bad = [], [], []
        starts = range(0, len(paths), batch_size)
        for s in _progress(starts, len(starts), 'embed', progress):
            arrays, names = [], []
            for p in paths[s:s + batch_size]:
                try:
                    arrays.append(self.preprocess(p))
                    names.append(p)
                except (OSError, ValueError) as err:
                    if not skip_bad:
                        raise
                    bad.append((p, getattr(err, 'reason', None) or str(err)))
            if arrays:
                out.append(self.image(np.stack(arrays)))
                kept.extend(names)
        emb = np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
        return emb, kept, bad


def run_name(run_dir):
    """The name of a run folder (``runs/x/`` and ``runs/x`` alike; ``.`` its real name)."""
    return os.path.basename(os.path.normpath(os.path.abspath(run_dir)))


def network_record(run_dir, params):
    """What a file of codes or embeddings records of the network that wrote it: the run folder's
    name and the SHA-256 of its parameter file (as a catalogue's ``run.json`` records of its
    network; ``params`` None: the name only)."""
    return {'run': run_name(run_dir),
            'params_sha256': params_digest(params) if params is not None else None}


class TrainedRun(object):
    """A run folder opened for use: ``args`` (its ``args.json``), ``method``, ``net`` with the
    reported parameters (``params``, described by ``params_label``) on ``ctx``. ``fused``: the
    network runs with MKLDNN operator fusion (:mod:`gluon_dml.engine.inference`); ``precision``:
    ``'float32'``, or ``'int8'`` after :meth:`quantize`."""

    def __init__(self, run_dir, args, method, net, params, params_label, ctx, fused=False):
        self.run_dir, self.args, self.method, self.net = run_dir, args, method, net
        self.params, self.params_label, self.ctx = params, params_label, ctx
        self._fused, self.precision, self.int8_info = bool(fused), 'float32', None

    def eval_path(self, name):
        """Where ``gluon-dml evaluate`` writes its metrics by default: ``RUN/eval-NAME.json`` for
        the network the run reports (the file training wrote, if any, holds the same network),
        ``RUN/eval-NAME-last.json`` / ``-best.json`` for another one chosen with
        ``--checkpoint``, and ``-int8`` added for the INT8 network (float32's file stays)."""
        try:
            reported = os.path.realpath(trained_params_path(self.run_dir)[0])
        except (FileNotFoundError, UserError):     # none, or damaged: this one is another
            reported = None
        other = '' if os.path.realpath(self.params) == reported else \
            ('-best' if os.path.basename(self.params) == 'best.params' else '-last')
        return os.path.join(self.run_dir, 'eval-%s%s%s.json'
                            % (name, other, '-int8' if self.precision == 'int8' else ''))

    def saved_with(self):
        """The record ``evaluate --save-embeddings`` writes beside the embeddings, as strings: the
        run (:func:`network_record`), which of its networks (``network``: final, best epoch,
        a checkpoint) and its ``precision`` (float32 or int8)."""
        record = dict(network_record(self.run_dir, self.params), network=self.params_label,
                      precision=self.precision)
        return {k: str(v) for k, v in record.items()}

    @property
    def fused(self):
        """Whether the network runs fused (False once a :class:`FusedNet` fell back)."""
        return bool(getattr(self.net, 'fused', self._fused)) if self.precision != 'int8' else False

    def quantize(self, calib_images=256, calib_mode='naive', data_path=None, cache=True):
        """Replace ``net`` by its INT8 version (CPU), calibrated on ``calib_images`` training
        images of the run's dataset (``data_path``: where they are, default the run's). The
        quantized network is kept in ``RUN/int8/`` (``cache``) and reused while the parameters
        file and the settings are the same. Returns ``self``."""
        if self.precision == 'int8':
            return self
        import mxnet as mx
        if int(calib_images) < 1:
            raise UserError('--calib-images must be >= 1, got %s.' % calib_images)
        if any(c.device_type != 'cpu' for c in self.ctx):
            raise UserError('--int8 runs on the CPU (MKLDNN\'s quantized operators); drop --gpus.')
        key = {'params': os.path.abspath(self.params), 'size': os.path.getsize(self.params),
               'mtime': os.path.getmtime(self.params), 'calib_images': int(calib_images),
               'calib_mode': calib_mode, 'mxnet': mx.__version__}
        prefix = os.path.join(self.run_dir, 'int8', '%s-%s-%d' % (
            os.path.splitext(os.path.basename(self.params))[0], calib_mode, int(calib_images)))
        qnet = _load_int8(prefix, key) if cache else None
        source = 'reused from %s' % os.path.dirname(prefix)
        if qnet is not None:
            source += ' (mean cosine %.4f to float32 on its calibration images)' % \
                qnet.calibration_cosine
        if qnet is None:
            images = self.method.calibration_images(self, int(calib_images), data_path)
            qnet = quantize(getattr(self.net, 'block', self.net), images, self.ctx,
                            calib_mode=calib_mode)
            source = ('calibrated on %d training images, mean cosine %.4f to float32 on them'
                      % (len(images), qnet.calibration_cosine))
            if cache:
                _save_int8(qnet, prefix, key)
        self.net, self.ctx, self.precision = qnet, [mx.cpu()], 'int8'
        self.int8_info = {'calib_images': int(calib_images), 'calib_mode': calib_mode,
                          'source': source, 'prefix': prefix if cache else None}
        return self

    def encoders(self):
        return self.method.encoders(self)

    def embed(self, dataset, batch_size=256, num_workers=0, progress=False, desc='embed'):
        """(N, D) outputs and (N,) labels of a dataset, in order."""
        return embed_dataset(self.net, dataset, self.ctx, batch_size, num_workers,
                             progress=progress, desc=desc)


def _load_int8(prefix, key):
    """The cached INT8 network at ``prefix`` if it was made from ``key`` (else None)."""
    import warnings
    import mxnet as mx
    sym, params, meta = prefix + '-symbol.json', prefix + '-0000.params', prefix + '.json'
    try:
        with open(meta) as f:
            record = json.load(f)
        if record.get('key') != json.loads(json.dumps(key)):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            net = mx.gluon.SymbolBlock.imports(sym, ['data'], params, ctx=mx.cpu())
    except (OSError, ValueError, mx.base.MXNetError):
        return None
    net.hybridize(static_alloc=True, static_shape=True)
    net.calibration_cosine = float(record.get('calibration_cosine', float('nan')))
    return net


def _save_int8(qnet, prefix, key):
    """Keep the INT8 network at ``prefix`` (best effort: a read-only run folder keeps none)."""
    from ..engine import atomic_write_text
    try:
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
        qnet.export(prefix)
        atomic_write_text(prefix + '.json', json.dumps(
            {'key': key, 'calibration_cosine': qnet.calibration_cosine}, indent=1))
    except OSError:
        pass


def open_run(run_dir, ctx=None, which=None, method=None, fuse=True, int8=None, tta_shift=None):
    """Open a run folder of any method: its settings, its method from the registry, its network
    with the reported parameters (``which``: None, ``'best'`` or ``'last'``, see
    :func:`gluon_dml.engine.rundir.trained_params_path`). ``method`` (a name) refuses a run of
    another method with a clear error. ``fuse``: MKLDNN operator fusion on the CPU (unless
    ``GLUON_DML_FUSION=0``); ``int8``: ``None``, or the keyword arguments of
    :meth:`TrainedRun.quantize` (``calib_images``, ``calib_mode``, ``data_path``) for INT8
    inference; ``tta_shift``: test-time moves in place of the run's ``--tta-shift`` (0: none)."""
    args = load_run_args(run_dir)
    if tta_shift is not None:
        args = dict(args, tta_shift=int(tta_shift))
    if method is not None and args.get('method') != method:
        raise UserError('%s is a %s run, not a %s run.' % (run_dir, args.get('method'), method))
    m = get_method(args.get('method') or 'margin')
    ctx = ctx if ctx is not None else get_contexts('')
    params, label = trained_params_path(
        run_dir, which, warn=lambda msg: print('warning: %s' % msg, file=sys.stderr, flush=True))
    try:
        net = m.network_for_run(args, ctx)
    except KeyError as err:
        raise UserError('%s/args.json lacks the setting %s, so the network cannot be rebuilt; the '
                        'run folder is damaged.' % (run_dir, err)) from None
    try:
        net.load_parameters(params, ctx=ctx)
    except Exception as err:  # noqa: BLE001  (MXNet: a shape or name mismatch, a damaged file)
        raise UserError('%s does not fit the network that %s/args.json describes (%s, embed_dim %s): '
                        '%s; the run folder is inconsistent or the file is damaged.'
                        % (params, run_dir, args.get('model'), args.get('embed_dim'),
                           first_line(err))) from None
    fused = hybridize_for_inference(net, ctx, fuse)
    trained = TrainedRun(os.path.normpath(run_dir), args, m, fused_or_plain(net, fused), params,
                         label, ctx, fused)
    if int8 is not None:
        trained.quantize(**int8)
    return trained
