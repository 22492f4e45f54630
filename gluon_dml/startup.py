"""What ``import gluon_dml`` arranges for MXNet's start, before MXNet loads: three of its imports
left out, and its operator functions compiled once per machine instead of at every start.

- **MXNet's optional imports.** ``mxnet/model.py`` imports ``sklearn.base`` only to make its
  legacy ``FeedForward`` (deprecated since MXNet 1.0, unused here) a scikit-learn estimator; that
  pulls in scipy.stats and pandas. ``mxnet/contrib/quantization.py`` imports ``scipy.stats`` for
  the entropy calibration of INT8 networks, and ``mxnet/test_utils.py`` (which ``import mxnet``
  loads) for the statistical checks of MXNet's own test suite. Those imports, made from those
  modules, are answered with ImportError (MXNet then uses ``object`` and ``None``); once MXNet
  has loaded, the two modules get a stand-in for scipy.stats instead of ``None``, which imports it
  at its first use. scikit-learn and scipy.stats import as usual afterwards; a process that
  imported them before MXNet keeps MXNet's imports, as does ``GLUON_DML_MXNET_OPTIONAL=1``.
- **MXNet's operator code.** ``import mxnet`` writes the Python source of a function for each of
  its operators in each namespace (2,556 functions for MXNet 1.9.1's 1,167 operators: ndarray and
  symbol, their numpy, numpy_extension and contrib namespaces) and compiles each with ``exec``:
  0.68 s of every start on a 2-core Zen 2. The compiled code objects are kept in a file of the
  cache folder (``GLUON_DML_CACHE``, default ``~/.cache/gluon-dml``; ``off`` turns it off),
  keyed by the source with the operator's handle left out (a C++ address, different in every
  process). The handle is put back into the code object's constants, so each function is the
  one MXNet would have compiled: the same bytecode, names and constants (tests/test_startup.py
  compares every one).

``gluon-dml search --help`` starts in 1.34 s, against 1.83 s without the cache and 2.71 s as
MXNet starts by itself (``bench/bench_startup.py``, 2-core Zen 2; docs/speed.md).
"""
import builtins
import hashlib
import marshal
import os
import sys

from .fileio import atomic_save, cache_dir

__all__ = ['after_module_runs', 'before_module_runs', 'start_mxnet',
           'OperatorCodeCache', 'operator_cache']


class _ModuleHooks:
    """A meta path finder that runs callbacks right before and right after named modules
    execute, once each, whoever imports them. A module's hooks stay until it executes, so a mere
    ``find_spec`` probe does not use them up. (A meta path finder needs only ``find_spec``;
    subclassing ``importlib.abc.MetaPathFinder`` would import ``importlib.resources``,
    ``tempfile`` and ``typing``: about 15 ms on every ``import gluon_dml``.)"""

    def __init__(self):
        self.hooks = {}          # module name: ([before callbacks], [after callbacks])
        self._looking = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.hooks or fullname in self._looking:
            return None
        import importlib.util
        self._looking.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)       # the other finders' answer
        finally:
            self._looking.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, 'exec_module'):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            before, after = self.hooks.get(fullname, ([], []))
            for callback in list(before):
                callback(module)
            try:
                run(module)
            finally:
                self.hooks.pop(fullname, None)
                if not self.hooks:
                    sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
            for callback in after:          # those added while the module ran too
                callback(module)

        spec.loader.exec_module = exec_module
        return spec


def _hooks():
    hooks = next((f for f in sys.meta_path if isinstance(f, _ModuleHooks)), None)
    if hooks is None:
        hooks = _ModuleHooks()
        sys.meta_path.insert(0, hooks)
    return hooks


