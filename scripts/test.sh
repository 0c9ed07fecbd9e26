#!/usr/bin/env bash
# Run the whole test suite. Any pytest exit status other than 0 fails, including 5 (no tests).
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ "$rc" -ne 0 ]; then echo "tests failed (pytest exit $rc)"; fi
exit "$rc"
