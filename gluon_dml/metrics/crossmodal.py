"""Cross-modal retrieval metrics: image -> text and text -> image Recall@K, median rank, rsum.

The protocol of VSE++ (Faghri et al., BMVC 2018) and of Karpathy & Fei-Fei (CVPR 2015): a split
of N images and 5N captions, caption j describing image j // 5. Similarities are the dot products
of the L2-normalised embeddings.

* image -> text (i2t, "caption retrieval"): the rank of an image is the best (smallest) rank
  among its five captions, over all 5N captions;
* text -> image (t2i, "image retrieval"): the rank of a caption is the rank of its image over all
  N images;
* R@K: the percentage of queries whose rank is <= K; medr: the median rank (1-based); rsum: the
  sum of R@1, R@5, R@10 of both directions (at most 600).
* COCO: "1K" is the mean of each metric over five folds of 1,000 test images (5,000 captions
  each); "5K" is the whole 5,000-image test split.

Ranks are counted pessimistically under ties: a negative with the same score as the positive is
ranked above it, so a collapsed (constant) embedding scores chance level, never full marks.
Plain numpy, in blocks of queries: memory is O(block x 5N), never a full N x 5N matrix at once.
"""
import numpy as np

__all__ = ['i2t_ranks', 't2i_ranks', 'recall_summary', 'i2t_t2i_recall', 'crossmodal_metrics',
           'coco_1k_5k']

PER_IMAGE = 5


def _check(img, cap, per_image):
    img = np.asarray(img, dtype=np.float32)
    cap = np.asarray(cap, dtype=np.float32)
    if img.ndim != 2 or cap.ndim != 2 or img.shape[1] != cap.shape[1]:
        raise ValueError('Image and caption embeddings must be (N, D) and (%d N, D), got %s and %s.'
                         % (per_image, img.shape, cap.shape))
    if cap.shape[0] != per_image * img.shape[0]:
        raise ValueError('%d images need %d captions (%d per image, in image order), got %d.'
                         % (img.shape[0], per_image * img.shape[0], per_image, cap.shape[0]))
    return img, cap


def i2t_ranks(img, cap, per_image=PER_IMAGE, block=1000):
    """0-based rank of each image's best caption among all captions: the number of other
    images' captions scoring at least as high as the image's best own caption."""
    img, cap = _check(img, cap, per_image)
    n = img.shape[0]
    ranks = np.empty(n, dtype=np.int64)
    for a in range(0, n, block):
        b = min(n, a + block)
        sims = img[a:b] @ cap.T                                  # (block, 5N)
        own = np.zeros_like(sims, dtype=bool)
        for k in range(per_image):
            own[np.arange(b - a), (np.arange(a, b) * per_image + k)] = True
        best = np.where(own, sims, -np.inf).max(axis=1)
        ranks[a:b] = ((sims >= best[:, None]) & ~own).sum(axis=1)
    return ranks


def t2i_ranks(img, cap, per_image=PER_IMAGE, block=5000):
    """0-based rank of each caption's image among all images: the number of other images
    scoring at least as high as its own."""
    img, cap = _check(img, cap, per_image)
    m = cap.shape[0]
    ranks = np.empty(m, dtype=np.int64)
    for a in range(0, m, block):
        b = min(m, a + block)
        sims = cap[a:b] @ img.T                                  # (block, N)
        own_idx = np.arange(a, b) // per_image
        pos = sims[np.arange(b - a), own_idx]
        ge = sims >= pos[:, None]
        ge[np.arange(b - a), own_idx] = False
        ranks[a:b] = ge.sum(axis=1)
    return ranks


def recall_summary(ranks, ks=(1, 5, 10)):
    """{'r1': %, 'r5': %, 'r10': %, 'medr': median 1-based rank, 'meanr': mean 1-based rank}."""
    ranks = np.asarray(ranks)
    out = {'r%d' % k: float(100.0 * np.mean(ranks < k)) for k in ks}
    out['medr'] = float(np.floor(np.median(ranks)) + 1)
    out['meanr'] = float(ranks.mean() + 1)
    return out


def i2t_t2i_recall(img, cap, per_image=PER_IMAGE, ks=(1, 5, 10)):
    """{'i2t_r1', 'i2t_r5', 'i2t_r10', 'i2t_medr', 'i2t_meanr', 't2i_...', 'rsum'}."""
    out = {}
    for name, ranks in (('i2t', i2t_ranks(img, cap, per_image)), ('t2i', t2i_ranks(img, cap, per_image))):
        out.update({'%s_%s' % (name, k): v for k, v in recall_summary(ranks, ks).items()})
    out['rsum'] = float(sum(out['%s_r%d' % (d, k)] for d in ('i2t', 't2i') for k in ks))
    return out


def coco_1k_5k(img, cap, per_image=PER_IMAGE, fold=1000, ks=(1, 5, 10)):
    """COCO's two protocols on a 5,000-image test split: '1k_' metrics, the mean over the five
    folds of 1,000 images, and the plain metrics over all images (5K)."""
    img, cap = _check(img, cap, per_image)
    n = img.shape[0]
    if n % fold:
        raise ValueError('The 1K protocol needs a multiple of %d images, got %d.' % (fold, n))
    folds = [i2t_t2i_recall(img[a:a + fold], cap[a * per_image:(a + fold) * per_image], per_image, ks)
             for a in range(0, n, fold)]
    out = {'1k_' + k: float(np.mean([f[k] for f in folds])) for k in folds[0]}
    out.update(i2t_t2i_recall(img, cap, per_image, ks))
    return out


def crossmodal_metrics(img, cap, per_image=PER_IMAGE, coco_folds=False):
    """The metrics of a split; with ``coco_folds`` and a multiple of 1,000 images above 1,000,
    the 1K-fold means too."""
    n = np.asarray(img).shape[0]
    if coco_folds and n > 1000 and n % 1000 == 0:
        return coco_1k_5k(img, cap, per_image)
    return i2t_t2i_recall(img, cap, per_image)
