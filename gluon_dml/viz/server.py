"""Start the Visdom dashboard on a machine without internet.

``python -m visdom.server`` first downloads the page's JavaScript, CSS and fonts from public CDNs
(``visdom/server/build.py``) and fails, or serves a blank page, where those cannot be reached.
This module installs the same files, at the versions the installed visdom asks for, from the npm
registry (``npm pack``) into visdom's ``static/`` folder, then starts visdom's own server with the
download step skipped::

    python -m gluon_dml.viz.server                         # install what is missing, serve on :8097
    python -m gluon_dml.viz.server -port 8098 -env_path /tmp/visdom-envs
    python -m gluon_dml.viz.server --install-assets-only   # e.g. once in CI / an image build
    python -m gluon_dml.viz.server --check-assets          # list what is missing, exit 1 if any

Every option other than ours goes to visdom's own server (``-port``, ``--hostname``,
``-env_path``, ``-bind_local``, ``-logging_level``, ...). The server also works around visdom
0.2.4's page answering HTTP 403 under tornado 6.6 and newer (:func:`allow_visdom_user_css`).
"""
import argparse
import glob
import os
import subprocess
import sys
import tarfile
import tempfile

__all__ = ['ASSETS', 'static_dir', 'missing_assets', 'install_assets', 'allow_visdom_user_css',
           'main']

_BOOTSTRAP = ('bootstrap', '3.3.7')
_FONT = 'glyphicons-halflings-regular'
_MATHJAX_FILES = ('MathJax.js', 'config/Safe.js', 'config/TeX-AMS-MML_HTMLorMML.js',
                  'extensions/Safe.js', 'jax/output/SVG/fonts/TeX/fontdata.js',
                  'jax/output/SVG/jax.js', 'jax/output/SVG/fonts/TeX/Size1/Regular/Main.js',
                  'jax/output/SVG/config.js')

# (npm package, version, [(file in the package, file under visdom's static/)]): the list and the
# versions of visdom 0.2.x's ``download_scripts`` (unpkg.com, cdn.plot.ly, d3js.org, cdnjs), each
# mapped to the npm package those CDNs serve. ``d3.v3.min.js`` is d3's last 3.x release and
# ``d3-selection-multi.v1.js`` the last 1.x, what the d3js.org "v3" / "v1" names resolve to.
ASSETS = [
    ('jquery', '3.1.1', [('dist/jquery.min.js', 'js/jquery.min.js')]),
    (_BOOTSTRAP[0], _BOOTSTRAP[1], [
        ('dist/js/bootstrap.min.js', 'js/bootstrap.min.js'),
        ('dist/css/bootstrap.min.css', 'css/bootstrap.min.css')]
        + [('dist/fonts/%s.%s' % (_FONT, ext), 'fonts/%s.%s' % (_FONT, ext))
           for ext in ('eot', 'woff2', 'woff', 'ttf', 'svg')]
        # visdom's own downloader stores the svg font under this literal name and checks for it
        + [('dist/fonts/%s.svg' % _FONT, 'fonts/%s.svg#glyphicons_halflingsregular' % _FONT)]),
    ('react', '16.2.0', [('umd/react.production.min.js', 'js/react-react.min.js')]),
    ('react-dom', '16.2.0', [('umd/react-dom.production.min.js', 'js/react-dom.min.js')]),
    ('react-modal', '3.1.10', [('dist/react-modal.min.js', 'js/react-modal.min.js')]),
    ('plotly.js-dist-min', '2.11.1', [('plotly.min.js', 'js/plotly-plotly.min.js')]),
    ('sjcl', '1.0.7', [('sjcl.js', 'js/sjcl.js')]),
    ('layout-bin-packer', '1.4.0', [('dist/layout-bin-packer.js', 'js/layout_bin_packer.js'),
                                    ('dist/layout-bin-packer.js.map', 'js/layout-bin-packer.js.map')]),
    ('d3', '3.5.17', [('d3.min.js', 'js/d3.v3.min.js')]),
    ('d3-selection-multi', '1.0.1', [('build/d3-selection-multi.js', 'js/d3-selection-multi.v1.js')]),
    ('save-svg-as-png', '1.4.17', [('lib/saveSvgAsPng.js', 'js/saveSvgAsPng.js')]),
    ('react-resizable', '1.4.6', [('css/styles.css', 'css/react-resizable-styles.css')]),
    ('react-grid-layout', '0.16.3', [('css/styles.css', 'css/react-grid-layout-styles.css')]),
    ('classnames', '2.2.5', [('index.js', 'fonts/classnames')]),
    ('mathjax', '2.7.5', [(f, 'js/mathjax/2.7.5/' + f) for f in _MATHJAX_FILES]),
]


