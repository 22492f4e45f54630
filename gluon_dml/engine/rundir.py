"""The run folder: created for a new run, found again for ``--resume``, read back afterwards.

A run folder holds ``args.json`` (the run's record: every setting and the command), ``log.jsonl``
(one row per epoch), ``checkpoints/`` (the newest two, atomic), the exported network and, when the
best epoch is chosen on validation data, ``best.params`` / ``best.json``.

A run folder is one run and stays that run:

* a new run never writes into a folder that holds a run's files, unless ``--overwrite`` (which
  removes them first) or ``--resume`` (which continues the recorded run);
* ``--resume`` takes the settings from ``args.json``; a flag given on resume that would change
  the run is refused (:func:`resume_changes` in :mod:`gluon_dml.cli` compares them), and the
  few that may change (:data:`CHANGEABLE_ON_RESUME`) are appended to ``args.json`` as a new entry
  of its ``resumes`` list: the original settings are never rewritten. :func:`load_run_args`
  returns the settings in force (the original with every resume's changes applied);
* one process at a time: a second process on the same folder is refused (``.lock``).
"""
import glob
import json
import os
import re
import shlex
import shutil
import sys
import time

from ..errors import UserError
from ..fileio import (LockBusy, file_in_the_way, give_back_folder, hold_lock, read_json,
                      release_lock)
from .checkpoint import (CheckpointError, CheckpointManager, atomic_write_text, file_problem,
                         remove_stale_temporaries)

__all__ = ['holds_run', 'run_files', 'default_run_dir', 'prepare_run', 'write_args',
           'load_run_args', 'read_record', 'settings_in_force', 'trained_params_path',
           'resume_point', 'check_folder_path', 'check_run_folder', 'lock_run', 'release_locks',
           'abandon_run', 'RUN_FILES', 'CHANGEABLE_ON_RESUME', 'IGNORED_ON_RESUME']

RUN_FILES = ('args.json', 'log.jsonl', 'checkpoints', 'best.params', 'best.loss.params',
             'best.json', 'vocab.json', 'codes.npz', 'iterations.jsonl', 'plots', 'int8')
_RUN_PATTERNS = ('eval-*.json', '*-symbol.json', '*-0000.params', '*.tmp-[0-9]*')

# Settings a resumed run may change (recorded as a new segment of args.json): how long it trains
# and, for the epochs still to come, the learning-rate steps; how it evaluates, logs and shows;
# where it runs. Every other setting would make it another run.
CHANGEABLE_ON_RESUME = frozenset((
    'epochs', 'steps', 'eval_batch_size', 'eval_interval', 'nmi_runs', 'eval_nmi_runs', 'use_viz',
    'viz_server', 'viz_port', 'viz_env', 'tsne_interval', 'tsne_points', 'log_interval', 'no_progress',
    'num_workers', 'gpus', 'threads', 'checkpoint_every', 'save_model_prefix', 'test_split',
    'topk', 'no_fusion'))
# Flags that say where the run is or how to start it, not what it is.
IGNORED_ON_RESUME = frozenset(('resume', 'save_dir', 'name', 'overwrite'))
# Keys of args.json that are bookkeeping, not settings.
BOOKKEEPING = frozenset(('command', 'started', 'resumes', 'resume', 'save_dir', 'name',
                         'overwrite'))


def run_files(path):
    """The names of the run files in folder ``path`` (empty when it holds no run)."""
    if not os.path.isdir(path):
        return []
    found = [f for f in RUN_FILES if os.path.exists(os.path.join(path, f))]
    for pattern in _RUN_PATTERNS:
        found.extend(sorted(os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(path), pattern))))
    return list(dict.fromkeys(found))


def holds_run(path):
    """Whether folder ``path`` holds (part of) a run."""
    return bool(run_files(path))


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


# ---------------------------------------------------------------------------------------------
# the folder itself
# ---------------------------------------------------------------------------------------------

def check_folder_path(path, flag):
    """One sentence naming ``flag`` when the folder ``path`` is a file or lies under one;
    nothing is created."""
    blocker = file_in_the_way(path)
    if blocker is not None and blocker == os.path.abspath(path):
        raise UserError('%s %s is a file, not a folder; choose another %s.' % (flag, path, flag))
    if blocker is not None:
        raise UserError('%s %s cannot be created: %s is a file, not a folder.' % (flag, path, blocker))


