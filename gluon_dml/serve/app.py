"""The HTTP routes (FastAPI) over a :class:`gluon_dml.serve.service.Service`.

Every refusal is a 4xx answer ``{"error": "one sentence"}``: the service's own checks, FastAPI's
parameter validation, unknown routes and methods, bodies over the size limit (refused while
they arrive, and read to the end first so the client sees the 413). An unexpected error in a
request is a 500 with the same shape; the process keeps serving.
"""
import asyncio
import contextlib
import json
import time
from typing import Any, Dict, List, Optional

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.responses import JSONResponse as _FastAPIJSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import ServeError
from .images import decode_base64
from .page import PAGE

__all__ = ['create_app', 'BodyLimitMiddleware']

QUERY_KINDS = ('image', 'vector', 'text', 'id')


class JSONResponse(_FastAPIJSONResponse):
    """JSON with every character that is not ASCII written as ``\\uXXXX``: a file name that is
    not UTF-8 (a Latin-1 name reaches Python with surrogate escapes) could not be encoded, and
    GET /items/ID of such an item, or a search that found it, answered 500. Clients decode the
    same strings (Python's json gives back the name, ``os.fsencode`` its bytes)."""

    def render(self, content):
        return json.dumps(content, ensure_ascii=True, allow_nan=False, indent=None,
                          separators=(',', ':')).encode('ascii')


_CACHE = {'Cache-Control': 'public, max-age=86400'}       # ids are never reused


# ---------------------------------------------------------------------------------------------
# documentation models (the OpenAPI schema; the checks themselves are the service's)
# ---------------------------------------------------------------------------------------------

class HitModel(BaseModel):
    id: int
    path: Optional[str] = Field(None, description='the image file of the item, if it has one')
    score: float = Field(description='higher is nearer (inner product, -squared L2, or '
                                     '1 - Hamming distance / bits)')
    distance: float = Field(description="the index's raw distance")
    label: Optional[Any] = None
    metadata: Dict[str, Any]


class SearchResponse(BaseModel):
    hits: List[HitModel] = Field(description='nearest first: the list `gluon-dml search --json` '
                                             'prints')
    k: int
    count: int = Field(description='items in the catalogue')
    took_ms: float


class SearchRequest(BaseModel):
    """One query: exactly one of image, vector, text or id."""
    image: Optional[str] = Field(None, description='a base64 image (a data: URL prefix is allowed)')
    vector: Optional[List[float]] = Field(None, description='a query vector of the catalogue '
                                                            'dimension')
    text: Optional[str] = Field(None, description='a sentence (catalogues of VSE runs)')
    id: Optional[int] = Field(None, description='an item of the catalogue (itself left out)')
    k: Optional[int] = Field(None, description='hits (1 to max_k; default 10); wins over the '
                                               'query parameter')
    filter: Optional[Dict[str, Any]] = Field(
        None, description='metadata filter: {"label": "3"}, {"label": ["3", "8"]}; a number also '
                          'matches its text')


class EmbedResponse(BaseModel):
    vector: List[float]
    dim: int
    kind: str = Field(description='float, or binary (+-1 codes)')


class ItemModel(BaseModel):
    id: int
    path: Optional[str] = None
    label: Optional[Any] = None
    metadata: Dict[str, Any]


class NewItem(BaseModel):
    image: Optional[str] = Field(None, description='a base64 image')
    vector: Optional[List[float]] = Field(None, description='or a vector (no image)')
    metadata: Optional[Dict[str, Any]] = Field(None, description='label and any user fields '
                                                                 '(not path)')


class AddRequest(BaseModel):
    items: List[NewItem]


class AddResponse(BaseModel):
    items: List[ItemModel]
    count: int


class DeleteResponse(BaseModel):
    deleted: ItemModel
    count: int


class ItemsPage(BaseModel):
    count: int
    offset: int
    items: List[ItemModel]


class Health(BaseModel):
    status: str
    count: int
    image_queries: bool
    uptime_s: float


class ErrorModel(BaseModel):
    error: str = Field(description='one sentence')


