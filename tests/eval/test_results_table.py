"""eval/results_table.py: grouping of runs by setting, means over seeds, the command shown."""
import json
import shlex

from ..helpers import run_script


def _run(folder, seed, final, **extra):
    folder.mkdir()
    args = {'data': 'omniglot', 'loss': 'margin', 'epochs': 2, 'seed': seed, 'lr': 0.001,
            'command': 'train_margin.py --data omniglot --seed %d --save-dir %s --no-progress'
                       % (seed, folder)}
    args.update(extra)
    (folder / 'args.json').write_text(json.dumps(args))
    rows = [{'epoch': 0, 'recall@1': 0.1, 'nmi': 0.1, 'map@r': 0.1},
            {'epoch': 1, 'recall@1': 0.5, 'nmi': 0.5, 'map@r': 0.5},
            dict({'epoch': 2}, **final)]
    (folder / 'log.jsonl').write_text('\n'.join(json.dumps(r) for r in rows) + '\n')


def test_rows_group_seeds_and_ignore_flags_added_later(tmp_path):
    m = {'recall@1': 0.8, 'nmi': 0.7, 'map@r': 0.4}
    _run(tmp_path / 'a1', 1, m)                                      # made before --init existed
    _run(tmp_path / 'a2', 2, {'recall@1': 0.9, 'nmi': 0.8, 'map@r': 0.5}, init=None)
    _run(tmp_path / 'b1', 1, m, lr=0.002)                            # another setting: own row
    _run(tmp_path / 'd1', 1, m, epochs=3)                           # unfinished: left out
    proc = run_script('eval/results_table.py', tmp_path / 'a1', tmp_path / 'a2', tmp_path / 'b1',
                      tmp_path / 'd1', check=True)
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith('| omniglot')]
    assert len(rows) == 2, proc.stdout
    assert '| 1, 2 | **0.850** (0.800 / 0.900) | **0.750** (0.700 / 0.800) | **0.450** (0.400 / 0.500) |' \
        in rows[0]
    assert '`python train_margin.py --data omniglot --seed S`' in rows[0]
    assert '| 1 | 0.800 | 0.700 | 0.400 |' in rows[1]
    assert 'skipped (not finished)' in proc.stderr and 'd1' in proc.stderr


def test_metrics_file_rescores_the_final_network_and_is_checked(tmp_path):
    _run(tmp_path / 'a1', 1, {'recall@1': 0.8, 'nmi': 0.7, 'map@r': 0.4})
    _run(tmp_path / 'a2', 2, {'recall@1': 0.9, 'nmi': 0.8, 'map@r': 0.5})
    for name, nmi in (('a1', 0.75), ('a2', 0.85)):
        final = json.loads((tmp_path / name / 'log.jsonl').read_text().splitlines()[-1])
        (tmp_path / name / 'eval-final.json').write_text(json.dumps(dict(final, nmi=nmi)))
    proc = run_script('eval/results_table.py', tmp_path / 'a1', tmp_path / 'a2',
                      '--metrics-file', 'eval-final.json', check=True)
    assert '| **0.850** (0.800 / 0.900) | **0.800** (0.750 / 0.850) |' in proc.stdout
    # a file of another network (the best epoch's, say) is refused
    (tmp_path / 'a2' / 'eval-final.json').write_text(
        json.dumps({'recall@1': 0.95, 'nmi': 0.9, 'map@r': 0.6}))
    bad = run_script('eval/results_table.py', tmp_path / 'a1', tmp_path / 'a2',
                     '--metrics-file', 'eval-final.json')
    assert bad.returncode != 0 and 'is not the final network' in bad.stderr
    missing = run_script('eval/results_table.py', tmp_path / 'a1', '--metrics-file', 'nothing.json')
    assert missing.returncode != 0 and '--checkpoint last' in missing.stderr


