"""Headless Chromium driven over the Chrome DevTools Protocol (a websocket): open a page, set
a file input (a real upload), run JavaScript, take a screenshot."""
import base64
import json
import os
import shutil
import subprocess
import time

import pytest
import requests

FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--hide-scrollbars', '--proxy-server=http://127.0.0.1:9']   # only loopback is reachable


def find_chromium():
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        path = shutil.which(name)
        if path:
            return path
    return '/usr/bin/chromium' if os.path.exists('/usr/bin/chromium') else None


class Chromium(object):
    """One headless Chromium with a new empty profile, driven through its first tab."""

    def __init__(self, profile, size=(1280, 1000), timeout=60):
        import websocket
        browser = find_chromium()
        if browser is None:
            pytest.skip('chromium is not installed (apt-get install -y chromium)')
        os.makedirs(profile, exist_ok=True)
        self.log = open(os.path.join(profile, 'chromium.log'), 'w')
        self.proc = subprocess.Popen(
            [browser] + FLAGS + ['--user-data-dir=%s' % profile, '--remote-debugging-port=0',
                                 '--window-size=%d,%d' % size, 'about:blank'],
            stdout=subprocess.DEVNULL, stderr=self.log)
        port_file = os.path.join(profile, 'DevToolsActivePort')
        deadline = time.time() + timeout
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.time() > deadline or self.proc.poll() is not None:
                self.close()
                raise AssertionError('chromium did not open its DevTools port')
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        while True:
            pages = [t for t in requests.get('http://127.0.0.1:%d/json/list' % port, timeout=10).json()
                     if t.get('type') == 'page']
            if pages or time.time() > deadline:
                break
            time.sleep(0.1)
        self.ws = websocket.create_connection(pages[0]['webSocketDebuggerUrl'], suppress_origin=True,
                                              timeout=timeout)
        self._id = 0
        self.call('Emulation.setDeviceMetricsOverride', width=size[0], height=size[1],
                  deviceScaleFactor=1, mobile=False)
        self.call('Page.enable')

    def call(self, method, **params):
        """Send one DevTools command and return its result (events in between are skipped)."""
        self._id += 1
        self.ws.send(json.dumps({'id': self._id, 'method': method, 'params': params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get('id') == self._id:
                if 'error' in message:
                    raise AssertionError('%s failed: %s' % (method, message['error']))
                return message.get('result', {})

    def evaluate(self, expression):
        result = self.call('Runtime.evaluate', expression=expression, returnByValue=True,
                           awaitPromise=True)
        if 'exceptionDetails' in result:
            raise AssertionError('%s raised %s' % (expression, result['exceptionDetails']))
        return result['result'].get('value')

    def wait_for(self, expression, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError('the page never satisfied: %s' % expression)

    def open(self, url):
        self.call('Page.navigate', url=url)

    def upload(self, selector, path):
        """Give the file input ``selector`` a file, as a user choosing it does (fires change)."""
        root = self.call('DOM.getDocument')['root']['nodeId']
        node = self.call('DOM.querySelector', nodeId=root, selector=selector)['nodeId']
        assert node, 'no element %s' % selector
        self.call('DOM.setFileInputFiles', nodeId=node, files=[os.path.abspath(path)])

    def screenshot(self, path):
        data = self.call('Page.captureScreenshot', format='png')['data']
        with open(path, 'wb') as f:
            f.write(base64.b64decode(data))
        return path

    def close(self):
        try:
            if getattr(self, 'ws', None) is not None:
                try:
                    self.call('Browser.close')
                except Exception:  # noqa: BLE001 - it is going away
                    pass
                self.ws.close()
        finally:
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
            self.log.close()
