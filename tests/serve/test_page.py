"""The page at ``GET /`` in headless Chromium: a real upload through its file input, the result
thumbnails checked in a screenshot against the items' image files; a pick from the catalogue;
a link ``/?id=N``. ``SERVE_SCREENSHOT=docs/serve.png`` also writes the screenshot there."""
import os
import shutil

import numpy as np
import requests
from PIL import Image

from .cdp import Chromium
from .test_http import png

PAGE_K = 12            # the page's default k
RESULTS_READY = ('document.body.dataset.hits === "%d" && [...document.querySelectorAll("#results img")]'
                 '.every(img => img.complete && img.naturalWidth > 0)' % PAGE_K)
TILES = '''[...document.querySelectorAll("#results .hit")].map(fig => {
  const r = fig.querySelector("img").getBoundingClientRect();
  return {id: Number(fig.dataset.id), label: fig.querySelector(".label").textContent,
          score: fig.querySelector(".score").textContent,
          x: r.left, y: r.top, w: r.width, h: r.height};
})'''


def thumbnail_matches(shot, tile, path):
    """Whether the screenshot shows the image file ``path`` where the page put ``tile``: the
    region and the file, both reduced to 8 x 8 grey cells (the digits' own resolution), agree
    (correlation > 0.95, mean difference < 20 grey levels). A blank or wrong image fails."""
    x, y, w, h = (int(round(tile[k])) for k in ('x', 'y', 'w', 'h'))
    region = shot.crop((x, y, x + w, y + h)).convert('L').resize((8, 8), Image.BOX)
    ref = Image.open(path).convert('L').resize((8, 8), Image.BOX)
    a, b = np.asarray(region, float).ravel(), np.asarray(ref, float).ravel()
    if a.std() < 5 or b.std() < 5:
        return False
    return bool(np.corrcoef(a, b)[0, 1] > 0.95 and np.abs(a - b).mean() < 20)


def test_the_page_searches_an_upload_and_shows_the_thumbnails(shared_server, digits_catalog, tmp_path):
    url = shared_server.url
    query_path, data = png(digits_catalog, 7)
    expected = requests.post(url + '/search', params={'k': PAGE_K}, files={'image': data},
                             timeout=60).json()['hits']
    chrome = Chromium(str(tmp_path / 'profile'))
    try:
        chrome.open(url + '/')
        chrome.wait_for('window.pageReady === true && document.querySelectorAll("#picks img").length > 0')
        assert 'smallconv' in chrome.evaluate('document.querySelector("#about").textContent')
        chrome.upload('#file', query_path)                   # a user choosing the file
        chrome.wait_for(RESULTS_READY)
        tiles = chrome.evaluate(TILES)
        shot_path = chrome.screenshot(str(tmp_path / 'page.png'))
        status = chrome.evaluate('document.querySelector("#status").textContent')

        # the page shows the API's answer: same items, labels and scores, in order
        assert [t['id'] for t in tiles] == [h['id'] for h in expected]
        assert [t['label'] for t in tiles] == [h['label'] for h in expected]
        assert [t['score'] for t in tiles] == ['%.3f' % h['score'] for h in expected]
        assert status.startswith('%d nearest of' % PAGE_K), status
        # ... and the screenshot shows each item's image where its tile is
        shot = Image.open(shot_path).convert('RGB')
        assert all(t['w'] >= 100 and t['y'] + t['h'] <= shot.size[1] for t in tiles), tiles
        shown = [thumbnail_matches(shot, t, h['path']) for t, h in zip(tiles, expected)]
        assert all(shown), shown
        blank = Image.new('RGB', shot.size, 'white')         # the check can fail
        assert not any(thumbnail_matches(blank, t, h['path']) for t, h in zip(tiles, expected))
        moved = [dict(t, x=t['x'] + 40) for t in tiles]      # half off the thumbnail
        assert sum(thumbnail_matches(shot, t, h['path']) for t, h in zip(moved, expected)) < 3
        target = os.environ.get('SERVE_SCREENSHOT')
        if target:
            shutil.copyfile(shot_path, target)

        # picking an item of the catalogue searches with it
        picked = chrome.evaluate('(() => { const img = document.querySelector("#picks img"); '
                                 'img.click(); return img.alt; })()')
        chrome.wait_for('document.querySelector("#query .what").textContent === "%s" && %s'
                        % (picked, RESULTS_READY))
        pick_id = int(picked.split()[-1])
        by_id = requests.post(url + '/search', json={'id': pick_id, 'k': PAGE_K}, timeout=60).json()['hits']
        assert [t['id'] for t in chrome.evaluate(TILES)] == [h['id'] for h in by_id]

        # a link to a query: /?id=N
        chrome.open('%s/?id=%d' % (url, expected[1]['id']))
        chrome.wait_for('window.pageReady === true && ' + RESULTS_READY)
        linked = requests.post(url + '/search', json={'id': expected[1]['id'], 'k': PAGE_K},
                               timeout=60).json()['hits']
        assert [t['id'] for t in chrome.evaluate(TILES)] == [h['id'] for h in linked]

        # a refusal shows its sentence
        chrome.evaluate('document.querySelector("#k").value = "0"')
        chrome.evaluate('document.querySelector("#picks img").click()')
        chrome.wait_for('document.body.dataset.hits === "error"')
        assert chrome.evaluate('document.querySelector("#status").textContent') == \
            'k must be an integer from 1 to 1000; got 0.'
    finally:
        chrome.close()
    assert shared_server.alive()
