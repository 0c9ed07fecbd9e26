"""One fuzz worker subprocess per test session; its per-target outcome counts are
written to $EDGECC_FUZZ_STATS (JSON) at the end when set (scripts/fuzz.sh)."""
from __future__ import annotations

import json
import os

import pytest

from harness import Worker


@pytest.fixture(scope="session")
def worker():
    w = Worker(timeout=float(os.environ.get("EDGECC_FUZZ_TIMEOUT", "60")))
    yield w
    w.close()
    path = os.environ.get("EDGECC_FUZZ_STATS")
    if path:
        stats = {}
        for (target, kind), n in w.stats.items():
            stats.setdefault(target, {})[kind] = n
        with open(path, "w") as f:
            json.dump(stats, f, indent=1, sort_keys=True)
