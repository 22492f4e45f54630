"""The run folder: created for a new run, found again for ``--resume``, read back afterwards.

A run folder holds ``args.json`` (every setting, the command), ``log.jsonl`` (one row per
epoch), ``checkpoints/`` (the newest two, atomic), the exported network and, when the best epoch
is chosen on validation data, ``best.params`` / ``best.json``.
"""
import json
import os
import re
import sys
import time

from ..errors import UserError
from .checkpoint import CheckpointManager

__all__ = ['holds_run', 'default_run_dir', 'prepare_run', 'write_args', 'load_run_args',
           'trained_params_path', 'RUN_FILES']

RUN_FILES = ('args.json', 'log.jsonl', 'checkpoints')


def holds_run(path):
    """Whether folder ``path`` holds (part of) a run."""
    return any(os.path.exists(os.path.join(path, f)) for f in RUN_FILES)


def default_run_dir(name, resume=False, root='runs'):
    """The folder of a run named ``name`` when the user chose none: ``runs/NAME`` for the first
    run, then ``runs/NAME-2``, ``runs/NAME-3`` ... (each new run gets a fresh folder); with
    ``resume`` the newest of them that holds a run."""
    base = os.path.join(root, name)
    taken = [(1, base)] if holds_run(base) else []
    if os.path.isdir(root):
        pattern = re.compile(re.escape(name) + r'-(\d+)$')
        for entry in os.listdir(root):
            m = pattern.match(entry)
            if m and int(m.group(1)) >= 2 and holds_run(os.path.join(root, entry)):
                taken.append((int(m.group(1)), os.path.join(root, entry)))
    taken.sort()
    if resume:
        return taken[-1][1] if taken else base
    return base if not taken else '%s-%d' % (base, taken[-1][0] + 1)


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


def load_run_args(run_dir):
    path = os.path.join(run_dir, 'args.json')
    if not os.path.exists(path):
        raise FileNotFoundError('%s is not a run folder: it has no args.json (a run folder is what '
                                'train_*.py writes under runs/NAME).' % run_dir)
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as err:
        raise ValueError('%s is not valid JSON (%s); the run folder is damaged.' % (path, err)) from None


def trained_params_path(run_dir, which=None):
    """``(path, label)`` of a run folder's trained network parameters.

    ``which=None`` (the default everywhere): the network the run reports, ``best.params`` when
    its best epoch was chosen on validation data, else the final network (the newest
    checkpoint). ``'best'``: ``best.params`` whatever chose it; ``'last'``: the newest
    checkpoint. ``label`` says which it is, and says so when a best epoch was chosen on the test
    split (runs made before model selection moved to validation data): an optimistic number."""
    best = os.path.join(run_dir, 'best.params')
    last = CheckpointManager(run_dir).latest() if os.path.isdir(os.path.join(run_dir, 'checkpoints')) else None
    on_validation = False
    if os.path.exists(best):
        try:
            with open(os.path.join(run_dir, 'best.json')) as f:
                on_validation = json.load(f).get('selected_on') == 'validation'
        except (OSError, ValueError):
            on_validation = False
    if which == 'best' or (which is None and on_validation):
        if os.path.exists(best):
            return best, ('best epoch, chosen on validation classes' if on_validation else
                          'best epoch, CHOSEN ON THE TEST SPLIT (optimistic)')
        if which == 'best':
            raise FileNotFoundError('%s has no best.params: its best epoch is chosen only when it '
                                    'trains with validation data (--val-classes); use the final '
                                    'network (the default).' % run_dir)
    if last is not None:
        return os.path.join(last, 'net.params'), 'final network'
    raise FileNotFoundError('%s holds no trained parameters yet (no checkpoint).' % run_dir)
