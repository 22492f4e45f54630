"""The hinge-based triplet ranking losses of visual-semantic embeddings.

Faghri, Fleet, Kiros, Fidler, "VSE++: Improving Visual-Semantic Embeddings with Hard Negatives",
BMVC 2018. For a batch of matching pairs (i_n, c_n) with similarities s(i, c) = <f(i), g(c)>
(both L2-normalised, so s is the cosine):

* VSE0, eq. (2), the sum of hinges over all negatives in the batch, both directions::

      l_SH(i, c) = sum_{c'} [a - s(i, c) + s(i, c')]_+  +  sum_{i'} [a - s(i, c) + s(i', c)]_+

* VSE++, eq. (3), the max of hinges: only the hardest negative of each direction counts::

      l_MH(i, c) = max_{c'} [a - s(i, c) + s(i, c')]_+  +  max_{i'} [a - s(i, c) + s(i', c)]_+

  with c' ranging over the batch's captions other than c, i' over its images other than i, and
  margin a = 0.2. ``max_violation=True`` gives VSE++, ``False`` VSE0.

The loss takes ``(image_embeddings, caption_embeddings)`` of B pairs (row n of each is a
matching pair), not ``(embeddings, labels)``: it is not in the metric-learning registry. It
returns B values, entry n being l(i_n, c_n) split as [caption term of image n] + [image term of
caption n]; their sum is the batch loss of the paper (the authors sum, not average).
"""
from mxnet import gluon

__all__ = ['VSELoss']


class VSELoss(gluon.HybridBlock):
    """VSE0 (``max_violation=False``, eq. 2) or VSE++ (``max_violation=True``, eq. 3) with
    margin ``margin`` (0.2), over both directions (image -> caption negatives and caption ->
    image negatives). Masked dense operations only: hybridizes, no host sync."""

    def __init__(self, margin=0.2, max_violation=False, **kwargs):
        super().__init__(**kwargs)
        self.margin, self.max_violation = float(margin), bool(max_violation)

    def hybrid_forward(self, F, im, s):
        scores = F.dot(im, s, transpose_b=True)                  # (B, B): image n x caption m
        diag = F.diag(scores)                                    # s(i_n, c_n)
        off = 1 - F.diag(F.ones_like(diag))                      # 0 on the diagonal, 1 elsewhere
        # image n against the other captions m (row n); caption m against the other images n
        cost_c = F.relu(F.broadcast_sub(scores + self.margin, diag.reshape((-1, 1)))) * off
        cost_i = F.relu(F.broadcast_sub(scores + self.margin, diag.reshape((1, -1)))) * off
        if self.max_violation:
            return F.max(cost_c, axis=1) + F.max(cost_i, axis=0)
        return F.sum(cost_c, axis=1) + F.sum(cost_i, axis=0)
