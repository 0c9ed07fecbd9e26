"""Helpers shared by the benchmark scripts: the machine header of a results file and
interleaved timing."""
from __future__ import annotations

import statistics
import subprocess
import time

from edgecc.runtime.bench import machine


def cpu_name() -> str:
    """The CPU model ("model name" of /proc/cpuinfo, else what platform knows)."""
    return machine()["cpu"]


def gcc_version() -> str:
    """First line of `gcc --version` ("unknown" without gcc)."""
    try:
        return subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def interleaved_samples(fns: dict, reps: int) -> dict:
    """Seconds of every call: one warm-up call each, then `reps` rounds with the methods
    alternating (so load from other processes hits all of them alike)."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def interleaved_medians(fns: dict, reps: int) -> dict:
    """Median seconds of each callable (interleaved_samples)."""
    return {name: statistics.median(ts) for name, ts in interleaved_samples(fns, reps).items()}
