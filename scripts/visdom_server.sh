#!/usr/bin/env bash
# Start the Visdom dashboard without internet access.
#   bash scripts/visdom_server.sh                          # http://localhost:8097
#   bash scripts/visdom_server.sh -port 8098 -env_path ~/.visdom
#   bash scripts/visdom_server.sh --install-assets-only    # only fetch the page's files (CI, images)
# `python -m visdom.server` downloads the page's JavaScript/CSS from CDNs first and fails offline;
# this installs the same files at the versions the installed visdom expects from the npm registry
# (needs `npm`), then runs visdom's server without that download step. Options other than ours go
# to visdom's server. PYTHON=path picks the interpreter (default: .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" -m gluon_dml.viz.server "$@"
