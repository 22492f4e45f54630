"""Export for deployment: a run's network outside the training code.

Every hybridized training run ends by exporting the network it reports (the final one, or the
best epoch on validation classes): ``RUN/model-symbol.json`` + ``RUN/model-0000.params`` (VSE
runs: ``model-image-*`` and ``model-text-*``; the prefix is ``--save-model-prefix``). This module
turns those files into what a deployment loads, and checks that it computes what the run does:

    net = load_exported('runs/margin-omniglot')            # a gluon.SymbolBlock, no gluon_dml
    path = export_onnx('runs/margin-omniglot', 'emb.onnx')  # for onnxruntime, any language
    verify('runs/margin-omniglot', onnx_path=path)          # max |difference| on real test images

The ONNX model has one input ``data`` (N, C, H, W) float32, the run's test-time preprocessing
already applied (:meth:`gluon_dml.methods.Encoders.preprocess`), and one output ``embedding``
(N, D) float32: the embedding (L2-normalised when the run's network normalises), or for a
hashing run the continuous output of the hash head, ``tanh(scale * Dense(x))``, whose sign is the
binary code (``>= 0`` -> +1, as :func:`gluon_dml.models.hashing.binarize`). The batch size is
free unless ``batch_size`` fixes it.

The conversion is MXNet 1.9.1's own (``mxnet.onnx``), with two changes made here: the model
declares the opset whose converters MXNet used (13; MXNet otherwise stamps the installed onnx
package's newest opset on nodes written for opset 13, which newer onnx packages make invalid for
onnxruntime), and ``L2Normalization`` in ``instance`` mode, which MXNet's exporter refuses, is
converted as ``x / sqrt(sum(x^2) + eps)``, the operator's exact formula. It needs the ``onnx``
extra (``pip install -e ".[onnx]"``: the versions checked beside numpy < 1.24 are in
``docs/export.md``).
"""
import contextlib
import io
import json
import os
import tempfile
import warnings

import numpy as np

from .errors import UserError
from .fileio import atomic_save, file_in_the_way

__all__ = ['exported_files', 'load_exported', 'export_onnx', 'onnx_session', 'run_onnx',
           'sample_images', 'verify', 'ONNX_EXTRA', 'DEFAULT_OPSET']

ONNX_EXTRA = 'pip install -e ".[onnx]"'
DEFAULT_OPSET = 13
# the opset MXNet 1.9.1's newest converters are written for, and the oldest IR version of it
_IR_VERSION = {13: 7}
INPUT_NAME = 'data'
OUTPUT_NAME = 'embedding'


# ---------------------------------------------------------------------------------------------
# the run's exported files, reloaded as a SymbolBlock
# ---------------------------------------------------------------------------------------------

def _run_args(run_dir):
    from .engine.rundir import load_run_args
    if not os.path.isdir(run_dir):
        raise UserError('%s is not a folder: pass a run folder written by a training command.'
                        % run_dir)
    return load_run_args(run_dir)


def _part(args, part):
    """The exported part of a run: None for one-network runs, 'image' or 'text' for VSE runs."""
    vse = args.get('method') == 'vse'
    if vse and part not in ('image', 'text'):
        raise UserError('A VSE run exports two encoders: choose part="image" or part="text" '
                        '(got %r).' % (part,))
    if not vse and part is not None:
        raise UserError('Only VSE runs export parts (image, text); this is a %s run, so leave '
                        'part unset (got %r).' % (args.get('method') or 'margin', part))
    return part


