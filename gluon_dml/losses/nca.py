"""Neighbourhood components analysis over a batch.

Goldberger, Roweis, Hinton, Salakhutdinov, "Neighbourhood Components Analysis", NeurIPS 2005.
"""
from mxnet import gluon

from .base import label_masks, masked_logsumexp, pairwise_sq_distance, safe_divide
from .options import Option

__all__ = ['NCALoss']


class NCALoss(gluon.HybridBlock):
    r"""NCA (Goldberger et al. 2005: the softmax neighbour probabilities and their log objective) in a batch.

    Each anchor ``i`` picks a neighbour ``j != i`` of the batch with the softmax over negated squared
    distances; the loss is the negative log probability that it picks a point of its own class:

    .. math::
        p_{ij} = \frac{\exp(-D_{ij}^2 / T)}{\sum_{k \ne i} \exp(-D_{ik}^2 / T)},\qquad
        L = -\frac{1}{|A|}\sum_{i \in A} \log \sum_{j:\, y_j = y_i,\, j \ne i} p_{ij}

    where ``A`` is the set of anchors with at least one positive in the batch (0 if ``A`` is empty).
    The batch plays the role of the training set, as in the non-linear NCA of Salakhutdinov & Hinton
    (AISTATS 2007) and the NCA baseline of Movshovitz-Attias et al. (ICCV 2017).

    ``temperature`` T default 1 (the paper has none, i.e. 1). ``scale``, when given, sets
    ``T = 1 / scale`` (the ``softmax_scale`` of pytorch-metric-learning); do not give both.

    ``normalize_embeddings`` is False: NCA learns an unconstrained map (the paper's linear ``A x``);
    with L2-normalised embeddings ``D^2 <= 4`` and a temperature below 1 is advisable.

    Inputs: ``embeddings`` (B, D), ``labels`` (B,). Output: scalar loss, shape (1,).
    """

    # what a batch must hold for this loss (checked against --batch-size / --batch-k):
    # positives (two images of a class) and negatives (another class)
    needs_positives_in_batch = True
    min_classes_in_batch = 2
    normalize_embeddings = False

    options = {
        'temperature': Option(float, 'softmax temperature on the negative squared distances'),
        'scale': Option(float, 'the inverse of --temperature (give one of the two)'),
    }

    def __init__(self, temperature=1.0, scale=None, **kwargs):
        super().__init__(**kwargs)
        if scale is not None:
            if temperature != 1.0:
                raise ValueError('Give either temperature or scale (its inverse), not both.')
            if scale <= 0:
                raise ValueError('scale must be positive, got %g.' % scale)
            temperature = 1.0 / scale
        if temperature <= 0:
            raise ValueError('temperature must be positive, got %g.' % temperature)
        self._temperature = float(temperature)

    def hybrid_forward(self, F, embeddings, labels):
        logits = pairwise_sq_distance(F, embeddings) * (-1.0 / self._temperature)   # (B, B)
        same, diff = label_masks(F, labels, logits)
        has_pos = F.sum(same, axis=1, keepdims=True) > 0                            # (B, 1)
        log_pos = masked_logsumexp(F, logits, same)
        log_all = masked_logsumexp(F, logits, same + diff)                           # k != i
        return safe_divide(F, F.sum(has_pos * (log_all - log_pos)), F.sum(has_pos))
