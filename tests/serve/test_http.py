"""``gluon-dml serve`` as a real process queried over HTTP: every endpoint, the bad requests
(each a 4xx answer with one sentence, the service alive after them), batching of concurrent
queries, and changes that survive a restart."""
import base64
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
import requests

from ..helpers import REPO, script_env
from .conftest import CATALOG_IMAGES, bomb_png, gluon_dml, write_digits

HIT_KEYS = {'id', 'path', 'score', 'distance', 'label', 'metadata'}


def png(digits_catalog, index):
    """The bytes of catalogue image ``index`` (written by write_digits: images/CLASS/NNNN.png)."""
    images = str(digits_catalog[1])
    for cls in os.listdir(images):
        path = os.path.join(images, cls, '%04d.png' % index)
        if os.path.exists(path):
            with open(path, 'rb') as f:
                return path, f.read()
    raise KeyError(index)


def assert_refused(r, status):
    """A 4xx answer ``{"error": "one sentence"}`` with the expected status."""
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers['content-type'].startswith('application/json'), r.headers['content-type']
    body = r.json()
    assert list(body) == ['error'], body
    msg = body['error']
    assert isinstance(msg, str) and 10 < len(msg) < 300, msg
    assert msg[0].isupper() or msg.split()[0] in ('k', 'filter', 'text', 'id', 'vector'), msg
    assert msg.endswith('.') and '\n' not in msg and 'Traceback' not in msg, msg
    return msg


def test_health_info_page_and_openapi(shared_server):
    url = shared_server.url
    health = requests.get(url + '/health', timeout=30).json()
    assert health['status'] == 'ok' and health['count'] == CATALOG_IMAGES and health['image_queries']
    info = requests.get(url + '/info', timeout=30).json()
    assert (info['model'], info['method'], info['dim'], info['kind']) == ('smallconv', 'margin', 64, 'float')
    assert (info['backend'], info['index_type'], info['metric']) == ('faiss', 'flat', 'ip')
    assert info['count'] == CATALOG_IMAGES and info['text_queries'] is False
    assert info['limits']['max_k'] == 1000 and info['limits']['max_upload_bytes'] == 2 ** 20
    assert info['batching']['max_batch'] == 8 and info['batching']['max_delay_ms'] == 40
    page = requests.get(url + '/', timeout=30)
    assert page.headers['content-type'].startswith('text/html')
    assert '<input id="file" type="file"' in page.text and 'http' not in page.text.split('<script>')[1]
    schema = requests.get(url + '/openapi.json', timeout=30).json()
    assert {'/health', '/info', '/search', '/embed', '/items', '/items/{item_id}',
            '/items/{item_id}/image'} <= set(schema['paths'])
    body = schema['paths']['/search']['post']['requestBody']['content']
    assert {'multipart/form-data', 'application/json', 'image/*'} <= set(body)
    assert 'SearchRequest' in schema['components']['schemas']
    assert '/docs' in shared_server.stdout()


def test_the_listening_socket_is_tcp_so_connections_get_nodelay():
    """The listening socket is created with the TCP protocol number, so asyncio sets TCP_NODELAY
    on each connection it accepts: without it every answer on a kept-alive connection waited
    ~40 ms (Nagle's algorithm holding the body until the client's delayed ACK of the headers).
    The latency itself is measured by bench/load_test.py, not here."""
    import asyncio
    from gluon_dml.commands.serve import listen
    sock = listen('127.0.0.1', 0)
    assert sock.proto == socket.IPPROTO_TCP
    port = sock.getsockname()[1]
    seen = []

    async def main():
        async def handle(reader, writer):
            seen.append(writer.get_extra_info('socket').getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()
        server = await asyncio.start_server(handle, sock=sock)
        _, writer = await asyncio.open_connection('127.0.0.1', port)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.05)
        writer.close()
        server.close()
    asyncio.run(main())
    assert seen and seen[0] != 0


