"""Shared pieces every loss builds on: the batch distance / similarity matrix and the label masks.

All functions take ``F`` (``mx.nd`` or ``mx.sym``) first so that a loss calling them from
``hybrid_forward`` hybridizes. Nothing here leaves the device or loops over the batch.
"""


def pairwise_sq_distance(F, x, y=None):
    """Squared Euclidean distances between the rows of ``x`` (B, D) and ``y`` (M, D), shape (B, M).

    ``||x_i||^2 + ||y_j||^2 - 2 x_i.y_j``, clipped at 0 (rounding can make it slightly negative).
    """
    if y is None:
        y = x
    xx = F.sum(F.square(x), axis=1, keepdims=True)            # (B, 1)
    yy = F.sum(F.square(y), axis=1, keepdims=True)            # (M, 1)
    dot = F.dot(x, y, transpose_b=True)                        # (B, M)
    d2 = F.broadcast_add(F.broadcast_sub(xx, 2 * dot), F.transpose(yy))
    return F.relu(d2)


def pairwise_distance(F, x, y=None, eps=1e-8):
    """Euclidean distances (B, M); ``eps`` inside the square root keeps the gradient finite at 0."""
    return F.sqrt(pairwise_sq_distance(F, x, y) + eps)


def batch_distance(F, x, squared=False):
    """The (B, B) distance matrix of a batch: squared Euclidean, or Euclidean (eps-safe at 0)."""
    return pairwise_sq_distance(F, x) if squared else pairwise_distance(F, x)


def pairwise_similarity(F, x, y=None):
    """Inner products (B, M) between the rows of ``x`` and ``y`` (cosine when both are L2-normalised)."""
    if y is None:
        y = x
    return F.dot(x, y, transpose_b=True)


def label_masks(F, labels, like):
    """Float masks (B, B) from ``labels`` (B,): ``same`` (same label, diagonal excluded) and ``diff`` (different label).

    ``like`` is any (B, B) matrix of the batch; it supplies the identity to remove the diagonal symbolically.
    """
    labels = F.reshape(labels, (-1, 1)).astype('float32')
    equal = F.broadcast_equal(labels, F.transpose(labels))      # (B, B), diagonal 1
    eye = F.broadcast_equal(F.contrib.arange_like(like, axis=0).reshape((-1, 1)),
                            F.contrib.arange_like(like, axis=1).reshape((1, -1)))
    same = equal - eye
    diff = 1 - equal
    return same, diff


def row_pick_index(F, index, rows=None):
    """``gather_nd`` indices that pick ``x[a, index[a, j]]`` for every row ``a`` and place ``j``.

    ``index`` (B, K) holds column numbers (as floats, as ``argsort`` and ``argmax``
    give them); ``F.gather_nd(x, row_pick_index(F, index))`` is then (B, K). Unlike ``pick`` on
    ``x`` repeated K times, its backward scatters into (B, B), not into a (B, K, B) copy. ``rows``:
    the row numbers already broadcast to ``index``'s shape, when several calls share them.
    """
    if rows is None:
        rows = F.broadcast_like(F.reshape(F.contrib.arange_like(index, axis=0), (-1, 1)), index)
    return F.stack(rows, index, axis=0)


def safe_divide(F, num, den):
    """``num / max(den, 1)``: a mean over a set that may be empty is 0, never NaN."""
    return F.broadcast_div(num, F.maximum(den, F.ones_like(den)))


def masked_logsumexp(F, x, mask, axis=1, add_one=False):
    """``log(sum_j mask_j exp(x_j))`` along ``axis`` (keepdims), computed stably.

    With ``add_one``: ``log(1 + sum_j mask_j exp(x_j))`` (a softplus of the log-sum-exp, the form of
    lifted structure, N-pair, multi-similarity and proxy-anchor); an empty mask then gives 0. Without
    it an empty mask gives about -69 (log 1e-30): mask such rows out. Gradients are the masked
    softmax; the shift is held constant (it cancels mathematically).
    """
    neg = F.ones_like(x) * -1e30
    xm = F.where(mask > 0, x, neg)
    m = F.max(xm, axis=axis, keepdims=True)
    if add_one:
        m = F.maximum(m, F.zeros_like(m))
    m = F.BlockGrad(m)
    s = F.sum(mask * F.exp(F.broadcast_sub(xm, m)), axis=axis, keepdims=True)
    if add_one:
        s = s + F.exp(-m)
    return m + F.log(F.maximum(s, F.ones_like(s) * 1e-30))
