"""Reopen a finished (or running) run folder: its settings and its trained network."""
import json
import os

from .checkpoint import CheckpointManager

__all__ = ['load_run_args', 'load_trained_net', 'trained_params_path']


def load_run_args(run_dir):
    path = os.path.join(run_dir, 'args.json')
    if not os.path.exists(path):
        raise FileNotFoundError('%s is not a run folder: it has no args.json (a run folder is what '
                                'train_*.py writes under runs/NAME).' % run_dir)
    with open(path) as f:
        return json.load(f)


def trained_params_path(run_dir, which='best'):
    """The network parameters of a run folder: ``best.params`` (``which='best'``, when it exists)
    or the newest checkpoint's ``net.params``."""
    best = os.path.join(run_dir, 'best.params')
    last = CheckpointManager(run_dir).latest() if os.path.isdir(os.path.join(run_dir, 'checkpoints')) else None
    if which == 'best' and os.path.exists(best):
        return best
    if last is not None:
        return os.path.join(last, 'net.params')
    raise FileNotFoundError('%s holds no trained parameters yet (no best.params, no checkpoint).'
                            % run_dir)


def _embedding_net(args, ctx):
    """The untrained embedding network of a train_margin.py / train_npair.py run's settings."""
    from ..models import get_model
    return get_model(args['model'], args['embed_dim'], pretrained=False, ctx=ctx,
                     normalize=embeddings_normalized(args))


def embeddings_normalized(args):
    """Whether the run's network L2-normalises its output: ``args.json`` says so; runs made
    before it did are answered by their loss (lifted structure, NCA and N-pair train
    unnormalised embeddings)."""
    if args.get('normalize_embeddings') is not None:
        return bool(args['normalize_embeddings'])
    from ..losses import get_loss_class
    try:
        return bool(getattr(get_loss_class(args.get('loss') or 'margin'), 'normalize_embeddings',
                            True))
    except ValueError:
        return True


def load_trained_net(run_dir, ctx, which='best', build=None, method=None):
    """The run's network with its ``best`` parameters (``last``: the newest checkpoint's).

    ``build(args, ctx)`` makes the untrained network from the run's settings (default: the
    embedding network of ``train_margin.py`` / ``train_npair.py``); with ``method``, a run of
    another method is refused with a clear error. Returns (args dict, net, path of the
    parameters used)."""
    args = load_run_args(run_dir)
    if method is not None and args.get('method') != method:
        raise ValueError('%s is a %s run, not a train_%s.py run.'
                         % (run_dir, args.get('method'), method))
    params = trained_params_path(run_dir, which)
    net = (build or _embedding_net)(args, ctx)
    net.load_parameters(params, ctx=ctx)
    net.hybridize(static_alloc=True)
    return args, net, params