def static_dir():
    """visdom's ``static/`` folder (where its server serves the page's files from)."""
    import importlib.util
    spec = importlib.util.find_spec('visdom')
    if spec is None or spec.origin is None:
        raise RuntimeError('visdom is not installed: pip install visdom (it is in gluon-dml\'s '
                           'cpu/gpu extras).')
    return os.path.join(os.path.dirname(spec.origin), 'static')


def missing_assets(static=None):
    """The files under ``static/`` that visdom's page needs and that are not there."""
    static = static or static_dir()
    return [dest for _, _, files in ASSETS for _, dest in files
            if not os.path.isfile(os.path.join(static, dest))]


def _visdom_version():
    try:
        import visdom
        return visdom.__version__
    except Exception:  # noqa: BLE001 - only used as a marker
        return 'unknown'


def _npm_pack(specs, dest, npm):
    """Download the registry tarballs of ``specs`` ('name@version') into ``dest``."""
    cmd = [npm, 'pack', '--silent', '--pack-destination', dest] + list(specs)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise RuntimeError('npm is not installed; install it (Debian: apt-get install npm) or copy '
                           'the files listed by --check-assets into %s by hand.' % static_dir()) from None
    if proc.returncode != 0:
        err = '\n'.join(ln for ln in proc.stderr.splitlines() if 'Unknown user config' not in ln)
        raise RuntimeError('npm pack failed (is the npm registry reachable?):\n%s' % err.strip()[-2000:])


def install_assets(static=None, npm='npm', force=False, log=print):
    """Install the page's files from the npm registry into visdom's ``static/`` folder.

    Only the packages with a missing file are fetched (all of them with ``force``). Returns the
    list of files written. Also writes ``static/version.built`` so that visdom's own
    ``python -m visdom.server`` sees the files as its own and does not download them again.
    """
    static = static or static_dir()
    missing = set(missing_assets(static))
    wanted = [(name, version, files) for name, version, files in ASSETS
              if force or any(dest in missing for _, dest in files)]
    written = []
    if wanted:
        if not os.access(static, os.W_OK):
            raise RuntimeError('cannot write to %s; run this with the permissions of the Python '
                               'environment\'s owner.' % static)
        log('Installing the Visdom page\'s files from the npm registry: %s'
            % ', '.join('%s@%s' % (n, v) for n, v, _ in wanted))
        with tempfile.TemporaryDirectory(prefix='visdom-assets-') as tmp:
            _npm_pack(['%s@%s' % (n, v) for n, v, _ in wanted], tmp, npm)
            for name, version, files in wanted:
                tgz = os.path.join(tmp, '%s-%s.tgz' % (name.lstrip('@').replace('/', '-'), version))
                if not os.path.exists(tgz):
                    found = glob.glob(os.path.join(tmp, '*%s*.tgz' % name.split('/')[-1]))
                    if not found:
                        raise RuntimeError('npm pack did not produce the tarball of %s@%s.' % (name, version))
                    tgz = found[0]
                with tarfile.open(tgz) as tar:
                    for src, dest in files:
                        try:
                            member = tar.extractfile('package/' + src)
                        except KeyError:
                            member = None
                        if member is None:
                            raise RuntimeError('%s@%s has no file %s.' % (name, version, src))
                        data = member.read()
                        path = os.path.join(static, dest)
                        os.makedirs(os.path.dirname(path), exist_ok=True)
                        tmp_path = path + '.part'
                        with open(tmp_path, 'wb') as f:
                            f.write(data)
                        os.replace(tmp_path, path)
                        written.append(dest)
    still = missing_assets(static)
    if not still:
        with open(os.path.join(static, 'version.built'), 'w') as f:
            f.write(_visdom_version())
    else:
        raise RuntimeError('still missing after the install: %s' % ', '.join(still))
    return written


def allow_visdom_user_css():
    """Let visdom's page render with tornado 6.6 and newer.

    visdom's ``index.html`` links ``static_url("../user/style.css")``: a file outside its static
    folder (visdom's own ``/user/`` handler serves it). Since 6.6 tornado refuses such a path when
    it computes the URL, and the whole page answers HTTP 403. For that one literal path of the
    template, give the URL without reading the file; every other static path keeps tornado's
    checks.
    """
    from tornado.web import StaticFileHandler
    if getattr(StaticFileHandler, '_gluon_dml_user_css', False):
        return
    original = StaticFileHandler.make_static_url.__func__

    def make_static_url(cls, settings, path, include_version=True):
        if path == '../user/style.css':
            return settings.get('static_url_prefix', '/static/') + path
        return original(cls, settings, path, include_version)

    StaticFileHandler.make_static_url = classmethod(make_static_url)
    StaticFileHandler._gluon_dml_user_css = True


def _option(rest, names):
    """The value of the last of visdom's options ``names`` in ``rest`` (``-port 8098`` or
    ``-port=8098``), or None."""
    value = None
    for i, a in enumerate(rest):
        if a in names and i + 1 < len(rest):
            value = rest[i + 1]
        elif a.startswith(tuple(n + '=' for n in names)):
            value = a.split('=', 1)[1]
    return value


def _check_port_free(rest):
    """Refuse, in one sentence, a port that another server listens on (visdom's server failed
    with a tornado traceback, after writing its environment folder) or that is no port number."""
    import socket
    from ..errors import UserError
    port = 8097
    value = _option(rest, ('-port', '--port'))
    if value is not None:
        try:
            port = int(value)
        except ValueError:
            raise UserError('-port takes a number, got %r.' % value) from None
        if not 0 < port < 65536:
            raise UserError('-port must be a port number (1-65535), got %d.' % port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(('', port))
    except OSError as err:
        raise UserError('Cannot start the Visdom server on port %d: %s (another server, perhaps '
                        'a Visdom server already running there); choose another with -port N.'
                        % (port, err.strerror or err)) from None
    finally:
        sock.close()


def _check_env_path(rest):
    """Refuse, in one sentence, an ``-env_path`` the server cannot write its environments to
    (visdom's server printed "It's Alive!" and stopped with a bare AssertionError)."""
    import tempfile
    from ..errors import UserError
    value = _option(rest, ('-env_path', '--env_path'))
    if value is None:
        return
    path = os.path.expanduser(value)
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UserError('-env_path %s is not a folder the Visdom server can write its environments '
                        'to (%s); give another.' % (value, err.strerror or err)) from None


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(
        prog='gluon-dml visdom-server',
        description='Start a Visdom server without downloading its web assets (they come from '
                    'the npm registry instead). Other options go to visdom\'s server: -port, '
                    '--hostname, -env_path, -bind_local, -logging_level, ...', add_help=True)
    p.add_argument('--install-assets-only', action='store_true',
                   help='install the missing page files from the npm registry and exit')
    p.add_argument('--check-assets', action='store_true',
                   help='list the missing page files; exit status 1 if any is missing')
    p.add_argument('--no-install', action='store_true',
                   help='start the server without installing anything (the page may stay blank)')
    p.add_argument('--reinstall-assets', action='store_true', help='fetch every page file again')
    p.add_argument('--npm', default=os.environ.get('NPM', 'npm'), help='the npm command')
    ours, rest = p.parse_known_args(argv)

    if ours.check_assets:
        missing = missing_assets()
        for m in missing:
            print('missing: %s' % os.path.join(static_dir(), m))
        print('%d of %d page files missing' % (len(missing), sum(len(f) for _, _, f in ASSETS)))
        return 1 if missing else 0
    if not ours.no_install and (ours.reinstall_assets or missing_assets()):
        try:
            install_assets(npm=ours.npm, force=ours.reinstall_assets)
        except RuntimeError as err:
            print('warning: %s\nThe server starts anyway; the page needs those files to render.'
                  % err, file=sys.stderr)
            if ours.install_assets_only:
                return 1
    if ours.install_assets_only:
        print('Visdom page files in place in %s' % static_dir())
        return 0

    _check_port_free(rest)
    _check_env_path(rest)
    from visdom.server import run_server
    allow_visdom_user_css()
    sys.argv = [sys.argv[0]] + rest
    run_server.main()           # visdom's own server, without download_scripts()
    return 0


if __name__ == '__main__':
    sys.exit(main())
