"""Summarise finished runs as a markdown table: final-epoch metrics, mean over seeds, commands.

    gluon-dml results-table runs/om-margin-s1 runs/om-margin-s2 runs/om-margin-s3 ...
    gluon-dml results-table runs/                 # a folder of run folders: every run in it

Runs are grouped by (dataset, loss, every setting except the seed, the name and the folder);
each group gives one row with the mean (and each seed's value) of the final epoch's metrics
(Recall@1, NMI and MAP@R for margin and N-pair runs; mAP for hashing runs; rsum and the R@1s
for VSE runs: one table per kind), and the command of its first run with the seed shown as S.

``--metrics-file eval-final.json`` takes each run's final metrics from that file in the run
folder instead of its log: the final network re-scored with today's metrics by

    gluon-dml evaluate RUN --checkpoint last --out RUN/eval-final.json

(add ``--split val`` for a ``--val-classes`` run). The file must hold the final epoch's
network: its Recall@1 must equal the log's last one, else the run is refused.
"""
import argparse
import json
import os
import shlex
import sys

import numpy as np

from ..config import canonical_data_name
from ..engine import load_run_args, read_log
from ..errors import UserError
from ..fileio import read_json

_IGNORED = {'seed', 'name', 'save_dir', 'command', 'started', 'resume', 'no_progress', 'steps_list'}


def _command(command):
    """The run's command without its run-folder flags, the seed written as S. Commands are
    recorded quoted as a shell reads them (older records: joined with spaces, read the same way
    unless a quote in them does not parse)."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    out, skip = [], False
    if words and words[0] == '__main__.py':     # python -m gluon_dml recorded its __main__.py
        words[0] = 'gluon-dml'
    for w in words:
        if skip:
            skip = False
            continue
        flag = w.split('=')[0].replace('_', '-')
        if flag in ('--name', '--save-dir', '--seed'):
            skip = '=' not in w
            if flag == '--seed':
                out.extend(('--seed', 'S'))
            continue
        if flag != '--no-progress':
            out.append(w)
    return shlex.join(out)


# the columns of each kind of run: (log key, header)
COLUMNS = {
    'embedding': (('recall@1', 'Recall@1'), ('nmi', 'NMI'), ('map@r', 'MAP@R')),
    'hash': (('map', 'mAP'),),
    'vse': (('rsum', 'rsum'), ('i2t_r1', 'image->text R@1'), ('t2i_r1', 'text->image R@1')),
}


def _kind(args):
    method = args.get('method') or 'margin'
    return method if method in ('hash', 'vse') else 'embedding'


def _final_metrics(run, last, metrics_file, key):
    """The metrics of ``RUN/metrics_file``, checked to be those of the log's final network (its
    ``key`` metric equal to the log's last)."""
    path = os.path.join(run, metrics_file)
    write = 'write it with: gluon-dml evaluate %s --checkpoint last --out %s' % (run, path)
    if os.path.isdir(path):
        raise UserError('--metrics-file %s is a folder in %s, not a metrics file.'
                        % (metrics_file, run))
    scored = read_json(path, '%s has no %s; %s' % (run, metrics_file, write))
    if not isinstance(scored, dict):
        raise UserError('%s is not a metrics file (a JSON object of the metrics); %s'
                        % (path, write))
    if key not in scored or key not in last or abs(scored[key] - last[key]) > 1e-6:
        raise UserError('%s is not the final network of %s (%s %s, the log\'s last epoch %s); '
                        'evaluate it with --checkpoint last.'
                        % (path, run, key, scored.get(key), last.get(key)))
    return scored


def _number(value):
    """A metric's cell: 3 decimals, or n/a where the log holds null (a NaN metric)."""
    return 'n/a' if value is None else '%.3f' % value


def _run_args(run):
    if not os.path.isfile(os.path.join(run, 'args.json')):
        raise UserError('%s is not a run folder (it has no args.json)%s.'
                        % (run, ', nor does any folder in it' if os.path.isdir(run) else ''))
    args = load_run_args(run)
    for key in ('data', 'epochs', 'seed', 'command'):     # a row's, and its grouping's
        if key not in args:
            raise UserError('%s/args.json lacks the setting %r, which the table shows; the run '
                            'folder is damaged.' % (run, key))
    return args


