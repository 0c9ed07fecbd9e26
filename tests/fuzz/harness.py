"""Runs fuzz targets in a worker subprocess, so that a segfault, abort or hang in native
code is detected and reported as a finding instead of killing the test run.

Protocol: the parent sends pickled (target, payload) frames on the worker's stdin; the
worker answers ("ok" | "rejected" | "bad", detail). A dead worker is a crash, no answer
within the timeout a hang; either way the worker is restarted for the next input.
"""
from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent


class Finding(Exception):
    pass


class Worker:
    def __init__(self, timeout: float = 60.0):
        self.timeout, self.proc = timeout, None
        self.stats = Counter()

    def _start(self):
        env = dict(os.environ, PYTHONPATH=str(HERE),
                   OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        self.proc = subprocess.Popen([sys.executable, str(HERE / "worker.py")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def call(self, target: str, payload):
        """-> (kind, detail); kind is 'ok', 'rejected', 'bad', 'crash' or 'hang'."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        frame = pickle.dumps((target, payload))
        try:
            self.proc.stdin.write(struct.pack("<Q", len(frame)) + frame)
            self.proc.stdin.flush()
            header = self._read(8)
            result = pickle.loads(self._read(struct.unpack("<Q", header)[0]))
        except TimeoutError:
            self.close()
            result = ("hang", f"no answer within {self.timeout:.0f} s")
        except (EOFError, BrokenPipeError):
            rc = self.proc.wait()
            err = self.proc.stderr.read().decode(errors="replace")[-3000:]
            self.proc = None
            result = ("crash", f"worker died (exit {rc}): {err}")
        self.stats[(target, result[0])] += 1
        return result

    def _read(self, n: int) -> bytes:
        out = b""
        fd = self.proc.stdout.fileno()
        while len(out) < n:
            ready, _, _ = select.select([fd], [], [], self.timeout)
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def check(self, target: str, payload):
        """Run one input; raise Finding on a crash, hang or disallowed exception."""
        kind, detail = self.call(target, payload)
        if kind in ("bad", "crash", "hang"):
            message = f"{target}: {kind}: {detail}\ninput: {_short(payload)}"
            if os.environ.get("EDGECC_FUZZ_FINDINGS"):  # scripts/fuzz.sh keeps every finding
                path = os.environ["EDGECC_FUZZ_FINDINGS"]
                with open(path, "a") as f:
                    f.write(message + "\n" + "-" * 60 + "\n")
                with open(f"{path}.last-input.pkl", "wb") as f:  # to replay: Worker().call(target, input)
                    pickle.dump((target, payload), f)
            raise Finding(message)
        return kind, detail


def _short(payload) -> str:
    text = repr(payload)
    return text if len(text) < 600 else text[:600] + f"... ({len(text)} chars)"
