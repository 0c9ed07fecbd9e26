"""Fuzz worker process: reads (target, payload) frames, runs targets.TARGETS[target]
and answers ("ok", summary), ("rejected", error) for an allowed error, or ("bad",
traceback) for anything else (an unexpected exception or a wrong result)."""
from __future__ import annotations

import os
import pickle
import struct
import sys
import traceback

if os.environ.get("EDGECC_SANITIZE_PKG"):  # scripts/sanitize.sh: the ASan-built package
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "ScikitBuildRedirectingFinder"]
    sys.path.insert(0, os.environ["EDGECC_SANITIZE_PKG"])

import targets  # noqa: E402


def main():
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # keep library prints off the protocol pipe
    while True:
        header = stdin.read(8)
        if len(header) < 8:
            return
        target, payload = pickle.loads(stdin.read(struct.unpack("<Q", header)[0]))
        fn, allowed = targets.TARGETS[target]
        try:
            result = ("ok", str(fn(payload))[:200])
        except allowed as e:
            result = ("rejected", f"{type(e).__name__}: {str(e)[:300]}")
        except BaseException:  # noqa: BLE001 - every other outcome is a finding
            result = ("bad", traceback.format_exc()[-3000:])
        frame = pickle.dumps(result)
        stdout.write(struct.pack("<Q", len(frame)) + frame)
        stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
