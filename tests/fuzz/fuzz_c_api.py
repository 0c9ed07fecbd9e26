"""Fuzzing of a compiled model's C API (edgecc/model_api.h) through ctypes.

An input is a short sequence of C API calls with random, often invalid, arguments: NULL,
closed and made-up handles, NULL buffer arrays and entries, wrong buffer sizes, overlapping
buffers, small or misaligned workspaces, bad thread counts, out-of-range indices. Each
call's status is checked against what model_api.h promises (a `Session` keeps the
expected state: which handles are open, their thread count), and every successful run's
outputs against the reference outputs bit for bit. Arguments the C API cannot check
(a dangling data pointer, a size that lies about a buffer) are not generated.

    python tests/fuzz/fuzz_c_api.py [--inputs 10000] [--model DIR] [--stats out.json] [--report DIR]

runs the sequences in a worker subprocess (restarted after a crash, a hang is a
timeout) and prints/writes the counts; scripts/fuzz.sh runs it and appends a "C API"
section to benchmarks/results/reliability.{md,json}. tests/test_runtime_robustness.py
keeps a small hypothesis version in the normal test suite and uses `CApi` directly.
"""
from __future__ import annotations

import argparse
import ctypes as C
import json
import os
import random
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OK, INVALID, UNSUPPORTED_CPU, CORRUPT, OOM, KERNEL = range(6)
MAX_THREADS = 1024
NOT_OPEN = "not an open model handle"


class TensorDesc(C.Structure):
    _fields_ = [("name", C.c_char_p), ("dtype", C.c_int), ("rank", C.c_int32),
                ("shape", C.POINTER(C.c_int64)), ("bytes", C.c_size_t)]


class StepProfile(C.Structure):
    _fields_ = [("node", C.c_char_p), ("op", C.c_char_p), ("runs", C.c_uint64),
                ("last_ms", C.c_double), ("total_ms", C.c_double)]


class CApi:
    """model.so's exported functions with their C signatures (handles are ints)."""

    SIGNATURES = {
        "abi_version": (C.c_uint32, []), "build_info": (C.c_char_p, []), "weights_sha256": (C.c_char_p, []),
        "workspace_size": (C.c_size_t, []), "num_inputs": (C.c_int32, []), "num_outputs": (C.c_int32, []),
        "num_steps": (C.c_int32, []),
        "input": (C.POINTER(TensorDesc), [C.c_int32]), "output": (C.POINTER(TensorDesc), [C.c_int32]),
        "open": (C.c_int, [C.POINTER(C.c_void_p), C.c_void_p, C.c_size_t]),
        "open_error": (C.c_char_p, []), "close": (None, [C.c_void_p]),
        "set_threads": (C.c_int, [C.c_void_p, C.c_int32]), "threads": (C.c_int32, [C.c_void_p]),
        "run": (C.c_int, [C.c_void_p, C.c_void_p, C.c_void_p]),
        "run_checked": (C.c_int, [C.c_void_p, C.c_void_p, C.c_void_p, C.c_void_p, C.c_void_p]),
        "last_error": (C.c_char_p, [C.c_void_p]),
        "set_profiling": (C.c_int, [C.c_void_p, C.c_int32]),
        "step_profile": (C.c_int, [C.c_void_p, C.c_int32, C.POINTER(StepProfile)]),
    }

    def __init__(self, path):
        self.lib = C.CDLL(str(path))
        for name, (res, args) in self.SIGNATURES.items():
            fn = getattr(self.lib, f"edgecc_model_{name}")
            fn.restype, fn.argtypes = res, args
            setattr(self, name, fn)
        self.inputs = [self.input(i).contents for i in range(self.num_inputs())]
        self.outputs = [self.output(i).contents for i in range(self.num_outputs())]

    def open_handle(self, workspace=None, nbytes=0) -> tuple[int, int]:
        h = C.c_void_p()
        status = self.open(C.byref(h), workspace, nbytes)
        return status, (h.value or 0)

    def error(self, handle) -> str:
        return self.last_error(handle).decode()