def exported_files(run_dir, part=None):
    """``(symbol.json, params)`` paths of a run's exported network (``part``: a VSE run's
    ``'image'`` or ``'text'`` encoder), after checking they are there."""
    args = _run_args(run_dir)
    part = _part(args, part)
    prefix = args.get('save_model_prefix') or 'model'
    if part:
        prefix = '%s-%s' % (prefix, part)
    sym = os.path.join(run_dir, '%s-symbol.json' % prefix)
    params = os.path.join(run_dir, '%s-0000.params' % prefix)
    if not (os.path.isfile(sym) and os.path.isfile(params)):
        if args.get('disable_hybridize'):
            raise UserError('%s has no exported network (%s-symbol.json): it was trained with '
                            '--disable-hybridize, which skips the export; train it again without '
                            'that flag.' % (run_dir, prefix))
        if _finished(run_dir, args):
            raise UserError('%s has no exported network (%s-symbol.json and %s-0000.params), '
                            'though the run finished: the files were moved or deleted; write '
                            'them again by resuming the finished run with --resume.'
                            % (run_dir, prefix, prefix))
        raise UserError('%s has no exported network (%s-symbol.json and %s-0000.params): the '
                        'export is written when training finishes, so this run has not finished '
                        '(resume it with --resume).' % (run_dir, prefix, prefix))
    return sym, params


def _finished(run_dir, args):
    """Whether the run's log reached its last epoch."""
    from .engine.logger import read_log
    try:
        log = read_log(run_dir)
    except (OSError, ValueError):
        return False
    return bool(log) and log[-1].get('epoch') == args.get('epochs')


def _damaged(path, why):
    """The sentence for an exported file that cannot be read or does not fit its partner."""
    return UserError('%s is damaged or not this run\'s export (%s): write the export again by '
                     'resuming the finished run with --resume.' % (path, why))


def _mxnet_why(err):
    """The MXNetError's own sentence (its text opens with a C++ traceback)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    said = [ln for ln in lines if ln.startswith('MXNetError:')]
    text = (said[-1] if said else (lines[-1] if lines else type(err).__name__))
    return text.replace('MXNetError: ', '').replace('Check failed: ', '')[:200]


def _load_symbol(sym_path):
    import mxnet as mx
    if os.path.getsize(sym_path) == 0:
        raise _damaged(sym_path, 'it is empty, 0 bytes')
    try:
        return mx.sym.load(sym_path)
    except (ValueError, mx.base.MXNetError):     # not JSON, not a symbol, not UTF-8
        raise _damaged(sym_path, 'not the JSON of an MXNet symbol') from None


def _load_params(params_path):
    """{name: NDArray} of an exported params file (the ``arg:`` / ``aux:`` prefixes dropped)."""
    import mxnet as mx
    if os.path.getsize(params_path) == 0:        # a full disk, a cut copy
        raise _damaged(params_path, 'it is empty, 0 bytes')
    try:
        loaded = mx.nd.load(params_path)
    except mx.base.MXNetError:
        raise _damaged(params_path, 'not an MXNet parameters file') from None
    if isinstance(loaded, list):       # a network without parameters saves an empty list
        if loaded:
            raise UserError('%s holds unnamed arrays, not the parameters of an exported network.'
                            % params_path)
        loaded = {}
    return {k.split(':', 1)[-1]: v for k, v in loaded.items()}


def _input_names(sym_path, params_path):
    """The inputs of the exported symbol that its parameters do not fill (``data``; a VSE text
    encoder: ``data0``, ``data1``), after checking the two files are one network's."""
    params = _load_params(params_path)
    inputs = _load_symbol(sym_path).list_inputs()
    extra = sorted(set(params) - set(inputs))
    unfilled = [n for n in inputs if n not in params and not n.startswith('data')]
    if extra or unfilled:
        raise _damaged(params_path, 'its parameters are not those of %s: %s' % (
            os.path.basename(sym_path), 'it holds %s, which the network has not' % extra[0]
            if extra else 'it lacks %s' % unfilled[0]))
    return [n for n in inputs if n not in params]