def test_runs_of_each_kind_get_their_own_columns_and_a_non_run_is_named(tmp_path):
    _run(tmp_path / 'a1', 1, {'recall@1': 0.8, 'nmi': 0.7, 'map@r': 0.4})
    _run(tmp_path / 'h1', 1, {'map': 0.61, 'map@1000': 0.6}, method='hash', loss='hashnet',
         command='train_hash.py --seed 1 --save-dir x')
    _run(tmp_path / 'h2', 2, {'map': 0.63, 'map@1000': 0.6}, method='hash', loss='hashnet',
         command='train_hash.py --seed 2 --save-dir y')
    _run(tmp_path / 'v1', 1, {'rsum': 310.5, 'i2t_r1': 40.0, 't2i_r1': 30.0}, method='vse',
         loss='vsepp', command='train_vse.py --seed 1 --save-dir v')
    proc = run_script('eval/results_table.py', tmp_path / 'a1', tmp_path / 'h1', tmp_path / 'v1',
                      tmp_path / 'h2', check=True)
    out = proc.stdout
    assert '| data | loss | seeds | Recall@1 | NMI | MAP@R | command |' in out
    assert '| data | loss | seeds | mAP | command |' in out
    assert '| omniglot | hashnet | 1, 2 | **0.620** (0.610 / 0.630) | `python train_hash.py --seed S` |' in out
    assert '| omniglot | vsepp | 1 | 310.500 | 40.000 | 30.000 |' in out
    for path in (tmp_path / 'nothing', tmp_path / 'a1' / 'args.json'):
        bad = run_script('eval/results_table.py', tmp_path / 'a1', path)
        assert bad.returncode == 2 and 'error: %s is not a run folder' % path in bad.stderr, bad.stderr


def test_runs_recorded_under_two_names_of_one_dataset_share_a_row(tmp_path):
    m = {'recall@1': 0.6, 'nmi': 0.5, 'map@r': 0.2}
    _run(tmp_path / 'c1', 1, m, data='cub')                   # recorded before the names merged
    _run(tmp_path / 'c2', 2, m, data='cub-200-2011')
    proc = run_script('eval/results_table.py', tmp_path / 'c1', tmp_path / 'c2', check=True)
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith('| cub')]
    assert len(rows) == 1 and rows[0].startswith('| cub-200-2011 | margin | 1, 2 |'), proc.stdout


def test_a_run_given_twice_and_a_metrics_file_that_is_not_one_are_one_sentence(tmp_path, capsys):
    # one run twice was a row of two seeds ('1, 1') averaging it with itself; a metrics file
    # holding a JSON list gave 'unexpected AttributeError', a garbled one json's bare words
    import pytest
    from gluon_dml.cli import main_guard
    from gluon_dml.commands.results_table import main
    run = tmp_path / 'a1'
    _run(run, 1, {'recall@1': 0.8, 'nmi': 0.7, 'map@r': 0.4})
    (run / 'list.json').write_text('[1]')
    (run / 'bad.json').write_text('garbage')
    for argv, message in (([run, run], '%s is given twice: ' % run),
                          ([run, '%s/./a1' % tmp_path], 'is given twice (as %s and ' % run),
                          ([run, '--metrics-file', 'list.json'], '%s is not a metrics file' % (run / 'list.json')),
                          ([run, '--metrics-file', 'bad.json'], '%s is not valid JSON' % (run / 'bad.json')),
                          ([run, '--metrics-file', ''], '--metrics-file is empty')):
        with pytest.raises(SystemExit) as exit_:
            main_guard(main, [str(a) for a in argv])
        out = capsys.readouterr()
        assert exit_.value.code == 2 and out.err.startswith('error: ') and message in out.err, out
        assert len(out.err.strip().splitlines()) == 1 and '|' not in out.out


def test_a_run_made_with_python_m_gluon_dml_shows_a_command_that_runs(tmp_path):
    # its record said '__main__.py train-margin ...': the table showed `python __main__.py ...`
    from gluon_dml.commands.results_table import summarise
    from gluon_dml.engine.rundir import recorded_program
    assert recorded_program('/x/gluon_dml/__main__.py') == 'gluon-dml'
    assert recorded_program('/x/train_margin.py') == 'train_margin.py'
    m = {'recall@1': 0.8, 'nmi': 0.7, 'map@r': 0.4}
    _run(tmp_path / 'a1', 1, m, command='__main__.py train-margin --data omniglot --seed 1')
    assert summarise([str(tmp_path / 'a1')])[0][-1] == '`gluon-dml train-margin --data omniglot --seed S`'


def test_a_record_without_a_setting_the_table_shows_is_named(tmp_path, capsys):
    # 'unexpected KeyError: missing 'seed' (a bug? ...)', exit 1
    import pytest
    from gluon_dml.cli import main_guard
    from gluon_dml.commands.results_table import main
    _run(tmp_path / 'a1', 1, {'recall@1': 0.8, 'nmi': 0.7, 'map@r': 0.4})
    args = json.loads((tmp_path / 'a1' / 'args.json').read_text())
    del args['seed']
    (tmp_path / 'a1' / 'args.json').write_text(json.dumps(args))
    with pytest.raises(SystemExit) as exit_:
        main_guard(main, [str(tmp_path / 'a1')])
    assert exit_.value.code == 2 and capsys.readouterr().err == (
        "error: %s/args.json lacks the setting 'seed', which the table shows; the run folder is "
        "damaged.\n" % (tmp_path / 'a1'))


