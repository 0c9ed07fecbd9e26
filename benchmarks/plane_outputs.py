"""Compiled binary models with and without plane links (a binary layer's epilogue writes
the next binary layer's bit-planes; passes/plane_outputs.py).

    python -m benchmarks.plane_outputs [--threads 1] [--out benchmarks/results] [--quick]

Models: the bundled PA(4,5) digits network (batch 450, every test image) and a
ResNet-18 (edgecc.zoo, ImageNet stem, 224x224, batch 1) converted with pa_convert to
PA(2,3), quantizers calibrated on 4 random batches (latency does not depend on the
trained values). Each model is compiled twice (plane links on / off) and both libraries
are timed interleaved in one run; the outputs are checked to be identical first.
Writes plane_outputs.md and plane_outputs.json with machine, threads, versions, date
and the load average before the run.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import edgecc
import edgecc.runtime
from edgecc.compiler.codegen import cpp as C
from edgecc.compiler.compile import compile as compile_model
from edgecc.compiler.passes import default_pipeline
from edgecc.compiler.quant.calibration import calibrate
from edgecc.compiler.quant.convert import pa_convert
from edgecc.compiler.quant.export import exportable


def _compile(graph, out: Path, planes: bool) -> dict:
    return compile_model(graph, out, scheme="pa", run_passes=False, plane_outputs=planes, onednn=False)


def digits_graph():
    from edgecc.zoo import digits as D
    _, _, xte, _ = D.load_digits_split()
    graph = edgecc.load(exportable(D.load_bundled("pa45")), (xte,))
    default_pipeline().run(graph)
    return graph, xte.numpy()


def resnet18_graph(size: int):
    from edgecc.zoo import resnet
    torch.manual_seed(0)
    net = resnet.resnet18().eval()
    pa = pa_convert(net, 2, 3)
    calibrate(pa, [torch.randn(1, 3, size, size) for _ in range(4)])
    pa.eval()
    x = torch.randn(1, 3, size, size)
    graph = edgecc.load(exportable(pa), (x,))
    default_pipeline().run(graph)
    return graph, x.numpy()


def time_pair(models: dict, x, rounds: int, reps: int) -> dict:
    """Median seconds per run of each model, rounds interleaved (first run excluded)."""
    for m in models.values():
        m.run(x)
    samples = {k: [] for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            for _ in range(reps):
                t0 = time.perf_counter()
                m.run(x)
                samples[k].append(time.perf_counter() - t0)
    return {k: {"median_ms": 1e3 * statistics.median(v), "min_ms": 1e3 * min(v), "runs": len(v)}
            for k, v in samples.items()}


def bench(name: str, graph, x, threads: int, rounds: int, reps: int, tmp: Path) -> dict:
    metas, models = {}, {}
    for planes in (True, False):
        key = "planes" if planes else "float"
        metas[key] = _compile(graph, tmp / f"{name}_{key}", planes)
        models[key] = edgecc.runtime.load(tmp / f"{name}_{key}", threads=threads)
    outs = {k: m.run(x)[0] for k, m in models.items()}
    if not np.array_equal(outs["planes"], outs["float"]):
        raise SystemExit(f"{name}: outputs differ with and without plane links")
    times = time_pair(models, x, rounds, reps)
    links = [layer["node"] for layer in metas["planes"]["layers"] if "writes their planes" in layer["why"]]
    binary = [layer for layer in metas["planes"]["layers"] if layer["op"] in C.BINARY_OPS]
    return {"model": name, "input": list(x.shape), "binary_layers": len(binary), "plane_links": len(links),
            "linked_layers": links,
            "arena_bytes": {k: m["memory_plan"]["arena_bytes"] for k, m in metas.items()},
            "median_ms": {k: round(v["median_ms"], 3) for k, v in times.items()},
            "min_ms": {k: round(v["min_ms"], 3) for k, v in times.items()},
            "runs": times["planes"]["runs"],
            "speedup": round(times["float"]["median_ms"] / times["planes"]["median_ms"], 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--quick", action="store_true", help="fewer runs, 112x112 ResNet input")
    args = ap.parse_args(argv)
    load = os.getloadavg()
    torch.set_num_threads(max(1, args.threads))
    rounds, reps = (3, 3) if args.quick else (5, 10)
    start = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="edgecc_planes_") as tmp:
        g, x = digits_graph()
        results.append(bench("digits PA(4,5) batch 450", g, x, args.threads, rounds, reps, Path(tmp)))
        size = 112 if args.quick else 224
        g, x = resnet18_graph(size)
        results.append(bench(f"ResNet-18 PA(2,3) {size}x{size} batch 1", g, x, args.threads, rounds,
                             max(2, reps // 2), Path(tmp)))
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.processor() or platform.machine(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "threads": args.threads, "load_average_before": [round(v, 2) for v in load],
            "python": sys.version.split()[0], "numpy": np.__version__, "torch": torch.__version__,
            "edgecc": edgecc.__version__, "wall_s": round(time.perf_counter() - start, 1), "results": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plane_outputs.json").write_text(json.dumps(info, indent=1))
    lines = ["# Binary layers writing the next layer's planes (python -m benchmarks.plane_outputs)", "",
             f"{info['date']}, {info['machine']}, {info['cpus']} CPUs, {args.threads} thread(s), "
             f"load average before {info['load_average_before']}, torch {torch.__version__}, "
             f"numpy {np.__version__}, Python {info['python']}; wall {info['wall_s']} s.", "",
             "Compiled model.so, median latency of interleaved runs (first run excluded); outputs identical.", "",
             "| model | binary layers | plane links | median ms, links | median ms, float | speed-up | "
             "arena KiB links / float |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['model']} | {r['binary_layers']} | {r['plane_links']} | {r['median_ms']['planes']} | "
                     f"{r['median_ms']['float']} | {r['speedup']}x | {r['arena_bytes']['planes'] / 1024:.0f} / "
                     f"{r['arena_bytes']['float'] / 1024:.0f} |")
    (out / "plane_outputs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
