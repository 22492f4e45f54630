"""The service behind the HTTP routes: a catalogue, its network behind a micro-batcher, the
checks of every input, and the changes saved to disk. It knows nothing of HTTP except the
status of its errors (:class:`ServeError`), so each piece can be used and tested alone.

Changes (:meth:`Service.add`, :meth:`Service.remove`) are saved before they are answered
(``save_delay=0``, the default), with the catalogue's atomic save; with ``save_delay=S`` they
are saved at most every S seconds and when the service closes (a crash loses at most S
seconds of changes; worth it when the index is large and changes are frequent). Ids are never
reused even then: the catalogue records its next id durably as it hands ids out (see
:mod:`gluon_dml.catalog`). Images added through the service are stored in the catalogue folder
under ``uploads/``; removing such an item removes its file, and the files of items a crash lost
are removed when the service starts again (:meth:`Service.remove_orphan_uploads`).
"""
import json
import os
import threading
import time
import uuid

import numpy as np

from ..catalog import hit_record
from ..errors import UserError
from ..index import FLOAT32_MAX, UnknownIdError
from .batcher import BatcherClosed, MicroBatcher
from .errors import ServeError
from .images import browser_media, decode_image, image_extension, thumbnail_bytes

__all__ = ['Service', 'Limits', 'UPLOADS']

UPLOADS = 'uploads'
MAX_METADATA_DEPTH = 32     # an item's metadata: objects and lists this deep, the item itself 1
_INT64_MAX = 2 ** 63 - 1


class Limits(object):
    """What one request may ask for. ``max_k``: hits a query; ``max_upload_bytes``: a request
    body; ``max_pixels``: an image's width x height; ``max_items``: items one POST /items adds;
    ``max_metadata_bytes``: an item's metadata as JSON; ``max_text``: characters of a text
    query; ``default_k``: hits when a request names no k."""

    def __init__(self, max_k=1000, default_k=10, max_upload_bytes=10 * 2 ** 20,
                 max_pixels=40000000, max_items=64, max_metadata_bytes=16384, max_text=2000):
        self.max_k, self.default_k = int(max_k), int(default_k)
        self.max_upload_bytes, self.max_pixels = int(max_upload_bytes), int(max_pixels)
        self.max_items, self.max_metadata_bytes = int(max_items), int(max_metadata_bytes)
        self.max_text = int(max_text)
        for name in ('max_k', 'max_upload_bytes', 'max_pixels', 'max_items', 'max_metadata_bytes',
                     'max_text'):
            if getattr(self, name) < 1:
                raise ValueError('%s must be >= 1, got %d.' % (name, getattr(self, name)))
        if not 1 <= self.default_k <= self.max_k:
            raise ValueError('The default k must be between 1 and max_k (%d), got %d.'
                             % (self.max_k, self.default_k))

    def as_dict(self):
        return dict(vars(self))


