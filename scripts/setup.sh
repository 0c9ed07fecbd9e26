#!/usr/bin/env bash
# Create .venv (if missing), install pinned dependencies, build the native extension.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
.venv/bin/pip show torch >/dev/null  # the install above must have worked
scripts/build.sh
