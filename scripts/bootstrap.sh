#!/usr/bin/env bash
# Set up gluon-dml on a fresh Linux machine with Python 3.11:
#   bash scripts/bootstrap.sh          a virtual environment .venv with the package and the extras of
#                                      the whole product: cpu (MXNet, faiss), serve (the HTTP
#                                      service), milvus (Milvus Lite / pymilvus), onnx (export)
#   bash scripts/bootstrap.sh --test   the same plus the test extra and the test data (Fashion-MNIST,
#                                      Chromium)
# VENV=path overrides the environment's folder; PYTHON=python3.11 picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
extras=cpu,serve,milvus,onnx
if [ "${1:-}" = "--test" ]; then extras=$extras,test; fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# visdom is published as source only and its setup.py imports pkg_resources, which setuptools
# dropped in version 70. pip builds a source package in an isolated environment with the newest
# setuptools, and pip >= 26 no longer passes PIP_CONSTRAINT into that environment; so visdom is
# built without isolation, against the setuptools<70 installed into the venv just before. This
# works whatever pip the venv has and whatever its cache holds (checked: pip 23.2.1, 24.0, 26.3).
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/python" -m pip install -q --upgrade pip 'setuptools<70' wheel
"$VENV/bin/python" -m pip install -q -c constraints.txt --no-build-isolation "$(grep -E '^visdom' constraints.txt)"
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[$extras]"

# The dashboard's web page files, from the npm registry (the page then renders without internet).
if command -v npm >/dev/null; then
  "$VENV/bin/python" -m gluon_dml.viz.server --install-assets-only >/dev/null || \
    echo "warning: could not install the Visdom page files from npm; see docs/dashboard.md" >&2
fi

if [ "${1:-}" = "--test" ]; then
  # Real test data and tools from Debian: the Fashion-MNIST IDX files in
  # /usr/share/datasets/fashion-mnist, and Chromium for the dashboard screenshot test.
  need=""
  [ -d /usr/share/datasets/fashion-mnist ] || need="$need dataset-fashion-mnist"
  command -v chromium >/dev/null || need="$need chromium"
  if [ -n "$need" ] && command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get install -y -q $need >/dev/null 2>&1 || \
      ($SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q $need >/dev/null) || \
      echo "warning: could not install$need; the tests that need them will be skipped" >&2
  fi
fi
"$VENV/bin/python" -c "import mxnet, faiss, gluoncv, visdom, gluon_dml; print('gluon-dml', gluon_dml.__version__, 'with mxnet', mxnet.__version__, 'faiss', faiss.__version__)"
