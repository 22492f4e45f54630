"""The Milvus backend of :mod:`gluon_dml.index` (see the package docstring for the API).

One Milvus collection per index, through ``pymilvus.MilvusClient``: an INT64 primary key ``id``
(the caller's ids), a ``vector`` field (``FLOAT_VECTOR`` of ``dim`` floats or
``BINARY_VECTOR`` of ``dim`` bits) and a JSON field ``meta`` holding the metadata dict (so
user fields never collide with ``id`` / ``vector``). Dict filters become Milvus filter
expressions on it (``meta["label"] == 3 and meta["path"] in ["a", "b"]``).

Where the data live: by default embedded **Milvus Lite**, a local file ``milvus.db`` inside the
catalogue folder (pymilvus starts a Milvus Lite process for it; one process may hold a ``.db``
file at a time); or a Milvus standalone / distributed server given by ``uri='http://host:19530'``
(``token=`` for authentication), where the catalogue folder keeps only the manifest. See
``MILVUS.md`` beside this file for starting a server with Milvus's own docker compose file.

Index types (checked with milvus-lite 2.5.1 and pymilvus 3.0.2: Milvus Lite refuses everything
but ``FLAT``, ``IVF_FLAT`` and ``AUTOINDEX`` for floats and ``BIN_FLAT`` for binary vectors):

=========== ======================= ==============================
index_type  Milvus index            where
=========== ======================= ==============================
flat        FLAT / BIN_FLAT         Milvus Lite and servers
ivf_flat    IVF_FLAT                Milvus Lite and servers
hnsw        HNSW                    servers only
ivf_pq      IVF_PQ (no OPQ)         servers only
ivf         BIN_IVF_FLAT (binary)   servers only
auto        FLAT below 50,000 vectors, then IVF_FLAT (Lite) or HNSW (server); binary: BIN_FLAT
            (Lite), BIN_IVF_FLAT from 1,000,000 codes on a server
=========== ======================= ==============================

Metrics: ``ip`` -> IP, ``l2`` -> L2 (Milvus reports the squared distance), ``hamming`` -> HAMMING;
hits follow the package's score convention. Limits: Milvus caps ``k`` (its ``limit``) at 16,384;
a callable filter is applied to over-fetched results within that cap. ``save()`` flushes the
collection and writes the manifest; Milvus persists inserts and deletes itself.
"""
import json
import logging
import math
import os
import threading

import numpy as np

from .core import (AUTO_BINARY_EXACT_MAX, AUTO_EXACT_MAX, Index, UnknownIdError, commit_version,
                   matches)

MAX_TOPK = 16384
INSERT_BATCH = 5000
QUERY_BATCH = 1000
ID_BATCH = 4096


def _quiet_iterator_warning(record):
    """Milvus Lite returns no MVCC timestamp for a query iterator, so pymilvus warns at every
    iteration (bulk reads: ``all_metadata``, the largest id) that it uses the client's time,
    which is what a one-process embedded database wants. Only that message is dropped."""
    return 'failed to get mvccTs' not in record.getMessage()


logging.getLogger('pymilvus.client.iterator.query_iterator').addFilter(_quiet_iterator_warning)

FLOAT_TYPES = {'flat': 'FLAT', 'ivf_flat': 'IVF_FLAT', 'hnsw': 'HNSW', 'ivf_pq': 'IVF_PQ'}
BINARY_TYPES = {'flat': 'BIN_FLAT', 'ivf': 'BIN_IVF_FLAT'}
LITE_TYPES = {'FLAT', 'IVF_FLAT', 'BIN_FLAT'}
ALIASES = {'exact': 'flat', 'ivf-flat': 'ivf_flat', 'ivfflat': 'ivf_flat', 'ivf-pq': 'ivf_pq'}