_ERRORS = {s: {'model': ErrorModel} for s in (400, 404, 413, 415, 422)}


def _query_body_doc(model, fields):
    form = {'image': {'type': 'string', 'format': 'binary'}}
    form.update(fields)
    return {'requestBody': {'required': True, 'content': {
        'multipart/form-data': {'schema': {'type': 'object', 'properties': form}},
        'application/json': {'schema': {'$ref': '#/components/schemas/%s' % model}},
        'image/*': {'schema': {'type': 'string', 'format': 'binary'}}}}}


# ---------------------------------------------------------------------------------------------
# the body size limit
# ---------------------------------------------------------------------------------------------

class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware(object):
    """Refuse request bodies over ``max_bytes`` with a 413: at once when Content-Length says
    so, else when the streamed body passes the limit. The rest of the body is read and dropped
    (up to ``drain_max`` bytes) before answering, so that a client still sending sees the 413
    instead of a reset connection."""

    def __init__(self, app, max_bytes, drain_max=64 * 2 ** 20):
        self.app, self.max_bytes, self.drain_max = app, int(max_bytes), int(drain_max)

    async def __call__(self, scope, receive, send):
        if scope['type'] != 'http':
            return await self.app(scope, receive, send)
        length = None
        for key, value in scope.get('headers', ()):
            if key == b'content-length':
                try:
                    length = int(value)
                except ValueError:
                    pass
        if length is not None and length > self.max_bytes:
            await self._drain(receive)
            body = json.dumps({'error': self.sentence(length)}).encode()
            await send({'type': 'http.response.start', 'status': 413,
                        'headers': [(b'content-type', b'application/json'),
                                    (b'content-length', str(len(body)).encode())]})
            await send({'type': 'http.response.body', 'body': body})
            return
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message['type'] == 'http.request':
                seen += len(message.get('body', b''))
                if seen > self.max_bytes:
                    if message.get('more_body'):
                        await self._drain(receive)
                    raise BodyTooLarge(self.sentence(None))
            return message

        await self.app(scope, limited, send)

    def sentence(self, length):
        return 'The request body is %s, more than this service accepts (%s bytes, --max-upload-mb).' % (
            '{:,} bytes'.format(length) if length is not None else 'too large',
            '{:,}'.format(self.max_bytes))

    async def _drain(self, receive):
        read = 0
        while read < self.drain_max:
            message = await receive()
            if message['type'] != 'http.request':
                return
            read += len(message.get('body', b''))
            if not message.get('more_body'):
                return


# ---------------------------------------------------------------------------------------------
# reading requests
# ---------------------------------------------------------------------------------------------

def _json_value(text, what):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ServeError(400, 'Field %r is not valid JSON.' % what) from None


def filter_from_strings(items):
    """Query-string / form filters: ``label=3`` (repeatable; a repeated field matches any of its
    values) or a JSON object ``{"label": "3"}``."""
    out = {}
    for item in items or []:
        item = item.strip()
        if item.startswith('{'):
            obj = _json_value(item, 'filter')
            if not isinstance(obj, dict):
                raise ServeError(400, 'filter must be FIELD=VALUE or a JSON object.')
            for key, value in obj.items():
                out.setdefault(key, []).extend(value if isinstance(value, list) else [value])
            continue
        if '=' not in item:
            raise ServeError(400, 'filter takes FIELD=VALUE (e.g. label=3), got %r.' % item[:60])
        key, value = item.split('=', 1)
        key = key.strip()
        if not key:
            raise ServeError(400, 'filter takes FIELD=VALUE with a field name, got %r.' % item[:60])
        parsed = value
        if value in ('true', 'false'):
            parsed = value == 'true'
        else:
            for cast in (int, float):
                try:
                    parsed = cast(value)
                    break
                except ValueError:
                    continue
        out.setdefault(key, []).append(parsed)
        if parsed is not value and value not in out[key]:
            out[key].append(value)
    return out or None