def test_search_by_upload_base64_bytes_vector_and_id(shared_server, digits_catalog):
    url, cat = shared_server.url, digits_catalog[2]
    path, data = png(digits_catalog, 3)
    upload = requests.post(url + '/search', params={'k': 5}, files={'image': ('q.png', data)}, timeout=60)
    assert upload.status_code == 200, upload.text
    res = upload.json()
    hits = res['hits']
    assert res['k'] == 5 and res['count'] == CATALOG_IMAGES and len(hits) == 5
    assert all(set(h) == HIT_KEYS for h in hits)
    assert hits[0]['path'] == path and hits[0]['score'] > 0.999    # the image finds itself
    assert hits[0]['label'] == '3' and hits[0]['metadata'] == {'path': path, 'label': '3'}
    scores = [h['score'] for h in hits]
    assert scores == sorted(scores, reverse=True)
    ids = [h['id'] for h in hits]

    b64 = requests.post(url + '/search', json={'image': base64.b64encode(data).decode(), 'k': 5},
                        timeout=60).json()['hits']
    raw = requests.post(url + '/search?k=5', data=data, headers={'Content-Type': 'image/png'},
                        timeout=60).json()['hits']
    data_url = requests.post(url + '/search', json={'k': 5, 'image': 'data:image/png;base64,'
                                                    + base64.b64encode(data).decode()}, timeout=60)
    assert [h['id'] for h in b64] == [h['id'] for h in raw] == [h['id'] for h in data_url.json()['hits']] == ids

    emb = requests.post(url + '/embed', files={'image': data}, timeout=60).json()
    assert emb['dim'] == 64 and emb['kind'] == 'float' and len(emb['vector']) == 64
    assert abs(np.linalg.norm(emb['vector']) - 1) < 1e-4                 # a normalised embedding
    stored = requests.post(url + '/embed', json={'id': ids[0]}, timeout=60).json()['vector']
    np.testing.assert_allclose(emb['vector'], stored, atol=1e-5)
    by_vector = requests.post(url + '/search', json={'vector': emb['vector'], 'k': 5}, timeout=60).json()
    assert [h['id'] for h in by_vector['hits']] == ids

    # search by id: the same hit list as the command line's gluon-dml search --json
    by_id = requests.post(url + '/search', json={'id': ids[0], 'k': 4}, timeout=60).json()['hits']
    assert ids[0] not in [h['id'] for h in by_id] and len(by_id) == 4
    cli = subprocess.run(gluon_dml('search', cat, '--id', ids[0], '-k', 4, '--json'), cwd=REPO,
                         capture_output=True, text=True, timeout=120, env=script_env(OMP_NUM_THREADS='1'))
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == by_id

    # filters: a query parameter (repeatable FIELD=VALUE) or a JSON object; numbers match text
    eights = requests.post(url + '/search', params={'k': 7, 'filter': 'label=8'},
                           files={'image': data}, timeout=60).json()['hits']
    assert len(eights) == 7 and {h['label'] for h in eights} == {'8'}
    either = requests.post(url + '/search', json={'id': ids[0], 'k': 50, 'filter': {'label': [1, '7']}},
                           timeout=60).json()['hits']
    assert len(either) == 50 and {h['label'] for h in either} == {'1', '7'}
    everything = requests.post(url + '/search', json={'id': ids[0], 'k': 1000}, timeout=60).json()
    assert len(everything['hits']) == CATALOG_IMAGES - 1                 # k is capped by the catalogue

    item = requests.get('%s/items/%d' % (url, ids[0]), timeout=30).json()
    assert item == {'id': ids[0], 'path': path, 'label': '3', 'metadata': {'path': path, 'label': '3'}}
    image = requests.get('%s/items/%d/image' % (url, ids[0]), timeout=30)
    assert image.headers['content-type'] == 'image/png' and image.content == data
    thumb = requests.get('%s/items/%d/image?size=16' % (url, ids[0]), timeout=30)
    from PIL import Image
    import io
    assert Image.open(io.BytesIO(thumb.content)).size == (16, 16)
    page = requests.get(url + '/items', params={'offset': 10, 'limit': 5}, timeout=30).json()
    assert page['count'] == CATALOG_IMAGES and [i['id'] for i in page['items']] == list(range(10, 15))
    sample = requests.get(url + '/items', params={'sample': 6}, timeout=30).json()['items']
    assert len({i['id'] for i in sample}) == 6 and all(i['path'] for i in sample)