DEFAULTS = {
    'uri': None,              # None: Milvus Lite at <path>/milvus.db; or a .db file; or http://host:19530
    'token': None,            # server authentication ("user:password" or an API key)
    'db_name': None,          # server database (default: Milvus's "default")
    'collection': 'gluon_dml',
    'nlist': None,            # IVF lists: None = 4 sqrt(N), between 16 and 65,536
    'nprobe': None,           # IVF lists searched: None = max(16, nlist / 64)
    'm': None,                # IVF_PQ sub-quantizers: None = dim / 4
    'nbits': 8,
    'hnsw_m': 32,
    'ef_construction': 80,
    'ef_search': 96,
    'expected_size': None,    # catalogue size for 'auto' / nlist before the first add
    'timeout': 120.0,         # seconds for each Milvus call (an insert of 5,000 rows into a
                              # 1M-row Milvus Lite collection took 36 s on 2 busy cores)
    'consistency_level': 'Strong',
}
SEARCH_KEYS = ('nprobe', 'ef_search')


def _pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise ValueError('The Milvus backend needs pymilvus and milvus-lite: pip install -e '
                         '".[milvus]".') from None
    return pymilvus


def _literal(v):
    """A value in Milvus's filter expression syntax."""
    if isinstance(v, (np.integer, np.floating)):
        v = v.item()
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError('filter values must be finite numbers; got %r.' % v)
        return repr(v)
    return json.dumps(str(v), ensure_ascii=False)


# A string that is not valid UTF-8 (a file name in Latin-1 reaches Python with surrogate escapes)
# cannot go into Milvus's JSON field: pymilvus refused the whole insert ("str is not valid UTF-8:
# surrogates not allowed"), and gluon-dml index --backend milvus ended in an unexpected error.
# Such a value is stored as {BYTES_KEY: hex of its bytes} and read back as the same string.
BYTES_KEY = '__gluon_dml_bytes_hex__'


def _bytes_hex(s):
    """None for a string that is UTF-8 text; else the hex of its bytes (what is stored)."""
    try:
        s.encode('utf-8')
        return None
    except UnicodeEncodeError:
        return s.encode('utf-8', 'surrogateescape').hex()


def to_stored(value):
    """``value`` (metadata: dicts, lists, strings, numbers) with each string that is not valid
    UTF-8 replaced by ``{BYTES_KEY: its bytes in hex}`` (see :func:`from_stored`)."""
    if isinstance(value, str):
        stored = _bytes_hex(value)
        return value if stored is None else {BYTES_KEY: stored}
    if isinstance(value, dict):
        return {k: to_stored(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_stored(v) for v in value]
    return value


def from_stored(value):
    """The metadata :func:`to_stored` wrote, as it was given."""
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get(BYTES_KEY), str):
            return bytes.fromhex(value[BYTES_KEY]).decode('utf-8', 'surrogateescape')
        return {k: from_stored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_stored(v) for v in value]
    return value


def filter_expression(filter):
    """The Milvus filter expression of a dict filter ``{field: value or [values]}`` on ``meta``.
    Milvus refuses an ``in`` list that mixes types (``meta["label"] in [4, "4"]`` fails inside
    the server), so a list becomes one ``in`` per type, joined by ``or``."""
    parts = []
    for key, value in filter.items():
        if not isinstance(key, str) or not key:
            raise ValueError('filter field names must be non-empty strings; got %r.' % (key,))
        if _bytes_hex(key) is not None:
            raise ValueError('filter field names must be UTF-8 text; got %r.' % (key,))
        field = 'meta[%s]' % json.dumps(key, ensure_ascii=False)
        # a name that is not UTF-8 is stored as its bytes (to_stored): compared there
        stored = '%s[%s]' % (field, json.dumps(BYTES_KEY))
        stored_hex = _bytes_hex(value) if isinstance(value, str) else None
        if isinstance(value, (list, tuple, set, frozenset)):
            groups = {}
            for v in value:
                v = v.item() if isinstance(v, (np.integer, np.floating)) else v
                v_hex = _bytes_hex(v) if isinstance(v, str) else None
                if v_hex is not None:
                    groups.setdefault('bytes', []).append(v_hex)
                else:
                    groups.setdefault(type(v) if isinstance(v, (bool, int, float)) else str, []).append(v)
            ors = ['%s in [%s]' % (stored if kind == 'bytes' else field,
                                   ', '.join(_literal(v) for v in vs)) for kind, vs in groups.items()]
            if not ors:
                ors = ['%s in []' % field]
            parts.append(ors[0] if len(ors) == 1 else '(%s)' % ' or '.join(ors))
        elif stored_hex is not None:
            parts.append('%s == %s' % (stored, _literal(stored_hex)))
        else:
            parts.append('%s == %s' % (field, _literal(value)))
    return ' and '.join(parts)