class Body(object):
    """A POST body read as fields (JSON, or multipart text fields as lists) and image uploads."""

    def __init__(self, source, fields, images):
        self.source, self.fields, self.images = source, fields, images


async def read_body(request, limits):
    body = await request.body()
    if not body:
        raise ServeError(400, 'The request body is empty: send an image (multipart field "image", '
                              'or its bytes) or JSON with one of image, vector, text or id.')
    ctype = request.headers.get('content-type', '').split(';')[0].strip().lower()
    if ctype == 'application/json' or ctype.endswith('+json'):
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):
            raise ServeError(400, 'The body is not valid JSON.') from None
        if not isinstance(obj, dict):
            raise ServeError(400, 'The JSON body must be an object, such as {"id": 12, "k": 10}.')
        return Body('json', obj, [])
    if ctype == 'multipart/form-data':
        try:
            form = await request.form(max_files=limits.max_items, max_fields=64)
        except StarletteHTTPException as err:
            raise ServeError(400 if err.status_code < 500 else 413,
                             'The multipart body cannot be read (%s).'
                             % str(err.detail).rstrip('.')) from None
        except Exception as err:  # noqa: BLE001 - the multipart parser's own errors
            raise ServeError(400, 'The multipart body cannot be read (%s).'
                             % (str(err).rstrip('.') or type(err).__name__)) from None
        fields, images = {}, []
        try:
            for key, value in form.multi_items():
                if key == 'image':
                    if isinstance(value, str):
                        raise ServeError(400, 'Multipart field "image" must be a file upload.')
                    images.append(await value.read())
                elif isinstance(value, str):
                    fields.setdefault(key, []).append(value)
                else:
                    raise ServeError(400, 'Multipart field %r must be text; only "image" takes a '
                                          'file.' % key)
        finally:
            await form.close()
        return Body('multipart', fields, images)
    if ctype.startswith('image/') or ctype == 'application/octet-stream':
        return Body('raw', {}, [body])
    raise ServeError(415, '%s is not accepted here: send multipart/form-data (field "image"), '
                          'application/json, or the image bytes (image/png, image/jpeg, ...).'
                     % ('Content-Type %s' % ctype[:60] if ctype else 'A body without a '
                                                                       'Content-Type'))


def _single(fields, key):
    values = fields.get(key)
    if values is None:
        return None
    if len(values) != 1:
        raise ServeError(400, 'Multipart field %r is given %d times; give it once.' % (key, len(values)))
    return values[0]


def query_of(body, allowed, what='a query', options=('k', 'filter')):
    """``(kind, value, k, filter)`` of a /search or /embed body: exactly one of ``allowed``,
    and of the search ``options`` (k, filter) those this route takes (/embed takes none)."""
    f = body.fields
    known = set(allowed) | set(options)
    unknown = sorted(set(f) - known)
    if unknown:
        raise ServeError(400, 'Unknown field %r; the fields are %s.'
                         % (unknown[0], ', '.join(sorted(known))))
    if body.source == 'multipart':
        kv = {}
        if 'id' in f:
            text = _single(f, 'id').strip()
            if not text.isdigit() or len(text) > 19:
                raise ServeError(400, 'id must be an integer from 0 to 2^63 - 1, got %r.' % text[:40])
            kv['id'] = int(text)
        if 'vector' in f:
            kv['vector'] = _json_value(_single(f, 'vector'), 'vector')
        if 'text' in f:
            kv['text'] = _single(f, 'text')
        k = _single(f, 'k')
        flt = filter_from_strings(f.get('filter'))
    else:
        kv = {key: f[key] for key in allowed if key != 'image' and f.get(key) is not None}
        if f.get('image') is not None:
            kv['image'] = decode_base64(f['image'])
        k = f.get('k')
        flt = f.get('filter')
    if len(body.images) > 1:
        raise ServeError(400, 'Give one image per query, got %d.' % len(body.images))
    if body.images:
        kv['image'] = body.images[0]
    given = [key for key in allowed if key in kv]
    if not given:
        names = [{'image': 'an image (multipart field "image", its bytes, or base64 JSON "image")',
                  'vector': 'a "vector"', 'text': 'a "text"', 'id': 'an item "id"'}[key]
                 for key in allowed]
        raise ServeError(400, 'Give %s: %s or %s.' % (what, ', '.join(names[:-1]), names[-1]))
    if len(given) > 1:
        raise ServeError(400, 'Give one query, not several (%s).' % ', '.join(given))
    return given[0], kv[given[0]], k, flt


