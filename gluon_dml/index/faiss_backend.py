"""The faiss backend of :mod:`gluon_dml.index` (see the package docstring for the API).

Index types and the faiss structures behind them (ids are always the caller's int64 ids):

=============  ====================================================  ==========  ===========
index_type     faiss index                                           training    removal
=============  ====================================================  ==========  ===========
float flat     ``IndexIDMap2(IndexFlatIP / IndexFlatL2)``            no          remove_ids
float ivf_flat ``IndexIVFFlat`` (ids native, hash-table direct map)  k-means     remove_ids
float ivf_pq   ``IndexPreTransform(OPQMatrix, IndexIVFPQ)``          OPQ+k-means remove_ids
float hnsw     ``IndexIDMap2(IndexHNSWFlat)``                        no          tombstones
factory:SPEC   ``index_factory(dim, SPEC, metric)`` (+ IDMap2)       if needed   probed
binary flat    ``IndexBinaryIDMap2(IndexBinaryFlat)``                no          remove_ids
binary ivf     ``IndexBinaryIVF`` (ids native, hash-table map)       binary k-m  remove_ids
binary hash    ``IndexBinaryHash`` + an exact copy of the codes      no          rebuild
=============  ====================================================  ==========  ===========

Removal: HNSW graphs cannot drop nodes in faiss 1.8, so a removed id becomes a tombstone that
every search excludes with an id selector; when tombstones reach a quarter of the stored vectors
the graph is rebuilt from the live vectors (at that ``remove`` call). ``IndexBinaryHash`` has
neither ``remove_ids`` nor ``reconstruct``: the backend keeps the packed codes in an
``IndexBinaryIDMap2(IndexBinaryFlat)`` beside it (bits / 8 bytes a code) and rebuilds the hash
table from it on removal (cheap: no training). A factory index is probed for ``remove_ids``
and gets tombstones when it has none.

Catalogue version folder: ``index.faiss`` (or ``index.faissb`` for binary), ``codes.faissb``
(binary hash only), ``ids.npy`` (live ids, sorted), ``tombstones.npy``, ``metadata.json``,
``manifest.json``.
"""
import json
import math
import os

import numpy as np

from .core import (AUTO_BINARY_EXACT_MAX, AUTO_EXACT_MAX, AUTO_IVF_PQ_MIN, Index, commit_version,
                   matches)

FLOAT_TYPES = ('flat', 'ivf_flat', 'ivf_pq', 'hnsw')
BINARY_TYPES = ('flat', 'ivf', 'hash')
TRAINED_TYPES = ('ivf_flat', 'ivf_pq', 'ivf')
ALIASES = {'exact': 'flat', 'bruteforce': 'flat', 'ivf-flat': 'ivf_flat', 'ivfflat': 'ivf_flat',
           'ivf-pq': 'ivf_pq', 'ivfpq': 'ivf_pq', 'opq': 'ivf_pq'}

DEFAULTS = {
    'nlist': None,            # IVF lists: None = 4 sqrt(N), at most N / 39 (faiss' minimum sample)
    'nprobe': None,           # IVF lists searched: None = max(16, nlist / 64), at most nlist
    'm': None,                # IVF-PQ sub-quantizers (bytes a vector at 8 bits): None = dim / 4
    'nbits': 8,               # IVF-PQ bits per sub-quantizer code
    'hnsw_m': 32,             # HNSW neighbours a node
    'ef_construction': 80,    # HNSW build beam
    'ef_search': 96,          # HNSW search beam (at least k)
    'hash_bits': None,        # binary hash: key bits, None = min(bits, 16)
    'nflip': 2,               # binary hash: buckets within this many bit flips of the query key
    'train_size': None,       # training sample: None = min(N, 50 nlist, 256 * 1024)
    'seed': 0,                # training sample and k-means seed
    'expected_size': None,    # catalogue size for 'auto' / nlist when training on a sample
    'filter_exact_max': 20000,  # filtered searches over at most this many ids are exact
}
COMPACT_FRACTION = 0.25     # HNSW / factory tombstones: rebuild past this share of stored vectors


def _faiss():
    # through metrics.neighbors: it picks OpenBLAS's kernels before faiss first loads (a VM
    # whose CPU OpenBLAS does not recognise otherwise gets its slow SSE kernels)
    from ..metrics.neighbors import faiss
    return faiss


