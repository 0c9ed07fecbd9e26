"""The main job: take the bundled PA(4,5) network trained on scikit-learn's digits
(edgecc/zoo/data, produced by `python -m benchmarks.pa_digits`), import it into edgecc's
IR, compile it to a shared library (model.so + model.h + model.json), run it on every
test image, and compare accuracy and latency with PyTorch.

    .venv/bin/python examples/digits_demo.py [--threads N] [--out DIR]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import edgecc
import edgecc.runtime
from edgecc.compiler.analysis import analyze
from edgecc.compiler.passes import default_pipeline
from edgecc.compiler.quant.convert import pa_convert
from edgecc.compiler.quant.export import exportable
from edgecc.runtime.engine import Engine
from edgecc.zoo import digits as D


def median_ms(fn, repeats: int = 20) -> float:
    fn()  # warm-up: first call packs/allocates
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="build/digits_pa45", help="output directory of the compiled model")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    print("[1/5] loading the digits test split and the bundled models")
    _, _, xte, yte = D.load_digits_split()
    fmodel = D.DigitsResNet()
    fmodel.load_state_dict(torch.load(D.DATA_DIR / "digits_float.pt", weights_only=True))
    fmodel.eval()
    pa = pa_convert(D.DigitsResNet(), 4, 5)
    pa.load_state_dict(torch.load(D.DATA_DIR / "digits_pa45.pt", weights_only=True))
    pa.eval()

    print("[2/5] importing PA(4,5) into edgecc IR (torch.export) and running the passes")
    batch = xte.shape[0]
    graph = edgecc.load(exportable(pa), (xte[:batch],))
    default_pipeline().run(graph)
    a = analyze(graph)
    ops = {}
    for n in graph.nodes:
        ops[n.op] = ops.get(n.op, 0) + 1
    print(f"      {len(graph.nodes)} nodes: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
    print(f"      params {a.total_params:,}; passes: {len(graph.meta.get('pass_log', []))} changes")

    print(f"[3/5] compiling to a shared library in {args.out}")
    edgecc.compile(graph, args.out, scheme="pa", run_passes=False, log=lambda m: print("      " + m))
    model = edgecc.runtime.load(args.out, threads=args.threads)

    print(f"[4/5] running all {batch} test images through the compiled library")
    x = xte.numpy()
    logits = model.run(x)[0]
    with torch.no_grad():
        ref_pa = pa(xte).numpy()
        ref_float = fmodel(xte).numpy()
    y = yte.numpy()
    acc = lambda out: 100.0 * float((out.argmax(1) == y).mean())  # noqa: E731
    same = int((logits.argmax(1) == ref_pa.argmax(1)).sum())
    print(f"      accuracy: float (PyTorch) {acc(ref_float):.2f}%, PA(4,5) PyTorch {acc(ref_pa):.2f}%, "
          f"PA(4,5) edgecc {acc(logits):.2f}%")
    print(f"      edgecc and PyTorch agree on {same}/{batch} predictions; "
          f"max |logit diff| {np.abs(logits - ref_pa).max():.2e}")

    print(f"[5/5] latency for the whole test batch ({batch} images), {args.threads} thread(s), median of 20")
    engine = Engine(graph, threads=args.threads)
    with torch.no_grad():
        t_lib = median_ms(lambda: model.run(x))
        t_engine = median_ms(lambda: engine(x))
        t_pa = median_ms(lambda: pa(xte))
        t_float = median_ms(lambda: fmodel(xte))
    print(f"      edgecc library {t_lib:.1f} ms | edgecc Python engine {t_engine:.1f} ms | "
          f"PyTorch PA (float emulation) {t_pa:.1f} ms | PyTorch float {t_float:.1f} ms")
    return 0 if same == batch else 1


if __name__ == "__main__":
    raise SystemExit(main())