def items_of(body, service):
    """The new items of a POST /items body: ``[(kind, value, metadata)]``."""
    limits = service.limits
    if body.source == 'json':
        f = body.fields
        if 'items' in f:
            if set(f) - {'items'}:
                raise ServeError(400, 'Give either "items" or one item\'s fields, not both.')
            entries = f['items']
            if not isinstance(entries, list) or not entries:
                raise ServeError(400, 'The field "items" must be a non-empty list of {"image" or '
                                      '"vector", "metadata"} objects.')
        else:
            entries = [f]
        if len(entries) > limits.max_items:
            raise ServeError(413, 'At most %d items a request (--max-items), got %d.'
                             % (limits.max_items, len(entries)))
        out = []
        for n, e in enumerate(entries):
            what = 'item %d' % n if len(entries) > 1 else 'the item'
            if not isinstance(e, dict):
                raise ServeError(400, '%s must be a JSON object.' % what.capitalize())
            unknown = sorted(set(e) - {'image', 'vector', 'metadata'})
            if unknown:
                raise ServeError(400, 'Unknown field %r in %s; the fields are image, vector, '
                                      'metadata.' % (unknown[0], what))
            meta = service.check_metadata(e.get('metadata'), 'The metadata of %s' % what)
            if (e.get('image') is None) == (e.get('vector') is None):
                raise ServeError(400, '%s needs an "image" (base64) or a "vector", one of them.'
                                 % what.capitalize())
            if e.get('image') is not None:
                out.append(('image', decode_base64(e['image']), meta))
            else:
                out.append(('vector', service.check_vector(e['vector']), meta))
        return out
    images = body.images
    if not images:
        raise ServeError(400, 'Give the images to add in multipart field "image" (repeatable).')
    if len(images) > limits.max_items:
        raise ServeError(413, 'At most %d items a request (--max-items), got %d.'
                         % (limits.max_items, len(images)))
    unknown = sorted(set(body.fields) - {'metadata'})
    if unknown:
        raise ServeError(400, 'Unknown field %r; POST /items takes "image" files and "metadata".'
                         % unknown[0])
    metas = [_json_value(m, 'metadata') for m in body.fields.get('metadata', [])]
    if len(metas) == 1:
        metas = metas * len(images)
    elif metas and len(metas) != len(images):
        raise ServeError(400, 'Give one "metadata" for all images or one per image; got %d for %d '
                              'images.' % (len(metas), len(images)))
    metas = metas or [None] * len(images)
    return [('image', data, service.check_metadata(m)) for data, m in zip(images, metas)]


def _validation_sentence(exc, service):
    errors = exc.errors()
    if not errors:
        return 'The request is not valid.'
    err = errors[0]
    loc = [str(x) for x in err.get('loc', ()) if x not in ('body', 'query', 'path')]
    if loc and loc[0] == 'k':
        try:
            service.check_k(err.get('input'))
        except ServeError as bad:
            return bad.message
    if loc and loc[0] == 'item_id':
        return 'An item id is an integer; got %r.' % str(err.get('input'))[:40]
    msg = str(err.get('msg', 'is not valid')).rstrip('.')
    return '%s: %s; got %s.' % ('Parameter %r' % '.'.join(loc) if loc else 'The request',
                                msg[:1].lower() + msg[1:],
                                json.dumps(err.get('input'), default=str)[:40])


# ---------------------------------------------------------------------------------------------
# the application
# ---------------------------------------------------------------------------------------------

