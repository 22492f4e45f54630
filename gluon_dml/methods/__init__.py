"""The training methods, one module each, and the registry every entry point asks.

=========  =================  ===============================================================
name       script             what it trains
=========  =================  ===============================================================
margin     train_margin.py    an embedding with the margin loss, or any loss of the zoo
npair      train_npair.py     an embedding with the multi-class N-pair loss (N x 2 batches)
hash       train_hash.py      binary codes: HashNet, DSH, DCH
vse        train_vse.py       a joint image-caption embedding: VSE++ / VSE0
hdc        train hdc          heads at several depths, a cascade over ever harder pairs (HDC)
=========  =================  ===============================================================

``run(get_method('margin'), args)`` trains; ``open_run(run_dir)`` opens a run folder of any
method (its network with the reported parameters) and ``open_run(run_dir).encoders()`` gives the
callables that embed images (and captions) with it. Adding a method is one module with a
:class:`~gluon_dml.methods.base.Method` subclass and one :func:`register_method` line
(``docs/extending.md``).
"""
from .base import Encoders, Method, TrainedRun, open_run, run, summary_line, viz_sinks
from .embedding import EmbeddingMethod, NPairMethod
from .hashing import HashMethod
from .hdc import HDCMethod
from .registry import METHODS, get_method, list_methods, register_method
from .vse import VSEMethod

__all__ = ['METHODS', 'register_method', 'get_method', 'list_methods', 'Method', 'run',
           'open_run', 'TrainedRun', 'Encoders', 'summary_line', 'viz_sinks']

for _m in (EmbeddingMethod(), NPairMethod(), HashMethod(), VSEMethod(), HDCMethod()):
    register_method(_m)