def load_exported(run_dir, part=None, ctx=None):
    """The run's exported network reloaded as a :class:`mxnet.gluon.SymbolBlock` on ``ctx``
    (default the CPU): the symbol and parameters only, none of gluon_dml's model code. Its
    inputs are named as in the symbol: ``data`` (VSE text encoder: the padded token ids and the
    lengths)."""
    import mxnet as mx
    from mxnet import gluon
    sym, params = exported_files(run_dir, part)
    ctx = ctx if ctx is not None else mx.cpu()
    with warnings.catch_warnings():     # MXNet warns that the input's type is not recorded
        warnings.simplefilter('ignore', UserWarning)
        return gluon.SymbolBlock.imports(sym, _input_names(sym, params), params, ctx=ctx)


# ---------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------

def _require_onnx(runtime=False):
    """Import onnx (and onnxruntime), or one sentence naming the extra."""
    try:
        import onnx
    except ImportError as err:
        raise UserError('ONNX export needs the onnx package, which is not installed (%s): '
                        'install the onnx extra, %s.' % (err, ONNX_EXTRA)) from None
    if not hasattr(onnx, 'mapping'):
        raise UserError('onnx %s has no onnx.mapping, which MXNet 1.9.1\'s ONNX exporter needs '
                        '(it was removed in onnx 1.19): install the onnx extra\'s versions, %s.'
                        % (onnx.__version__, ONNX_EXTRA))
    if runtime:
        try:
            import onnxruntime  # noqa: F401  (only whether it imports)
        except ImportError as err:
            raise UserError('Running an ONNX model needs onnxruntime, which is not installed '
                            '(%s): install the onnx extra, %s.' % (err, ONNX_EXTRA)) from None
    return onnx


def _convert_l2normalization(node, **kwargs):
    """MXNet's ``L2Normalization`` as ONNX nodes, ``x / sqrt(sum(x^2) + eps)`` with the
    operator's eps: ``instance`` mode sums over all but the first axis, ``channel`` mode over
    axis 1. (MXNet 1.9.1 converts only ``channel`` mode, to LpNormalization, which has no
    eps.) Other modes go to MXNet's own converter."""
    from onnx import helper, numpy_helper
    attrs = node.get('attrs', {})
    mode = attrs.get('mode', 'instance')
    if mode not in ('instance', 'channel'):
        return _MXNET_CONVERTERS['L2Normalization'](node, **kwargs)
    name = node['name']
    src = kwargs['outputs_lookup'][node['inputs'][0][0]][node['inputs'][0][1]]
    eps = np.array(float(attrs.get('eps', 1e-10)), dtype=src.dtype)
    kwargs['initializer'].append(numpy_helper.from_array(eps, name + '_eps'))
    kwargs['initializer'].append(numpy_helper.from_array(np.array([1], np.int64), name + '_axes'))

    def op(kind, inputs, output, **kw):
        return helper.make_node(kind, inputs, [output], name=output, **kw)
    x, nodes = src.name, []
    if mode == 'instance':                         # over every axis but the batch axis
        nodes.append(op('Flatten', [src.name], name + '_flat', axis=1))
        x = name + '_flat'
    # ReduceSum with the axes as an input (opset 13 on), not ReduceSumSquare, whose axes
    # attribute the onnx checker MXNet runs rejects under the newest opsets
    nodes += [op('Mul', [x, x], name + '_sq'),
              op('ReduceSum', [name + '_sq', name + '_axes'], name + '_sumsq', keepdims=1),
              op('Add', [name + '_sumsq', name + '_eps'], name + '_sumsq_eps'),
              op('Sqrt', [name + '_sumsq_eps'], name + '_norm')]
    if mode == 'instance':
        nodes += [op('Div', [x, name + '_norm'], name + '_flat_unit'),
                  op('Shape', [src.name], name + '_shape'),
                  op('Reshape', [name + '_flat_unit', name + '_shape'], name)]
    else:
        nodes.append(op('Div', [x, name + '_norm'], name))
    return nodes


_OUR_CONVERTERS = {'L2Normalization': _convert_l2normalization}
_MXNET_CONVERTERS = {}


