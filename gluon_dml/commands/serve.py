"""Serve a catalogue over HTTP: a search API and a page to try it.

    gluon-dml serve catalog/ --port 8080                 # http://127.0.0.1:8080/
    gluon-dml serve catalog/ --host 0.0.0.0 --port 8080 --max-batch 64 --max-delay-ms 10

``GET /`` is a page: upload or pick an image, see the top-k items. The API (``/docs``,
``/openapi.json``; docs/serve.md): ``GET /health``, ``GET /info``, ``POST /search`` (an image,
a vector, a text or an item id), ``POST /embed``, ``GET /items``, ``POST /items``,
``GET /items/{id}``, ``GET /items/{id}/image``, ``DELETE /items/{id}``. Changes are saved into the
catalogue (atomically) before they are answered, or every ``--save-delay`` seconds, and when the
service stops (SIGINT / SIGTERM); ids are never reused, even after a crash, and on start the
upload files of items a crash lost are removed. Concurrent image and text queries go through the
network together, up to ``--max-batch`` at a time after waiting at most ``--max-delay-ms`` for
company.
Prints the address once the network is loaded and the port is open.
"""
import argparse
import signal
import socket
import sys

from .. import cli

__all__ = ['main']


def build_parser():
    p = argparse.ArgumentParser(prog='gluon-dml serve', description=__doc__.splitlines()[0])
    p.add_argument('catalog', help='a catalogue folder made by gluon-dml index')
    p.add_argument('--host', default='127.0.0.1',
                   help='address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: '
                        'every interface)')
    p.add_argument('--port', type=int, default=8080, help='port (default 8080; 0: any free port)')
    p.add_argument('--max-batch', type=int, default=32,
                   help='queries the network embeds at once (default 32)')
    p.add_argument('--max-delay-ms', type=float, default=5.0,
                   help='how long a query waits for others to batch with (default 5 ms)')
    p.add_argument('--max-k', type=int, default=1000,
                   help='the largest k a query may ask for (default 1000)')
    p.add_argument('--max-upload-mb', type=float, default=10.0,
                   help='the largest request body, in MiB (default 10)')
    p.add_argument('--max-pixels', type=int, default=40000000,
                   help='the largest image, width x height, decoded (default 40,000,000)')
    p.add_argument('--max-items', type=int, default=64,
                   help='items one POST /items may add (default 64)')
    p.add_argument('--save-delay', type=float, default=0.0,
                   help='0: save every change before answering it (default); S > 0: save at most '
                        'every S seconds and on stopping (large catalogues)')
    p.add_argument('--max-connections', type=int, default=512,
                   help='concurrent connections before answering 503 (default 512)')
    p.add_argument('--access-log', action='store_true', help='log every request to stderr')
    p.add_argument('--uri', default=None, help='Milvus: reach the collection at this address')
    p.add_argument('--gpus', default='', help='GPU ids, "" for the CPU')
    cli.add_fusion_flag(p)
    cli.add_threads_flag(p)
    return p


def _check(a):
    if not 0 <= a.port <= 65535:
        raise cli.UserError('--port must be 0-65535, got %d.' % a.port)
    for name in ('max_batch', 'max_k', 'max_pixels', 'max_items', 'max_connections'):
        if getattr(a, name) < 1:
            raise cli.UserError('--%s must be >= 1, got %s.' % (name.replace('_', '-'), getattr(a, name)))
    for name in ('max_delay_ms', 'save_delay'):
        if getattr(a, name) < 0:
            raise cli.UserError('--%s must be >= 0, got %s.' % (name.replace('_', '-'), getattr(a, name)))
    if a.max_upload_mb <= 0:
        raise cli.UserError('--max-upload-mb must be > 0, got %s.' % a.max_upload_mb)


