"""Evaluate a run folder of any method on a split.

    gluon-dml evaluate runs/margin-omniglot                       # the test classes
    gluon-dml evaluate RUN_DIR --save-embeddings emb.npz
    gluon-dml evaluate runs/hash-fashion-mnist-hashnet-48 --save-codes codes.npz   # hashing run
    gluon-dml evaluate runs/vsepp-fashion3 --split test                            # VSE run

Embedding runs: Recall@K, NMI, R-precision, MAP@R; hashing runs: mAP, mAP@1000, precision
within Hamming radius 2, the precision-recall curve; VSE runs: image-to-text and text-to-image
recall. The network is the one the run reports (the final one, or the best on validation
classes for a run trained with them); ``--checkpoint best|last`` picks another.
"""
import argparse

from .. import cli, config
from ..engine import get_contexts, load_run_args
from ..methods import get_method, open_run

__all__ = ['main']


def build_parser():
    p = argparse.ArgumentParser(prog='gluon-dml evaluate', description=__doc__.splitlines()[0])
    cli.add_threads_flag(p)
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    p.add_argument('run_dir',
                   help='a run folder written by a training command (gluon-dml train-margin, ...)')
    p.add_argument('--split', default='test',
                   help='train or test (In-Shop and query/gallery folders: test = query vs '
                        'gallery); val = the classes a --val-classes run held out (VSE: its val '
                        'split)')
    p.add_argument('--data-path', '--data_path', default=None,
                   help='where the dataset lives (default: the path the run used)')
    cli.add_trained_run_flags(p)
    cli.add_int8_flags(p, data_path=False)
    p.add_argument('--ks', default=None, help='the K of Recall@K (default 1,2,4,8; embedding runs)')
    p.add_argument('--nmi-runs', type=int, default=None,
                   help="k-means runs averaged for NMI (default: the run's setting, else 10; 1 "
                        "when points x classes exceeds 1e7)")
    p.add_argument('--save-embeddings', '--save_embeddings', default=None, metavar='FILE.npz',
                   help='also write the embeddings (float32 N x D) and labels (int64 N)')
    p.add_argument('--out', default=None, help='metrics JSON (default RUN_DIR/eval-SPLIT.json)')
    p.add_argument('--save-codes', '--save_codes', default=None, metavar='FILE.npz',
                   help='train-hash runs: write the packed binary codes of queries and database')
    cli.add_few_shot_flags(p)
    p.add_argument('--tta-shift', type=int, default=None, metavar='PX',
                   help="embed each image as the mean over it and 4 copies moved PX pixels "
                        "(default: the run's --tta-shift; 0: none)")
    return p


def _distinct_outputs(a):
    """Two outputs naming one file (the metrics JSON then overwritten by the embeddings), or an
    output naming a file of the run (--out RUN/args.json replaced the record: the run could not
    be opened again), are refused before the work."""
    import os
    seen = {}
    for flag in ('--out', '--save-embeddings', '--save-codes'):
        path = getattr(a, flag[2:].replace('-', '_'), None)
        if not path:
            continue
        real = os.path.realpath(path)
        if real in seen:
            raise cli.UserError('%s and %s name one file, %s; give each its own.'
                                % (seen[real], flag, path))
        seen[real] = flag
        cli.refuse_run_file(a.run_dir, path, flag)


def main(argv=None):
    a = build_parser().parse_args(argv)
    config.check_nmi_runs(a.nmi_runs)
    config.check_tta_shift(a.tta_shift)
    a.few_shot = cli.few_shot_setting(a)
    # everything that can refuse the command, before the embedding: the outputs, the Ks
    a.out = cli.output_path(a.out)
    a.save_embeddings = cli.output_path(getattr(a, 'save_embeddings', None), '.npz',
                                        '--save-embeddings')
    a.save_codes = cli.output_path(getattr(a, 'save_codes', None), '.npz', '--save-codes')
    _distinct_outputs(a)
    if getattr(a, 'ks', None) is not None:
        ks = config.parse_int_list(a.ks, '--ks', '1,2,4,8')
        if not ks or min(ks) < 1:        # after the embedding: 'max() arg is an empty sequence'
            raise cli.UserError('--ks takes positive integers such as "1,2,4,8", got %r.' % a.ks)
    run_args = load_run_args(a.run_dir)
    if a.out is None:
        cli.default_output_folder(a.run_dir, 'the metrics JSON')
    get_method(run_args.get('method') or 'margin').check_evaluation(run_args, a)   # before loading
    trained = open_run(a.run_dir, get_contexts(a.gpus), a.checkpoint, fuse=not a.no_fusion,
                       int8=cli.int8_setting(a), tta_shift=a.tta_shift)
    print('network: %s (%s)%s' % (trained.params_label, trained.params, cli.inference_note(trained)))
    metrics, written, digits = trained.method.evaluate_run(trained, a)
    cli.print_metrics(metrics, digits=digits, skip=('pr_curve',))
    for path in written:
        print('written: %s' % path)
    return metrics