def after_module_runs(name, callback):
    """Run ``callback(module)`` right after the module ``name`` is imported; at once if it is (a
    module still executing, with hooks of its own, runs it at its end)."""
    pending = next((f.hooks[name] for f in sys.meta_path
                    if isinstance(f, _ModuleHooks) and name in f.hooks), None)
    if pending is not None:
        pending[1].append(callback)
    elif name in sys.modules:
        callback(sys.modules[name])
    else:
        _hooks().hooks.setdefault(name, ([], []))[1].append(callback)


def before_module_runs(name, callback):
    """Run ``callback(module)`` right before the module ``name`` executes (its namespace made, its
    code not run yet). False, and nothing done, if it is imported already."""
    if name in sys.modules:
        return False
    _hooks().hooks.setdefault(name, ([], []))[0].append(callback)
    return True


class _ImportedAtFirstUse:
    """Stands, in an MXNet module, for a module that MXNet imports at its start but uses only in
    a few functions: the first attribute read imports it (``ss.norm`` imports scipy.stats)."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        import importlib
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self):
        return '<%s, imported at its first use (gluon_dml)>' % self._name


class _MXNetWithoutItsOptionalImports:
    """Answers MXNet's optional imports (the module's docstring) with ImportError, and leaves
    ``sys.meta_path`` once all three were answered."""

    # the module-level name under which each module keeps the import, where a stand-in can serve
    STAND_INS = {'mxnet.contrib.quantization': 'stats', 'mxnet.test_utils': 'ss'}

    def __init__(self):
        self.pending = {'mxnet.model': 'sklearn', 'mxnet.contrib.quantization': 'scipy.stats',
                        'mxnet.test_utils': 'scipy.stats'}
        self.answered = {}

    def find_spec(self, fullname, path=None, target=None):
        hits = [m for m, top in self.pending.items()
                if fullname == top or fullname.startswith(top + '.')]
        if not hits:
            return None
        frame = sys._getframe(1)
        while frame is not None:
            module = frame.f_globals.get('__name__')
            if module in hits:
                self.answered[module] = self.pending.pop(module)
                if not self.pending:
                    sys.meta_path[:] = [f for f in sys.meta_path if f is not self]
                raise ImportError('%s is not imported for %s (gluon_dml; '
                                  'GLUON_DML_MXNET_OPTIONAL=1 imports it)' % (fullname, module))
            frame = frame.f_back
        return None

    def stand_in(self, mxnet):
        """After MXNet loaded: a stand-in where a module was refused scipy.stats."""
        for module, attr in self.STAND_INS.items():
            loaded = sys.modules.get(module)
            if module in self.answered and loaded is not None and getattr(loaded, attr, 0) is None:
                setattr(loaded, attr, _ImportedAtFirstUse(self.answered[module]))


class OperatorCodeCache:
    """MXNet's operator functions compiled once (the module's docstring). Its :meth:`exec` takes
    the place of the builtin ``exec`` in the two modules of MXNet that compile them
    (``mxnet.ndarray.register``, ``mxnet.symbol.register``, whose functions the numpy namespaces
    use too); :meth:`save` writes what was compiled anew, when MXNet has loaded."""

    # where an operator's handle goes in the source, once per function
    CALLS = ('_imperative_invoke(', '_symbol_creator(')
    # stands for the handle in a cached code object: an int no generated source holds
    SLOT = 0x5107AB1E0DD5

    def __init__(self, path):
        self.path = path
        self.codes = {}
        self.used = {}
        self.new = 0
        self.hits = 0
        try:
            with open(path, 'rb') as f:
                owner = os.fstat(f.fileno()).st_uid
                if owner == getattr(os, 'getuid', lambda: owner)():    # another user's: not read
                    codes = marshal.load(f)
                    if isinstance(codes, dict):
                        self.codes = codes
        except (OSError, EOFError, ValueError, TypeError):
            pass                            # missing, unreadable or damaged: compiled anew

    @classmethod
    def for_mxnet(cls, package_dir):
        """The cache of the MXNet in ``package_dir`` (one file per MXNet install and Python
        version), or None when the cache folder is off."""
        folder = cache_dir()
        if folder is None:
            return None
        tag = hashlib.sha1(os.path.realpath(package_dir).encode('utf-8')).hexdigest()[:12]
        name = 'mxnet-operators-%s-%s.marshal' % (sys.implementation.cache_tag, tag)
        return cls(os.path.join(folder, name))

    def code(self, source):
        """The code object of ``compile(source, '<string>', 'exec')``, from the cache when the
        source with its handle left out was compiled before."""
        where = [(source.find(c), c) for c in self.CALLS if source.count(c) == 1]
        if len(where) != 1 or str(self.SLOT) in source:
            return compile(source, '<string>', 'exec')
        start = where[0][0] + len(where[0][1])
        end = source.find(',', start)
        number = source[start:end]
        if not number.isdigit():
            return compile(source, '<string>', 'exec')
        key_source = source[:start] + str(self.SLOT) + source[end:]
        key = hashlib.sha1(key_source.encode('utf-8')).digest()
        code = self.codes.get(key)
        if code is None:
            code = compile(key_source, '<string>', 'exec')
            self.new += 1
        else:
            self.hits += 1
        self.used[key] = code
        return _with_constant(code, self.SLOT, int(number))

    def exec(self, source, globals=None, locals=None):
        """``exec`` as the builtin does it, a source string compiled through :meth:`code`."""
        if globals is None:
            frame = sys._getframe(1)
            globals = frame.f_globals
            if locals is None:
                locals = frame.f_locals
        if isinstance(source, str):
            source = self.code(source)
        return builtins.exec(source, globals, locals)

    def install(self, module):
        module.__dict__['exec'] = self.exec

    def save(self):
        """Write the code objects this process used, if any was compiled anew (whole or absent;
        a folder that cannot be written is left alone: the next start compiles again)."""
        if not self.new:
            return

        def write(tmp):
            with open(tmp, 'wb') as f:
                marshal.dump(self.used, f)
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            atomic_save(self.path, write)
        except OSError:
            pass


def _with_constant(code, old, new):
    """``code`` with the int constant ``old`` replaced by ``new``, in nested code objects too."""
    consts = tuple(new if type(c) is int and c == old else
                   _with_constant(c, old, new) if isinstance(c, type(code)) else c
                   for c in code.co_consts)
    return code.replace(co_consts=consts)


# this process's OperatorCodeCache: made when MXNet's first compiling module runs (MXNet's folder
# is known then); None before, or when the cache folder is off
operator_cache = None


def _cache_operator_code():
    """Hooks that give MXNet's two compiling modules the cache's ``exec`` and save the cache
    once MXNet has loaded."""

    def install(register_module):
        global operator_cache
        if operator_cache is None:      # the first module, or the cache folder is off
            package = os.path.dirname(os.path.dirname(register_module.__file__))
            operator_cache = OperatorCodeCache.for_mxnet(package)
        if operator_cache is not None:
            operator_cache.install(register_module)

    def save(mxnet):
        if operator_cache is not None:
            operator_cache.save()

    for name in ('mxnet.ndarray.register', 'mxnet.symbol.register'):
        before_module_runs(name, install)
    after_module_runs('mxnet', save)


def start_mxnet():
    """Called once by ``import gluon_dml``, before MXNet loads (nothing is done if it has)."""
    if 'mxnet' in sys.modules:
        return
    _cache_operator_code()
    if (os.environ.get('GLUON_DML_MXNET_OPTIONAL') != '1'
            and not any(isinstance(f, _MXNetWithoutItsOptionalImports) for f in sys.meta_path)):
        finder = _MXNetWithoutItsOptionalImports()
        for module, name in list(finder.pending.items()):
            if name in sys.modules:                 # imported before MXNet: MXNet gets it
                del finder.pending[module]
        if finder.pending:
            sys.meta_path.insert(0, finder)
            after_module_runs('mxnet', finder.stand_in)