def _registry():
    import mxnet.onnx  # noqa: F401  (registers MXNet's converters)
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph
    if not MXNetGraph.registry_:
        raise UserError('MXNet\'s ONNX converters are not registered: mxnet.onnx was imported '
                        'before the onnx package was installed; start a new Python process.')
    return MXNetGraph


def _mxnet_converter(graph_cls, op, opset):
    for version in range(opset, 11, -1):
        func = graph_cls.registry_.get(version, {}).get(op)
        if func is not None:
            return func
    return None


def unsupported_operators(sym_path, opset=DEFAULT_OPSET):
    """``{operator: first node name}`` of the symbol's operators that cannot be converted to
    ONNX at ``opset``."""
    graph_cls = _registry()
    with open(sym_path) as f:
        nodes = json.load(f)['nodes']
    missing = {}
    for n in nodes:
        op = n['op']
        if op == 'null' or op in _OUR_CONVERTERS:
            continue
        if _mxnet_converter(graph_cls, op, opset) is None:
            missing.setdefault(op, n['name'])
    return missing


@contextlib.contextmanager
def _converters(opset, current):
    """MXNet's converter registry with ours in front for the duration of one export, and each
    converted node recorded in ``current`` (to name the one that fails)."""
    graph_cls = _registry()
    table = graph_cls.registry_.setdefault(opset, {})
    saved = {op: table.get(op) for op in _OUR_CONVERTERS}
    for op, func in _OUR_CONVERTERS.items():
        _MXNET_CONVERTERS[op] = _mxnet_converter(graph_cls, op, opset)
        table[op] = func
    convert_layer = graph_cls.__dict__['convert_layer']

    def traced(node, **kwargs):
        current[:] = [node['op'], node['name']]
        return convert_layer.__func__(node, **kwargs)
    graph_cls.convert_layer = staticmethod(traced)
    try:
        yield graph_cls
    finally:
        graph_cls.convert_layer = convert_layer
        for op, func in saved.items():
            if func is None:
                table.pop(op, None)
            else:
                table[op] = func


def _output_kind(args):
    if args.get('method') == 'hash':
        return ('binary', 'continuous hash-head output tanh(scale * Dense(x)); the binary code is '
                          'its sign (>= 0 -> +1, < 0 -> -1)')
    from .methods.embedding import embeddings_normalized
    if args.get('method') == 'vse' or embeddings_normalized(args):
        return 'float', 'embedding, L2-normalised (search by inner product)'
    return 'float', 'embedding, not normalised (search by Euclidean distance)'


def _input_shape(run_dir, args, part):
    """(C, H, W) of the run's preprocessed images: the shape of one test image."""
    try:
        return tuple(sample_images(run_dir, 1, part=part).shape[1:])
    except (UserError, ValueError, OSError) as err:
        raise UserError('Cannot read a test image of %s to learn the input shape (%s): pass '
                        'input_shape=(C, H, W) (gluon-dml export --input-shape C,H,W).'
                        % (args.get('data'), err)) from None


def _warn_other_shape(run_dir, args, part, shape):
    """``input_shape`` given while the run's dataset is readable: a shape other than its images'
    is exported as asked (a convolutional net takes it) but named, as a likely slip."""
    import warnings
    try:
        known = _input_shape(run_dir, args, part)
    except UserError:
        return                                  # the dataset is not here: the reason for the flag
    if tuple(known) != tuple(shape):
        warnings.warn('--input-shape %s differs from the shape of the run\'s test images (%s): '
                      'the ONNX model takes %s inputs, as asked.'
                      % (','.join(map(str, shape)), ','.join(map(str, known)),
                         'x'.join(map(str, shape))))