def pointer_array(ptrs) -> C.Array:
    return (C.c_void_p * max(1, len(ptrs)))(*ptrs)


def size_array(sizes) -> C.Array:
    return (C.c_size_t * max(1, len(sizes)))(*sizes)


def aligned_buffer(nbytes: int, offset: int = 0) -> tuple[np.ndarray, int]:
    """(owner array, address) of nbytes at 64-byte alignment + offset."""
    raw = np.zeros(nbytes + 128, np.uint8)
    addr = raw.ctypes.data
    return raw, addr + (-addr) % 64 + offset


# ---- the model under test ------------------------------------------------------------
def two_input_graph(seed: int = 0):
    """x [1,2,5,5] -> conv -> + z [1,3,5,5] -> relu (output 'act') -> global pool (output
    'pool'); 'act' is listed twice, so the last output is an output copy."""
    from edgecc.compiler.ir import Graph
    rng = np.random.default_rng(seed)
    g = Graph("two_inputs")
    x = g.add_input("x", (1, 2, 5, 5))
    z = g.add_input("z", (1, 3, 5, 5))
    w = Graph.constant("w", rng.standard_normal((3, 2, 3, 3)).astype(np.float32))
    b = Graph.constant("b", rng.standard_normal(3).astype(np.float32))
    y = g.add_node("conv2d", [x, w, b], dict(pads=1), name="conv").outputs[0]
    y = g.add_node("add", [y, z], name="skip").outputs[0]
    act = g.add_node("relu", [y], name="act").outputs[0]
    pool = g.add_node("global_avg_pool", [act], name="pool").outputs[0]
    g.outputs = [pool, act, act]
    return g


def compile_two_input_model(outdir) -> Path:
    import inspect

    from edgecc.compiler.compile import compile as compile_model
    extra = {"onednn": False} if "onednn" in inspect.signature(compile_model).parameters else {}
    compile_model(two_input_graph(), outdir, scheme="fp32", **extra)
    return Path(outdir)


def reference_inputs(api: CApi, count: int = 3) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(1)
    return [[rng.standard_normal(tuple(d.shape[r] for r in range(d.rank))).astype(np.float32)
             for d in api.inputs] for _ in range(count)]


# ---- one fuzz session: calls with an oracle ------------------------------------------
OPS = ("open", "close", "set_threads", "threads", "run", "run_checked", "last_error", "set_profiling",
       "step_profile", "describe", "open_error")
THREAD_VALUES = (-2**31, -5, -1, 0, 1, 2, 3, 4, MAX_THREADS + 1, 2**31 - 1)


class Violation(AssertionError):
    pass


def _expect(cond: bool, what: str):
    if not cond:
        raise Violation(what)