def _nesting(value):
    """How deep JSON ``value`` nests objects and lists (a flat object: 1), counted without
    recursion, so that no depth makes it fail."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        v, depth = todo.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            todo.extend((c, depth + 1) for c in children)
    return deepest


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Service(object):
    """A catalogue served: searches, embeddings and changes, with their checks.

    ``catalog``: an opened :class:`gluon_dml.catalog.Catalog`. Its network is loaded now; a
    catalogue whose run folder is gone is served by vector and id only (``encoder_error`` says
    why; image and text queries answer 503). ``max_batch`` / ``max_delay_ms``: the
    micro-batcher's batch size and wait. ``decode_slots``: images decoded at once (memory)."""

    def __init__(self, catalog, max_batch=32, max_delay_ms=5.0, limits=None, save_delay=0.0,
                 decode_slots=None):
        self.catalog, self.limits = catalog, limits or Limits()
        self.encoder_error, self.encoders = None, None
        try:
            self.encoders = catalog.encoders
        except (UserError, FileNotFoundError) as err:
            self.encoder_error = str(err)
        functions = {}
        if self.encoders is not None:
            enc = self.encoders
            functions['image'] = lambda arrays: enc.image(np.stack(arrays))
            if enc.text is not None:
                functions['text'] = lambda texts: enc.text(list(texts))
        self.batcher = MicroBatcher(functions, max_batch=max_batch, max_delay=max_delay_ms / 1000.0)
        self.uploads = os.path.join(os.path.abspath(catalog.path), UPLOADS)
        self.model = self._model_name()
        self.started = time.time()
        self._write_lock = threading.RLock()
        self._decode_slots = threading.BoundedSemaphore(decode_slots or max(2, os.cpu_count() or 2))
        self._dirty, self._closed, self._info = False, False, None
        self._unlink_after_save = []      # upload files of removed items, until the removal is saved
        self.save_delay = float(save_delay)
        if self.save_delay < 0:
            raise ValueError('save_delay must be >= 0 seconds, got %r.' % save_delay)
        self._stop = threading.Event()
        self._saver = None
        if self.save_delay > 0:
            self._saver = threading.Thread(target=self._save_loop, name='gluon-dml-saver', daemon=True)
            self._saver.start()

    def _model_name(self):
        try:
            with open(os.path.join(self.catalog.source['run_dir'], 'args.json')) as f:
                return json.load(f).get('model')
        except (OSError, ValueError, KeyError):
            return self.catalog.source.get('model')

    # -- checks -------------------------------------------------------------------------------
    def check_k(self, k):
        """``k`` (None: the default) as an int in [1, max_k]; else 422."""
        if k is None:
            return self.limits.default_k
        if isinstance(k, str) and k.strip().lstrip('+').isdigit() and len(k) < 19:
            k = int(k)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.limits.max_k:
            raise ServeError(422, 'k must be an integer from 1 to %d; got %s.'
                             % (self.limits.max_k, json.dumps(k)[:40] if not isinstance(k, str)
                                else repr(k[:30] + ('...' if len(k) > 30 else ''))))
        return k

    @staticmethod
    def check_filter(flt):
        """A metadata filter from a request: ``{field: value or [values]}`` (values str, number
        or bool). A number also matches its text (labels of class folders are text), so
        ``{"label": 3}`` finds items of the folder ``3``. None or {} is no filter."""
        if flt is None or flt == {}:
            return None
        if not isinstance(flt, dict):
            raise ServeError(400, 'filter must be a JSON object of field -> value (or a list of '
                                  'values), got %s.' % type(flt).__name__)
        out = {}
        for key, value in flt.items():
            if not key:
                raise ServeError(400, 'filter field names must be non-empty.')
            values = value if isinstance(value, list) else [value]
            if not values:
                raise ServeError(400, 'filter field %r lists no values.' % key)
            allowed = []
            for v in values:
                if not isinstance(v, (str, int, float, bool)):
                    raise ServeError(400, 'filter field %r has a value of type %s; values are '
                                          'strings, numbers or booleans.' % (key, type(v).__name__))
                allowed.append(v)
                if _number(v):
                    allowed.append(str(v))
            out[key] = allowed
        return out

    def check_vector(self, vector, what='vector'):
        """A JSON list of numbers as a (dim,) array; else 400."""
        if not isinstance(vector, list) or not vector or not all(_number(x) for x in vector):
            raise ServeError(400, '%s must be a non-empty JSON list of numbers (%d of them for '
                                  'this catalogue).' % (what, self.catalog.dim))
        v = np.asarray(vector, dtype=np.float64)
        if not np.isfinite(v).all():
            raise ServeError(400, '%s holds NaN or infinite values.' % what)
        if np.abs(v).max() > FLOAT32_MAX:
            raise ServeError(400, '%s holds values beyond the float32 range of the index '
                                  '(|x| <= %.4g).' % (what, FLOAT32_MAX))
        if len(v) != self.catalog.dim:
            raise ServeError(400, '%s has %d values; this catalogue\'s vectors have %d.'
                             % (what, len(v), self.catalog.dim))
        return v.astype(np.float32)

    def check_metadata(self, meta, what='The metadata'):
        """User metadata of a new item: a JSON object without ``path`` (the service sets it), at
        most ``max_metadata_bytes`` as JSON."""
        if meta is None:
            return {}
        if not isinstance(meta, dict):
            raise ServeError(400, '%s must be a JSON object, got %s.' % (what, type(meta).__name__))
        if 'path' in meta:
            raise ServeError(400, '%s may not set "path": the service stores the image and sets '
                                  'it.' % what)
        depth = _nesting(meta)
        if depth > MAX_METADATA_DEPTH:
            raise ServeError(400, '%s nests objects and lists %d levels deep; at most %d.'
                             % (what, depth, MAX_METADATA_DEPTH))
        try:
            size = len(json.dumps(meta, allow_nan=False))
        except ValueError:
            raise ServeError(400, '%s holds NaN or infinite numbers, which JSON answers cannot '
                                  'carry.' % what) from None
        if size > self.limits.max_metadata_bytes:
            raise ServeError(413, '%s is %d bytes as JSON, more than %d.'
                             % (what, size, self.limits.max_metadata_bytes))
        return dict(meta)

    def _need(self, kind):
        if self.encoders is None:
            raise ServeError(503, 'This service cannot embed %ss: %s' % (kind, self.encoder_error))
        if kind == 'text' and 'text' not in self.batcher.functions:
            raise ServeError(400, 'Text queries need a catalogue embedded by a train-vse run; '
                                  'this one was embedded by a %s run.'
                             % self.catalog.source.get('method'))

    # -- embedding ----------------------------------------------------------------------------
    def prepare_image(self, data, what='The upload'):
        """Decode ``data`` (bytes) with the limits and preprocess it for the network: ``(array
        (C, H, W), extension of its format)``. Blocking: run it in a worker thread."""
        self._need('image')
        with self._decode_slots:
            img = decode_image(data, self.limits.max_pixels, what)
            try:
                array = self.encoders.preprocess(img)
            except (OSError, ValueError, TypeError) as err:
                raise ServeError(400, '%s cannot be prepared for the network (%s).'
                                 % (what, str(err).rstrip('.'))) from None
            return np.asarray(array, dtype=np.float32), image_extension(img)

    def submit_image(self, array):
        """A future of the embedding of a prepared image (see :meth:`prepare_image`)."""
        return self._submit('image', array)

    def submit_text(self, text):
        self._need('text')
        if not isinstance(text, str) or not text.strip():
            raise ServeError(400, 'text must be a non-empty string.')
        if len(text) > self.limits.max_text:
            raise ServeError(413, 'text has %d characters, more than %d.'
                             % (len(text), self.limits.max_text))
        return self._submit('text', text)

    def _submit(self, kind, payload):
        self._need(kind)
        try:
            return self.batcher.submit(kind, payload)
        except BatcherClosed:
            raise ServeError(503, 'The service is stopping.') from None

    # -- search -------------------------------------------------------------------------------
    def search_vector(self, vector, k, flt=None):
        """Hit records (as ``gluon-dml search --json``) of one query vector."""
        try:
            hits = self.catalog.search_vectors(np.asarray(vector)[None], k, flt)[0]
        except ValueError as err:
            raise ServeError(400, str(err)) from None
        return [hit_record(h) for h in hits]

    def _id(self, id):
        if isinstance(id, bool) or not isinstance(id, (int, np.integer)):
            raise ServeError(400, 'id must be an integer, got %s.' % json.dumps(id)[:40])
        if not 0 <= int(id) <= _INT64_MAX or int(id) not in self.catalog.index:
            raise ServeError(404, 'The catalogue holds no item with id %d.' % id)
        return int(id)

    def search_id(self, id, k, flt=None):
        id = self._id(id)
        try:
            hits = self.catalog.search_id(id, k, flt)
        except UnknownIdError:
            raise ServeError(404, 'The catalogue holds no item with id %d.' % id) from None
        except ValueError as err:
            raise ServeError(400, str(err)) from None
        return [hit_record(h) for h in hits]

    def stored_vector(self, id):
        """The vector the index holds for an item (binary codes as +-1)."""
        id = self._id(id)
        try:
            v = self.catalog.index.vector(id)
        except UnknownIdError:
            raise ServeError(404, 'The catalogue holds no item with id %d.' % id) from None
        except ValueError as err:
            raise ServeError(400, str(err)) from None
        if v.dtype == np.uint8:
            v = np.unpackbits(v).astype(np.float32) * 2 - 1
        return v

    # -- items --------------------------------------------------------------------------------
    @staticmethod
    def item_record(id, meta):
        return {'id': int(id), 'path': meta.get('path'), 'label': meta.get('label'),
                'metadata': meta}

    def get_item(self, id):
        id = self._id(id)
        try:
            return self.item_record(id, self.catalog.index.get(id))
        except UnknownIdError:
            raise ServeError(404, 'The catalogue holds no item with id %d.' % id) from None

    def list_items(self, offset=0, limit=50, sample=None):
        """Items by id from ``offset``, at most ``limit``; or (``sample=n``) n items drawn at
        random (in id order)."""
        ids = self.catalog.index.ids()
        if sample:
            page = np.sort(np.random.default_rng().choice(ids, min(int(sample), len(ids)), replace=False))
            offset = 0
        else:
            page = ids[offset:offset + limit]
        items = []
        for i in page:
            try:
                items.append(self.item_record(i, self.catalog.index.get(int(i))))
            except UnknownIdError:                      # removed meanwhile
                continue
        return {'count': int(len(ids)), 'offset': offset, 'items': items}

    def image_of(self, id, size=None):
        """What ``GET /items/{id}/image`` answers: ``('file', path, media type)`` for an image
        file a browser shows as it is, else ``('bytes', data, media type)`` (a PNG or JPEG in a
        mode browsers show, shrunk to ``size`` when given). Only the path the catalogue holds for
        the item is read. An image over ``max_pixels`` (decoded at a reduced scale when it is a
        JPEG) is served as its file when a browser shows it (a thumbnail's too: the browser
        scales it), else refused with a 500 that names --max-pixels."""
        item = self.get_item(id)
        path = item['path']
        if not path:
            raise ServeError(404, 'Item %d has no image (it was added as a vector).' % item['id'])
        if not os.path.isfile(path):
            raise ServeError(404, 'The image file of item %d is gone from disk.' % item['id'])
        from PIL import Image
        try:
            with self._decode_slots, Image.open(path) as img:
                media = browser_media(img.format, img.mode)
            if size is None and media:
                return 'file', path, media
            with open(path, 'rb') as f:
                data = f.read()
            with self._decode_slots:
                try:
                    img = decode_image(data, self.limits.max_pixels,
                                       'The image of item %d' % item['id'], draft=size)
                except ServeError as err:
                    if err.status != 413:
                        raise
                    if media:                 # the catalogue's own file, not the client's upload
                        return 'file', path, media
                    raise ServeError(500, '%s; it must be decoded to be served, so start '
                                          'gluon-dml serve with a larger --max-pixels to serve it.'
                                     % err.message.rstrip('.')) from None
                data, media = thumbnail_bytes(img, size)
            return 'bytes', data, media
        except ServeError:
            raise
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise ServeError(404, 'The image file of item %d cannot be read (%s).'
                             % (item['id'], str(err).rstrip('.'))) from None

    def add(self, entries):
        """Add items: ``entries`` a list of dicts with ``vector`` (an embedding), ``metadata``
        (checked user fields) and, for an uploaded image, ``image`` (its bytes) and ``ext``.
        Images are written under ``uploads/`` first, then the vectors are added and the change
        saved. Returns the new items' records."""
        with self._write_lock:
            self._check_open()
            written, metas = [], []
            try:
                for e in entries:
                    meta = dict(e.get('metadata') or {})
                    if e.get('image') is not None:
                        path = self._store(e['image'], e.get('ext') or '.png')
                        written.append(path)
                        meta = dict({'path': path}, **meta)
                    metas.append(meta)
                vectors = np.stack([np.asarray(e['vector']) for e in entries])
                ids = self.catalog.add_vectors(vectors, metas)
            except ValueError as err:
                for path in written:
                    _unlink(path)
                raise ServeError(400, str(err)) from None
            except BaseException:
                for path in written:
                    _unlink(path)
                raise
            self._changed()
            return [self.item_record(i, m) for i, m in zip(ids, metas)]

    def remove(self, id):
        """Remove an item (404 when unknown); its uploaded image file goes too, once the removal
        is saved."""
        with self._write_lock:
            self._check_open()
            item = self.get_item(id)
            if self.catalog.remove([item['id']]) != 1:
                raise ServeError(404, 'The catalogue holds no item with id %d.' % item['id'])
            self._changed()
            path = item['path']
            if path and os.path.dirname(os.path.abspath(path)) == self.uploads:
                if self._dirty:
                    # not saved yet (save_delay > 0): a crash before the save brings the item
                    # back, so its file goes only once the removal is on disk
                    self._unlink_after_save.append(path)
                else:
                    _unlink(path)
            return item

    def remove_orphan_uploads(self):
        """Remove the files of ``uploads/`` that no item of the catalogue names: the images of
        items added and then lost by a crash before the catalogue was saved (``save_delay > 0``),
        and the temporaries of an upload interrupted by a kill. Call it only as the catalogue's
        one writer, before serving (``gluon-dml serve`` does, holding ``CATALOG/.lock``).
        Returns the names removed. Items are matched by the file's name (a random one), so a
        catalogue folder copied or moved with its ``uploads/`` keeps its files."""
        with self._write_lock:
            try:
                files = sorted(e.name for e in os.scandir(self.uploads)
                               if e.is_file(follow_symlinks=False))
            except FileNotFoundError:
                return []
            if not files:
                return []
            held = set()
            for meta in self.catalog.index.all_metadata().values():   # one bulk read
                path = meta.get('path')
                if path and os.path.basename(os.path.dirname(path)) == UPLOADS:
                    held.add(os.path.basename(path))
            orphans = [name for name in files if name not in held]
            for name in orphans:
                _unlink(os.path.join(self.uploads, name))
            return orphans

    def _store(self, data, ext):
        os.makedirs(self.uploads, exist_ok=True)
        path = os.path.join(self.uploads, uuid.uuid4().hex + ext)
        tmp = path + '.part'
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def _check_open(self):
        if self._closed:
            raise ServeError(503, 'The service is stopping.')

    # -- saving -------------------------------------------------------------------------------
    def _changed(self):
        self._info = None
        self._dirty = True
        if self.save_delay == 0:
            self.save()

    def save(self):
        """Save the catalogue now if it changed since the last save."""
        with self._write_lock:
            if self._dirty:
                self.catalog.save()
                self._dirty = False
                for path in self._unlink_after_save:
                    _unlink(path)
                self._unlink_after_save = []

    def _save_loop(self):
        while not self._stop.wait(self.save_delay):
            try:
                self.save()
            except Exception:  # noqa: BLE001 - tried again at the next tick and at close
                pass

    @property
    def dirty(self):
        return self._dirty

    # -- description ----------------------------------------------------------------------------
    def info(self):
        if self._info is None:
            self._info = self.catalog.info()
        out = dict(self._info)
        out.update({'model': self.model, 'count': len(self.catalog.index),
                    'image_queries': self.encoders is not None,
                    'text_queries': 'text' in self.batcher.functions,
                    'encoder_error': self.encoder_error, 'limits': self.limits.as_dict(),
                    'batching': self.batcher.stats(), 'save_delay_s': self.save_delay,
                    'uptime_s': round(time.time() - self.started, 3)})
        return out

    def health(self):
        return {'status': 'ok', 'count': len(self.catalog.index),
                'image_queries': self.encoders is not None,
                'uptime_s': round(time.time() - self.started, 3)}

    def close(self):
        """Stop the batcher and the saver, save what changed, close the catalogue. Idempotent."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
        self.batcher.close()
        self._stop.set()
        if self._saver is not None:
            self._saver.join(30)
        self.save()
        self.count_at_close = len(self.catalog.index)    # a closed Milvus index cannot count
        self.catalog.close()


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass
