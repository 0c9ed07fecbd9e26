"""Latency benchmark of a compiled model (`edgecc bench OUTDIR`).

    report = bench("out/resnet18", runs=20, min_time=1.0, max_time=10.0, threads=1)
    print(format_report(report))

Load and the first run are timed on their own (the first run allocates and packs);
steady state is then timed until at least `runs` runs AND `min_time` seconds have
passed, or `max_time` seconds (the cap wins, and the report says so). Inputs are seeded
random normals of the compiled shapes unless given.
"""
from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import __version__, _native
from ..errors import InputError


@dataclass
class Latency:
    """Statistics of one engine's timed runs, in milliseconds."""

    runs: int
    total_s: float
    min_ms: float
    p10_ms: float
    median_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    capped: bool = False     # max_time stopped the loop before `runs` runs

    @classmethod
    def of(cls, seconds: list[float], capped: bool = False) -> "Latency":
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        p10, p50, p90, p99 = np.percentile(ms, [10, 50, 90, 99])
        return cls(runs=len(ms), total_s=float(ms.sum() / 1e3), min_ms=float(ms.min()), p10_ms=float(p10),
                   median_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99), max_ms=float(ms.max()),
                   mean_ms=float(ms.mean()), capped=capped)

    def to_dict(self) -> dict:
        return asdict(self)


def check_limits(runs: int, min_time: float, max_time: float) -> None:
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 1:
        raise InputError(f"runs={runs!r}: expected a positive integer")
    if not min_time >= 0:
        raise InputError(f"min_time={min_time!r}: expected seconds >= 0")
    if not max_time > 0:
        raise InputError(f"max_time={max_time!r}: expected seconds > 0")
    if max_time < min_time:
        raise InputError(f"max_time={max_time} is below min_time={min_time}")


def time_calls(fn, runs: int, min_time: float, max_time: float) -> Latency:
    """Time `fn()` until >= runs calls and >= min_time s, or max_time s (at least one call)."""
    check_limits(runs, min_time, max_time)
    samples: list[float] = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        samples.append(t1 - t0)
        elapsed = t1 - start
        if len(samples) >= runs and elapsed >= min_time:
            return Latency.of(samples)
        if elapsed >= max_time:
            return Latency.of(samples, capped=len(samples) < runs)


