"""What the plots show, computed from embeddings with numpy and scikit-learn (no plotting here).

* :func:`sample_indices`: a bounded, class-stratified, seeded sample of a split;
* :func:`tsne_2d`: t-SNE coordinates of a sample (scikit-learn);
* :func:`retrieval_grid`: query images with their nearest neighbours, a green frame on the
  neighbours of the query's class and a red one on the others;
* :func:`distance_histograms`: positive / negative pair distance densities on shared bins.
"""
import numpy as np

__all__ = ['sample_indices', 'tsne_2d', 'retrieval_examples', 'retrieval_grid',
           'distance_histograms', 'to_rgb', 'CORRECT_RGB', 'WRONG_RGB', 'QUERY_RGB']

CORRECT_RGB = (0.18, 0.63, 0.17)   # green frame: the neighbour is of the query's class
WRONG_RGB = (0.84, 0.15, 0.16)     # red frame: another class
QUERY_RGB = (0.12, 0.47, 0.71)     # blue frame: the query


def sample_indices(labels, max_points, seed=0):
    """At most ``max_points`` indices of ``labels``, spread evenly over the classes (sorted)."""
    labels = np.asarray(labels)
    n = len(labels)
    if max_points is None or n <= max_points:
        return np.arange(n)
    rng = np.random.RandomState(seed)
    classes = np.unique(labels)
    per_class = max(1, max_points // len(classes))
    chosen = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        chosen.append(rng.choice(idx, min(per_class, len(idx)), replace=False))
    chosen = np.concatenate(chosen)
    if len(chosen) > max_points:
        chosen = rng.choice(chosen, max_points, replace=False)
    return np.sort(chosen)


def tsne_2d(embeddings, seed=0, perplexity=30.0, max_iter=1000, threads=1):
    """(N, 2) t-SNE coordinates of ``embeddings`` (N, D), PCA-initialised and seeded.

    ``threads`` caps scikit-learn's OpenMP threads: on a machine busy with training, more
    threads than free cores makes the Barnes-Hut iterations many times slower, not faster.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits
    x = np.asarray(embeddings, dtype=np.float32)
    n = len(x)
    if n < 3:
        return np.zeros((n, 2), np.float32)
    perplexity = float(min(perplexity, max(1.0, (n - 1) / 3.0)))
    kw = dict(n_components=2, perplexity=perplexity, init='pca', learning_rate='auto',
              random_state=seed)
    try:
        tsne = TSNE(max_iter=max(250, int(max_iter)), **kw)
    except TypeError:                      # scikit-learn < 1.5 calls it n_iter
        tsne = TSNE(n_iter=max(250, int(max_iter)), **kw)
    with threadpool_limits(limits=threads):
        return tsne.fit_transform(x).astype(np.float32)


def _sq_dists(a, b):
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def retrieval_examples(embeddings, labels, n_queries=8, k=5, seed=0):
    """Queries (one per class first, seeded) and their ``k`` nearest neighbours in the rest of the
    split by Euclidean distance. Returns (queries (Q,), neighbours (Q, k), correct (Q, k) bool)."""
    emb = np.asarray(embeddings, dtype=np.float32)
    labels = np.asarray(labels)
    n = len(emb)
    k = min(k, n - 1)
    if n < 2 or k < 1:
        return np.zeros(0, int), np.zeros((0, 0), int), np.zeros((0, 0), bool)
    rng = np.random.RandomState(seed)
    classes = rng.permutation(np.unique(labels))
    queries = [rng.choice(np.flatnonzero(labels == c)) for c in classes[:n_queries]]
    rest = np.setdiff1d(np.arange(n), queries)
    if len(queries) < n_queries:
        queries += list(rng.choice(rest, min(n_queries - len(queries), len(rest)), replace=False))
    queries = np.asarray(queries[:n_queries])
    d = _sq_dists(emb[queries], emb)
    d[np.arange(len(queries)), queries] = np.inf            # never the query itself
    neighbours = np.argsort(d, axis=1, kind='stable')[:, :k]
    correct = labels[neighbours] == labels[queries][:, None]
    return queries, neighbours, correct


def to_rgb(images):
    """(N, C, H, W) in [0, 1] with C = 1 or 3 -> (N, H, W, 3) float32."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    elif x.shape[1] != 3:
        x = np.repeat(x[:, :1], 3, axis=1)
    return np.clip(x.transpose(0, 2, 3, 1), 0.0, 1.0)


def retrieval_grid(images, queries, neighbours, correct, cell=48, frame=3, gap=6):
    """One (H, W, 3) float image: a row per query, the query (blue frame) then its neighbours
    (green frame: same class, red: another class), each cell upscaled to ``cell`` pixels."""
    queries, neighbours = np.asarray(queries), np.asarray(neighbours)
    used = np.unique(np.concatenate([queries.ravel(), neighbours.ravel()]))
    h, w = np.asarray(images[used[0]]).shape[-2:]
    shrink = max(1, max(h, w) // (2 * cell))          # big images: keep every n-th pixel
    rgb = {int(i): to_rgb(np.asarray(images[int(i)])[None, ..., ::shrink, ::shrink])[0] for i in used}
    h, w = rgb[int(used[0])].shape[:2]
    scale = max(1, int(round(cell / float(max(h, w)))))
    ch, cw = h * scale + 2 * frame, w * scale + 2 * frame
    rows, cols = len(queries), 1 + neighbours.shape[1]
    out = np.ones((rows * ch + (rows + 1) * 2, cols * cw + (cols + 1) * 2 + gap, 3), np.float32)

    def put(r, c, img, colour):
        y = 2 + r * (ch + 2)
        x = 2 + c * (cw + 2) + (gap if c > 0 else 0)
        out[y:y + ch, x:x + cw] = colour
        big = np.kron(img, np.ones((scale, scale, 1), np.float32))
        out[y + frame:y + frame + h * scale, x + frame:x + frame + w * scale] = big

    for r, q in enumerate(queries):
        put(r, 0, rgb[q], QUERY_RGB)
        for c, (j, ok) in enumerate(zip(neighbours[r], correct[r])):
            put(r, c + 1, rgb[j], CORRECT_RGB if ok else WRONG_RGB)
    return out


def distance_histograms(embeddings, labels, bins=50):
    """Densities of the Euclidean distances of positive (same class) and negative pairs of a
    (bounded) sample; the N x N distances of the sample are formed, so pass a sample.

    Returns (bin_edges (bins+1,), positive density (bins,), negative density (bins,), stats dict).
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    iu, ju = np.triu_indices(len(emb), k=1)
    d = np.sqrt(_sq_dists(emb, emb)[iu, ju])
    same = labels[iu] == labels[ju]
    hi = float(d.max()) if len(d) else 1.0
    edges = np.linspace(0.0, max(hi, 1e-6) * 1.0001, bins + 1)
    pos = np.histogram(d[same], edges, density=True)[0] if same.any() else np.zeros(bins)
    neg = np.histogram(d[~same], edges, density=True)[0] if (~same).any() else np.zeros(bins)
    stats = {'positive_mean': float(d[same].mean()) if same.any() else float('nan'),
             'negative_mean': float(d[~same].mean()) if (~same).any() else float('nan'),
             'positive_pairs': int(same.sum()), 'negative_pairs': int((~same).sum())}
    return edges, pos.astype(np.float32), neg.astype(np.float32), stats