def test_a_recorded_command_keeps_empty_and_spaced_values(tmp_path):
    """A real run's args.json records its command quoted as a shell reads it: an empty value
    (--steps '') and one with a space survived as nothing and as two words when the words were
    joined with spaces, so the table's command ran another setting (or failed). Older records
    (space-joined) read as before."""
    from gluon_dml.commands.results_table import _command, summarise
    from ..helpers import run_command
    run = tmp_path / 'run'
    run_command('train-margin', '--data', 'digits', '--epochs', '1', '--batches-per-epoch', '1',
                '--steps', '', '--viz-env', 'my env', '--no-progress', '--save-dir', run,
                check=True)
    command = json.loads((run / 'args.json').read_text())['command']
    assert shlex.split(command) == ['gluon-dml', 'train-margin', '--data', 'digits', '--epochs', '1',
                                    '--batches-per-epoch', '1', '--steps', '', '--viz-env',
                                    'my env', '--no-progress', '--save-dir', str(run)]
    shown = summarise([str(run)])[0][-1]
    assert shown == "`gluon-dml train-margin --data digits --epochs 1 --batches-per-epoch 1 --steps '' " \
                    "--viz-env 'my env'`", shown
    assert _command("train_margin.py --data omniglot --name it's --seed 4") == \
        'train_margin.py --data omniglot --seed S'


def test_a_metric_logged_as_null_is_n_a(tmp_path):
    """The log writes a NaN metric as null: its cell is n/a, and so is the mean of its row (it
    was 'unexpected TypeError' from the mean, exit 1)."""
    from gluon_dml.commands.results_table import summarise
    _run(tmp_path / 'a1', 1, {'recall@1': 0.8, 'nmi': None, 'map@r': 0.4})
    _run(tmp_path / 'a2', 2, {'recall@1': 0.9, 'nmi': 0.7, 'map@r': 0.5})
    row = summarise([str(tmp_path / 'a1'), str(tmp_path / 'a2')])[0]
    assert row[3:6] == ['**0.850** (0.800 / 0.900)', '**n/a** (n/a / 0.700)', '**0.450** (0.400 / 0.500)']
    assert summarise([str(tmp_path / 'a1')])[0][3:6] == ['0.800', 'n/a', '0.400']


def test_a_log_row_without_its_epoch_is_named(tmp_path, capsys):
    # a hand-edited row: 'unexpected KeyError: 'epoch' (a bug? ...)', exit 1
    import pytest
    from gluon_dml.cli import main_guard
    from gluon_dml.commands.results_table import main
    for name, row in (('a1', '{"recall@1": 0.8}'), ('a2', '{"epoch": "2", "recall@1": 0.8}')):
        _run(tmp_path / name, 1, {'recall@1': 0.8, 'nmi': 0.7, 'map@r': 0.4})
        log = tmp_path / name / 'log.jsonl'
        log.write_text(log.read_text() + row + '\n')
        with pytest.raises(SystemExit) as exit_:
            main_guard(main, [str(tmp_path / name)])
        assert exit_.value.code == 2 and capsys.readouterr().err == (
            'error: %s, line 4 has %s; every row of a run\'s log starts with its epoch (a whole '
            'number): the log is damaged or was edited by hand.\n'
            % (log, 'no "epoch"' if name == 'a1' else '"epoch": "2"'))


def test_a_folder_of_runs_gives_every_run_in_it(tmp_path):
    """``results-table runs/`` was "runs/ is not a run folder"; it takes the run folders inside
    (folders that are not runs are passed over), and the table is the one of the runs named."""
    runs = tmp_path / 'runs'
    runs.mkdir()
    _run(runs / 's2', 2, {'recall@1': 0.9, 'nmi': 0.8, 'map@r': 0.5})
    _run(runs / 's1', 1, {'recall@1': 0.8, 'nmi': 0.7, 'map@r': 0.4})
    (runs / 'notes').mkdir()
    (runs / 'notes' / 'x.txt').write_text('not a run')
    named = run_script('eval/results_table.py', runs / 's1', runs / 's2', check=True)
    folder = run_script('eval/results_table.py', runs, check=True)
    assert folder.stdout == named.stdout and '| 1, 2 | **0.850** (0.800 / 0.900) |' in folder.stdout
    empty = tmp_path / 'empty'
    (empty / 'sub').mkdir(parents=True)
    bad = run_script('eval/results_table.py', empty)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        'error: %s is not a run folder (it has no args.json), nor does any folder in it.' % empty), bad.stderr