def listen(host, port):
    """A listening TCP socket on ``host:port`` (port 0: one the system picks)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise cli.UserError('--host %s is not an address of this machine (%s).'
                            % (host, err.strerror)) from None
    family, kind, proto, _, address = infos[0]
    # the protocol number matters: asyncio sets TCP_NODELAY only on sockets whose proto is TCP,
    # and without it every keep-alive answer waits ~40 ms (Nagle + delayed ACK)
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(1024)
    except OSError as err:
        sock.close()
        raise cli.UserError('Cannot listen on %s port %d (%s); choose another --port.'
                            % (host, port, err.strerror or err)) from None
    return sock


def main(argv=None):
    a = build_parser().parse_args(argv)
    _check(a)
    # SIGINT / SIGTERM from now on stop the service cleanly: while it loads they are noted (it
    # stops once loaded, without serving); uvicorn handles them while it serves (a graceful
    # stop), then raises them again against these handlers, so the command ends normally
    stop = {'signals': [], 'server': None}

    def on_signal(signum, frame):
        stop['signals'].append(signum)
        if stop['server'] is not None:
            stop['server'].should_exit = True
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        sock = listen(a.host, a.port)        # a busy port fails at once, before anything loads
        try:
            return _serve(a, sock, stop)
        finally:
            sock.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(a, sock, stop):
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise cli.UserError('gluon-dml serve needs FastAPI, uvicorn and python-multipart: '
                            'pip install -e ".[serve]" (%s).' % err) from None
    from ..catalog import lock_catalog, open_catalog, release_lock
    from ..engine import get_contexts

    lock = lock_catalog(a.catalog)           # the service is the catalogue's one writer
    try:
        return _serve_locked(a, sock, stop, open_catalog(a.catalog, get_contexts(a.gpus), a.uri,
                                                         fuse=not a.no_fusion))
    finally:
        release_lock(lock)


def _serve_locked(a, sock, stop, cat):
    import uvicorn
    import warnings
    from PIL import Image
    from ..serve import Limits, Service, create_app

    limits = Limits(max_k=a.max_k, default_k=min(10, a.max_k),
                    max_upload_bytes=int(a.max_upload_mb * 2 ** 20), max_pixels=a.max_pixels,
                    max_items=a.max_items)
    service = Service(cat, max_batch=a.max_batch, max_delay_ms=a.max_delay_ms, limits=limits,
                      save_delay=a.save_delay)
    try:
        if service.encoder_error:
            print('warning: %s Serving searches by vector and id only.' % service.encoder_error,
                  file=sys.stderr)
        orphans = service.remove_orphan_uploads()
        if orphans:
            print('removed %d file%s of %s that no item names (images of items added after the '
                  'last save of a service that was killed): %s'
                  % (len(orphans), '' if len(orphans) == 1 else 's', service.uploads,
                     ', '.join(orphans[:5]) + (', ...' if len(orphans) > 5 else '')), flush=True)
        # the service checks --max-pixels itself, before decoding; PIL's warning is noise here
        warnings.filterwarnings('ignore', category=Image.DecompressionBombWarning)
        stop['server'] = uvicorn.Server(uvicorn.Config(
            create_app(service), log_level='info' if a.access_log else 'warning',
            access_log=a.access_log, lifespan='on', limit_concurrency=a.max_connections,
            timeout_graceful_shutdown=10, server_header=False))
        if not stop['signals']:
            port = sock.getsockname()[1]
            host = '[%s]' % a.host if ':' in a.host else a.host
            url = 'http://%s:%d' % (host, port)
            info = service.info()
            print('serving %s (%d items; %s run, %d-d %s, %s %s index) at %s/ (API: %s/docs)'
                  % (a.catalog, info['count'], info['method'], info['dim'], info['kind'],
                     info['backend'], info['index_type'], url, url), flush=True)
            stop['server'].run(sockets=[sock])
    finally:
        service.close()            # idempotent: the app's shutdown has closed it when it served
    count = service.count_at_close
    why = ' (%s)' % signal.Signals(stop['signals'][0]).name if stop['signals'] else ''
    print('stopped%s; the catalogue %s is saved (%d items).' % (why, a.catalog, count), flush=True)
