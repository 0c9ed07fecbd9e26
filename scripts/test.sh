#!/usr/bin/env bash
# Run the whole test suite. Any pytest exit status other than 0 fails, including 5 (no tests).
set -uo pipefail
cd "$(dirname "$0")/.."
# Two workers (this machine has 2 cores); a test file stays on one worker (--dist loadfile),
# so module fixtures are built once.
.venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
rc=$?
if [ "$rc" -ne 0 ]; then echo "tests failed (pytest exit $rc)"; fi
exit "$rc"
