"""Visdom streaming, t-SNE and other plots.

* :class:`VisdomSink` - the ``--use_viz`` sink of the engine's Logger (live dashboard + PNGs);
* :mod:`.views` - t-SNE, retrieval examples, pair-distance histograms (numpy, scikit-learn);
* :mod:`.plots` - the PNGs (matplotlib Agg);
* :mod:`.dashboard` - the Visdom windows and the non-blocking sender;
* :mod:`.server` - ``python -m gluon_dml.viz.server``: a Visdom server that works offline.
"""
from .sink import RunState, VisdomSink, compute_views, env_name, save_views

__all__ = ['VisdomSink', 'RunState', 'compute_views', 'save_views', 'env_name']