def _metric_code(metric):
    faiss = _faiss()
    return faiss.METRIC_INNER_PRODUCT if metric == 'ip' else faiss.METRIC_L2


def _count_bytes(index, binary):
    """Bytes of the serialised index, counted through a callback writer (nothing is copied)."""
    faiss = _faiss()
    total = [0]

    def cb(buf):
        total[0] += len(buf)
        return len(buf)
    writer = faiss.PyCallbackIOWriter(cb)
    (faiss.write_index_binary if binary else faiss.write_index)(index, writer)
    return total[0]


def _default_nlist(n):
    return int(max(1, min(round(4 * math.sqrt(max(n, 1))), n // 39)))


def _default_m(dim):
    target = max(1, dim // 4)
    for m in range(target, 0, -1):
        if dim % m == 0:
            return m
    return 1


def _write_index_file(index, path, binary):
    faiss = _faiss()
    (faiss.write_index_binary if binary else faiss.write_index)(index, path)


def _write_metadata(folder, ids, meta, tombstones):
    """The sidecar: live ids, tombstones and the metadata dicts (only non-empty ones)."""
    np.save(os.path.join(folder, 'ids.npy'), ids)
    np.save(os.path.join(folder, 'tombstones.npy'), tombstones)
    keys = sorted(meta)
    with open(os.path.join(folder, 'metadata.json'), 'w', encoding='utf-8') as f:
        json.dump({'ids': [int(i) for i in keys], 'metadata': [meta[i] for i in keys]}, f)


def _load_ids(path):
    return np.load(path, allow_pickle=False).astype(np.int64).ravel()


def _load_metadata(path):
    with open(path, encoding='utf-8') as f:
        side = json.load(f)
    return {int(i): m for i, m in zip(side['ids'], side['metadata'])}


def _read_file(folder, name, read):
    """``read(folder/name)``; a file damaged or missing (cut short, emptied, another file's
    content) is one sentence naming it (faiss's read error was an "unexpected RuntimeError",
    numpy's and json's said no file)."""
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise ValueError('The catalogue file %s is missing: the catalogue is incomplete; build it '
                         'again (gluon-dml index).' % path)
    try:
        return read(path)
    except (RuntimeError, ValueError, EOFError, OSError, KeyError, TypeError,
            AttributeError) as err:
        why = (str(err).strip().splitlines() or [type(err).__name__])[-1]
        why = why.rsplit('Error: ', 1)[-1]          # faiss's: past its C++ function and line
        raise ValueError('The catalogue file %s is damaged (%s); build the catalogue again '
                         '(gluon-dml index).' % (path, why)) from None


class FaissIndex(Index):
    """:class:`~gluon_dml.index.core.Index` on a faiss index (see the module docstring)."""

    backend = 'faiss'

    @classmethod
    def check(cls, kind='float', dim=None, metric=None, index_type='auto', path=None,
              normalize=False, overwrite=False, **params):
        """Raise the ``ValueError`` that creating this index would, creating nothing on disk: the
        settings, the index type, a factory string (built in memory, untrained)."""
        probe = cls(kind=kind, dim=dim, metric=metric, index_type=index_type, path=None,
                    normalize=normalize, **params)
        # a type that trains on fewer vectors than the whole collection holds cannot be built:
        # said now, not after the collection is embedded (hours for a large one)
        n, p = probe.params['expected_size'], probe.params
        if n and probe.index_type in TRAINED_TYPES:
            need = int(p['nlist'] or _default_nlist(int(n)))
            if probe.index_type == 'ivf_pq':
                need = max(need, 2 ** int(p['nbits']))
            if int(n) < need:
                raise ValueError(
                    'The %s index needs at least %d training vectors (nlist=%s%s), but the '
                    'collection has %d: lower nlist, or use the flat index type.'
                    % (probe.index_type, need, p['nlist'] or _default_nlist(int(n)),
                       ', 2^nbits=%d' % 2 ** int(p['nbits']) if probe.index_type == 'ivf_pq'
                       else '', int(n)))

    def __init__(self, kind='float', dim=None, metric=None, index_type='auto', path=None,
                 normalize=False, overwrite=False, **params):
        unknown = sorted(set(params) - set(DEFAULTS))
        if unknown:
            raise ValueError('Unknown faiss index parameter(s): %s; known: %s.'
                             % (', '.join(unknown), ', '.join(sorted(DEFAULTS))))
        index_type = self._check_type(kind, index_type)
        merged = dict(DEFAULTS)
        merged.update({k: v for k, v in params.items() if v is not None})
        super().__init__(kind, dim, metric, index_type, path, normalize, merged)
        self.requested_type = index_type
        self._index = None           # built at creation, or at the first train / add when it trains
        self._shadow = None          # binary hash: an exact IndexBinaryIDMap2 copy of the codes
        self._idset = np.zeros(0, np.int64)
        self._meta = {}
        self._tomb = np.zeros(0, np.int64)
        self._tombstones = False     # removal by tombstones (HNSW, factories without remove_ids)
        self.next_id = 0
        exp = self.params['expected_size']
        if self.index_type == 'auto' and exp:
            self.index_type = self._auto_type(int(exp))
        if not self._needs_training():
            self._index = self._build(0)

    # ----------------------------------------------------------------- construction
    @staticmethod
    def _check_type(kind, index_type):
        t = str(index_type)
        if t.startswith('factory:'):
            if kind != 'float':
                raise ValueError('faiss factory strings are supported for float indexes only; '
                                 'use a binary index_type (flat, ivf, hash).')
            if not t[len('factory:'):].strip():
                raise ValueError('index_type "factory:" needs a faiss factory string after the colon.')
            return 'factory:' + t[len('factory:'):].strip()
        t = ALIASES.get(t.lower(), t.lower())
        if kind == 'float' and t == 'ivf':
            t = 'ivf_flat'
        allowed = ('auto',) + (FLOAT_TYPES if kind == 'float' else BINARY_TYPES)
        if t not in allowed:
            raise ValueError('Unknown %s faiss index_type %r; choose one of: %s%s.'
                             % (kind, index_type, ', '.join(allowed),
                                ", or 'factory:SPEC'" if kind == 'float' else ''))
        return t

    def _auto_type(self, n):
        if self.kind == 'binary':
            return 'flat' if n < AUTO_BINARY_EXACT_MAX else 'ivf'
        if n < AUTO_EXACT_MAX:
            return 'flat'
        return 'ivf_flat' if n < AUTO_IVF_PQ_MIN else 'ivf_pq'

    def _needs_training(self):
        if self.index_type == 'auto' or self.index_type in TRAINED_TYPES:
            return True
        if self.index_type.startswith('factory:'):
            return not self._factory_probe().is_trained
        return False

    def _factory_probe(self):
        faiss = _faiss()
        spec = self.index_type[len('factory:'):]
        try:
            return faiss.index_factory(self.dim, spec, _metric_code(self.metric))
        except RuntimeError as e:
            raise ValueError('faiss cannot build the factory string %r: %s'
                             % (spec, str(e).strip().splitlines()[-1])) from None

    def _build(self, n):
        """A new empty (untrained where it trains) faiss index of ``self.index_type``; ``n``: the
        catalogue size estimate that sets ``nlist`` when it is not given."""
        faiss = _faiss()
        p, d, t = self.params, self.dim, self.index_type
        self._tombstones = False
        if self.kind == 'binary':
            if t == 'flat':
                return faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(d))
            if t == 'ivf':
                nlist = int(p['nlist'] or _default_nlist(n))
                p['nlist'] = nlist
                index = faiss.index_binary_factory(d, 'BIVF%d' % nlist)
                index.set_direct_map_type(faiss.DirectMap.Hashtable)
                index.nprobe = self._nprobe(nlist)
                return index
            p['hash_bits'] = int(p['hash_bits'] or min(d, 16))
            if not 1 <= p['hash_bits'] <= min(d, 63):
                raise ValueError('hash_bits must be between 1 and %d; got %d.'
                                 % (min(d, 63), p['hash_bits']))
            index = faiss.IndexBinaryHash(d, p['hash_bits'])
            index.nflip = int(p['nflip'])
            if self._shadow is None:
                self._shadow = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(d))
            return index
        metric = _metric_code(self.metric)
        if t == 'flat':
            flat = faiss.IndexFlatIP(d) if self.metric == 'ip' else faiss.IndexFlatL2(d)
            return faiss.IndexIDMap2(flat)
        if t == 'hnsw':
            self._tombstones = True
            inner = faiss.IndexHNSWFlat(d, int(p['hnsw_m']), metric)
            inner.hnsw.efConstruction = int(p['ef_construction'])
            inner.hnsw.efSearch = int(p['ef_search'])
            return faiss.IndexIDMap2(inner)
        if t in ('ivf_flat', 'ivf_pq'):
            nlist = int(p['nlist'] or _default_nlist(n))
            p['nlist'] = nlist
            if t == 'ivf_flat':
                spec = 'IVF%d,Flat' % nlist
            else:
                m = int(p['m'] or _default_m(d))
                if d % m:
                    raise ValueError('IVF-PQ needs m (sub-quantizers) dividing dim=%d; got m=%d.'
                                     % (d, m))
                p['m'] = m
                spec = 'OPQ%d,IVF%d,PQ%dx%d' % (m, nlist, m, int(p['nbits']))
            index = faiss.index_factory(d, spec, metric)
            ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
            if hasattr(ivf, 'do_polysemous_training'):
                ivf.do_polysemous_training = False     # on by default in the factory; minutes
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
            ivf.nprobe = self._nprobe(nlist)
            return index
        # factory string
        index = self._factory_probe()
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf = faiss.downcast_index(ivf)
            if hasattr(ivf, 'do_polysemous_training'):
                ivf.do_polysemous_training = False
            try:
                ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
            except RuntimeError:
                pass
            if p['nprobe']:
                ivf.nprobe = int(p['nprobe'])
        elif not isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            index = faiss.IndexIDMap2(index)
        try:
            index.remove_ids(faiss.IDSelectorArray(np.zeros(0, np.int64)))
        except RuntimeError:
            self._tombstones = True
        return index

    def _nprobe(self, nlist):
        nprobe = int(self.params['nprobe'] or max(16, nlist // 64))
        nprobe = min(nprobe, nlist)
        if self.params['nprobe'] is None:
            self.params['nprobe_auto'] = nprobe
        return nprobe

    # ----------------------------------------------------------------- training and adding
    def _train(self, x):
        if self._index is not None and self._index.is_trained:
            return
        n_total = int(self.params['expected_size'] or len(x))
        if self.index_type == 'auto':
            self.index_type = self._auto_type(max(n_total, len(x)))
        index = self._build(n_total)
        if not index.is_trained:
            self._fit(index, x)
        self._index = index

    def _fit(self, index, x):
        p, n = self.params, len(x)
        need = 1
        if self.index_type in TRAINED_TYPES:
            need = int(p['nlist'])
            if self.index_type == 'ivf_pq':
                need = max(need, 2 ** int(p['nbits']))
        if n < need:
            raise ValueError(
                'The %s index needs at least %d training vectors (nlist=%s%s); got %d: add a '
                'larger first batch, call train() on a larger sample, lower nlist, or use '
                "index_type='flat'." % (self.index_type, need, p.get('nlist'),
                                        ', 2^nbits=%d' % 2 ** int(p['nbits'])
                                        if self.index_type == 'ivf_pq' else '', n))
        size = p['train_size']
        if not size:
            size = 256 * 1024
            if self.index_type in TRAINED_TYPES:
                size = min(size, 50 * int(p['nlist']))
                if self.index_type == 'ivf_pq':     # PQ codebooks: 2^nbits centroids each
                    size = max(size, 64 * 2 ** int(p['nbits']))
        size = max(int(size), need)
        sample = x
        if n > size:
            rng = np.random.RandomState(int(p['seed']))
            sample = x[np.sort(rng.choice(n, size, replace=False))]
        faiss = _faiss()
        ivf = faiss.try_extract_index_ivf(index) if self.kind == 'float' else index
        if ivf is not None and hasattr(ivf, 'cp'):
            ivf.cp.seed = int(p['seed'])
        try:
            index.train(np.ascontiguousarray(sample))
        except RuntimeError as e:
            raise ValueError('faiss could not train the %s index on %d vectors: %s'
                             % (self.index_type, len(sample),
                                str(e).strip().splitlines()[-1])) from None

    def _add(self, x, ids, meta):
        if self._index is None or not self._index.is_trained:
            self._train(x)
        if ids is None:
            start = max(self.next_id, int(self._idset[-1]) + 1 if len(self._idset) else 0)
            ids = np.arange(start, start + len(x), dtype=np.int64)
        else:
            dup = ids[np.isin(ids, self._idset)]
            if len(dup) == 0 and len(self._tomb):
                dup = ids[np.isin(ids, self._tomb)]
                if len(dup):
                    # a tombstoned id is still in the graph: rebuild first, then it is free
                    self._compact()
                    dup = ids[np.isin(ids, self._idset)]
            if len(dup):
                raise ValueError('%d of the ids are already in the index (for example %d); '
                                 'remove them first.' % (len(dup), dup[0]))
        self._index.add_with_ids(x, ids)
        if self._shadow is not None:
            self._shadow.add_with_ids(x, ids)
        self._idset = np.union1d(self._idset, ids)
        for i, m in zip(ids.tolist(), meta):
            if m:
                self._meta[i] = m
        self.next_id = max(self.next_id, int(ids.max()) + 1)
        return ids

    # ----------------------------------------------------------------- removal
    def _remove(self, ids):
        faiss = _faiss()
        ids = ids[np.isin(ids, self._idset)]
        if len(ids) == 0:
            return 0
        if self._tombstones:
            self._tomb = np.union1d(self._tomb, ids)
        elif self._shadow is not None:          # binary hash: rebuild from the exact copy
            self._shadow.remove_ids(faiss.IDSelectorArray(ids))
        else:
            removed = self._index.remove_ids(faiss.IDSelectorArray(ids))
            if removed != len(ids):
                raise RuntimeError('faiss removed %d of %d ids; the index and its id list '
                                   'disagree.' % (removed, len(ids)))
        self._idset = np.setdiff1d(self._idset, ids, assume_unique=True)
        for i in ids.tolist():
            self._meta.pop(i, None)
        if self._shadow is not None:
            self._rebuild_hash()
        elif self._tombstones and len(self._tomb) > COMPACT_FRACTION * self._index.ntotal:
            self._compact()
        return len(ids)

    def _rebuild_hash(self):
        faiss = _faiss()
        index = self._build(0)
        n = self._shadow.ntotal
        if n:
            codes = faiss.vector_to_array(faiss.downcast_IndexBinary(self._shadow.index).xb)
            ids = faiss.vector_to_array(self._shadow.id_map).astype(np.int64)
            index.add_with_ids(codes.reshape(n, self.dim // 8), ids)
        self._index = index

    def _compact(self):
        """Rebuild a tombstoned index from its live vectors (the graph, or a factory index)."""
        if not len(self._tomb):
            return
        live = self._idset
        vectors = self._index.reconstruct_batch(live) if len(live) else None
        old_params = dict(self.params)
        index = self._build(len(live))
        self.params = old_params
        if not index.is_trained:
            if vectors is None:
                # nothing left to train on: keep the trained index, now empty
                index = self._index
                index.reset()
            else:
                self._fit(index, vectors)
        if vectors is not None:
            index.add_with_ids(vectors, live)
        self._index = index
        self._tomb = np.zeros(0, np.int64)

    # ----------------------------------------------------------------- search
    def _raw(self, q, k, sel=None):
        """faiss search of the whole index (``sel``: a faiss IDSelector on ids, or None)."""
        faiss = _faiss()
        if sel is None:
            return self._index.search(q, k)
        inner = self._index
        if isinstance(inner, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            inner = faiss.downcast_index(inner.index)
        ivf = faiss.try_extract_index_ivf(self._index)
        if ivf is not None:
            params = faiss.SearchParametersIVF(sel=sel, nprobe=int(ivf.nprobe))
        elif isinstance(inner, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(int(inner.hnsw.efSearch), k))
        else:
            params = faiss.SearchParameters(sel=sel)
        return self._index.search(q, k, params=params)

    def _filtered_ids(self, filter):
        if callable(filter):
            keep = [i for i in self._idset.tolist() if matches(filter, self._meta.get(i, {}))]
        elif not filter:
            return self._idset
        else:
            keep = [i for i, m in self._meta.items() if matches(filter, m)]
        return np.sort(np.asarray(keep, dtype=np.int64))

    def _exact_subset(self, q, k, ids):
        """Exact search over the stored vectors of ``ids`` (a selective filter)."""
        faiss = _faiss()
        if self.kind == 'binary':
            src = self._shadow if self._shadow is not None else self._index
            codes = np.stack([src.reconstruct(int(i)) for i in ids]).astype(np.uint8)
            flat = faiss.IndexBinaryFlat(self.dim)
            flat.add(codes)
        else:
            vectors = self._index.reconstruct_batch(ids)
            flat = faiss.IndexFlatIP(self.dim) if self.metric == 'ip' else faiss.IndexFlatL2(self.dim)
            flat.add(vectors)
        D, I = flat.search(q, min(k, len(ids)))
        return D, np.where(I >= 0, ids[np.maximum(I, 0)], -1)

    def _can_reconstruct(self):
        if self.kind == 'binary':
            return True
        try:
            if len(self._idset):
                self._index.reconstruct(int(self._idset[0]))
            return True
        except RuntimeError:
            return False

    def _search(self, q, k, filter):
        faiss = _faiss()
        n_live = len(self._idset)
        if self._index is None or n_live == 0:
            return [[] for _ in range(len(q))]
        allowed = None
        if filter is not None:
            allowed = self._filtered_ids(filter)
            if len(allowed) == 0:
                return [[] for _ in range(len(q))]
        k = min(k, n_live if allowed is None else len(allowed))
        if (allowed is not None and len(allowed) < n_live
                and len(allowed) <= int(self.params['filter_exact_max']) and self._can_reconstruct()):
            D, I = self._exact_subset(q, k, allowed)
            return [self._hits(D[i], I[i], self._meta) for i in range(len(q))]
        if allowed is not None and len(allowed) == n_live:
            allowed = None
        if self.kind == 'float':
            sel = None
            if allowed is not None:
                sel = faiss.IDSelectorBatch(allowed)
            elif len(self._tomb):
                sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(self._tomb))
            try:
                D, I = self._raw(q, k, sel)
                rows = [(D[i], I[i]) for i in range(len(q))]
            except RuntimeError:           # an expert's factory index that takes no selector
                rows = self._overfetch(q, k, allowed)
        elif allowed is not None:
            rows = self._overfetch(q, k, allowed)
        else:
            D, I = self._raw(q, k)
            rows = [(D[i], I[i]) for i in range(len(q))]
        return [self._hits(d, i, self._meta) for d, i in rows]

    def _overfetch(self, q, k, allowed):
        """Search for more than k and keep the ids that pass (``allowed``, or not tombstoned),
        fetching four times more until every query has k or the whole index was asked for."""
        ntotal = int(self._index.ntotal)
        if allowed is not None:
            kk = min(ntotal, max(2 * k, int(k * ntotal / max(len(allowed), 1)) + k))
        else:
            kk = min(ntotal, k + len(self._tomb))
        while True:
            D, I = self._raw(q, kk)
            if allowed is not None:
                mask = np.isin(I, allowed)
            else:
                mask = (I >= 0) & ~np.isin(I, self._tomb)
            if mask.sum(1).min() >= k or kk >= ntotal:
                break
            kk = min(ntotal, kk * 4)
        return [(D[i][mask[i]][:k], I[i][mask[i]][:k]) for i in range(len(q))]

    # ----------------------------------------------------------------- lookups
    def _contains(self, id):
        j = np.searchsorted(self._idset, id)
        return bool(j < len(self._idset) and self._idset[j] == id)

    def _get(self, id):
        return dict(self._meta.get(id, {}))

    def _vector(self, id):
        src = self._shadow if self._shadow is not None else self._index
        try:
            v = src.reconstruct(int(id))
        except RuntimeError:
            raise ValueError('The %s faiss index cannot return stored vectors (no reconstruct).'
                             % self.index_type) from None
        return np.asarray(v, dtype=np.uint8 if self.kind == 'binary' else np.float32)

    def _all_ids(self):
        return self._idset.copy()

    def _all_metadata(self):
        return {int(i): dict(self._meta.get(int(i), {})) for i in self._idset.tolist()}

    def _len(self):
        return len(self._idset)

    def _set_search_params(self, params):
        faiss = _faiss()
        known = {'nprobe', 'ef_search', 'nflip'}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError('Unknown search parameter(s) %s; known: nprobe (IVF), ef_search '
                             '(HNSW), nflip (binary hash).' % ', '.join(unknown))
        for key, value in params.items():
            self.params[key] = int(value)
        if self._index is None:
            return
        if self.kind == 'binary':
            if 'nprobe' in params and self.index_type == 'ivf':
                self._index.nprobe = min(int(params['nprobe']), self._index.nlist)
            if 'nflip' in params and self.index_type == 'hash':
                self._index.nflip = int(params['nflip'])
            return
        ivf = faiss.try_extract_index_ivf(self._index)
        if 'nprobe' in params and ivf is not None:
            ivf.nprobe = min(int(params['nprobe']), ivf.nlist)
        if 'ef_search' in params:
            inner = self._index
            if isinstance(inner, (faiss.IndexIDMap, faiss.IndexIDMap2)):
                inner = faiss.downcast_index(inner.index)
            if isinstance(inner, faiss.IndexHNSW):
                inner.hnsw.efSearch = int(params['ef_search'])

    def _info(self):
        out = {'requested_type': self.requested_type, 'trained': bool(self._index is not None
                                                                      and self._index.is_trained),
               'memory_bytes': 0, 'tombstones': int(len(self._tomb)),
               'metadata_entries': len(self._meta)}
        if self._index is not None:
            # serialising a large index takes a while: counted once per state of the index
            key = (id(self._index), int(self._index.ntotal), len(self._idset), len(self._tomb),
                   int(self._idset.sum()) if len(self._idset) else 0)
            cached = getattr(self, '_bytes_cache', None)
            if cached is None or cached[0] != key:
                size = _count_bytes(self._index, self.kind == 'binary')
                if self._shadow is not None:
                    size += _count_bytes(self._shadow, True)
                self._bytes_cache = cached = (key, size)
            out['memory_bytes'] = cached[1]
            out['faiss_class'] = type(self._index).__name__
        return out

    # ----------------------------------------------------------------- persistence
    def _manifest(self):
        faiss = _faiss()
        return {'backend': 'faiss', 'kind': self.kind, 'dim': self.dim, 'metric': self.metric,
                'index_type': self.index_type, 'requested_type': self.requested_type,
                'normalize': self.normalize, 'params': self.params, 'next_id': int(self.next_id),
                'count': len(self._idset), 'tombstones': int(len(self._tomb)),
                'has_index': self._index is not None, 'has_shadow': self._shadow is not None,
                'stored': int(self._index.ntotal) if self._index is not None else 0,
                'faiss_version': faiss.__version__}

    def _save(self):
        binary = self.kind == 'binary'

        def write(folder):
            if self._index is not None:
                _write_index_file(self._index, os.path.join(folder, 'index.faiss'), binary)
            if self._shadow is not None:
                _write_index_file(self._shadow, os.path.join(folder, 'codes.faiss'), True)
            _write_metadata(folder, self._idset, self._meta, self._tomb)
        commit_version(self.path, write, self._manifest())

    @classmethod
    def _open(cls, path, manifest, folder, **options):
        if options:
            raise ValueError('open_index takes no options for a faiss catalogue; got %s.'
                             % ', '.join(sorted(options)))
        faiss = _faiss()
        self = cls.__new__(cls)
        Index.__init__(self, manifest['kind'], manifest['dim'], manifest['metric'],
                       manifest['index_type'], path, manifest.get('normalize', False),
                       manifest['params'])
        self.requested_type = manifest.get('requested_type', self.index_type)
        self.next_id = int(manifest.get('next_id', 0))
        binary = self.kind == 'binary'
        read = faiss.read_index_binary if binary else faiss.read_index
        self._index = (_read_file(folder, 'index.faiss', read) if manifest['has_index']
                       else None)
        self._shadow = (_read_file(folder, 'codes.faiss', faiss.read_index_binary)
                        if manifest.get('has_shadow') else None)
        self._idset = _read_file(folder, 'ids.npy', _load_ids)
        self._tomb = _read_file(folder, 'tombstones.npy', _load_ids)
        self._meta = _read_file(folder, 'metadata.json', _load_metadata)
        self._tombstones = self.index_type == 'hnsw'
        if self.index_type.startswith('factory:') and self._index is not None:
            try:
                self._index.remove_ids(faiss.IDSelectorArray(np.zeros(0, np.int64)))
            except RuntimeError:
                self._tombstones = True
        stored = int(self._index.ntotal) if self._index is not None else 0
        if stored != len(self._idset) + len(self._tomb) or stored != manifest.get('stored', stored):
            raise ValueError('%s is inconsistent: the faiss index holds %d vectors but the id list '
                             '%d (+%d tombstones).' % (path, stored, len(self._idset), len(self._tomb)))
        return self