def _is_lite(uri):
    return not str(uri).startswith(('http://', 'https://', 'tcp://', 'grpc://', 'unix:'))


_LITE_USERS = {}                 # Milvus Lite file -> open MilvusIndex objects of this process
_LITE_GUARD = threading.Lock()


def lite_file_holder(db_file, locks='/proc/locks'):
    """The process id (a string) of ANOTHER process that holds Milvus Lite's lock on the file
    ``db_file``, else None. Milvus Lite (2.5.1) locks ``.NAME.lock`` beside the file with a
    POSIX record lock, and a process that fails to take it deletes the holder's lock file on its
    way out, so the next process would open the file beside the holder. Asked before Milvus Lite
    is: the lock is read from the kernel's table ``locks`` (Linux), not by opening the lock file,
    since closing any descriptor of a file drops this process's own POSIX locks on it (and would
    stop a Milvus Lite this process runs). Elsewhere (no such table) None."""
    real = os.path.realpath(os.path.abspath(str(db_file)))
    lock = os.path.join(os.path.dirname(real), '.%s.lock' % os.path.basename(real))
    try:
        inode = os.stat(lock).st_ino
        with open(locks) as f:
            table = f.read()
    except OSError:
        return None
    for line in table.splitlines():
        # "1: POSIX  ADVISORY  WRITE 2360 fe:00:5324836 0 EOF"; a waiter's line has "->"
        parts = line.split()
        if len(parts) < 6 or parts[1] != 'POSIX' or '->' in parts:
            continue
        if parts[5].rsplit(':', 1)[-1] == str(inode) and parts[4] != str(os.getpid()):
            return parts[4]
    return None