def create_app(service):
    """The FastAPI application serving ``service``; its shutdown closes the service (the
    catalogue is saved)."""
    import gluon_dml
    limits = service.limits

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await run_in_threadpool(service.close)

    app = FastAPI(
        title='gluon-dml search service', version=gluon_dml.__version__, lifespan=lifespan,
        default_response_class=JSONResponse,
        description='Search a catalogue made by `gluon-dml index` by image, vector, text or item '
                    'id; embed; add and remove items. Every refusal is a 4xx answer '
                    '`{"error": "one sentence"}`. The page to try it is at `/`.')
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_upload_bytes)

    def error(status, message, headers=None):
        return JSONResponse({'error': message}, status_code=status, headers=headers)

    @app.exception_handler(ServeError)
    async def _serve_error(request, exc):
        return error(exc.status, exc.message)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request, exc):
        return error(413, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):
        return error(422, _validation_sentence(exc, service))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        if exc.status_code == 404:
            message = 'There is no %s here; the API is described at /docs.' % request.url.path[:80]
        elif exc.status_code == 405:
            message = '%s is not allowed on %s.' % (request.method, request.url.path[:80])
        else:
            message = str(exc.detail).rstrip('.') + '.'
        return error(exc.status_code, message, getattr(exc, 'headers', None))

    @app.exception_handler(Exception)
    async def _crash(request, exc):
        return error(500, 'The service failed on this request (%s); it keeps serving.'
                     % type(exc).__name__)

    # -- embedding helpers ---------------------------------------------------------------------
    async def prepare(data, what='The upload'):
        return await run_in_threadpool(service.prepare_image, data, what)

    async def embed(kind, value):
        if kind == 'vector':
            return service.check_vector(value)
        if kind == 'image':
            array, _ = await prepare(value)
            future = service.submit_image(array)
        else:
            future = service.submit_text(value)
        return await asyncio.wrap_future(future)

    # -- routes --------------------------------------------------------------------------------
    @app.get('/', response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE)

    @app.get('/health', response_model=Health, summary='Liveness: status and item count')
    async def health():
        return JSONResponse(service.health())

    @app.get('/info', summary='The catalogue: model, method, dimension, index, items, limits')
    async def info():
        return JSONResponse(await run_in_threadpool(service.info))

    @app.post('/search', responses={**_ERRORS, 200: {'model': SearchResponse}},
              openapi_extra=_query_body_doc('SearchRequest', {
                  'k': {'type': 'integer'}, 'filter': {'type': 'string', 'description':
                                                       'FIELD=VALUE or a JSON object'}}),
              summary='The k nearest items to an image, a vector, a text or an item')
    async def search(request: Request,
                     k: Optional[int] = Query(None, ge=1, le=limits.max_k,
                                              description='hits (default %d, at most %d)'
                                              % (limits.default_k, limits.max_k)),
                     filter: Optional[List[str]] = Query(None, description='FIELD=VALUE '
                                                         '(repeatable), e.g. label=3')):
        body = await read_body(request, limits)
        kind, value, body_k, body_filter = query_of(body, QUERY_KINDS)
        k = service.check_k(body_k if body_k is not None else k)
        flt = service.check_filter(body_filter if body_filter is not None
                                   else filter_from_strings(filter))
        t0 = time.perf_counter()
        if kind == 'id':
            hits = await run_in_threadpool(service.search_id, value, k, flt)
        else:
            vector = await embed(kind, value)
            hits = await run_in_threadpool(service.search_vector, vector, k, flt)
        return JSONResponse({'hits': hits, 'k': k, 'count': len(service.catalog.index),
                             'took_ms': round(1000 * (time.perf_counter() - t0), 3)})

    @app.post('/embed', responses={**_ERRORS, 200: {'model': EmbedResponse}},
              openapi_extra=_query_body_doc('SearchRequest', {}),
              summary="The network's embedding of an image or a text (or an item's stored "
                      "vector)")
    async def embed_route(request: Request):
        body = await read_body(request, limits)
        if request.query_params:
            raise ServeError(400, 'POST /embed takes no query parameters (got %r): k and filter '
                                  'are options of POST /search.' % next(iter(request.query_params)))
        kind, value, _, _ = query_of(body, ('image', 'text', 'id'), 'an image, a text or an id',
                                     options=())
        if kind == 'id':
            vector = await run_in_threadpool(service.stored_vector, value)
        else:
            vector = await embed(kind, value)
        vector = [float(x) for x in vector]
        if service.catalog.kind == 'binary':
            vector = [1 if x > 0 else -1 for x in vector]
        return JSONResponse({'vector': vector, 'dim': len(vector), 'kind': service.catalog.kind})

    @app.get('/items', response_model=ItemsPage,
             summary='Items of the catalogue, by id from offset; or a random sample')
    async def items(offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=1000),
                    sample: Optional[int] = Query(None, ge=1, le=1000,
                                                  description='n items drawn at random instead')):
        return JSONResponse(await run_in_threadpool(service.list_items, offset, limit, sample))

    @app.post('/items', status_code=201, responses={**_ERRORS, 201: {'model': AddResponse}},
              openapi_extra={'requestBody': {'required': True, 'content': {
                  'multipart/form-data': {'schema': {'type': 'object', 'properties': {
                      'image': {'type': 'array', 'items': {'type': 'string', 'format': 'binary'}},
                      'metadata': {'type': 'string', 'description': 'a JSON object for all the '
                                   'images, or one per image'}}}},
                  'application/json': {'schema': {'anyOf': [
                      {'$ref': '#/components/schemas/AddRequest'},
                      {'$ref': '#/components/schemas/NewItem'}]}},
                  'image/*': {'schema': {'type': 'string', 'format': 'binary'}}}}},
              summary='Add images (stored in the catalogue) or vectors, with metadata')
    async def add_items(request: Request):
        body = await read_body(request, limits)
        entries = items_of(body, service)
        prepared = []
        for n, (kind, value, meta) in enumerate(entries):
            if kind == 'image':
                what = 'Upload %d' % n if len(entries) > 1 else 'The upload'
                array, ext = await prepare(value, what)
                prepared.append({'future': service.submit_image(array), 'image': value,
                                 'ext': ext, 'metadata': meta})
            else:
                prepared.append({'vector': value, 'metadata': meta})
        for e in prepared:
            if 'future' in e:
                e['vector'] = await asyncio.wrap_future(e.pop('future'))
        added = await run_in_threadpool(service.add, prepared)
        return JSONResponse({'items': added, 'count': len(service.catalog.index)}, status_code=201)

    @app.get('/items/{item_id}', response_model=ItemModel, responses=_ERRORS,
             summary="An item's metadata")
    async def get_item(item_id: int = Path(description='the item id')):
        return JSONResponse(await run_in_threadpool(service.get_item, item_id))

    @app.get('/items/{item_id}/image', responses=_ERRORS,
             summary="An item's image (the file the catalogue holds for it; PNG for formats "
                     "browsers do not show, RGB for a CMYK JPEG), or a thumbnail")
    async def item_image(item_id: int = Path(description='the item id'),
                         size: Optional[int] = Query(None, ge=16, le=2048,
                                                     description='fit in size x size pixels')):
        kind, value, media = await run_in_threadpool(service.image_of, item_id, size)
        if kind == 'file':
            return FileResponse(value, media_type=media, headers=_CACHE)
        return Response(value, media_type=media, headers=_CACHE)

    @app.delete('/items/{item_id}', response_model=DeleteResponse, responses=_ERRORS,
                summary='Remove an item (and its uploaded image)')
    async def delete_item(item_id: int = Path(description='the item id')):
        item = await run_in_threadpool(service.remove, item_id)
        return JSONResponse({'deleted': item, 'count': len(service.catalog.index)})

    def openapi():
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault('components', {}).setdefault('schemas', {})
            for model in (SearchRequest, AddRequest, NewItem):
                s = model.model_json_schema(ref_template='#/components/schemas/{model}')
                components.update(s.pop('$defs', {}))
                components[model.__name__] = s
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app