def test_concurrent_queries_are_batched_and_answer_as_alone(shared_server, digits_catalog):
    url = shared_server.url
    queries = [png(digits_catalog, i)[1] for i in range(20, 36)]

    def search(data):
        r = requests.post(url + '/search?k=3', files={'image': data}, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()['hits']

    alone = [search(q) for q in queries]                  # one at a time: batches of one
    before = requests.get(url + '/info', timeout=30).json()['batching']
    barrier = threading.Barrier(len(queries))

    def together(data):
        barrier.wait(30)
        return search(data)
    with concurrent.futures.ThreadPoolExecutor(len(queries)) as pool:
        batched = list(pool.map(together, queries))
    after = requests.get(url + '/info', timeout=30).json()['batching']
    assert after['queries'] - before['queries'] == len(queries)
    assert after['batches'] - before['batches'] < len(queries), (before, after)
    assert after['largest_batch'] >= 2 and after['largest_batch'] <= 8
    for one, many in zip(alone, batched):
        assert [h['id'] for h in one] == [h['id'] for h in many]
        np.testing.assert_allclose([h['score'] for h in one], [h['score'] for h in many], atol=1e-5)


def _bad_requests(url, data, truncated):
    """(name, expected status, a function sending the request[, a part of the answer])."""
    post = requests.post
    vec = [0.1] * 64
    return [
        ('not an image (multipart)', 400, lambda: post(url + '/search', files={'image': ('a.png', b'hello, this is text')})),
        ('not an image (bytes)', 400, lambda: post(url + '/search', data=b'\x00\x01garbage', headers={'Content-Type': 'image/jpeg'})),
        ('truncated PNG', 400, lambda: post(url + '/search', files={'image': ('t.png', truncated)})),
        ('decompression bomb', 413, lambda: post(url + '/search', files={'image': ('b.png', bomb_png(100000, 100000))})),
        ('over --max-pixels', 413, lambda: post(url + '/search', files={'image': ('b.png', bomb_png(8000, 8000))})),
        ('bomb added as an item', 413, lambda: post(url + '/items', files={'image': ('b.png', bomb_png(30000, 30000))})),
        ('empty body', 400, lambda: post(url + '/search')),
        ('empty JSON body', 400, lambda: post(url + '/search', data=b'', headers={'Content-Type': 'application/json'})),
        ('empty upload', 400, lambda: post(url + '/search', files={'image': ('e.png', b'')})),
        ('empty JSON object', 400, lambda: post(url + '/search', json={})),
        ('vector of the wrong dimension', 400, lambda: post(url + '/search', json={'vector': [0.5] * 63})),
        ('vector of text', 400, lambda: post(url + '/search', json={'vector': ['a'] * 64})),
        ('vector with NaN', 400, lambda: post(url + '/search', data='{"vector": [NaN%s]}' % (', 0.1' * 63), headers={'Content-Type': 'application/json'})),
        ('k of 0', 422, lambda: post(url + '/search?k=0', json={'vector': vec})),
        ('k of a million', 422, lambda: post(url + '/search?k=1000000', json={'vector': vec})),
        ('k of text', 422, lambda: post(url + '/search?k=ten', json={'vector': vec})),
        ('JSON k of 0', 422, lambda: post(url + '/search', json={'vector': vec, 'k': 0})),
        ('JSON k of 2.5', 422, lambda: post(url + '/search', json={'vector': vec, 'k': 2.5})),
        ('multipart k of a million', 422, lambda: post(url + '/search', files={'image': data}, data={'k': '1000000'})),
        ('unknown id (search)', 404, lambda: post(url + '/search', json={'id': 123456})),
        ('unknown id (get)', 404, lambda: requests.get(url + '/items/123456')),
        ('unknown id (image)', 404, lambda: requests.get(url + '/items/123456/image')),
        ('unknown id (delete)', 404, lambda: requests.delete(url + '/items/123456')),
        ('negative id', 404, lambda: post(url + '/search', json={'id': -4})),
        ('id of text', 422, lambda: requests.get(url + '/items/twelve')),
        ('wrong content type', 415, lambda: post(url + '/search', data='id=3', headers={'Content-Type': 'text/plain'})),
        ('no content type', 415, lambda: post(url + '/search', data=b'{"id": 3}')),
        ('XML', 415, lambda: post(url + '/items', data='<item/>', headers={'Content-Type': 'application/xml'})),
        ('malformed JSON', 400, lambda: post(url + '/search', data='{"id": 3', headers={'Content-Type': 'application/json'})),
        ('JSON not an object', 400, lambda: post(url + '/search', json=[1, 2])),
        ('deeply nested JSON', 400, lambda: post(url + '/search', data='[' * 100000, headers={'Content-Type': 'application/json'})),
        ('bad base64', 400, lambda: post(url + '/search', json={'image': '%%%not base64%%%'})),
        ('two queries', 400, lambda: post(url + '/search', json={'id': 3, 'vector': vec})),
        ('unknown field', 400, lambda: post(url + '/search', json={'id': 3, 'kk': 3})),
        ('text on a margin catalogue', 400, lambda: post(url + '/search', json={'text': 'a seven'})),
        ('filter of objects', 400, lambda: post(url + '/search', json={'id': 3, 'filter': {'label': {'a': 1}}})),
        ('filter without =', 400, lambda: post(url + '/search?filter=label', json={'id': 3})),
        ('filter with an empty field name', 400, lambda: post(url + '/search', json={'id': 3, 'filter': {'': '4'}})),
        ('multipart without boundary', 400, lambda: post(url + '/search', data=b'abc', headers={'Content-Type': 'multipart/form-data'})),
        ('image field as text', 400, lambda: post(url + '/search', files={'image': (None, 'abc')})),
        ('form-urlencoded', 415, lambda: post(url + '/search', data={'id': '3'})),
        ('body over --max-upload-mb', 413, lambda: post(url + '/search', data=b'\x89PNG' * (400 * 1024), headers={'Content-Type': 'image/png'})),
        ('chunked body over --max-upload-mb', 413, lambda: post(url + '/search', data=iter([b'x' * 2 ** 16] * 24), headers={'Content-Type': 'image/png'})),
        ('unknown route', 404, lambda: requests.get(url + '/nothing/here')),
        ('wrong method', 405, lambda: requests.get(url + '/search')),
        ('item that sets path', 400, lambda: post(url + '/items', json={'vector': vec, 'metadata': {'path': '/etc/passwd'}})),
        ('item without image or vector', 400, lambda: post(url + '/items', json={'metadata': {'a': 1}})),
        ('items of a wrong count of metadata', 400, lambda: post(url + '/items', files=[('image', data), ('image', data)], data={'metadata': ['{}', '{}', '{}']})),
        ('metadata with NaN', 400, lambda: post(url + '/items', data='{"vector": [0.1%s], "metadata": {"x": NaN}}' % (', 0.1' * 63), headers={'Content-Type': 'application/json'})),
        ('multipart k of 5000 digits', 422, lambda: post(url + '/search', files={'image': data}, data={'k': '9' * 5000})),
        ('multipart id of 5000 digits', 400, lambda: post(url + '/search', files={'id': (None, '9' * 5000)})),
        ('too many items', 413, lambda: post(url + '/items', json={'items': [{'vector': vec}] * 65})),
        ('thumbnail size 0', 422, lambda: requests.get(url + '/items/3/image?size=0')),
        ('vector beyond float32', 400, lambda: post(url + '/search', json={'vector': [1e39] + vec[1:]}),
         'holds values beyond the float32 range of the index'),
        ('item vector beyond float32', 400, lambda: post(url + '/items', json={'vector': [-1e300] + vec[1:]}),
         'holds values beyond the float32 range of the index'),
        ('metadata nested 41 deep', 400, lambda: post(url + '/items', data='{"vector": %s, "metadata": {"a": %s1%s}}' % (vec, '[' * 40, ']' * 40), headers={'Content-Type': 'application/json'}),
         'The metadata of the item nests objects and lists 41 levels deep; at most 32.'),
        ('embed with k', 400, lambda: post(url + '/embed', json={'id': 3, 'k': 5}),
         "Unknown field 'k'; the fields are id, image, text."),
        ('embed with a filter', 400, lambda: post(url + '/embed', files={'image': data}, data={'filter': 'label=3'}),
         "Unknown field 'filter'"),
        ('embed with a query parameter', 400, lambda: post(url + '/embed?k=5', json={'id': 3}),
         "POST /embed takes no query parameters (got 'k')"),
    ]


def test_bad_requests_get_a_4xx_sentence_and_the_service_lives(shared_server, digits_catalog):
    url = shared_server.url
    _, data = png(digits_catalog, 5)
    for name, status, send, *sentence in _bad_requests(url, data, data[:len(data) // 2]):
        r = send()
        msg = assert_refused(r, status)
        assert not sentence or sentence[0] in msg, (name, msg)
        assert shared_server.alive(), name
        print('%-36s %d %s' % (name, status, msg))
    health = requests.get(url + '/health', timeout=30).json()
    assert health['status'] == 'ok' and health['count'] == CATALOG_IMAGES   # nothing was added
    ok = requests.post(url + '/search', files={'image': data}, timeout=60)
    assert ok.status_code == 200 and ok.json()['hits'][0]['score'] > 0.999
    assert 'Traceback' not in shared_server.stderr(), shared_server.stderr()[-3000:]


def test_changes_are_saved_and_survive_a_restart(catalog_copy, serve, digits_catalog, tmp_path):
    new = write_digits(tmp_path / 'new', [1500, 1501, 1502, 1503])
    blobs = [open(p, 'rb').read() for p in new]
    server = serve(catalog_copy)
    url = server.url
    # two uploads with one metadata each, one base64 item with its own metadata
    r = requests.post(url + '/items', files=[('image', ('a.png', blobs[0])), ('image', ('b.png', blobs[1]))],
                      data={'metadata': [json.dumps({'sku': 'A-17', 'label': 'new'}),
                                         json.dumps({'sku': 'A-18'})]}, timeout=60)
    assert r.status_code == 201, r.text
    added = r.json()['items']
    assert r.json()['count'] == CATALOG_IMAGES + 2
    assert [a['id'] for a in added] == [CATALOG_IMAGES, CATALOG_IMAGES + 1]
    assert added[0]['label'] == 'new' and added[0]['metadata']['sku'] == 'A-17'
    stored = added[0]['path']
    assert os.path.dirname(stored) == str(catalog_copy / 'uploads') and open(stored, 'rb').read() == blobs[0]
    r = requests.post(url + '/items', json={'items': [{'image': base64.b64encode(blobs[2]).decode(),
                                                       'metadata': {'sku': 'B-2', 'stock': 4}}]}, timeout=60)
    assert r.status_code == 201, r.text
    third = r.json()['items'][0]
    # the new items are found: by their image, and by a filter on their metadata
    hits = requests.post(url + '/search', params={'k': 1}, files={'image': blobs[0]}, timeout=60).json()['hits']
    assert hits[0]['id'] == added[0]['id'] and hits[0]['score'] > 0.999
    skus = requests.post(url + '/search', json={'id': 0, 'k': 10, 'filter': {'sku': ['A-17', 'B-2']}},
                         timeout=60).json()['hits']
    assert sorted(h['id'] for h in skus) == sorted([added[0]['id'], third['id']])
    # removals: an original item, and an uploaded one (its file goes too)
    assert requests.delete(url + '/items/0', timeout=30).json()['deleted']['id'] == 0
    gone = requests.delete('%s/items/%d' % (url, added[1]['id']), timeout=30).json()['deleted']
    assert not os.path.exists(gone['path'])
    assert_refused(requests.get(url + '/items/0', timeout=30), 404)
    assert server.stop(signal.SIGTERM) == 0
    assert 'stopped (SIGTERM); the catalogue %s is saved (%d items).' % (catalog_copy, CATALOG_IMAGES + 1) \
        in server.stdout(), server.stdout() + server.stderr()

    again = serve(catalog_copy, '--save-delay', '3600')
    url = again.url
    assert requests.get(url + '/health', timeout=30).json()['count'] == CATALOG_IMAGES + 1
    assert requests.get('%s/items/%d' % (url, added[0]['id']), timeout=30).json() == added[0]
    assert requests.get('%s/items/%d' % (url, third['id']), timeout=30).json()['metadata']['stock'] == 4
    assert requests.get('%s/items/%d/image' % (url, added[0]['id']), timeout=30).content == blobs[0]
    for removed in (0, added[1]['id']):
        assert_refused(requests.get('%s/items/%d' % (url, removed), timeout=30), 404)
    hits = requests.post(url + '/search', params={'k': 1, 'filter': 'sku=A-17'}, files={'image': blobs[0]},
                         timeout=60).json()['hits']
    assert [h['id'] for h in hits] == [added[0]['id']]
    r = requests.post(url + '/items', files={'image': blobs[3]}, timeout=60)
    assert r.json()['items'][0]['id'] == third['id'] + 1                 # ids are not reused
    # with --save-delay, changes are saved every S seconds and when the service stops
    r = requests.post(url + '/items', json={'vector': [0.125] * 64, 'metadata': {'kind': 'vector'}}, timeout=60)
    vec_id = r.json()['items'][0]['id']
    assert again.stop(signal.SIGINT) == 0 and 'stopped (SIGINT)' in again.stdout()

    last = serve(catalog_copy)
    item = requests.get('%s/items/%d' % (last.url, vec_id), timeout=30).json()
    assert item['metadata'] == {'kind': 'vector'} and item['path'] is None
    assert requests.get(last.url + '/health', timeout=30).json()['count'] == CATALOG_IMAGES + 3
    assert_refused(requests.get('%s/items/%d/image' % (last.url, vec_id), timeout=30), 404)
    assert last.stop() == 0


def test_ids_are_never_reused_after_a_kill(catalog_copy, serve, digits_catalog, tmp_path):
    """With --save-delay, an item added and then lost by kill -9 before the save keeps its id
    taken: the restarted service, and gluon-dml index --add after another kill, hand out the
    ids after it (clients hold the lost id; browsers cache its thumbnail)."""
    run = digits_catalog[0]
    blobs = [open(p, 'rb').read() for p in write_digits(tmp_path / 'new', [1600, 1601, 1602])]
    server = serve(catalog_copy, '--save-delay', '3600')
    r = requests.post(server.url + '/items', files={'image': blobs[0]}, timeout=60)
    assert r.status_code == 201, r.text
    lost = r.json()['items'][0]['id']
    assert lost == CATALOG_IMAGES
    server.kill()                                                        # SIGKILL: nothing saved
    assert server.proc.returncode == -signal.SIGKILL

    again = serve(catalog_copy, '--save-delay', '3600')
    assert requests.get(again.url + '/health', timeout=30).json()['count'] == CATALOG_IMAGES
    assert_refused(requests.get('%s/items/%d' % (again.url, lost), timeout=30), 404)
    r = requests.post(again.url + '/items', files={'image': blobs[1]}, timeout=60)
    assert r.status_code == 201, r.text
    assert r.json()['items'][0]['id'] == lost + 1, r.json()              # not the lost item's id
    again.kill()                                                         # lost too

    more = tmp_path / 'more'
    write_digits(more, [1602])
    proc = subprocess.run(gluon_dml('index', run, '--images', more, '--out', catalog_copy, '--add',
                                    '--no-progress'), capture_output=True, text=True, cwd=REPO,
                          timeout=300, env=script_env(OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]

    last = serve(catalog_copy)
    items = requests.get(last.url + '/items', params={'offset': CATALOG_IMAGES}, timeout=30).json()
    assert items['count'] == CATALOG_IMAGES + 1
    assert [(i['id'], os.path.basename(i['path'])) for i in items['items']] == [(lost + 2, '1602.png')]
    r = requests.post(last.url + '/items', files={'image': blobs[0]}, timeout=60)
    assert r.status_code == 201, r.text
    assert r.json()['items'][0]['id'] == lost + 3, r.json()
    assert last.stop() == 0


def test_a_removal_lost_by_a_kill_keeps_the_items_image(catalog_copy, serve, tmp_path):
    """With --save-delay, DELETE removed the item's image file at once, before the removal was
    saved: after kill -9 the item came back without its image (404 "gone from disk"). The file
    now goes with the save; a saved removal still removes it."""
    blob = open(write_digits(tmp_path / 'new', [1790])[0], 'rb').read()
    first = serve(catalog_copy)                                          # saves before answering
    item = requests.post(first.url + '/items', files={'image': blob}, timeout=60).json()['items'][0]
    first.kill()
    second = serve(catalog_copy, '--save-delay', '3600')
    assert requests.delete('%s/items/%d' % (second.url, item['id']), timeout=30).status_code == 200
    assert os.path.isfile(item['path'])                                  # the removal is not saved
    second.kill()
    third = serve(catalog_copy, '--save-delay', '3600')
    assert requests.get('%s/items/%d/image' % (third.url, item['id']), timeout=30).content == blob
    assert requests.delete('%s/items/%d' % (third.url, item['id']), timeout=30).status_code == 200
    assert third.stop() == 0                                             # saves on stopping
    assert not os.path.exists(item['path'])


def test_the_upload_of_an_item_lost_by_a_kill_is_removed_on_start(catalog_copy, serve, tmp_path):
    """The image file stored for an item that kill -9 lost before the save (and the temporary
    of an interrupted upload) is removed when the service starts again, in one line of its
    output; the files of saved items stay."""
    blobs = [open(p, 'rb').read() for p in write_digits(tmp_path / 'new', [1700, 1701])]
    uploads = catalog_copy / 'uploads'
    first = serve(catalog_copy)                                          # saves before answering
    kept = requests.post(first.url + '/items', files={'image': blobs[0]}, timeout=60).json()['items'][0]
    first.kill()
    second = serve(catalog_copy, '--save-delay', '3600')
    lost = requests.post(second.url + '/items', files={'image': blobs[1]}, timeout=60).json()['items'][0]
    assert os.path.dirname(lost['path']) == str(uploads) and os.path.isfile(lost['path'])
    second.kill()
    assert 'removed' not in second.stdout()
    (uploads / 'f00d.png.part').write_bytes(blobs[1][:50])             # a kill during _store

    third = serve(catalog_copy)
    assert sorted(os.listdir(str(uploads))) == [os.path.basename(kept['path'])]
    assert 'removed 2 files of %s that no item names' % uploads in third.stdout(), third.stdout()
    assert os.path.basename(lost['path']) in third.stdout()
    assert requests.get('%s/items/%d/image' % (third.url, kept['id']), timeout=30).content == blobs[0]
    assert_refused(requests.get('%s/items/%d' % (third.url, lost['id']), timeout=30), 404)
    assert third.stop() == 0


def test_a_signal_while_loading_stops_it_cleanly(digits_catalog, tmp_path):
    """SIGTERM once the port is open but before the network is loaded: the command finishes
    loading, does not serve, says why it stopped and exits 0."""
    probe = socket.socket()
    probe.bind(('127.0.0.1', 0))
    port = probe.getsockname()[1]
    probe.close()
    with open(tmp_path / 'out', 'w') as out:
        proc = subprocess.Popen(gluon_dml('serve', digits_catalog[2], '--port', port), cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT, env=script_env(OMP_NUM_THREADS='1'))
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                socket.create_connection(('127.0.0.1', port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (tmp_path / 'out').read_text()
    assert 'stopped (SIGTERM); the catalogue' in text and 'serving' not in text, text


def test_command_errors_are_one_sentence(digits_catalog, tmp_path):
    """UserErrors, which gluon-dml prints as one line (exit code 2); the handlers of SIGINT and
    SIGTERM are given back."""
    import signal as signals
    from gluon_dml.commands import serve as command
    from gluon_dml.errors import UserError
    handlers = signals.getsignal(signals.SIGINT), signals.getsignal(signals.SIGTERM)
    with pytest.raises(UserError, match='is not a catalogue: it has no run.json'):
        command.main([str(tmp_path), '--port', '0'])
    assert (signals.getsignal(signals.SIGINT), signals.getsignal(signals.SIGTERM)) == handlers
    busy = socket.socket()
    busy.bind(('127.0.0.1', 0))
    busy.listen(1)
    try:
        with pytest.raises(UserError, match='Cannot listen on 127.0.0.1 port %d' % busy.getsockname()[1]):
            command.main([str(digits_catalog[2]), '--port', str(busy.getsockname()[1])])
    finally:
        busy.close()
    with pytest.raises(UserError, match='--max-batch must be >= 1'):
        command.main([str(digits_catalog[2]), '--max-batch', '0'])
    with pytest.raises(UserError, match='--port must be 0-65535'):
        command.main([str(digits_catalog[2]), '--port', '70000'])
    text = command.build_parser().format_help()
    assert '--max-delay-ms' in text and '--max-batch' in text and '--save-delay' in text


@pytest.mark.parametrize('max_delay_ms', [0, 20])
def test_micro_batcher_batches_and_isolates_a_failing_query(max_delay_ms):
    from gluon_dml.serve import BatcherClosed, MicroBatcher
    calls = []

    def double(items):
        calls.append(len(items))
        if any(x < 0 for x in items):
            raise ValueError('negative')
        return np.array(items) * 2.0

    batcher = MicroBatcher({'num': double}, max_batch=4, max_delay=max_delay_ms / 1000.0)
    futures = [batcher.submit('num', i) for i in range(10)] + [batcher.submit('num', -1)]
    assert [f.result(10) for f in futures[:10]] == [2.0 * i for i in range(10)]
    with pytest.raises(ValueError):
        futures[10].result(10)
    assert max(calls) <= 4 and sum(calls) >= 11
    stats = batcher.stats()
    assert stats['queries'] == 11 and stats['largest_batch'] <= 4
    with pytest.raises(ValueError):
        batcher.submit('other', 1)
    batcher.close()
    with pytest.raises(BatcherClosed):
        batcher.submit('num', 1)


def test_a_catalogue_whose_run_is_gone_is_served_by_vector_and_id(catalog_copy):
    """In-process: the service over a catalogue whose run folder was deleted answers vector and
    id queries, and refuses image and text queries with a 503 that says why."""
    from gluon_dml.catalog import RECORD_FILE, open_catalog
    from gluon_dml.serve import ServeError, Service
    meta = json.loads((catalog_copy / RECORD_FILE).read_text())
    meta['run_dir'] = str(catalog_copy / 'deleted-run')
    (catalog_copy / RECORD_FILE).write_text(json.dumps(meta))
    service = Service(open_catalog(str(catalog_copy)))
    try:
        assert 'is gone' in service.encoder_error and service.info()['image_queries'] is False
        hits = service.search_id(3, 4)
        assert len(hits) == 4 and all(set(h) == HIT_KEYS for h in hits)
        vector = service.stored_vector(3)
        assert service.search_vector(vector, 1)[0]['id'] == 3
        with pytest.raises(ServeError) as err:
            service.prepare_image(b'\x89PNG')
        assert err.value.status == 503 and 'is gone' in err.value.message
        with pytest.raises(ServeError) as err:
            service.submit_text('a seven')
        assert err.value.status == 503
    finally:
        service.close()


def test_a_binary_catalogue_takes_and_gives_codes(tmp_path):
    """In-process, a hashing run's kind of catalogue (packed binary codes, Hamming search): a
    query vector is +-1 codes of the catalogue's bits, stored vectors come back as +-1."""
    from gluon_dml.catalog import Catalog
    from gluon_dml.index import create_index
    from gluon_dml.serve import ServeError, Service
    codes = np.random.RandomState(0).choice([-1, 1], size=(50, 32))
    index = create_index(backend='faiss', kind='binary', dim=32, path=str(tmp_path / 'codes'))
    index.add(codes, metadata=[{'label': str(i % 5)} for i in range(50)])
    source = {'run_dir': str(tmp_path / 'no-run'), 'kind': 'binary', 'dim': 32, 'method': 'hash'}
    service = Service(Catalog(str(tmp_path / 'codes'), index, source))
    try:
        hits = service.search_vector(service.check_vector([float(x) for x in codes[7]]), 3,
                                     service.check_filter({'label': 2}))
        assert hits[0]['id'] == 7 and hits[0]['score'] == 1.0 and hits[0]['distance'] == 0
        assert {h['label'] for h in hits} == {'2'}
        assert service.stored_vector(7).tolist() == codes[7].tolist()
        with pytest.raises(ServeError, match='has 4 values'):
            service.check_vector([1.0, -1.0, 1.0, 1.0])
    finally:
        service.close()


def test_an_item_whose_file_name_is_not_utf8_is_served(digits_catalog, serve, tmp_path):
    """GET /items/ID of an item whose file name is Latin-1 (Python holds it with a surrogate
    escape), and every search or listing that included it, answered 500 (the JSON could not be
    encoded). The name comes back as JSON escapes that decode to the same string; its image is
    served."""
    import shutil
    run, images, _ = digits_catalog
    folder = tmp_path / 'images'
    shutil.copytree(str(images), str(folder))
    first = sorted((folder / os.listdir(str(folder))[0]).iterdir())[0]
    odd = os.path.join(os.fsencode(str(first.parent)), b'caf\xe9.png')
    os.rename(os.fsencode(str(first)), odd)
    cat = tmp_path / 'catalog'
    proc = subprocess.run(gluon_dml('index', run, '--images', folder, '--out', cat, '--no-progress'),
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env=script_env(OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    url = serve(cat).url
    listing = requests.get(url + '/items', params={'limit': 1000}, timeout=30)
    assert listing.status_code == 200, listing.text[:300]
    item = [i for i in listing.json()['items'] if i['path'] == os.fsdecode(odd)]
    assert len(item) == 1, listing.json()['items'][:3]
    one = requests.get(url + '/items/%d' % item[0]['id'], timeout=30)
    assert one.status_code == 200 and one.json()['path'] == os.fsdecode(odd), one.text[:300]
    hits = requests.post(url + '/search', json={'id': item[0]['id'] + 1, 'k': CATALOG_IMAGES},
                         timeout=60)
    assert hits.status_code == 200, hits.text[:300]
    assert os.fsdecode(odd) in [h['path'] for h in hits.json()['hits']]
    image = requests.get(url + '/items/%d/image' % item[0]['id'], timeout=30)
    assert image.status_code == 200 and image.content == open(odd, 'rb').read()


def test_a_milvus_catalogue_served_with_one_writer(digits_catalog, serve, tmp_path):
    """A Milvus Lite catalogue behind the service: a filter on a number (which also matches its
    text) answers, a vector added from outside is kept at unit length, a second service on the
    same catalogue is refused in one sentence, and SIGTERM stops it with the saved count."""
    pytest.importorskip('pymilvus', reason='the milvus extra is not installed (pip install -e ".[milvus]")')
    run, images, _ = digits_catalog
    cat = tmp_path / 'mcat'
    proc = subprocess.run(gluon_dml('index', run, '--images', images, '--out', cat, '--backend',
                                    'milvus', '--no-progress'),
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env=script_env(OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    server = serve(cat)
    url = server.url
    for flt in ({'filter': 'label=4'}, {}):
        r = requests.post(url + '/search', params=dict(flt, k=5),
                          json={'id': 4, **({'filter': {'label': [4, 'x']}} if not flt else {})}, timeout=60)
        assert r.status_code == 200, r.text
        hits = r.json()['hits']
        assert len(hits) == 5 and {h['label'] for h in hits} == {'4'}, hits
    second = subprocess.run(gluon_dml('serve', cat, '--port', 0), capture_output=True, text=True,
                            cwd=REPO, timeout=120, env=script_env(OMP_NUM_THREADS='1'))
    assert second.returncode == 2
    assert 'is being changed by another process (pid %d' % server.proc.pid in second.stderr, second.stderr
    v = np.asarray(requests.post(url + '/embed', json={'id': 7}, timeout=30).json()['vector'])
    r = requests.post(url + '/items', json={'vector': list(50 * v), 'metadata': {'big': 1}}, timeout=60)
    assert r.status_code == 201, r.text
    big = r.json()['items'][0]['id']
    stored = np.asarray(requests.post(url + '/embed', json={'id': big}, timeout=30).json()['vector'])
    np.testing.assert_allclose(stored, v, atol=1e-6)
    top = requests.post(url + '/search', params={'k': 1}, json={'id': 20}, timeout=60).json()['hits']
    assert top[0]['id'] != big
    zero = requests.post(url + '/items', json={'vector': [0.0] * len(v)}, timeout=60)
    assert_refused(zero, 400)
    assert server.stop(signal.SIGTERM) == 0, server.stderr()[-2000:]
    assert 'stopped (SIGTERM); the catalogue %s is saved (%d items).' % (cat, CATALOG_IMAGES + 1) \
        in server.stdout(), server.stdout() + server.stderr()


def test_a_truncated_upload_is_refused_after_gluoncv_allowed_truncated_images():
    """A run with a GluonCV backbone (resnet18_v1b, ...) imports GluonCV's data package, which sets
    PIL's LOAD_TRUNCATED_IMAGES for the whole process: the service then took a truncated JPEG
    upload, embedded its half-grey picture and answered hits (or stored it, POST /items)."""
    import io
    from PIL import Image, ImageFile
    from gluon_dml.serve import ServeError
    from gluon_dml.serve.images import decode_image
    import gluoncv.data  # noqa: F401  (what building such a backbone imports)
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = True            # as that import left it
    try:
        rng = np.random.default_rng(0)
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (160, 200, 3), dtype=np.uint8)).save(out, 'JPEG')
        data = out.getvalue()
        with pytest.raises(ServeError) as e:
            decode_image(data[:len(data) // 2], 10 ** 6)
        assert e.value.status == 400 and 'truncated or damaged' in str(e.value), str(e.value)
        assert decode_image(data, 10 ** 6).size == (200, 160)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def test_the_thumbnail_of_a_large_catalogue_photo_is_made_at_a_reduced_scale(catalog_copy, tmp_path):
    """In-process: a JPEG of the catalogue's own over --max-pixels (a phone's 48-megapixel photo
    against the default 40,000,000; here 1,600 x 1,200 against 1,000,000) gets its thumbnail,
    decoded at a reduced scale (the page showed a broken image: 413 "more than this service
    decodes"); the file itself is still served whole, and so is a PNG's for its thumbnail (it
    has no reduced decoding; the browser scales it: see the next test)."""
    import io
    from PIL import Image
    from gluon_dml.catalog import open_catalog
    from gluon_dml.serve import Limits, ServeError, Service
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8))
    big.save(tmp_path / 'big.jpg', quality=80)
    big.save(tmp_path / 'big.png')
    service = Service(open_catalog(str(catalog_copy)), limits=Limits(max_pixels=10 ** 6))
    try:
        vector = service.stored_vector(3)
        jpg, png_id = service.catalog.add_vectors(np.stack([vector, vector]), [
            {'path': str(tmp_path / 'big.jpg')}, {'path': str(tmp_path / 'big.png')}])
        kind, data, media = service.image_of(int(jpg), size=128)
        assert kind == 'bytes' and media == 'image/jpeg'
        assert max(Image.open(io.BytesIO(data)).size) == 128
        assert service.image_of(int(jpg)) == ('file', str(tmp_path / 'big.jpg'), 'image/jpeg')
        assert service.image_of(int(png_id), size=128) == ('file', str(tmp_path / 'big.png'),
                                                            'image/png')
    finally:
        service.close()


def test_catalogue_images_are_served_in_a_mode_browsers_show_and_large_ones_not_as_413(
        catalog_copy, serve, tmp_path):
    """A CMYK JPEG of the catalogue's own (a print shop's, or a YCCK one) was served as it is,
    image/jpeg with 4 channels, which browsers show in wrong colours or not at all, and a 16-bit
    PNG's thumbnail was white (PIL's conversion clips): both come in RGB / 8-bit grey now. A PNG
    over --max-pixels got 413 "payload too large" on a GET (the client sent no payload): its file
    is served, for a thumbnail too (no reduced decoding; the browser scales it); a TIFF over it,
    which must be decoded to be served, is a 500 that names --max-pixels and how to raise it."""
    import io
    from PIL import Image
    from gluon_dml.catalog import open_catalog
    rng = np.random.default_rng(0)
    red = Image.new('CMYK', (64, 48), (0, 255, 255, 0))            # pure red in CMYK
    red.save(tmp_path / 'cmyk.jpg', quality=95)
    grey16 = np.tile(np.arange(0, 65536, 1024, dtype=np.uint16), (32, 1))      # a ramp
    Image.fromarray(grey16).save(tmp_path / 'grey16.png')
    assert Image.open(tmp_path / 'grey16.png').mode == 'I;16'
    big = Image.fromarray(rng.integers(0, 256, (1200, 1600, 3), dtype=np.uint8))
    big.save(tmp_path / 'big.png')
    big.save(tmp_path / 'big.tif')
    cat = open_catalog(str(catalog_copy))
    try:
        ids = [int(i) for i in cat.add_vectors(np.stack([cat.index.vector(3)] * 4), [
            {'path': str(tmp_path / n)} for n in ('cmyk.jpg', 'grey16.png', 'big.png', 'big.tif')])]
        cat.save()
    finally:
        cat.close()
    url = serve(catalog_copy, '--max-pixels', 1000000).url

    def get(i, size=None):
        return requests.get('%s/items/%d/image' % (url, i), params={'size': size} if size else None,
                            timeout=60)
    for size in (None, 32):
        r = get(ids[0], size)
        assert r.status_code == 200 and r.headers['content-type'] == 'image/jpeg', r.text[:300]
        img = Image.open(io.BytesIO(r.content))
        assert img.mode == 'RGB' and img.size == ((64, 48) if size is None else (32, 24)), img
        assert np.abs(np.asarray(img, dtype=int)[8:-8, 8:-8] - [255, 0, 0]).max() < 40
    r = get(ids[1])                          # browsers show 16-bit PNGs: the file itself
    assert r.headers['content-type'] == 'image/png' and \
        r.content == (tmp_path / 'grey16.png').read_bytes()
    thumb = Image.open(io.BytesIO(get(ids[1], 64).content))
    assert thumb.mode == 'L' and thumb.size == (64, 32)
    row = np.asarray(thumb, dtype=int)[16]
    assert row[0] < 8 and row[-1] > 240 and (np.diff(row) >= 0).all(), row     # still a ramp
    for size in (None, 128):
        r = get(ids[2], size)
        assert r.status_code == 200 and r.headers['content-type'] == 'image/png', r.text[:300]
        assert r.content == (tmp_path / 'big.png').read_bytes()
    for size in (None, 128):
        msg = assert_refused(get(ids[3], size), 500)
        assert '1600 x 1200' in msg and 'larger --max-pixels' in msg, msg
    assert get(ids[0]).status_code == 200                       # the service lives
