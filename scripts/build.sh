#!/usr/bin/env bash
# Rebuild the native extension into the repo's .venv (editable install, incremental).
# A lock serializes concurrent rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."
exec flock /tmp/edgecc-build.lock .venv/bin/pip install --no-build-isolation --no-deps -e . -q
