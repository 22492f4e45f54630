"""Export a run for deployment: its exported MXNet network checked, and an ONNX model.

    gluon-dml export runs/margin-omniglot                       # the MXNet files, reloaded
    gluon-dml export runs/margin-omniglot --check               # + max difference vs the run
    gluon-dml export runs/margin-omniglot --onnx emb.onnx --check   # + ONNX, run by onnxruntime
    gluon-dml export runs/hash-digits-hashnet-16 --onnx codes.onnx --batch-size 32

Every hybridized training run ends by writing RUN/model-symbol.json and RUN/model-0000.params
(VSE runs: model-image-* and model-text-*). This command reloads them as a gluon.SymbolBlock,
and with --onnx converts the image network to ONNX (input ``data`` (N, C, H, W) float32 after
the run's test-time preprocessing, output ``embedding`` (N, D); hashing runs: the continuous
head output, whose sign is the code). --check embeds a few images of the run's own test split
with the run's Gluon network, the SymbolBlock and (with --onnx) onnxruntime, prints the largest
absolute differences, and exits with status 1 when one exceeds --tol. ONNX needs the onnx extra
(pip install -e ".[onnx]"); docs/export.md says how to deploy.
"""
import argparse
import sys

from .. import cli
from ..errors import UserError

__all__ = ['main', 'build_parser']


def build_parser():
    p = argparse.ArgumentParser(prog='gluon-dml export', description=__doc__.splitlines()[0])
    p.add_argument('run_dir',
                   help='a run folder written by a training command (gluon-dml train-margin, ...)')
    p.add_argument('--onnx', default=None, metavar='OUT.onnx',
                   help='write the image network as an ONNX model to this file')
    p.add_argument('--check', action='store_true',
                   help='compare the deployed forms with the run\'s network on test images')
    p.add_argument('--images', type=int, default=8, metavar='N',
                   help='--check: test images compared (default 8)')
    p.add_argument('--tol', type=float, default=1e-4,
                   help='--check: largest absolute difference accepted (default 1e-4)')
    p.add_argument('--batch-size', type=int, default=None, metavar='N',
                   help='--onnx: a fixed batch size (default: free, the dimension N)')
    p.add_argument('--input-shape', default=None, metavar='C,H,W',
                   help='--onnx: the preprocessed image shape (default: that of a test image '
                        'of the run\'s dataset)')
    p.add_argument('--part', choices=['image', 'text'], default=None,
                   help='VSE runs: which encoder to reload (default image; ONNX: image only)')
    cli.add_threads_flag(p, 'MXNet and onnxruntime')
    return p


def _shape(text):
    try:
        shape = tuple(int(v) for v in text.split(','))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserError('--input-shape takes three positive integers C,H,W (e.g. 3,224,224), '
                        'got %r.' % text)
    return shape


def main(argv=None):
    a = build_parser().parse_args(argv)
    from .. import export
    if a.images < 1 or not a.tol >= 0:          # --tol nan passed every check
        raise UserError('--images must be at least 1 and --tol a number not negative (got %d, '
                        '%s).' % (a.images, a.tol))
    if a.batch_size is not None and a.batch_size < 1:
        raise UserError('--batch-size must be a positive integer (leave it out for a free batch '
                        'size), got %d.' % a.batch_size)
    shape = _shape(a.input_shape) if a.input_shape else None
    if a.onnx is not None:                  # --onnx '' is no file name, not the default file
        a.onnx = cli.refuse_empty_path(a.onnx, '--onnx')
        cli.refuse_run_file(a.run_dir, a.onnx, '--onnx')   # it replaced model-0000.params
    args = export._run_args(a.run_dir)
    vse = args.get('method') == 'vse'
    if a.part and not vse:            # the library's words: 'so leave part unset (got 'text')'
        raise UserError('--part chooses an encoder of a VSE run; %s is a %s run: leave --part '
                        'out.' % (a.run_dir, args.get('method') or 'margin'))
    part = (a.part or 'image') if vse else None
    sym, params = export.exported_files(a.run_dir, part)
    net = export.load_exported(a.run_dir, part)
    names = export._input_names(sym, params)
    print('%s: %s run (%s on %s); exported network %s + %s reloads as a SymbolBlock, input%s %s'
          % (a.run_dir, args.get('method') or 'margin', args.get('model'), args.get('data'),
             sym, params, 's' if len(names) > 1 else '', ', '.join(names)))
    del net
    if a.check and a.onnx and a.batch_size:    # refused before anything is written
        raise UserError('--check runs the ONNX model on --images images: leave --batch-size '
                        'unset (a free batch size) to check it.')
    if a.check and a.onnx and shape and (not vse or part == 'image'):
        known = export._input_shape(a.run_dir, args, part)
        if tuple(known) != shape:          # onnxruntime refused the test images after the write
            raise UserError('--check runs the ONNX model on the run\'s test images (%s): leave '
                            '--input-shape %s unset to check it.'
                            % (','.join(map(str, known)), a.input_shape))
    if a.onnx:
        if vse and part != 'image':
            raise UserError('--onnx converts the image encoder of a VSE run (--part image).')
        path = export.export_onnx(a.run_dir, a.onnx, batch_size=a.batch_size, part=part,
                                  input_shape=shape)
        print('ONNX: wrote %s (opset %d, input %s (%s, ...) float32, output %s; %s)'
              % (path, export.DEFAULT_OPSET, export.INPUT_NAME, a.batch_size or 'N',
                 export.OUTPUT_NAME, export._output_kind(args)[1]))
    if not a.check:
        return 0
    if vse and part != 'image':
        raise UserError('--check compares the image encoder of a VSE run (--part image).')
    res = export.verify(a.run_dir, onnx_path=a.onnx, check_onnx=bool(a.onnx), count=a.images,
                        part=part)
    lines = ['max |Gluon - SymbolBlock|  = %.3g' % res['symbolblock']]
    if res['onnxruntime'] is not None:
        lines.append('max |Gluon - onnxruntime| = %.3g' % res['onnxruntime'])
    if 'code_bits_differ' in res:
        lines.append('code bits that differ     = %d' % res['code_bits_differ'])
    print('check on %d test images of %s (%s):\n  %s'
          % (res['images'], args.get('data'), res['params'], '\n  '.join(lines)))
    diffs = [v for v in (res['symbolblock'], res['onnxruntime']) if v is not None]
    nan = any(v != v for v in diffs)            # a NaN difference is no match (nan > tol is False)
    if nan or max(diffs) > a.tol or res.get('code_bits_differ'):
        print('MISMATCH: %s.' % ('a difference is NaN (a form computes NaN)' if nan
                                 else 'a difference exceeds --tol %g' % a.tol))
        sys.exit(1)
    print('OK: within --tol %g.' % a.tol)
    return 0