def check_run_folder(run_dir, flag='--save-dir'):
    """Create ``run_dir`` if needed; one sentence when it is a file, lies under a file, or cannot
    be written."""
    check_folder_path(run_dir, flag)
    try:
        os.makedirs(run_dir, exist_ok=True)
        probe = os.path.join(run_dir, '.write-test-%d' % os.getpid())
        with open(probe, 'w') as f:
            f.write('ok')
        os.remove(probe)
    except OSError as err:
        raise UserError('%s %s cannot be written: %s.' % (
            flag, run_dir, err.strerror or err)) from None


_LOCKS = {}


def lock_run(run_dir):
    """Hold ``run_dir/.lock`` for the life of this process; another process holding it is
    refused with one sentence. The lock goes with the process, even on ``kill -9``."""
    key = os.path.realpath(run_dir)
    if key in _LOCKS:
        return
    try:
        fd = hold_lock(os.path.join(run_dir, '.lock'))
    except LockBusy as err:
        raise UserError('The run folder %s is in use by another training process (pid %s); wait '
                        'for it to end, or stop it, before running in that folder.' % (run_dir, err.pid)) from None
    except OSError as err:
        raise UserError('The run folder %s cannot be written: %s.' % (run_dir, err.strerror or err)) from None
    if fd is not None:
        _LOCKS[key] = fd


def abandon_run(run_dir, made=()):
    """A new run refused before its record was written (a backbone that does not exist, episodes
    the data cannot fill), or failed before it trained anything (an unreadable test image at the
    epoch-0 evaluation): give its folder back as it was, without the lock file, and without
    the folders this run made for it (``made``: :func:`gluon_dml.fileio.missing_folders` before
    it started) when they are empty."""
    fd = _LOCKS.pop(os.path.realpath(run_dir), None)
    release_lock(fd)
    # the folder held no run file when the run started (check_run_folder), so those there now
    # (vocab.json of a VSE run, args.json and log.jsonl of one that failed at its first
    # evaluation) were written by this attempt
    for name in RUN_FILES:
        path = os.path.join(run_dir, name)
        if os.path.isfile(path) and not os.path.islink(path):
            try:
                os.remove(path)
            except OSError:
                pass
    give_back_folder(run_dir, made, empty_subfolders=RUN_FILES)    # the folders among them, if empty


def release_locks():
    """Release every run folder this process holds (for in-process callers such as tests)."""
    for fd in _LOCKS.values():
        release_lock(fd)
    _LOCKS.clear()