def random_inputs(model, seed: int = 0) -> list[np.ndarray]:
    """Seeded standard-normal float32 arrays of the model's input shapes."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(d["shape"]).astype(np.float32) for d in model.inputs]


def read_inputs(model, paths: list[str]) -> list[np.ndarray]:
    """One .npy per model input, checked against the compiled shapes."""
    if len(paths) != len(model.inputs):
        raise InputError(f"--input given {len(paths)} time(s); the model takes {len(model.inputs)} input(s) "
                         f"({', '.join(d['name'] for d in model.inputs)})")
    arrays = []
    for path, d in zip(paths, model.inputs):
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"--input {path}: cannot read a .npy array ({e})") from None
        if tuple(a.shape) != d["shape"]:
            raise InputError(f"--input {path}: shape {list(a.shape)}, input {d['name']!r} is compiled "
                             f"for {list(d['shape'])}")
        if a.dtype != np.float32:
            raise InputError(f"--input {path}: dtype {a.dtype}, input {d['name']!r} takes float32")
        arrays.append(np.ascontiguousarray(a))
    return arrays


def resolve_threads(threads: int) -> int:
    """0 means the OpenMP default; return the number actually used."""
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise InputError(f"threads={threads!r}: expected 0 (OpenMP default) or a positive integer")
    return int(threads) or int(_native.omp_max_threads())


def isa_path(build_info: str) -> str:
    """The kernel ISA the library runs: fixed at build time, or picked at run time
    (EDGECC_ISA, else the best this CPU has) when the build says 'auto'."""
    requested = ""
    for part in build_info.split(";"):
        part = part.strip()
        if part.startswith("kernel isa "):
            requested = part[len("kernel isa "):].strip()
    if requested and requested != "auto":
        return requested
    env = os.environ.get("EDGECC_ISA", "")
    return f"{_native.selected_isa('')} (auto: {'EDGECC_ISA=' + env if env else 'best on this CPU'})"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "load_average_1_5_15": load,
            "platform": platform.platform()}


def versions(meta: dict | None = None, extra: tuple[str, ...] = ()) -> dict:
    v = {"edgecc": __version__, "python": sys.version.split()[0], "numpy": np.__version__}
    if meta:
        v["compiler"] = meta.get("versions", {}).get("compiler")
    for name in extra:   # only modules already imported by the caller
        mod = sys.modules.get(name)
        if mod is not None:
            v[name] = getattr(mod, "__version__", "?")
    return v


def bench(outdir, *, runs: int = 20, min_time: float = 1.0, max_time: float = 10.0, threads: int = 0,
          inputs: list[np.ndarray] | None = None, seed: int = 0) -> dict:
    """Benchmark the compiled model in `outdir`; returns the report dict (see format_report)."""
    from .compiled import load

    check_limits(runs, min_time, max_time)
    n_threads = resolve_threads(threads)
    t0 = time.perf_counter()
    model = load(outdir, threads=n_threads)
    load_s = time.perf_counter() - t0
    xs = random_inputs(model, seed) if inputs is None else inputs
    t0 = time.perf_counter()
    model.run(*xs)
    first_s = time.perf_counter() - t0
    lat = time_calls(lambda: model.run(*xs), runs, min_time, max_time)
    return report_dict(model, lat, n_threads, load_s=load_s, first_run_s=first_s,
                       inputs="given" if inputs is not None else f"random normal, seed {seed}")


def report_dict(model, lat: Latency, threads: int, *, load_s: float, first_run_s: float, inputs: str) -> dict:
    batch = model.inputs[0]["shape"][0] if model.inputs and model.inputs[0]["shape"] else 1
    info = getattr(model, "build_info", None) or model.meta.get("build_info", "")
    return {
        "model": model.meta.get("model"), "path": str(Path(model.path).resolve()),
        "scheme": model.meta.get("scheme"),
        "inputs": [{"name": d["name"], "shape": list(d["shape"])} for d in model.inputs],
        "input_data": inputs, "batch": batch, "threads": threads,
        "isa": isa_path(info) if info else "n/a (no edgecc build info: not an edgecc kernel library)",
        "build_info": info,
        "load_ms": load_s * 1e3, "first_run_ms": first_run_s * 1e3,
        "latency": lat.to_dict(),
        "throughput_per_s": batch / (lat.median_ms / 1e3),
        "machine": machine(), "versions": versions(model.meta),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def format_report(r: dict) -> str:
    lat = r["latency"]
    shapes = ", ".join(f"{d['name']} {d['shape']}" for d in r["inputs"])
    runs = f"{lat['runs']} runs in {lat['total_s']:.2f} s" + (" (capped by --max-time)" if lat["capped"] else "")
    rows = [("model", f"{r['model']} ({r['scheme']}) at {r['path']}"),
            ("inputs", f"{shapes}; {r['input_data']}"),
            ("threads / ISA", f"{r['threads']} / {r['isa']}"),
            ("load", f"{r['load_ms']:.2f} ms"), ("first run", f"{r['first_run_ms']:.3f} ms"),
            ("steady state", runs),
            ("latency ms", f"min {lat['min_ms']:.3f}  median {lat['median_ms']:.3f}  "
                           f"p90 {lat['p90_ms']:.3f}  p99 {lat['p99_ms']:.3f}"),
            ("throughput", f"{r['throughput_per_s']:.1f} images/s (batch {r['batch']} / median)"),
            ("machine", f"{r['machine']['cpu']}, load average {r['machine']['load_average_1_5_15']}"),
            ("versions", ", ".join(f"{k} {v}" for k, v in r["versions"].items()))]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(w)}  {v}" for k, v in rows)


def report_row(r: dict) -> dict:
    """The edgecc line of a bench report in the row format of compare.engine_dicts."""
    return {"key": "edgecc", "engine": "edgecc", "note": f"scheme {r['scheme']}", "available": True,
            "error": None, "first_run_ms": r["first_run_ms"], "latency": r["latency"], "agreement": None}