def export_onnx(run_dir, out=None, batch_size=None, opset=DEFAULT_OPSET, part=None,
                input_shape=None):
    """Convert a run's exported image network to ONNX; returns the path written (default
    ``RUN/PREFIX.onnx``, VSE runs ``RUN/PREFIX-image.onnx``).

    ``batch_size``: None for a free batch size, else fixed. ``opset``: 13, the opset MXNet
    1.9.1's newest converters are written for (the only one offered). ``input_shape``: (C, H,
    W), by default the shape of one test image of the run's dataset. The output is
    ``embedding`` (hashing runs: the continuous head output, the codes are its sign). Raises
    :class:`UserError` when the run has no export, onnx is missing, or an operator cannot be
    converted (naming it)."""
    import mxnet as mx
    args = _run_args(run_dir)
    if args.get('method') == 'vse':
        part = part or 'image'
        if part != 'image':
            raise UserError('Only the image encoder of a VSE run is exported to ONNX (the text '
                            'encoder is a GRU over token ids; deploy it as a SymbolBlock).')
    sym_path, params_path = exported_files(run_dir, part)
    inputs = _input_names(sym_path, params_path)      # the two files read, and one network's
    onnx = _require_onnx()
    from onnx import TensorProto, checker, helper
    if opset not in _IR_VERSION:
        raise UserError('opset must be %s (the opset MXNet 1.9.1\'s converters are written '
                        'for), got %r.' % (', '.join(map(str, sorted(_IR_VERSION))), opset))
    if batch_size is not None and int(batch_size) < 1:
        raise UserError('--batch-size must be a positive integer (leave it out for a free batch '
                        'size), got %r.' % batch_size)
    missing = unsupported_operators(sym_path, opset)
    if missing:
        raise UserError('%s cannot be exported to ONNX: MXNet 1.9.1\'s exporter has no converter '
                        'for operator %s (node %s).' % (
                            run_dir, ', '.join(sorted(missing)),
                            ', '.join(missing[k] for k in sorted(missing))))
    params = _load_params(params_path)
    sym = _load_symbol(sym_path)
    if len(inputs) != 1:
        raise UserError('The exported network of %s takes %d inputs (%s); ONNX export handles '
                        'image networks with one input.'
                        % (run_dir, len(inputs), ', '.join(inputs)))
    shape = tuple(int(s) for s in (input_shape or _input_shape(run_dir, args, part)))
    if input_shape:
        _warn_other_shape(run_dir, args, part, shape)
    fixed = (int(batch_size) if batch_size else 1,) + shape
    current = []
    shapes = {k: v.shape for k, v in params.items() if k in sym.list_inputs()}
    shapes[inputs[0]] = fixed
    try:
        with contextlib.redirect_stdout(io.StringIO()):     # MXNet prints every shape on failure
            out_shape = sym.infer_shape(**shapes)[1][0]
    except mx.base.MXNetError as err:
        raise UserError('The exported network of %s does not take input shape %s (%s).' % (
            run_dir, '(N, %s)' % ', '.join(map(str, shape)),
            _mxnet_reason(err))) from None
    try:
        with _converters(opset, current) as graph_cls:
            graph = graph_cls().create_onnx_graph_proto(
                sym, params, [fixed], [TensorProto.FLOAT], opset_version=opset,
                dynamic=batch_size is None,
                dynamic_input_shapes=[(None,) + shape] if batch_size is None else None)
    except onnx.checker.ValidationError as err:    # MXNet checks the graph it wrote
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise UserError('%s cannot be exported to ONNX: the graph MXNet\'s exporter wrote fails '
                        'the onnx checker: %s' % (run_dir, ' '.join(lines[:1] + [
                            ln for ln in lines[1:] if ln.startswith('==>')])[:300])) from None
    except (AttributeError, NotImplementedError, ValueError, KeyError, AssertionError) as err:
        where = 'operator %s (node %s)' % tuple(current) if current else 'the network'
        raise UserError('%s cannot be exported to ONNX: MXNet\'s exporter failed on %s: %s'
                        % (run_dir, where, str(err).strip() or type(err).__name__)) from None
    model = _finish_model(onnx, helper, graph, inputs[0], opset, args, part, shape, batch_size,
                          out_shape)
    checker.check_model(model, full_check=True)
    prefix = args.get('save_model_prefix') or 'model'
    out = out or os.path.join(run_dir, '%s%s.onnx' % (prefix, '-' + part if part else ''))
    folder = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out):
        raise UserError('%s is a folder; give the ONNX file a name (--onnx OUT.onnx).' % out)
    blocker = file_in_the_way(folder)
    if blocker is not None:
        raise UserError('%s cannot be written: %s is a file, not a folder.' % (out, blocker))
    blob = model.SerializeToString()

    def write(tmp):
        with open(tmp, 'wb') as f:       # open(), not mkstemp: the file gets the umask's mode
            f.write(blob)
    try:
        os.makedirs(folder, exist_ok=True)
        atomic_save(out, write)
    except OSError as err:              # named by the file asked for, not its temporary name
        raise UserError('%s cannot be written: %s.' % (out, err.strerror or err)) from None
    return out


def _mxnet_reason(err):
    """The sentence of an MXNetError, without its C++ location."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = text.replace('MXNetError: ', '', 1)
    return text.split(': ', 1)[-1] if text.startswith('Error in operator') else text


def _finish_model(onnx, helper, graph, input_name, opset, args, part, shape, batch_size,
                  out_shape):
    """The ModelProto: initializers out of the graph inputs (one input, ``data``), the output
    renamed ``embedding``, the opset MXNet's converters wrote, and what the model computes in
    its metadata."""
    weights = {t.name for t in graph.initializer}
    keep = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(keep)
    if input_name != INPUT_NAME:
        _rename(graph, input_name, INPUT_NAME, value_infos=graph.input)
    if len(graph.output) != 1:
        raise UserError('The exported network has %d outputs; ONNX export handles one.'
                        % len(graph.output))
    _rename(graph, graph.output[0].name, OUTPUT_NAME, value_infos=graph.output)
    if batch_size is None:              # the free batch dimension named N, the others known
        for vi, known in ((graph.input[0], shape), (graph.output[0], out_shape[1:])):
            dims = vi.type.tensor_type.shape.dim
            dims[0].dim_param = 'N'
            for d, size in zip(dims[1:], known):
                d.dim_value = int(size)
    graph.name = 'gluon_dml_%s' % (args.get('method') or 'margin')
    kind, meaning = _output_kind(args)
    import gluon_dml
    model = helper.make_model(graph, producer_name='gluon-dml',
                              producer_version=gluon_dml.__version__,
                              opset_imports=[helper.make_opsetid('', opset)])
    model.ir_version = _IR_VERSION[opset]
    meta = {'gluon_dml.method': args.get('method') or 'margin',
            'gluon_dml.model': str(args.get('model')), 'gluon_dml.data': str(args.get('data')),
            'gluon_dml.part': part or '', 'gluon_dml.kind': kind, 'gluon_dml.output': meaning,
            'gluon_dml.input': '%s (%s, %s) float32, the run\'s test-time preprocessing applied'
                               % (INPUT_NAME, batch_size or 'N', ', '.join(map(str, shape))),
            'gluon_dml.run': os.path.basename(os.path.normpath(args.get('save_dir') or ''))}
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    return model


def _rename(graph, old, new, value_infos):
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for vi in value_infos:
        if vi.name == old:
            vi.name = new


def onnx_session(path, threads=None):
    """An onnxruntime CPU session of an ONNX file (``threads``: intra-op threads, default
    ``OMP_NUM_THREADS`` when set)."""
    _require_onnx(runtime=True)
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    threads = threads or int(os.environ.get('OMP_NUM_THREADS', '0') or 0)
    if threads:
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])


def run_onnx(session_or_path, images):
    """The ONNX model's output for a batch (N, C, H, W) of preprocessed images."""
    sess = session_or_path
    if isinstance(sess, str):
        sess = onnx_session(sess)
    feed = {sess.get_inputs()[0].name: np.ascontiguousarray(images, dtype=np.float32)}
    return sess.run(None, feed)[0]


