"""Unsupervised hashing baselines computed on raw features (pixels): LSH and ITQ.

* :class:`LSH`: sign of random Gaussian projections of the centred features (Charikar 2002;
  random hyperplanes, the sign-random-projection LSH of the hashing literature's tables).
* :class:`ITQ`: Iterative Quantization (Gong and Lazebnik, CVPR 2011): PCA to ``bits``
  dimensions, then a rotation ``R`` that minimises the quantisation loss ``||B - V R||_F^2``
  by alternating ``B = sign(V R)`` and the orthogonal Procrustes solution ``R = U W^T`` of the
  SVD ``V^T B = U S W^T`` (50 iterations, a random orthogonal start, as in the paper).

Both are fitted on the database features and return {-1, +1} int8 codes.
"""
import numpy as np

__all__ = ['LSH', 'ITQ', 'get_baseline']


def _flat(x):
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(len(x), -1)


def _sign(x):
    return np.where(x >= 0, 1, -1).astype(np.int8)


class LSH:
    """Random-hyperplane LSH: ``sign((x - mean) W)``, ``W`` ~ N(0, 1) (D, bits)."""

    def __init__(self, bits, seed=0):
        self.bits, self.seed = int(bits), seed

    def fit(self, x):
        x = _flat(x)
        self.mean = x.mean(axis=0)
        self.w = np.random.RandomState(self.seed).randn(x.shape[1], self.bits)
        return self

    def encode(self, x):
        return _sign((_flat(x) - self.mean) @ self.w)


class ITQ:
    """PCA + Iterative Quantization (Gong and Lazebnik 2011), ``n_iter`` 50."""

    def __init__(self, bits, n_iter=50, seed=0):
        self.bits, self.n_iter, self.seed = int(bits), int(n_iter), seed

    def fit(self, x):
        x = _flat(x)
        if self.bits > x.shape[1]:
            raise ValueError('ITQ needs bits <= the feature dimension (%d), got %d.' % (x.shape[1], self.bits))
        self.mean = x.mean(axis=0)
        xc = x - self.mean
        cov = xc.T @ xc / len(xc)
        vals, vecs = np.linalg.eigh(cov)
        self.pca = vecs[:, np.argsort(vals)[::-1][:self.bits]]          # (D, bits)
        v = xc @ self.pca
        rng = np.random.RandomState(self.seed)
        r, _ = np.linalg.qr(rng.randn(self.bits, self.bits))
        self.losses = []
        for _ in range(self.n_iter):
            b = _sign(v @ r).astype(np.float64)
            self.losses.append(float(np.square(b - v @ r).sum()))
            u, _, wt = np.linalg.svd(v.T @ b)
            r = u @ wt
        self.rotation = r
        return self

    def encode(self, x):
        return _sign((_flat(x) - self.mean) @ self.pca @ self.rotation)


def get_baseline(name, bits, seed=0):
    key = name.lower()
    if key == 'lsh':
        return LSH(bits, seed)
    if key == 'itq':
        return ITQ(bits, seed=seed)
    raise ValueError('Unknown hashing baseline %r; choose lsh or itq.' % name)
