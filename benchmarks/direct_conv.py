"""Direct convolution baselines on ResNet-like layers.

    python -m benchmarks.direct_conv            # about 2 minutes on 2 shared cores
    python -m benchmarks.direct_conv --quick    # a smoke run (fewer repetitions)

fp32: edgecc direct (weights packed once, and one-shot packing per call) against
PyTorch conv2d (oneDNN). int8 -> int32 and int16 -> int64 (exact): edgecc direct
(best ISA, plus the AVX2 path for int8) against the naive seven-loop kernel.
Batch 1, 1 and 2 threads. Every result is checked: integer outputs equal the naive
kernel's bit for bit, fp32 outputs match PyTorch. Times are medians of interleaved
repetitions (methods alternate, so load from other processes hits all alike).
Writes benchmarks/results/direct_conv.{md,json}.
"""
from __future__ import annotations

import os

# Idle OpenMP threads must sleep, not spin: the two cores are shared with other
# thread pools and jobs. Set before the OpenMP runtimes load.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._common import cpu_name, gcc_version, interleaved_medians  # noqa: E402
from edgecc import _native  # noqa: E402
from edgecc.compiler.codegen.int_kernel_choice import runnable  # noqa: E402
from edgecc.kernels import direct  # noqa: E402

RESULTS = Path(__file__).parent / "results"
# (name, C, O, H=W, kernel, stride, groups); padding keeps "same" for stride 1.
LAYERS = [
    ("resnet conv2_x", 64, 64, 56, 3, 1, 1),
    ("resnet conv3_1", 64, 128, 56, 3, 2, 1),
    ("resnet conv4_x", 256, 256, 14, 3, 1, 1),
    ("resnet conv5_x", 512, 512, 7, 3, 1, 1),
    ("mobilenet dw", 256, 256, 28, 3, 1, 256),
]
THREADS = (1, 2)


def machine() -> dict:
    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "isa": _native.best_isa(),
            "features": [k for k, v in _native.cpu_features().items() if v],
            "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "compiler": gcc_version(), "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "load_average_at_start": os.getloadavg()}


def bench_layer(layer, threads: int, reps: int, naive_reps: int) -> list[dict]:
    name, c, o, h, k, stride, groups = layer
    rng = np.random.default_rng(0)
    geometry = dict(stride=stride, padding=k // 2, groups=groups)
    x = rng.standard_normal((1, c, h, h), dtype=np.float32)
    w = rng.standard_normal((o, c // groups, k, k), dtype=np.float32)
    x8 = rng.integers(-128, 128, size=x.shape, dtype=np.int8)
    w8 = rng.integers(-128, 128, size=w.shape, dtype=np.int8)
    x16 = rng.integers(-32768, 32768, size=x.shape, dtype=np.int16)
    w16 = rng.integers(-32768, 32768, size=w.shape, dtype=np.int16)
    oh = (h + 2 * (k // 2) - k) // stride + 1
    macs = o * (c // groups) * k * k * oh * oh
    torch.set_num_threads(threads)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)

    f32 = direct.DirectConv2d(w, **geometry)
    qs8 = direct.DirectConv2d(w8, **geometry)
    qs8_avx2 = direct.DirectConv2d(w8, isa="avx2", **geometry) if runnable("avx2") else None
    qs16 = direct.DirectConv2d(w16, **geometry)

    # Correctness of everything that is timed.
    ref = torch.nn.functional.conv2d(xt, wt, stride=stride, padding=k // 2, groups=groups).numpy()
    scale = float(np.abs(x).max() * np.abs(w).max()) * (c // groups) * k * k
    assert np.abs(f32(x, threads=threads) - ref).max() <= 2e-6 * scale, name
    naive8 = direct.conv2d_int_naive(x8, w8, threads=threads, **geometry)
    naive16 = direct.conv2d_int_naive(x16, w16, threads=threads, **geometry)
    assert np.array_equal(qs8(x8, threads=threads), naive8), name
    assert qs8_avx2 is None or np.array_equal(qs8_avx2(x8, threads=threads), naive8), name
    assert np.array_equal(qs16(x16, threads=threads), naive16), name

    rows = []

    def record(dtype, medians, baseline, kernels):
        for method, seconds in medians.items():
            rows.append({"layer": name, "shape": f"C{c} O{o} {h}x{h} k{k} s{stride}" + (f" g{groups}" if groups > 1 else ""),
                         "dtype": dtype, "threads": threads, "method": method, "kernel": kernels.get(method, ""),
                         "ms": seconds * 1e3, "gmacs": macs / seconds / 1e9, "vs_baseline": medians[baseline] / seconds,
                         "baseline": baseline})

    m = interleaved_medians({
        "edgecc direct (prepacked)": lambda: f32(x, threads=threads),
        "edgecc direct (one-shot)": lambda: direct.conv2d_f32(x, w, threads=threads, **geometry),
        "torch conv2d": lambda: torch.nn.functional.conv2d(xt, wt, stride=stride, padding=k // 2, groups=groups),
    }, reps)
    record("f32", m, "torch conv2d", {"edgecc direct (prepacked)": f32.kernel_name,
                                      "edgecc direct (one-shot)": f32.kernel_name})

    methods8 = {"edgecc direct (prepacked)": lambda: qs8(x8, threads=threads),
                "edgecc direct (one-shot)": lambda: direct.conv2d_int(x8, w8, threads=threads, **geometry)}
    kernels8 = {"edgecc direct (prepacked)": qs8.kernel_name, "edgecc direct (one-shot)": qs8.kernel_name}
    if qs8_avx2 is not None:
        methods8["edgecc direct avx2 (prepacked)"] = lambda: qs8_avx2(x8, threads=threads)
        kernels8["edgecc direct avx2 (prepacked)"] = qs8_avx2.kernel_name
    m = interleaved_medians(methods8, reps)
    m.update(interleaved_medians({"naive": lambda: direct.conv2d_int_naive(x8, w8, threads=threads, **geometry)},
                                 naive_reps))
    record("int8->int32", m, "naive", kernels8)

    m = interleaved_medians({
        "edgecc direct (prepacked)": lambda: qs16(x16, threads=threads),
        "edgecc direct (one-shot)": lambda: direct.conv2d_int(x16, w16, threads=threads, **geometry),
    }, reps)
    m.update(interleaved_medians({"naive": lambda: direct.conv2d_int_naive(x16, w16, threads=threads, **geometry)},
                                 naive_reps))
    record("int16->int64", m, "naive", {"edgecc direct (prepacked)": qs16.kernel_name,
                                       "edgecc direct (one-shot)": qs16.kernel_name})
    return rows


def write_results(info: dict, rows: list[dict], command: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "direct_conv.json").write_text(json.dumps({"machine": info, "command": command, "rows": rows}, indent=1))
    lines = [f"# Direct convolution baselines ({info['date']})", "",
             f"Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs (shared with other jobs; load average at "
             f"start {tuple(round(v, 2) for v in info['load_average_at_start'])}), best ISA {info['isa']}. "
             f"Python {info['python']}, numpy {info['numpy']}, torch {info['torch']}, {info['compiler']}, "
             f"OMP_WAIT_POLICY={info['OMP_WAIT_POLICY']}.", "",
             f"Command: `{command}`. Batch 1. Medians of interleaved repetitions; GMAC/s = multiply-adds of the "
             "layer / median time. 'prepacked': weights packed once (edgecc.kernels.direct.DirectConv2d), the "
             "input packed on every call; 'one-shot': conv2d_f32 / conv2d_int, which also pack the weights on "
             "every call. Integer results were checked bit-exact against the naive kernel, fp32 against PyTorch.",
             "", "The two logical CPUs are shared with other jobs: a 2-thread row only shows scaling when the "
             "second CPU happened to be idle during that layer (work is scheduled dynamically, so a busy CPU "
             "costs speed-up, not correctness).",
             "", "| layer | shape | dtype | threads | method | kernel | ms | GMAC/s | x baseline |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['shape']} | {r['dtype']} | {r['threads']} | {r['method']} | "
                     f"{r['kernel']} | {r['ms']:.3f} | {r['gmacs']:.1f} | {r['vs_baseline']:.2f} ({r['baseline']}) |")
    (RESULTS / "direct_conv.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke run)")
    args = parser.parse_args()
    reps, naive_reps = (3, 1) if args.quick else (15, 3)
    info = machine()
    rows = []
    for threads in THREADS:
        for layer in LAYERS:
            rows += bench_layer(layer, threads, reps, naive_reps)
            done = [r for r in rows if r["layer"] == layer[0] and r["threads"] == threads]
            print(f"{layer[0]:16s} t={threads}: " + ", ".join(
                f"{r['dtype']} {r['method']} {r['gmacs']:.1f}" for r in done), flush=True)
    write_results(info, rows, "python -m benchmarks.direct_conv" + (" --quick" if args.quick else ""))


if __name__ == "__main__":
    main()