def clear_run(run_dir, prefix=None):
    """``--overwrite``: remove the run files of ``run_dir`` (only the files a run writes; anything
    else in the folder stays). Returns their names."""
    record = {}
    try:
        record = read_record(run_dir)
    except (FileNotFoundError, ValueError):
        pass
    prefixes = {prefix or 'model', record.get('save_model_prefix') or 'model'}
    removed = []
    for name in RUN_FILES:
        path = os.path.join(run_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
            removed.append(name + '/')
        elif os.path.lexists(path):
            os.remove(path)
            removed.append(name)
    for pattern in ['eval-*.json'] + ['%s-*symbol.json' % p for p in prefixes] + \
            ['%s-*0000.params' % p for p in prefixes]:
        for path in glob.glob(os.path.join(glob.escape(run_dir), pattern)):
            os.remove(path)
            removed.append(os.path.basename(path))
    removed.extend(remove_stale_temporaries(run_dir))
    return removed


# ---------------------------------------------------------------------------------------------
# the record (args.json)
# ---------------------------------------------------------------------------------------------

def read_record(run_dir):
    """The raw ``args.json`` of a run folder: the original settings and its ``resumes``."""
    path = os.path.join(run_dir, 'args.json')
    record = read_json(path, '%s is not a run folder: it has no args.json (a run folder is what a '
                             'training command writes under runs/NAME).' % run_dir)
    if not isinstance(record, dict):
        raise ValueError('%s is not a JSON object of settings; the run folder is damaged.' % path)
    return record


def settings_in_force(record):
    """The settings of a record with every resume's changes applied (``resumes`` kept)."""
    out = dict(record)
    for segment in record.get('resumes') or ():
        out.update((segment or {}).get('changed') or {})
    return out


def load_run_args(run_dir):
    """The settings in force of a run folder (see :func:`settings_in_force`)."""
    return settings_in_force(read_record(run_dir))


def resume_point(run_dir):
    """``(epoch, batch)`` of the newest checkpoint folder (by name; unchecked), or None."""
    found = CheckpointManager(run_dir, create=False).scan()
    return found[0][:2] if found else None


def _settings(args):
    return {k: v for k, v in vars(args).items() if not k.startswith('_')}


def _write_record(run_dir, record):
    atomic_write_text(os.path.join(run_dir, 'args.json'),
                      json.dumps(record, indent=1, sort_keys=True, default=str))


def _flag(dest):
    return '--' + dest.replace('_', '-')


def _check_resume_changes(run_dir, record, changes):
    """Refuse ``--epochs`` below what the run has trained and ``--steps`` that would change the
    learning rate of epochs already trained."""
    point = resume_point(run_dir)
    if point is None:
        return
    epoch, batch = point
    trained = epoch if batch else epoch - 1          # epochs trained, the current one included
    if 'epochs' in changes and changes['epochs'] < trained:
        raise UserError('--epochs %d is fewer than the %d epoch(s) the run in %s has already '
                        'trained; give --epochs %d or more (or drop the flag).'
                        % (changes['epochs'], trained, run_dir, trained))
    if 'steps' in changes:
        def parse(text):
            return sorted(int(s) for s in str(text or '').split(',') if s.strip())
        old = [s for s in parse(settings_in_force(record).get('steps')) if s < trained]
        new = [s for s in parse(changes['steps']) if s < trained]
        if old != new:
            raise UserError('--steps %s would change the learning rate of epochs the run in %s has '
                            'already trained (%d; its steps before that: %s); only steps at epoch %d '
                            'or later may change on --resume.'
                            % (changes['steps'], run_dir, trained, ','.join(map(str, old)) or 'none',
                               trained))


def recorded_program(argv0):
    """The program of a run's recorded command: the script's name, and ``gluon-dml`` for
    ``python -m gluon_dml`` (whose argv[0] is gluon_dml/__main__.py, recorded as "__main__.py",
    which results-table printed as a command to run, ``python __main__.py train-margin ...``)."""
    name = os.path.basename(argv0)
    return 'gluon-dml' if name == '__main__.py' else name


def prepare_run(args):
    """Check (or create) the run folder and hold it; refuse a folder that holds another run
    (``--overwrite`` clears it first) and, on ``--resume``, changes the run's checkpoints rule
    out. Nothing of the run is written here: :func:`write_args` writes the record once the data,
    the batches and the loss are built, so a run refused on the way leaves no run files. Returns
    the folder."""
    run_dir = args.save_dir
    check_run_folder(run_dir)
    lock_run(run_dir)
    # quoted as a shell reads it: a value with a space, or an empty one (--steps ''), survives
    args.command = shlex.join([recorded_program(sys.argv[0])] + sys.argv[1:])
    args.started = time.strftime('%Y-%m-%d %H:%M:%S')
    record = getattr(args, '_record', None)
    if getattr(args, 'resume', False):
        remove_stale_temporaries(run_dir)             # what a killed atomic write left
        if record is not None:
            changes = dict(getattr(args, '_resume_changes', {}) or {})
            _check_resume_changes(run_dir, record, changes)
            point = resume_point(run_dir)
            args._segment = {'command': args.command, 'started': args.started, 'changed': changes,
                             'from_checkpoint': ('e%04d-b%05d' % point) if point else None}
            return run_dir
        present = run_files(run_dir)
        if present:
            raise UserError('%s holds files of a run (%s) but no args.json: its settings are '
                            'unknown, so it cannot be resumed; pass --overwrite (instead of --resume) '
                            'to replace it, or choose another --save-dir.'
                            % (run_dir, ', '.join(present[:4])))
    else:
        present = run_files(run_dir)
        if present and not getattr(args, 'overwrite', False):
            raise UserError('The run folder %s already holds a run; pass --resume to continue it, '
                            '--overwrite to replace it (its %s%s are removed), or choose another '
                            '--name / --save-dir.' % (run_dir, ', '.join(present[:3]),
                                                      ' ...' if len(present) > 3 else ''))
        if present:
            removed = clear_run(run_dir, getattr(args, 'save_model_prefix', None))
            print('--overwrite: removed the previous run in %s (%s).'
                  % (run_dir, ', '.join(removed[:6]) + (' ...' if len(removed) > 6 else '')),
                  file=sys.stderr)
    args._record = None
    return run_dir


def write_args(args):
    """Write the run's record, ``args.json``: for a new run every setting, the command and the
    loss options; for a resumed run the original record is kept as it is and this resume is
    appended to its ``resumes`` (settings the original lacks, from a run killed before its first
    full write, are added)."""
    record = getattr(args, '_record', None)
    if record is None:
        _write_record(args.save_dir, _settings(args))
        return
    segment = getattr(args, '_segment', None)
    if segment is not None:
        record = dict(record, resumes=list(record.get('resumes') or []) + [segment])
        args._segment = None
    changed = set()
    for seg in record.get('resumes') or ():
        changed.update((seg.get('changed') or {}).keys())
    missing = {k: v for k, v in _settings(args).items()
               if k not in record and k not in changed and k not in BOOKKEEPING}
    record = dict(record, **json.loads(json.dumps(missing, default=str)))
    _write_record(args.save_dir, record)
    args._record = record


def trained_params_path(run_dir, which=None, warn=None):
    """``(path, label)`` of a run folder's trained network parameters.

    ``which=None`` (the default everywhere): the network the run reports, ``best.params`` when
    its best epoch was chosen on validation data, else the final network (the newest
    checkpoint). ``'best'``: ``best.params`` whatever chose it; ``'last'``: the newest
    checkpoint. ``label`` says which it is, and says so when a best epoch was chosen on the test
    split (runs made before model selection moved to validation data): an optimistic number.

    Damage is named, never taken for absence: an empty ``best.params``, or one missing although
    ``best.json`` records a best epoch chosen on validation data, is a
    :class:`~gluon_dml.engine.checkpoint.CheckpointError`, and so is a run whose every checkpoint
    is damaged (an emptied or truncated ``net.params``: a full disk, a cut copy). When only the
    newest are damaged, the newest whole one is used, as ``--resume`` does: the label says so
    and ``warn`` (a callable, if given) receives one sentence naming the damaged checkpoint."""
    best = os.path.join(run_dir, 'best.params')
    on_validation, held_out = False, 'classes'
    try:
        if read_record(run_dir).get('method') == 'vse':
            held_out = 'split'                   # caption sets hold out images, not classes
    except (OSError, ValueError):
        pass
    record = {}
    try:
        with open(os.path.join(run_dir, 'best.json')) as f:
            record = json.load(f)
        on_validation = record.get('selected_on') == 'validation'
    except (OSError, ValueError, AttributeError):
        on_validation = False
    if which in (None, 'best') and on_validation and not os.path.exists(best):
        # best.params is written before best.json: the network the run reports was removed
        raise CheckpointError(
            '%s is missing although best.json records the best epoch chosen on validation data, '
            "so the network the run reports is lost; --checkpoint last uses the final network "
            '(the newest checkpoint) instead.' % best)
    if which == 'best' or (which is None and on_validation):
        if os.path.exists(best):
            if os.path.getsize(best) == 0:
                raise CheckpointError(
                    '%s is empty (0 bytes: damaged, e.g. by a full disk or a cut copy), so the best '
                    "epoch's network is lost; --checkpoint last uses the final network (the newest "
                    'checkpoint) instead.' % best)
            files = record.get('files') if isinstance(record, dict) else None
            problem = file_problem(best, files.get('best.params') if isinstance(files, dict) else None)
            if problem is not None:          # cut or changed since: MXNet's reason said little
                raise CheckpointError(
                    '%s %s (damaged, e.g. by a full disk or a cut copy), so the best epoch\'s '
                    'network is lost; --checkpoint last uses the final network (the newest '
                    'checkpoint) instead.' % (best, problem))
            return best, ('best epoch, chosen on the validation %s' % held_out if on_validation else
                          'best epoch, CHOSEN ON THE TEST SPLIT (optimistic)')
        if which == 'best':
            raise FileNotFoundError('%s has no best.params: its best epoch is chosen only when it '
                                    'trains with validation data (--val-classes); use the final '
                                    'network (the default).' % run_dir)
    ckpt = CheckpointManager(run_dir, create=False)
    damaged = []
    for path, problem in ckpt.candidates():
        if problem is None:
            if not damaged:
                return os.path.join(path, 'net.params'), 'final network'
            names = ', '.join(os.path.basename(p) for p, _ in damaged)
            if warn is not None:
                warn('the newest checkpoint of %s, %s, is damaged (%s), so its final network is '
                     'lost; using the previous one, %s (--resume trains the run again from it).'
                     % (run_dir, names, '; '.join(w for _, w in damaged), os.path.basename(path)))
            return (os.path.join(path, 'net.params'),
                    'checkpoint %s: the newest, %s, is damaged' % (os.path.basename(path), names))
        damaged.append((path, problem))
    if damaged:
        raise CheckpointError('Every checkpoint in %s is damaged (%s), so the run holds no trained '
                              'network; train it again with --overwrite.'
                              % (ckpt.dir, '; '.join('%s: %s' % (os.path.basename(p), w)
                                                     for p, w in damaged)))
    raise FileNotFoundError('%s holds no trained parameters yet (no checkpoint).' % run_dir)