class MilvusIndex(Index):
    """:class:`~gluon_dml.index.core.Index` on a Milvus collection (see the module docstring)."""

    backend = 'milvus'

    def __init__(self, kind='float', dim=None, metric=None, index_type='auto', path=None,
                 normalize=False, overwrite=False, **params):
        self._settle(kind, dim, metric, index_type, path, normalize, params)
        self.next_id = 0
        self._client = None
        self._connect()
        name = self.params['collection']
        if self._client.has_collection(name, timeout=self._timeout()):
            if not overwrite:
                self.close()
                raise ValueError(self._exists_message())
            self._client.drop_collection(name, timeout=self._timeout())
        self._created = False
        exp = self.params['expected_size']
        if self.index_type == 'auto' and exp:
            self.index_type = self._auto_type(int(exp))
        # IVF lists depend on the catalogue size: without nlist or expected_size the collection
        # is created by the first add (or train), like an 'auto' one
        sized = self.index_type in ('ivf_flat', 'ivf_pq', 'ivf') and not (self.params['nlist'] or exp)
        if self.index_type != 'auto' and not sized:
            self._create_collection(int(exp or 0))
        os.makedirs(self.path, exist_ok=True)
        self._save()

    def _settle(self, kind, dim, metric, index_type, path, normalize, params):
        """The checks and settings of a new index that touch nothing: parameters, kind, metric,
        dimension, index type (Milvus Lite's limits)."""
        unknown = sorted(set(params) - set(DEFAULTS))
        if unknown:
            raise ValueError('Unknown Milvus index parameter(s): %s; known: %s.'
                             % (', '.join(unknown), ', '.join(sorted(DEFAULTS))))
        if path is None:
            raise ValueError('The Milvus backend needs path= (the catalogue folder; Milvus Lite '
                             'keeps its milvus.db there).')
        merged = dict(DEFAULTS)
        merged.update({k: v for k, v in params.items() if v is not None})
        Index.__init__(self, kind, dim, metric, 'auto', path, normalize, merged)
        self.lite = _is_lite(self._uri())
        self.index_type = self._check_type(index_type)
        self.requested_type = self.index_type

    def _exists_message(self):
        return ('The Milvus collection %r already exists at %s; open its catalogue with '
                'open_index() or pass overwrite=True.' % (self.params['collection'], self._uri()))

    @classmethod
    def check(cls, kind='float', dim=None, metric=None, index_type='auto', path=None,
              normalize=False, overwrite=False, **params):
        """Raise the ``ValueError`` that creating this index would, without creating anything:
        the settings, pymilvus, the Milvus Lite file's name, and on a server that it answers and
        holds no collection of that name (unless ``overwrite``)."""
        self = cls.__new__(cls)
        self._settle(kind, dim, metric, index_type, path, normalize, params)
        _pymilvus()
        if self.lite:
            self._check_lite_file(self._uri())
            return
        self._client = None
        self._connect()
        try:
            if not overwrite and self._client.has_collection(self.params['collection'],
                                                             timeout=self._timeout()):
                raise ValueError(self._exists_message())
        finally:
            self.close()

    # ----------------------------------------------------------------- connection
    def _uri(self):
        uri = self.params['uri']
        if uri is None:
            return os.path.join(self.path, 'milvus.db')
        uri = str(uri)
        if _is_lite(uri) and not os.path.isabs(uri):
            return os.path.join(self.path, uri)
        return uri

    def _timeout(self):
        return float(self.params['timeout'])

    def _connect(self):
        pymilvus = _pymilvus()
        uri = self._uri()
        if self.lite:
            self._check_lite_file(uri)
            holder = lite_file_holder(uri)
            if holder is not None:
                raise ValueError('The Milvus Lite file %s is open in process %s (a gluon-dml '
                                 'serve, an index --add, or another program): Milvus Lite lets '
                                 'one process at a time open it. Stop that process first, or send '
                                 'it your queries.' % (uri, holder))
            os.makedirs(os.path.dirname(uri), exist_ok=True)
        kwargs = {'uri': uri, 'timeout': self._timeout()}
        if self.params['token']:
            kwargs['token'] = self.params['token']
        if self.params['db_name']:
            kwargs['db_name'] = self.params['db_name']
        try:
            self._client = pymilvus.MilvusClient(**kwargs)
        except pymilvus.MilvusException as e:
            what = 'open the Milvus Lite file' if self.lite else 'reach the Milvus server at'
            raise ValueError('Cannot %s %s (%s).' % (what, uri, getattr(e, 'message', e))) from None
        if self.lite:
            self._lite_file = os.path.realpath(uri)
            with _LITE_GUARD:
                _LITE_USERS[self._lite_file] = _LITE_USERS.get(self._lite_file, 0) + 1

    @staticmethod
    def _check_lite_file(uri):
        if not uri.endswith('.db'):
            raise ValueError('A Milvus Lite file must end in .db, or give a server URI such as '
                             'http://localhost:19530; got %r.' % uri)

    def close(self):
        """Close the connection; the last index of this process on a Milvus Lite file also
        stops the Milvus Lite process pymilvus started for it, which gives the file back to other
        processes (pymilvus alone keeps it until this process ends)."""
        with self._lock:
            if self._client is not None:
                try:
                    self._client.close()
                finally:
                    self._client = None
                    self._release_lite_file()

    def _release_lite_file(self):
        lite_file, self._lite_file = getattr(self, '_lite_file', None), None
        if lite_file is None:
            return
        with _LITE_GUARD:
            _LITE_USERS[lite_file] -= 1
            if _LITE_USERS[lite_file]:
                return
            del _LITE_USERS[lite_file]
            from milvus_lite.server_manager import server_manager_instance
            server_manager_instance.release_server(lite_file)

    def _c(self):
        if self._client is None:
            raise ValueError('This Milvus index is closed.')
        return self._client

    # ----------------------------------------------------------------- types and collection
    def _check_type(self, index_type):
        t = str(index_type)
        if t.startswith('factory:'):
            raise ValueError('faiss factory strings need the faiss backend.')
        t = ALIASES.get(t.lower(), t.lower())
        if self.kind == 'float' and t == 'ivf':
            t = 'ivf_flat'
        table = FLOAT_TYPES if self.kind == 'float' else BINARY_TYPES
        if t != 'auto' and t not in table:
            extra = ' (the binary hash index is faiss only)' if t == 'hash' else ''
            raise ValueError('Unknown %s Milvus index_type %r%s; choose one of: auto, %s.'
                             % (self.kind, index_type, extra, ', '.join(table)))
        if t != 'auto' and self.lite and table[t] not in LITE_TYPES:
            raise ValueError('Milvus Lite supports only FLAT and IVF_FLAT (floats) and BIN_FLAT '
                             '(binary); %s needs a Milvus server (uri="http://host:19530").'
                             % table[t])
        return t

    def _auto_type(self, n):
        if self.kind == 'binary':
            return 'ivf' if (not self.lite and n >= AUTO_BINARY_EXACT_MAX) else 'flat'
        if n < AUTO_EXACT_MAX:
            return 'flat'
        return 'ivf_flat' if self.lite else 'hnsw'

    def _milvus_type(self):
        return (FLOAT_TYPES if self.kind == 'float' else BINARY_TYPES)[self.index_type]

    def _build_params(self, n):
        p, t = self.params, self.index_type
        if t in ('ivf_flat', 'ivf_pq', 'ivf'):
            if not p['nlist']:
                p['nlist'] = int(min(65536, max(16, round(4 * math.sqrt(max(n, 1))))))
            if not p['nprobe']:
                p['nprobe'] = int(min(p['nlist'], max(16, p['nlist'] // 64)))
            out = {'nlist': int(p['nlist'])}
            if t == 'ivf_pq':
                m = int(p['m'] or max(1, self.dim // 4))
                if self.dim % m:
                    raise ValueError('IVF_PQ needs m dividing dim=%d; got m=%d.' % (self.dim, m))
                p['m'] = m
                out.update(m=m, nbits=int(p['nbits']))
            return out
        if t == 'hnsw':
            return {'M': int(p['hnsw_m']), 'efConstruction': int(p['ef_construction'])}
        return {}

    def _create_collection(self, n):
        pymilvus = _pymilvus()
        DataType = pymilvus.DataType
        c = self._c()
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field('id', DataType.INT64, is_primary=True)
        if self.kind == 'float':
            schema.add_field('vector', DataType.FLOAT_VECTOR, dim=self.dim)
        else:
            schema.add_field('vector', DataType.BINARY_VECTOR, dim=self.dim)
        schema.add_field('meta', DataType.JSON)
        index_params = c.prepare_index_params()
        index_params.add_index(field_name='vector', index_type=self._milvus_type(),
                               metric_type=self.metric.upper(), params=self._build_params(n))
        try:
            c.create_collection(self.params['collection'], schema=schema, index_params=index_params,
                                consistency_level=self.params['consistency_level'],
                                timeout=self._timeout())
        except pymilvus.MilvusException as e:
            raise ValueError('Milvus refused the collection (%s, %s): %s'
                             % (self._milvus_type(), self.metric.upper(),
                                getattr(e, 'message', e))) from None
        self._created = True

    def _search_params(self, k):
        t, p = self.index_type, self.params
        if t in ('ivf_flat', 'ivf_pq', 'ivf'):
            nprobe = int(p['nprobe'] or 16)
            if p['nlist']:
                nprobe = min(nprobe, int(p['nlist']))
            return {'params': {'nprobe': nprobe}}
        if t == 'hnsw':
            return {'params': {'ef': max(int(p['ef_search']), k)}}
        return {'params': {}}

    # ----------------------------------------------------------------- helpers
    def _rows_vectors(self, x):
        if self.kind == 'binary':
            return [row.tobytes() for row in x]
        return x.tolist()

    def _existing(self, ids):
        """The ids among ``ids`` that the collection holds (int64 array)."""
        if not self._created or len(ids) == 0:
            return np.zeros(0, np.int64)
        found = []
        for s in range(0, len(ids), ID_BATCH):
            chunk = [int(i) for i in ids[s:s + ID_BATCH]]
            rows = self._c().query(self.params['collection'], filter='id in %s' % chunk,
                                   output_fields=['id'], timeout=self._timeout())
            found.extend(int(r['id']) for r in rows)
        return np.asarray(sorted(found), dtype=np.int64)

    def _max_id(self):
        best = -1
        for batch in self._iterate(['id']):
            if batch:
                best = max(best, max(int(r['id']) for r in batch))
        return best

    def _all_metadata(self):
        out = {}
        for batch in self._iterate(['id', 'meta']):
            out.update((int(r['id']), from_stored(dict(r.get('meta') or {}))) for r in batch)
        return dict(sorted(out.items()))

    def _iterate(self, fields):
        if not self._created:
            return
        it = self._c().query_iterator(self.params['collection'], batch_size=ID_BATCH, filter='',
                                      output_fields=fields, timeout=self._timeout())
        try:
            while True:
                batch = it.next()
                if not batch:
                    break
                yield batch
        finally:
            it.close()

    # ----------------------------------------------------------------- adding and removal
    def _train(self, x):
        if self.index_type == 'auto':
            self.index_type = self._auto_type(int(self.params['expected_size'] or len(x)))
        if not self._created:
            self._create_collection(int(self.params['expected_size'] or len(x)))

    def _add(self, x, ids, meta):
        self._train(x)
        if ids is None:
            start = self.next_id
            ids = np.arange(start, start + len(x), dtype=np.int64)
            if len(self._existing(ids)):          # ids added since the manifest was written
                start = max(self.next_id, self._max_id() + 1)
                ids = np.arange(start, start + len(x), dtype=np.int64)
        else:
            dup = self._existing(ids)
            if len(dup):
                raise ValueError('%d of the ids are already in the index (for example %d); '
                                 'remove them first.' % (len(dup), dup[0]))
        vectors = self._rows_vectors(x)
        id_list = ids.tolist()
        name = self.params['collection']
        for s in range(0, len(x), INSERT_BATCH):
            rows = [{'id': id_list[i], 'vector': vectors[i], 'meta': to_stored(meta[i])}
                    for i in range(s, min(s + INSERT_BATCH, len(x)))]
            self._c().insert(name, rows, timeout=self._timeout())
        self.next_id = max(self.next_id, int(ids.max()) + 1)
        return ids

    def _remove(self, ids):
        found = self._existing(ids)
        if len(found):
            for s in range(0, len(found), ID_BATCH):
                self._c().delete(self.params['collection'], ids=found[s:s + ID_BATCH].tolist(),
                                 timeout=self._timeout())
        return len(found)

    # ----------------------------------------------------------------- search
    def _search(self, q, k, filter):
        if not self._created:
            return [[] for _ in range(len(q))]
        k = min(k, MAX_TOPK)
        expr = ''
        post = None
        if callable(filter):
            post = filter
        elif filter:
            expr = filter_expression(filter)
        data = self._rows_vectors(q)
        out = []
        for s in range(0, len(q), QUERY_BATCH):
            chunk = data[s:s + QUERY_BATCH]
            if post is None:
                out.extend(self._query(chunk, k, expr))
            else:
                out.extend(self._query_post(chunk, k, post))
        return out

    def _query(self, data, k, expr):
        res = self._c().search(self.params['collection'], data=data, limit=k, filter=expr,
                               output_fields=['meta'], search_params=self._search_params(k),
                               timeout=self._timeout())
        out = []
        for row in res:
            ids = [int(h['id']) for h in row]
            dist = [float(h['distance']) for h in row]
            metas = {int(h['id']): from_stored((h.get('entity') or {}).get('meta') or {})
                     for h in row}
            out.append(self._hits(dist, ids, metas))
        return out

    def _query_post(self, data, k, post):
        count = self._len()
        kk = min(MAX_TOPK, count, 4 * k)
        while True:
            rows = self._query(data, kk, '')
            kept = [[h for h in row if matches(post, h.metadata)] for row in rows]
            if min(len(r) for r in kept) >= k or kk >= min(MAX_TOPK, count):
                return [r[:k] for r in kept]
            kk = min(MAX_TOPK, count, kk * 4)

    # ----------------------------------------------------------------- lookups
    def _fetch(self, id, field):
        if not self._created:
            return None
        rows = self._c().get(self.params['collection'], ids=[int(id)], output_fields=[field],
                             timeout=self._timeout())
        return rows[0] if rows else None

    def _contains(self, id):
        return self._fetch(id, 'id') is not None

    def _get(self, id):
        row = self._fetch(id, 'meta')
        if row is None:
            raise UnknownIdError('The index holds no id %d.' % id)
        return from_stored(dict(row.get('meta') or {}))

    def _vector(self, id):
        row = self._fetch(id, 'vector')
        if row is None:
            raise UnknownIdError('The index holds no id %d.' % id)
        v = row['vector']
        if self.kind == 'binary':
            if isinstance(v, (list, tuple)):
                v = v[0]
            return np.frombuffer(bytes(v), dtype=np.uint8).copy()
        return np.asarray(v, dtype=np.float32)

    def _all_ids(self):
        ids = [int(r['id']) for batch in self._iterate(['id']) for r in batch]
        return np.asarray(sorted(ids), dtype=np.int64)

    def _len(self):
        if not self._created:
            return 0
        rows = self._c().query(self.params['collection'], filter='', output_fields=['count(*)'],
                               timeout=self._timeout())
        return int(rows[0]['count(*)'])

    def _set_search_params(self, params):
        unknown = sorted(set(params) - set(SEARCH_KEYS))
        if unknown:
            raise ValueError('Unknown search parameter(s) %s; known: nprobe (IVF), ef_search '
                             '(HNSW).' % ', '.join(unknown))
        for key, value in params.items():
            self.params[key] = int(value)

    def _info(self):
        n = self._len()
        per = self.dim * 4 if self.kind == 'float' else self.dim // 8
        params = dict(self.params)
        if params.get('token'):
            params['token'] = '***'
        out = {'requested_type': self.requested_type, 'uri': self._uri(), 'lite': self.lite,
               'params': params,
               'collection': self.params['collection'],
               'milvus_index': self._milvus_type() if self.index_type != 'auto' else None,
               'memory_bytes': n * per}
        if self.lite and os.path.exists(self._uri()):
            out['disk_bytes'] = os.path.getsize(self._uri())
        return out

    # ----------------------------------------------------------------- persistence
    def _manifest(self):
        params = dict(self.params)
        params.pop('token', None)             # never write a secret into the catalogue
        return {'backend': 'milvus', 'kind': self.kind, 'dim': self.dim, 'metric': self.metric,
                'index_type': self.index_type, 'requested_type': self.requested_type,
                'normalize': self.normalize, 'params': params, 'next_id': int(self.next_id),
                'created': self._created}

    def _save(self):
        if self._created:
            self._c().flush(self.params['collection'], timeout=self._timeout())
        commit_version(self.path, lambda folder: None, self._manifest())

    @classmethod
    def _open(cls, path, manifest, folder, **options):
        unknown = sorted(set(options) - {'uri', 'token', 'db_name', 'timeout'})
        if unknown:
            raise ValueError('open_index takes uri, token, db_name and timeout for a Milvus '
                             'catalogue; got %s.' % ', '.join(unknown))
        self = cls.__new__(cls)
        params = dict(DEFAULTS)
        params.update(manifest['params'])
        params.update({k: v for k, v in options.items() if v is not None})
        Index.__init__(self, manifest['kind'], manifest['dim'], manifest['metric'],
                       manifest['index_type'], path, manifest.get('normalize', False), params)
        self.requested_type = manifest.get('requested_type', self.index_type)
        self.next_id = int(manifest.get('next_id', 0))
        self.lite = _is_lite(self._uri())
        self._client = None
        if self.lite and manifest.get('created') and not os.path.isfile(self._uri()):
            # Milvus Lite made a new, empty file in its place (a reader wrote into the
            # catalogue), then the collection was "not held"
            raise ValueError('The Milvus Lite file %s of the catalogue %s is missing: its items '
                             'are gone; build the catalogue again (gluon-dml index).'
                             % (self._uri(), path))
        self._connect()
        self._created = bool(manifest.get('created'))
        name = self.params['collection']
        exists = self._client.has_collection(name, timeout=self._timeout())
        if self._created and not exists:
            self.close()
            raise ValueError('%s names the Milvus collection %r, which %s does not hold.'
                             % (path, name, self._uri()))
        if exists and not self._created:
            self._created = True              # created by an add after the last save
            desc = self._client.describe_index(name, 'vector', timeout=self._timeout())
            back = {v: k for k, v in (FLOAT_TYPES if self.kind == 'float' else BINARY_TYPES).items()}
            self.index_type = back.get(desc.get('index_type'), self.index_type)
        if exists:
            self._client.load_collection(name, timeout=self._timeout())
        return self
