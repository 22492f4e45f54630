"""Per-epoch evaluation: embed a held-out split and compute the retrieval and clustering metrics."""
from ..metrics import evaluate_embeddings, few_shot_metrics
from .inference import inference_view
from .loop import embed_dataset

__all__ = ['RetrievalEvaluator']


class RetrievalEvaluator:
    """``evaluator(net, ctx, epoch) -> {'recall@1': .., 'nmi': .., 'map@r': .., ...}`` on ``dataset``.

    With ``query_set`` given, the queries of ``query_set`` are searched in ``dataset`` (the
    gallery) instead of all-vs-all. ``logger`` (optional) receives the embeddings for plots.
    ``nmi_runs``: k-means runs averaged for NMI (default: ``metrics.default_nmi_runs``).
    ``epoch_nmi_runs`` (with ``final_epoch``): the runs at the epochs before ``final_epoch``
    (fewer for speed, or 0 for no NMI there); the final epoch always gets ``nmi_runs``.
    ``few_shot``: ``{'way', 'shot', 'queries', 'episodes'}`` adds the few-shot accuracies of
    :func:`gluon_dml.metrics.few_shot_metrics` (episodes from the evaluation split's classes).
    ``fuse``: embed with a fused inference view of the network on the CPU
    (:func:`gluon_dml.engine.inference.inference_view`; its training graph is untouched).
    ``inference``: a function ``net -> network to embed with`` (``--tta-shift``: the network
    wrapped in :class:`gluon_dml.models.ShiftAveraged`); default the network itself.
    """

    def __init__(self, dataset, ks=(1, 2, 4, 8), batch_size=256, query_set=None, logger=None,
                 num_workers=0, progress=False, nmi_runs=None, few_shot=None,
                 epoch_nmi_runs=None, final_epoch=None, fuse=True, inference=None):
        self.dataset, self.ks, self.batch_size = dataset, tuple(ks), batch_size
        self.few_shot = few_shot
        self.nmi_runs, self.epoch_nmi_runs, self.final_epoch = nmi_runs, epoch_nmi_runs, final_epoch
        self.query_set, self.logger = query_set, logger
        self.num_workers, self.progress, self.fuse = num_workers, progress, fuse
        self.inference = inference

    def nmi_runs_at(self, epoch):
        """The k-means runs of NMI at ``epoch``: ``epoch_nmi_runs`` before the final epoch when
        set, else ``nmi_runs``."""
        if (self.epoch_nmi_runs is not None and self.final_epoch is not None and epoch is not None
                and epoch < self.final_epoch):
            return self.epoch_nmi_runs
        return self.nmi_runs

    def embed(self, net, ctx, dataset):
        return embed_dataset(net, dataset, ctx, self.batch_size, self.num_workers,
                             progress=self.progress, desc='eval')

    def __call__(self, net, ctx, epoch=None):
        if self.inference is not None:
            net = self.inference(net)
        net = inference_view(net, ctx, self.fuse)
        emb, labels = self.embed(net, ctx, self.dataset)
        q_emb = q_labels = None
        if self.query_set is not None:
            q_emb, q_labels = self.embed(net, ctx, self.query_set)
        metrics = evaluate_embeddings(emb, labels, ks=self.ks, query_embeddings=q_emb,
                                      query_labels=q_labels, nmi_runs=self.nmi_runs_at(epoch))
        if self.few_shot:
            metrics.update(few_shot_metrics(emb, labels, **self.few_shot))
        if self.logger is not None:
            self.logger.log_embeddings(epoch, emb, labels, getattr(self.dataset, 'images', None))
        return metrics
