"""An HTTP service and a web page over a catalogue (``gluon-dml serve catalog/ --port 8080``).

Endpoints (docs/serve.md has the examples; ``/openapi.json`` and ``/docs`` the schema):

======================  ========================================================================
GET  /                  the page: upload or pick an image, see the top-k items
GET  /health            ``{"status": "ok", "count", "image_queries", "uptime_s"}``
GET  /info              model, method, dimension, kind, metric, index type, backend, item count,
                        limits and the batcher's statistics
POST /search            one query (multipart field ``image``; the image bytes as ``image/*``; or
                        JSON with a base64 ``image``, a ``vector``, a ``text`` or an ``id``);
                        ``k`` and ``filter`` as query parameters or body fields ->
                        ``{"hits": [...], "k", "count", "took_ms"}``, ``hits`` as
                        ``gluon-dml search --json`` prints them
POST /embed             an image, a text or an item id -> ``{"vector", "dim", "kind"}``
GET  /items             ``?offset=&limit=`` -> ``{"count", "offset", "items"}``
POST /items             add images (multipart ``image`` files and ``metadata`` JSON, or JSON
                        ``{"items": [{"image" | "vector", "metadata"}]}``) -> 201
                        ``{"items": [{"id", "path", "label", "metadata"}], "count"}``
GET  /items/{id}        ``{"id", "path", "label", "metadata"}``
GET  /items/{id}/image  the item's image (``?size=N``: a thumbnail)
DELETE /items/{id}      ``{"deleted": {...}, "count"}``
======================  ========================================================================

Refusals are 4xx answers ``{"error": "one sentence"}``: 400 (not an image, bad JSON or base64,
a vector of the wrong dimension, no query or several), 404 (unknown id or route), 405, 413 (a
body over ``--max-upload-mb``, an image over ``--max-pixels``), 415 (a content type other than
multipart, JSON or an image), 422 (``k`` outside 1..``--max-k``, a parameter of the wrong type).

Pieces: :class:`Service` (the catalogue, the checks, the saves; no HTTP), :class:`MicroBatcher`
(concurrent queries through the network together), :func:`create_app` (the FastAPI routes; needs
the ``serve`` extra: ``pip install -e ".[serve]"``).
"""
from .batcher import BatcherClosed, MicroBatcher
from .errors import ServeError
from .service import Limits, Service

__all__ = ['Service', 'Limits', 'MicroBatcher', 'BatcherClosed', 'ServeError', 'create_app']


def create_app(service):
    """The FastAPI application of ``service`` (see :mod:`gluon_dml.serve.app`)."""
    from .app import create_app as make
    return make(service)