class Session:
    """Applies (op, arg) pairs to the library and checks every answer. Handles it opened
    are closed by close_all(). `expected[i]` are the reference outputs of `inputs[i]`."""

    def __init__(self, api: CApi, inputs, expected, max_open: int = 4):
        self.api, self.inputs, self.expected, self.max_open = api, inputs, expected, max_open
        self.open: dict[int, dict] = {}    # handle -> {"threads", "workspace"}
        self.closed: list[int] = []
        self.fake = [0, 8, 0xDEADBEEF0, 2**63 - 64]   # never returned by open

    # handles -----------------------------------------------------------------------
    def pick_handle(self, arg: int) -> int:
        """Half the time an open handle (when there is one), else a closed or made-up one."""
        pools = [list(self.open), list(self.open), self.closed, self.fake]
        pool = pools[arg % 4] or self.fake
        return pool[(arg // 4) % len(pool)]

    def is_open(self, h: int) -> bool:
        return h in self.open

    def start(self, arg: int):
        """Open one handle (its own workspace or the library's) so most calls hit a live one."""
        self.op_open(1 + arg % 2)

    def close_all(self):
        for h in list(self.open):
            self.api.close(h)
        self.open.clear()

    # ops ---------------------------------------------------------------------------
    def apply(self, op: str, arg: int):
        getattr(self, "op_" + op)(arg)

    def op_open(self, arg: int):
        api, need = self.api, self.api.workspace_size()
        mode = arg % 5   # 0 out NULL, 1 no workspace, 2 good workspace, 3 small, 4 misaligned
        if len(self.open) >= self.max_open:
            self.op_close(0)
        if mode == 0:
            _expect(api.open(None, None, 0) == INVALID, "open(NULL out) must fail")
            _expect("out is NULL" in api.open_error().decode(), "open_error must say why")
            return
        owner, ws, nbytes = None, None, (arg >> 3) % 4096   # the size is ignored without a buffer
        if mode >= 2:
            nbytes = need if mode != 3 else max(0, need - 1 - (arg >> 3) % 64)
            owner, ws = aligned_buffer(max(nbytes, 1), ((arg >> 3) % 63) + 1 if mode == 4 else 0)
        status, h = api.open_handle(ws, nbytes)
        ok = mode in (1, 2) or (mode == 3 and nbytes >= need)
        _expect((status == OK) == ok, f"open mode {mode} ({nbytes} of {need} bytes): status {status}")
        if status == OK:
            _expect(h != 0 and h not in self.open, "open returned a NULL or duplicate handle")
            _expect(api.open_error().decode() == "", "open_error must be empty after a successful open")
            self.open[h] = {"threads": 0, "workspace": owner}
            if h in self.closed:
                self.closed.remove(h)
        else:
            _expect(h == 0, "a failed open must set *out to NULL")
            text = api.open_error().decode()
            _expect(("smaller than" if mode == 3 else "aligned") in text, f"open_error: {text!r}")

    def op_close(self, arg: int):
        h = self.pick_handle(arg)
        self.api.close(h)
        if h in self.open:
            del self.open[h]
            self.closed.append(h)

    def op_set_threads(self, arg: int):
        h, t = self.pick_handle(arg), THREAD_VALUES[(arg >> 8) % len(THREAD_VALUES)]
        status = self.api.set_threads(h, t)
        ok = self.is_open(h) and 0 <= t <= MAX_THREADS
        _expect((status == OK) == ok, f"set_threads({t}) on {'an open' if self.is_open(h) else 'a bad'} handle: {status}")
        if ok:
            self.open[h]["threads"] = t
        elif self.is_open(h):
            _expect(f"threads={t}" in self.api.error(h), "set_threads error text")

    def op_threads(self, arg: int):
        h = self.pick_handle(arg)
        want = self.open[h]["threads"] if self.is_open(h) else -1
        _expect(self.api.threads(h) == want, "threads() disagrees")

    def _buffers(self, which: int):
        ins = [np.ascontiguousarray(a) for a in self.inputs[which]]
        outs = [np.full(tuple(d.shape[r] for r in range(d.rank)), np.nan, np.float32) for d in self.api.outputs]
        return ins, outs

    def _check_outputs(self, which: int, outs):
        for got, want in zip(outs, self.expected[which]):
            _expect(np.array_equal(got.view(np.uint32), want.view(np.uint32)), "outputs differ from the reference")

    def op_run(self, arg: int):
        h, which, mode = self.pick_handle(arg), (arg >> 4) % len(self.inputs), (arg >> 8) % 5
        ins, outs = self._buffers(which)
        iptr = [a.ctypes.data for a in ins]
        optr = [a.ctypes.data for a in outs]
        if mode == 2:
            iptr[(arg >> 12) % len(iptr)] = None
        if mode == 3:
            optr[(arg >> 12) % len(optr)] = None
        status = self.api.run(h, None if mode == 1 and arg & 1 else pointer_array(iptr),
                              None if mode == 1 and not arg & 1 else pointer_array(optr))
        ok = self.is_open(h) and mode in (0, 4)
        _expect((status == OK) == ok, f"run mode {mode}: status {status}")
        if ok:
            self._check_outputs(which, outs)
            _expect(self.api.error(h) == "", "last_error must be empty after a successful run")
        elif self.is_open(h):
            _expect("NULL" in self.api.error(h), f"run error text: {self.api.error(h)!r}")

    def op_run_checked(self, arg: int):
        h, which, mode = self.pick_handle(arg), (arg >> 4) % len(self.inputs), (arg >> 8) % 6
        ins, outs = self._buffers(which)
        isz = [d.bytes for d in self.api.inputs]
        osz = [d.bytes for d in self.api.outputs]
        iptr = [a.ctypes.data for a in ins]
        optr = [a.ctypes.data for a in outs]
        keep = None
        if mode == 1:    # an input size that does not match
            isz[(arg >> 12) % len(isz)] += (-4, 4, 1, -1, 2**40)[(arg >> 16) % 5]
        elif mode == 2:  # an output size that does not match
            osz[(arg >> 12) % len(osz)] = (0, 4, 2**63)[(arg >> 16) % 3]
        elif mode == 3:  # an output placed inside an input buffer (large enough for both)
            keep, base = aligned_buffer(sum(isz) + sum(osz))
            j = (arg >> 12) % len(ins)
            np.copyto(np.frombuffer((C.c_char * isz[j]).from_address(base), np.float32).reshape(ins[j].shape), ins[j])
            iptr[j] = base
            optr[(arg >> 16) % len(optr)] = base + 4 * ((arg >> 20) % (isz[j] // 4))
        elif mode == 4:  # NULL size array
            isz = None
        status = self.api.run_checked(h, pointer_array(iptr), None if isz is None else size_array(isz),
                                      pointer_array(optr), size_array(osz))
        ok = self.is_open(h) and mode in (0, 5)
        _expect((status == OK) == ok, f"run_checked mode {mode}: status {status}")
        if ok:
            self._check_outputs(which, outs)
        elif self.is_open(h):
            text = self.api.error(h)
            want = {1: "bytes, expected", 2: "bytes, expected", 3: "overlaps", 4: "NULL"}[mode]
            _expect(want in text, f"run_checked error text: {text!r}")
        del keep

    def op_last_error(self, arg: int):
        h = self.pick_handle(arg)
        text = self.api.error(h)
        _expect(isinstance(text, str) and (self.is_open(h) or NOT_OPEN in text), f"last_error: {text!r}")

    def op_set_profiling(self, arg: int):
        h = self.pick_handle(arg)
        status = self.api.set_profiling(h, (0, 1, -7, 2**31 - 1)[(arg >> 8) % 4])
        _expect((status == OK) == self.is_open(h), "set_profiling status")

    def op_step_profile(self, arg: int):
        h, n = self.pick_handle(arg), self.api.num_steps()
        index = (-2, -1, 0, n - 1, n, n + 7, 2**31 - 1)[(arg >> 8) % 7]
        out = StepProfile()
        null = (arg >> 12) % 4 == 0
        status = self.api.step_profile(h, index, None if null else C.byref(out))
        ok = self.is_open(h) and 0 <= index < n and not null
        _expect((status == OK) == ok, f"step_profile({index}) status {status}")
        if ok:
            _expect(out.runs >= 0 and out.last_ms >= 0 and out.total_ms >= 0 and out.op is not None, "profile row")

    def op_describe(self, arg: int):
        api = self.api
        i = (-2**31, -1, 0, 1, 2, 3, 2**31 - 1)[arg % 7]
        for fn, count in ((api.input, api.num_inputs()), (api.output, api.num_outputs())):
            d = fn(i)
            _expect(bool(d) == (0 <= i < count), f"descriptor {i} of {count}")

    def op_open_error(self, arg: int):
        _expect(isinstance(self.api.open_error(), bytes), "open_error")


def random_sequence(rng: random.Random, max_len: int = 8) -> list[tuple[str, int]]:
    return [(rng.choice(OPS), rng.getrandbits(32)) for _ in range(rng.randint(1, max_len))]


# ---- worker / driver -----------------------------------------------------------------
def worker(model_dir: str, seed: int, start: int, count: int):
    """Runs sequences start..count-1 of `seed`; prints "ok i", "bad i ..." per sequence."""
    import edgecc.runtime
    api = CApi(Path(model_dir) / "model.so")
    model = edgecc.runtime.load(model_dir, threads=1)
    inputs = reference_inputs(api)
    expected = [model.run(*xs) for xs in inputs]
    for i in range(start, count):
        seq = random_sequence(random.Random(f"{seed}:{i}"))
        session = Session(api, inputs, expected)
        try:
            session.start(i)
            for op, arg in seq:
                session.apply(op, arg)
            print(f"ok {i}", flush=True)
        except Violation as e:
            print(f"bad {i} {json.dumps({'violation': str(e), 'sequence': seq})}", flush=True)
        finally:
            session.close_all()


def drive(model_dir: str, inputs: int, seed: int, timeout: float = 60.0) -> dict:
    """Runs `inputs` sequences in worker subprocesses; a dead worker is a crash, a silent
    one for `timeout` s a hang; the worker is restarted after the offending sequence."""
    counts = {"ok": 0, "bad": 0, "crash": 0, "hang": 0}
    findings = []
    start, t0 = 0, time.time()
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    while start < inputs:
        proc = subprocess.Popen([sys.executable, __file__, "--worker", model_dir, "--seed", str(seed),
                                 "--start", str(start), "--inputs", str(inputs)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        while start < inputs:
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            line = proc.stdout.readline() if ready else None
            if not line:   # None: silent too long (hang); "": the worker died (crash)
                kind = "hang" if line is None else "crash"
                proc.kill()
                proc.wait()
                counts[kind] += 1
                findings.append({"kind": kind, "index": start, "exit": proc.returncode,
                                 "stderr": proc.stderr.read()[-2000:],
                                 "sequence": random_sequence(random.Random(f"{seed}:{start}"))})
                start += 1
                break
            kind, index, *rest = line.rstrip("\n").split(" ", 2)
            counts[kind] += 1
            if kind == "bad":
                findings.append({"kind": "bad", "index": int(index), **json.loads(rest[0])})
            start = int(index) + 1
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return {"inputs_tried": sum(counts.values()), "outcomes": counts, "findings": findings[:20],
            "seconds": round(time.time() - t0, 1), "seed": seed}


FINDINGS_FIXED = [
    "Calls on a closed handle were a use-after-free and made-up handles were dereferenced: the "
    "generated entry code now keeps a registry of open handles (held shared during each call, "
    "exclusive in close), so NULL, closed and made-up handles give EDGECC_ERROR_INVALID_ARGUMENT and "
    "a 'not an open model handle' error text; close waits for calls in flight; double close is a no-op.",
    "Concurrent edgecc_model_run calls on one handle raced on the shared arena: runs on a handle are now "
    "serialized by a per-handle mutex (and by a lock in the Python runtime around run + error text).",
    "edgecc_model_set_threads accepted any positive count (a huge one made OpenMP try to start that "
    "many threads): now 0..EDGECC_MODEL_MAX_THREADS (1024), with error text naming the value.",
    "No way for a C caller to have buffer sizes or overlaps checked: edgecc_model_run_checked "
    "(sizes must equal the descriptors; outputs may not overlap inputs or each other).",
    "Python runtime: a model.json whose 'library'/'weights' were not objects, or whose inputs/outputs "
    "were not lists of objects, raised AttributeError/TypeError; now ModelLoadError. Float32 inputs at "
    "an address not 4-byte aligned were passed to the kernels as-is; they are now copied to an aligned "
    "buffer (np.require).",
]


def write_report(result: dict, out_dir: Path, threads: str):
    """Adds the C API result to reliability.json ("c_api") and replaces or appends the
    "## C API" section of reliability.md (scripts/fuzz.sh rewrites the rest)."""
    import datetime
    import platform
    out_dir.mkdir(parents=True, exist_ok=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "?")
    entry = {**result, "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": cpu,
             "cpus": os.cpu_count(), "omp_threads": threads, "python": platform.python_version(),
             "numpy": np.__version__, "load_average": os.getloadavg(), "findings_fixed": FINDINGS_FIXED}
    jpath = out_dir / "reliability.json"
    data = json.loads(jpath.read_text()) if jpath.exists() else {}
    data["c_api"] = entry
    jpath.write_text(json.dumps(data, indent=1) + "\n")
    o = result["outcomes"]
    passed = o["bad"] == o["crash"] == o["hang"] == 0
    lines = ["## C API", "",
             f"`tests/fuzz/fuzz_c_api.py --inputs {result['inputs_tried']}` ({entry['date']}, {cpu}, "
             f"OMP_NUM_THREADS={threads}, load average {', '.join(f'{v:.2f}' for v in entry['load_average'])}): "
             "random sequences of 1-8 C API calls through ctypes on a compiled two-input model (open with "
             "no / good / small / misaligned workspace or a NULL out pointer, close, set_threads with "
             "out-of-range counts, threads, run and run_checked with NULL arrays, NULL entries, wrong "
             "sizes and overlapping buffers, last_error, set_profiling, step_profile with bad indices, "
             "descriptors with bad indices) on open, closed, NULL and made-up handles. Every status and "
             "error text is checked against model_api.h and every successful run's outputs against the "
             "reference bit for bit; the sequences run in a worker subprocess (crash = it died, hang = "
             "silent for 60 s).", "",
             "| inputs tried | passed the checks | bad | crashes | hangs | seconds | passed |",
             "|---|---|---|---|---|---|---|",
             f"| {result['inputs_tried']} | {o['ok']} | {o['bad']} | {o['crash']} | {o['hang']} | "
             f"{result['seconds']} | {'yes' if passed else 'NO'} |", "",
             "Findings fixed (found while writing this fuzzer and tests/test_runtime_robustness.py, "
             "tests/test_fault_injection.py, tests/test_concurrency.py; fixed before the run above):", ""]
    lines += [f"- {f}" for f in FINDINGS_FIXED]
    for f in result["findings"][:3]:
        lines += ["", f"Finding ({f['kind']}, sequence {f['index']}):", "", "```", json.dumps(f)[:1500], "```"]
    mpath = out_dir / "reliability.md"
    text = mpath.read_text() if mpath.exists() else ""
    if "\n## C API\n" in "\n" + text:   # replace our previous section, keep everything else
        head, _, rest = ("\n" + text).partition("\n## C API\n")
        nxt = rest.find("\n## ")
        text = head[1:] + ("\n" + rest[nxt + 1:] if nxt >= 0 else "")
    mpath.write_text(text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", help="compiled model directory (default: compile a small two-input model)")
    ap.add_argument("--stats", help="write the result as JSON here")
    ap.add_argument("--report", help="add the result to DIR/reliability.{md,json} (scripts/fuzz.sh)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.seed, args.start, args.inputs)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or str(compile_two_input_model(Path(tmp) / "model"))
        result = drive(model_dir, args.inputs, args.seed)
    print(json.dumps({k: v for k, v in result.items() if k != "findings"}))
    for f in result["findings"][:5]:
        print(json.dumps(f)[:2000])
    if args.stats:
        Path(args.stats).write_text(json.dumps(result, indent=1))
    if args.report:
        write_report(result, Path(args.report), os.environ.get("OMP_NUM_THREADS", "1"))
    o = result["outcomes"]
    return 0 if o["bad"] == o["crash"] == o["hang"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