# ---------------------------------------------------------------------------------------------
# checking that the deployed forms compute what the run does
# ---------------------------------------------------------------------------------------------

def sample_images(run_dir, count=8, part=None):
    """(count, C, H, W) float32: ``count`` preprocessed images spread over the run's test split
    (hashing runs: the protocol's queries; VSE runs: the test split's images)."""
    args = _run_args(run_dir)
    data, root = args.get('data'), args.get('data_path')
    from .data import get_dataset
    if args.get('method') == 'vse':
        from .methods.vse import data_root, load_split
        cset = load_split(args, data_root(args), args.get('test_split') or 'test')
        n, get = cset.num_images, cset.image
    else:
        if args.get('method') == 'hash':
            ds = get_dataset(data, root, 'query', protocol='hashing')
        else:
            from .config import dataset_options
            ds = get_dataset(data, root, 'test', **dataset_options(args, augment=False))
        n, get = len(ds), (lambda i: ds[i][0])
    if n == 0:
        raise UserError('The test split of %s is empty.' % data)
    idx = np.unique(np.linspace(0, n - 1, num=min(int(count), n)).astype(int))
    return np.stack([np.asarray(get(int(i)), dtype=np.float32) for i in idx])


def verify(run_dir, images=None, onnx_path=None, check_onnx=True, count=8, part=None,
           which=None):
    """Compare the run's network with its deployed forms on real images.

    ``images``: (N, C, H, W) preprocessed images, default ``count`` test images of the run's
    dataset. Returns ``{'images': N, 'symbolblock': max |Gluon - SymbolBlock|, 'onnxruntime':
    max |Gluon - onnxruntime| (None without ``check_onnx``), 'onnx_path', 'code_bits_differ'
    (hashing runs: code bits whose sign differs, SymbolBlock and onnxruntime together)}``.
    The Gluon network is :func:`gluon_dml.methods.open_run`'s (the reported parameters); the
    ONNX model is ``onnx_path``, else one exported to a temporary file."""
    import mxnet as mx
    from .methods import open_run
    args = _run_args(run_dir)
    vse = args.get('method') == 'vse'
    if vse:
        part = part or 'image'
        if part != 'image':
            raise UserError('verify() checks the image encoder of a VSE run (part="image").')
    if check_onnx:
        _require_onnx(runtime=True)
    images = sample_images(run_dir, count, part) if images is None else \
        np.asarray(images, dtype=np.float32)
    trained = open_run(run_dir, [mx.cpu()], which, fuse=False)
    gluon_net = trained.net.image if vse else trained.net
    ref = gluon_net(mx.nd.array(images)).asnumpy()
    try:
        sb = load_exported(run_dir, part if vse else None)(mx.nd.array(images)).asnumpy()
    except mx.base.MXNetError as err:   # parameters of another shape (another --embed-dim)
        raise _damaged(exported_files(run_dir, part if vse else None)[1],
                       'the network does not run on %s images: %s' % (
                           'x'.join(map(str, images.shape[1:])), _mxnet_why(err))) from None
    result = {'images': int(len(images)), 'symbolblock': float(np.abs(ref - sb).max()),
              'onnxruntime': None, 'onnx_path': onnx_path, 'params': trained.params_label}
    outputs = [sb]
    if check_onnx:
        with tempfile.TemporaryDirectory() as tmp:
            path = onnx_path or export_onnx(run_dir, os.path.join(tmp, 'model.onnx'), part=part,
                                            input_shape=images.shape[1:])
            ort_out = run_onnx(path, images)
        result['onnxruntime'] = float(np.abs(ref - ort_out).max())
        outputs.append(ort_out)
    if args.get('method') == 'hash':
        from .models.hashing import binarize
        codes = binarize(ref)
        result['code_bits_differ'] = int(sum((binarize(o) != codes).sum() for o in outputs))
    return result