def _expand(runs):
    """``runs`` with each folder that is not a run but holds run folders (``runs/``) replaced by
    those run folders, in name order; a folder that is neither is left for :func:`_run_args` to
    name."""
    out = []
    for run in runs:
        if not os.path.isfile(os.path.join(run, 'args.json')) and os.path.isdir(run):
            inside = sorted(os.path.join(run, name) for name in os.listdir(run)
                            if os.path.isfile(os.path.join(run, name, 'args.json')))
            if inside:
                out.extend(inside)
                continue
        out.append(run)
    return out


def summarise(run_dirs, metrics=None, metrics_file=None, run_args=None):
    """Rows of the runs' table (``metrics``: the log keys of the columns; default those of the
    runs' kind, :data:`COLUMNS`; ``run_args``: {run: its recorded settings} already read)."""
    finished = []
    for run in run_dirs:
        args = run_args[run] if run_args and run in run_args else _run_args(run)
        if metrics is None:
            metrics = tuple(k for k, _ in COLUMNS[_kind(args)])
        log = read_log(run)
        if not log or log[-1]['epoch'] != args['epochs']:
            print('skipped (not finished): %s' % run, file=sys.stderr)
            continue
        last = _final_metrics(run, log[-1], metrics_file, metrics[0]) if metrics_file else log[-1]
        missing = [m for m in metrics if m not in last]
        if missing:
            raise UserError('%s has no %s in its final metrics (a %s run): give runs of one kind '
                            'to a table.' % (run, ', '.join(missing), args.get('method') or 'margin'))
        finished.append((args, last))
    # Runs group when every setting differs only in the seed. A setting that some run does not
    # record (a flag added after it was made, whose default keeps the old behaviour) or records as
    # None (unset) does not split groups.
    shared = set.intersection(*[{k for k, v in a.items() if v is not None} for a, _ in finished]) \
        if finished else set()
    groups = {}
    for args, last in finished:
        if isinstance(args.get('data'), str):      # 'cub' (an older record) is 'cub-200-2011'
            args = dict(args, data=canonical_data_name(args['data']))
        key = json.dumps({k: args[k] for k in sorted(shared - _IGNORED)}, default=str)
        groups.setdefault(key, []).append((args, last))
    rows = []
    for runs in groups.values():
        args = runs[0][0]
        seeds = [a['seed'] for a, _ in runs]
        cells = []
        for m in metrics:
            vals = [last[m] for _, last in runs]
            each = ' / '.join(_number(v) for v in vals)
            mean = _number(None if None in vals else float(np.mean(vals)))
            cells.append('**%s** (%s)' % (mean, each) if len(vals) > 1 else each)
        cmd = _command(args['command'])
        rows.append([args['data'], args.get('loss', args.get('method')), ', '.join(map(str, seeds))]
                    + cells + ['`%s`' % (('python ' + cmd) if cmd.split()[0].endswith('.py') else cmd)])
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog='gluon-dml results-table', description=__doc__.splitlines()[0])
    p.add_argument('runs', nargs='+', metavar='RUN',
                   help='run folders, or folders holding run folders (runs/: every run in it)')
    p.add_argument('--metrics-file', default=None, metavar='FILE',
                   help='read each run\'s final metrics from RUN/FILE (eval/evaluate.py RUN '
                        '--checkpoint last --out RUN/FILE) instead of its log')
    a = p.parse_args(argv)
    if a.metrics_file is not None and not a.metrics_file.strip():
        raise UserError('--metrics-file is empty; give the file name in each run folder '
                        '(eval-final.json, say).')
    a.runs = _expand(a.runs)
    seen = {}
    for run in a.runs:               # one run twice was two seeds of its row, its mean twice
        same = seen.get(os.path.realpath(run))
        if same is not None:
            raise UserError('%s is given twice%s: a row\'s mean is over distinct runs.'
                            % (run, '' if same == run else ' (as %s and %s)' % (same, run)))
        seen[os.path.realpath(run)] = run
    kinds, run_args = {}, {run: _run_args(run) for run in a.runs}
    for run in a.runs:
        kinds.setdefault(_kind(run_args[run]), []).append(run)
    for n, (kind, runs) in enumerate(kinds.items()):
        columns = COLUMNS[kind]
        rows = summarise(runs, metrics=tuple(k for k, _ in columns), metrics_file=a.metrics_file,
                         run_args=run_args)
        if n:
            print()
        print('| data | loss | seeds | %s | command |' % ' | '.join(h for _, h in columns))
        print('|' + ' --- |' * (len(columns) + 4))
        for r in rows:
            print('| ' + ' | '.join(str(c) for c in r) + ' |')

