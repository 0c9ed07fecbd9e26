"""DFNT integer convolution against the exact direct kernels and the int8 libraries
(thesis ch.2, Table 2.3), plus a crossover sweep.

    python -m benchmarks.dfnt_conv            # ~10 minutes on 2 shared cores
    python -m benchmarks.dfnt_conv --quick    # a smoke run (tiny batch, few points)

Part 1, the Table 2.3 layers (k, n+k-1, f, f') with "same" padding, batch TABLE_BATCH
(the thesis used 128), 1 and 2 threads: DFNT (INT8 on F5; INT16 on 2^48+1 and on F6),
the vectorized direct kernel (edgecc.kernels.direct.conv2d_int), the naive seven-loop
kernel (timed on one image, scaled to the batch), PyTorch int8 quantized Conv2d (x86
engine) and ONNX Runtime ConvInteger. Every exact method's output is checked against
the direct kernel (PyTorch requantizes its int32 sums to uint8, so it is timed only).

Part 2, the crossover sweep: k in {3,5,7,11}, n x n maps n in {14,28,56}, C = C' in
{64,128,256,384}, batch SWEEP_BATCH, one thread, INT8 and INT16: DFNT ("auto" ring,
transform size from the layer's sizes) against the direct kernel (and PyTorch int8).

Times are medians of interleaved repetitions (methods alternate, so load from other
processes hits all of them alike). Writes benchmarks/results/dfnt_conv.{md,json}.
"""
from __future__ import annotations

import os

# Idle OpenMP / ONNX Runtime threads must sleep, not spin: with two cores shared by
# several libraries' thread pools (and other jobs), a spinning pool steals the core
# another pool is waiting for. Set before the OpenMP runtimes load.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks._common import cpu_name, gcc_version, interleaved_medians  # noqa: E402
from edgecc import _native  # noqa: E402
from edgecc.kernels import dfnt  # noqa: E402
from edgecc.kernels.direct import conv2d_int, conv2d_int_naive  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TABLE_2_3 = [(11, 32, 3, 96), (7, 32, 96, 256), (5, 16, 256, 384), (5, 16, 384, 384), (3, 16, 384, 384)]
# Thesis Table 2.3, seconds at batch 128, one thread (Xeon 2.4 GHz, scalar code).
THESIS_2_3 = {"int16": {"direct": [2.48, 126.40, 83.45, 130.03, 97.52], "dfnt": [2.73, 52.73, 47.82, 70.49, 70.58]},
              "int8": {"direct": [1.95, 109.65, 72.67, 109.60, 94.07], "dfnt": [2.33, 45.34, 40.82, 60.32, 60.16]}}
TABLE_BATCH = 32
SWEEP_K, SWEEP_SIZE, SWEEP_CH = (3, 5, 7, 11), (14, 28, 56), (64, 128, 256, 384)
SWEEP_BATCH = 8


# ---------------------------------------------------------------- environment
def machine() -> dict:
    import onnxruntime
    import torch
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "isa": _native.best_isa(),
            "features": {k: v for k, v in _native.cpu_features().items() if v},
            "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "compiler": gcc_version(),
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "load_average_at_start": load}


# ---------------------------------------------------------------- baselines
def torch_int8(x: np.ndarray, w: np.ndarray, pad: int, threads: int):
    """PyTorch quantized Conv2d (weights prepacked once); returns a callable."""
    import torch
    import torch.ao.nn.quantized as nnq
    torch.backends.quantized.engine = "x86"
    torch.set_num_threads(threads)
    o, c, k, _ = w.shape
    conv = nnq.Conv2d(c, o, k, padding=pad, bias=False)
    wq = torch.quantize_per_tensor(torch.from_numpy(w.astype(np.float32)), 1.0, 0, torch.qint8)
    conv.set_weight_bias(wq, None)
    conv.scale, conv.zero_point = float(dfnt.overflow_bound(w, np.int8)) / 127, 0
    xq = torch.quantize_per_tensor(torch.from_numpy(x.astype(np.float32)), 1.0, 128, torch.quint8)

    def run():
        with torch.no_grad():
            return conv(xq)
    return run


def ort_convinteger(x: np.ndarray, w: np.ndarray, pad: int, threads: int):
    """ONNX Runtime ConvInteger (int8 x int8 -> exact int32); returns a callable."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    o, c, k, _ = w.shape
    node = helper.make_node("ConvInteger", ["x", "w"], ["y"], pads=[pad] * 4, kernel_shape=[k, k])
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.INT8, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda: sess.run(None, {"x": x})[0]


# ---------------------------------------------------------------- timing
def dfnt_stages(conv, x) -> dict:
    conv(x)
    return {k: round(v * 1e3, 3) for k, v in dfnt.last_stage_times().items()}


def pointwise_macs(conv, batch, oh, ow, c, o) -> int:
    n = conv.transform_size
    kh, kw = conv.plan.kernel_h, conv.plan.kernel_w
    tiles = batch * -(-oh // (n - kh + 1)) * -(-ow // (n - kw + 1))
    return tiles * n * n * c * o


def random_int(rng, dtype, shape, low=None, high=None):
    info = np.iinfo(dtype)
    return rng.integers(info.min if low is None else low, (info.max if high is None else high) + 1, size=shape,
                        dtype=dtype)


# ---------------------------------------------------------------- part 1
def table_2_3(batch: int, threads_list, reps: int, configs) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for ci, (k, tile, f, fo) in enumerate(configs):
        n = tile - k + 1
        pad = (k - 1) // 2
        for dtype in (np.int8, np.int16):
            dname = np.dtype(dtype).name
            x = random_int(rng, dtype, (batch, f, n, n))
            w = random_int(rng, dtype, (fo, f, k, k), -127, 127)
            direct_macs = batch * fo * f * n * n * k * k
            for threads in threads_list:
                fns, convs = {}, {}
                moduli = ["F5"] if dtype == np.int8 else ["2^48+1", "F6"]
                prep = {}
                for m in moduli:
                    t = time.perf_counter()
                    convs[m] = dfnt.DfntConv2d(w, padding="same", modulus=m, input_dtype=dtype, transform_size=tile,
                                               threads=threads)
                    prep[m] = time.perf_counter() - t
                    fns[f"dfnt_{m}"] = (lambda c=convs[m]: c(x))
                fns["direct"] = lambda: conv2d_int(x, w, padding=pad, threads=threads)
                if dtype == np.int8:
                    fns["pytorch_int8"] = torch_int8(x, w, pad, threads)
                    fns["ort_convinteger"] = ort_convinteger(x, w, pad, threads)
                ref = conv2d_int(x, w, padding=pad, threads=threads)
                for m, conv in convs.items():
                    assert np.array_equal(conv(x), ref), (k, tile, f, fo, dname, m)
                if dtype == np.int8:
                    assert np.array_equal(fns["ort_convinteger"](), ref)
                med = interleaved_medians(fns, reps)
                # naive loop: one image, scaled to the batch
                x1 = x[:1]
                t = time.perf_counter()
                y1 = conv2d_int_naive(x1, w, padding=pad, threads=threads)
                med["naive"] = (time.perf_counter() - t) * batch
                assert np.array_equal(y1, ref[:1])
                row = {"config": [k, tile, f, fo], "dtype": dname, "threads": threads, "batch": batch,
                       "direct_macs": direct_macs, "methods": {}}
                for name, sec in med.items():
                    entry = {"median_ms": round(sec * 1e3, 3), "ms_per_image": round(sec * 1e3 / batch, 3),
                             "effective_gmacs": round(direct_macs / sec / 1e9, 2),
                             "speedup_vs_direct": round(med["direct"] / sec, 3)}
                    if name.startswith("dfnt_"):
                        conv = convs[name[5:]]
                        pm = pointwise_macs(conv, batch, n, n, f, fo)
                        stages = dfnt_stages(conv, x)
                        entry.update({"modulus": conv.modulus, "transform_size": conv.transform_size,
                                      "modular_macs": pm, "modular_gmacs_per_s": round(pm / sec / 1e9, 2),
                                      "pointwise_gmacs_per_s": round(pm / (stages["pointwise"] * 1e-3) / 1e9, 2),
                                      "stages_ms": stages, "prepare_s": round(prep[name[5:]], 3),
                                      "transformed_weight_mb": round(conv.plan.transformed_weight_bytes / 2**20, 1),
                                      "gemm_kernel": conv.plan.gemm_kernel})
                    if name == "naive":
                        entry["note"] = "timed on 1 image, scaled to the batch"
                    row["methods"][name] = entry
                thesis = THESIS_2_3[dname]
                row["thesis_speedup_dfnt_vs_direct"] = round(thesis["direct"][TABLE_2_3.index((k, tile, f, fo))]
                                                             / thesis["dfnt"][TABLE_2_3.index((k, tile, f, fo))], 2)
                rows.append(row)
                print(f"[table] {(k, tile, f, fo)} {dname} t={threads}: " + ", ".join(
                    f"{nm} {e['ms_per_image']:.2f}ms/img" for nm, e in row["methods"].items()), flush=True)
                del convs, fns
    return rows


# ---------------------------------------------------------------- part 2
def sweep(batch: int, ks, sizes, channels, with_torch: bool, budget_s: float) -> list[dict]:
    points = []
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    for dtype in (np.int8, np.int16):
        dname = np.dtype(dtype).name
        for k in ks:
            for s in sizes:
                for c in channels:
                    x = random_int(rng, dtype, (batch, c, s, s))
                    w = random_int(rng, dtype, (c, c, k, k), -127, 127)
                    pad = (k - 1) // 2
                    conv = dfnt.DfntConv2d(w, padding="same", input_dtype=dtype, input_hw=(s, s), batch=batch,
                                           threads=1)
                    fns = {"dfnt": lambda c=conv: c(x), "direct": lambda: conv2d_int(x, w, padding=pad, threads=1)}
                    if with_torch and dtype == np.int8:
                        fns["pytorch_int8"] = torch_int8(x, w, pad, 1)
                    assert np.array_equal(conv(x), conv2d_int(x, w, padding=pad, threads=1))
                    t = time.perf_counter()
                    fns["direct"]()
                    one = time.perf_counter() - t
                    reps = 3 if one < 1.0 else 1  # keeps the sweep within its time budget
                    med = interleaved_medians(fns, reps)
                    macs = batch * c * c * s * s * k * k
                    p = {"dtype": dname, "k": k, "size": s, "channels": c, "batch": batch, "threads": 1, "reps": reps,
                         "modulus": conv.modulus, "transform_size": conv.transform_size,
                         "dfnt_ms": round(med["dfnt"] * 1e3, 3), "direct_ms": round(med["direct"] * 1e3, 3),
                         "direct_gmacs": round(macs / med["direct"] / 1e9, 2),
                         "dfnt_effective_gmacs": round(macs / med["dfnt"] / 1e9, 2),
                         "speedup_vs_direct": round(med["direct"] / med["dfnt"], 3)}
                    if "pytorch_int8" in med:
                        p["pytorch_int8_ms"] = round(med["pytorch_int8"] * 1e3, 3)
                        p["speedup_vs_pytorch_int8"] = round(med["pytorch_int8"] / med["dfnt"], 3)
                    p["winner"] = "dfnt" if med["dfnt"] < med["direct"] else "direct"
                    points.append(p)
                    print(f"[sweep] {dname} k={k} n={s} c={c}: dfnt {p['dfnt_ms']:.1f} ms ({conv.modulus}, "
                          f"n={conv.transform_size}) direct {p['direct_ms']:.1f} ms -> x{p['speedup_vs_direct']:.2f}"
                          + (f", vs torch x{p['speedup_vs_pytorch_int8']:.2f}" if "pytorch_int8" in p else ""),
                          flush=True)
                    del conv, fns
                    if time.perf_counter() - start > budget_s:
                        print(f"[sweep] time budget {budget_s:.0f} s reached; stopping", flush=True)
                        return points
    return points


# ---------------------------------------------------------------- targets and report
def targets(table: list[dict], points: list[dict]) -> list[dict]:
    out = []

    def verdict(name, pts, key, goal, why_not):
        values = [p[key] for p in pts if key in p]
        met = bool(values) and min(values) >= goal
        failing = [f"{p['dtype']},k={p['k']},n={p['size']},C={p['channels']}: {p[key]:.2f}"
                   for p in pts if key in p and p[key] < goal]
        out.append({"target": name, "goal": goal, "measured_min": round(min(values), 2) if values else None,
                    "measured_max": round(max(values), 2) if values else None, "points": len(values), "met": met,
                    "failing": failing, "note": "" if met else why_not})

    def median(xs):
        return round(statistics.median(xs), 1) if xs else float("nan")

    # Cost of one modular MAC in units of the direct kernel's MAC (Q), measured.
    pointwise = median([e["pointwise_gmacs_per_s"] for r in table if r["threads"] == 1
                        for name, e in r["methods"].items() if name in ("dfnt_F5", "dfnt_2^48+1")])
    direct8 = median([p["direct_gmacs"] for p in points if p["dtype"] == "int8"])
    direct16 = median([p["direct_gmacs"] for p in points if p["dtype"] == "int16"])
    i16 = [p for p in points if p["dtype"] == "int16" and p["size"] >= 28]
    verdict("INT16 DFNT/direct, k>=5, maps >= 28x28", [p for p in i16 if p["k"] >= 5], "speedup_vs_direct", 2.0,
            "the failing layers have few channels or k=5: at this batch a bin's GEMM has only a few rows, so the "
            "transforms and streaming the transformed weights (n^2 C C' 8 bytes per call) weigh as much as the "
            "products")
    verdict("INT16 DFNT/direct, k>=7, maps >= 28x28", [p for p in i16 if p["k"] >= 7], "speedup_vs_direct", 3.0,
            f"the direct int16 kernel runs at ~{direct16} GMAC/s and DFNT's pointwise stage at ~{pointwise} modular "
            f"GMAC/s (Q ~ {direct16 / pointwise:.1f}); for k=7 on 28x28 maps the best power-of-two tiling (3x3 "
            "tiles of n=16) needs 2.94 bins per output, so 49 / 2.94 = 16.7x fewer products bound the speed-up "
            f"near {16.7 / (direct16 / pointwise):.1f}x before the transforms; the C=64 layers are dominated by "
            "the transforms and by streaming the transformed weights at this batch")
    i8 = [p for p in points if p["dtype"] == "int8"]
    why8 = (f"the direct int8 kernel (VNNI) runs at ~{direct8} GMAC/s and DFNT's pointwise stage at ~{pointwise} "
            f"modular GMAC/s (two IFMA52 ops per 8 products), Q ~ {direct8 / pointwise:.0f}: DFNT needs "
            "k^2 / (bins per output) above Q plus the transforms, which only k=11 on 56x56 maps reaches")
    verdict("INT8 DFNT/direct at k=11", [p for p in i8 if p["k"] == 11], "speedup_vs_direct", 1.5, why8)
    verdict("INT8 DFNT/PyTorch int8 at k=11", [p for p in i8 if p["k"] == 11], "speedup_vs_pytorch_int8", 1.5, why8)
    verdict("INT8 DFNT/direct at k=7, 56x56 (not slower)", [p for p in i8 if p["k"] == 7 and p["size"] == 56],
            "speedup_vs_direct", 1.0, why8)
    verdict("INT8 DFNT/PyTorch int8 at k=7, 56x56 (not slower)", [p for p in i8 if p["k"] == 7 and p["size"] == 56],
            "speedup_vs_pytorch_int8", 1.0, why8)
    scal = []
    for r2 in (r for r in table if r["threads"] == 2):
        r1 = next((r for r in table if r["threads"] == 1 and r["config"] == r2["config"] and r["dtype"] == r2["dtype"]),
                  None)
        if r1:
            for name in r2["methods"]:
                if name.startswith("dfnt_"):
                    scal.append({"dtype": r2["dtype"], "k": r2["config"][0], "size": r2["config"][1] - r2["config"][0] + 1,
                                 "channels": f"{r2['config'][2]}->{r2['config'][3]} {name}",
                                 "scaling": r1["methods"][name]["median_ms"] / r2["methods"][name]["median_ms"]})
    verdict("DFNT 2 threads / 1 thread (Table 2.3 layers)", scal, "scaling", 1.8,
            "the two cores are shared with other jobs during the run (load average in the header); the stages are "
            "parallel over independent tiles, channel groups and bins")
    return out


def fmt_table(rows: list[list], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(result: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dfnt_conv.json").write_text(json.dumps(result, indent=1))
    m = result["machine"]
    md = [f"# DFNT convolution benchmark ({m['date']})", "",
          f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs (shared with other jobs; load average at start "
          f"{m['load_average_at_start']}, at end {m.get('load_average_at_end')}), ISA {m['isa']}. "
          f"Python {m['python']}, numpy {m['numpy']}, "
          f"torch {m['torch']}, onnxruntime {m['onnxruntime']}, {m['compiler']}.", "",
          "Command: `python -m benchmarks.dfnt_conv" + (" --quick" if result["quick"] else "") + "`. "
          "Medians of interleaved repetitions. All exact methods were checked equal to the direct kernel.", "",
          f"## Table 2.3 layers (batch {result['table_batch']}, 'same' padding)", "",
          "ms per image; speed-up = direct time / method time. Effective GMAC/s counts the direct MACs "
          "(s f' f n^2 k^2); modular GMAC/s counts DFNT's pointwise products (tiles x bins x f x f').", ""]
    rows = []
    for r in result["table_2_3"]:
        for name, e in r["methods"].items():
            rows.append([tuple(r["config"]), r["dtype"], r["threads"], name, e["ms_per_image"], e["effective_gmacs"],
                         e["speedup_vs_direct"], e.get("modular_gmacs_per_s", ""), e.get("pointwise_gmacs_per_s", ""),
                         r["thesis_speedup_dfnt_vs_direct"] if name.startswith("dfnt") else ""])
    md += [fmt_table(rows, ["(k, n+k-1, f, f')", "dtype", "threads", "method", "ms/image", "eff. GMAC/s",
                            "x direct", "modular GMAC/s", "pointwise GMAC/s", "thesis x"]), ""]
    md += ["DFNT stage times (ms, whole batch: pad / forward / pointwise / inverse):", ""]
    srows = []
    for r in result["table_2_3"]:
        for name, e in r["methods"].items():
            if "stages_ms" in e:
                s = e["stages_ms"]
                srows.append([tuple(r["config"]), r["dtype"], r["threads"], name, e["transform_size"],
                              s["pad"], s["forward"], s["pointwise"], s["inverse"], e["transformed_weight_mb"],
                              e["prepare_s"], e["gemm_kernel"]])
    md += [fmt_table(srows, ["layer", "dtype", "threads", "method", "n", "pad", "forward", "pointwise", "inverse",
                             "weights MB", "prepare s", "pointwise kernel"]), ""]
    pts = result["sweep"]
    md += [f"## Crossover sweep (batch {result['sweep_batch']}, 1 thread, C = C')", "",
           result["sweep_note"], "",
           "Speed-up of DFNT over the direct kernel (PyTorch int8 in brackets for INT8); ring and transform size "
           "as chosen by the layer's cost model.", ""]
    for dname in ("int8", "int16"):
        sub = [p for p in pts if p["dtype"] == dname]
        if not sub:
            continue
        rows = []
        for k in SWEEP_K:
            for s in SWEEP_SIZE:
                cells = []
                for c in SWEEP_CH:
                    p = next((q for q in sub if q["k"] == k and q["size"] == s and q["channels"] == c), None)
                    if p is None:
                        cells.append("-")
                    else:
                        cell = f"{p['speedup_vs_direct']:.2f}"
                        if "speedup_vs_pytorch_int8" in p:
                            cell += f" [{p['speedup_vs_pytorch_int8']:.2f}]"
                        cells.append(cell + f" ({p['transform_size']})")
                rows.append([k, s] + cells)
        md += [f"### {dname.upper()}", "", fmt_table(rows, ["k", "n"] + [f"C={c}" for c in SWEEP_CH]), ""]
    md += ["Where DFNT wins (JSON `choice`, keyed `dtype,k,size,channels`):", "",
           ", ".join(f"`{key}`" for key, v in result["choice"].items() if v == "dfnt") or "nowhere", "",
           "## Targets", ""]
    md += [fmt_table([[t["target"], t["goal"], t["measured_min"], t["measured_max"], t["points"],
                       "met" if t["met"] else f"NOT met ({len(t['failing'])} below)", t["note"]]
                      for t in result["targets"]],
                     ["target", "goal (x)", "min", "max", "points", "status", "why not"]), ""]
    for t in result["targets"]:
        if t["failing"]:
            md += [f"- {t['target']}, below the goal: " + "; ".join(t["failing"])]
    md += [""]
    (RESULTS / "dfnt_conv.md").write_text("\n".join(md) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny batch and a few sweep points (smoke test)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sweep-budget", type=float, default=420.0, help="seconds for the sweep before it stops")
    args = ap.parse_args()
    t0 = time.perf_counter()
    info = machine()
    if args.quick:
        table_batch, sweep_batch, reps, configs = 2, 1, 2, TABLE_2_3[:2]
        ks, sizes, chans = (3, 7), (14,), (64,)
    else:
        table_batch, sweep_batch, reps, configs = TABLE_BATCH, SWEEP_BATCH, args.reps, TABLE_2_3
        ks, sizes, chans = SWEEP_K, SWEEP_SIZE, SWEEP_CH
    table = table_2_3(table_batch, (1, 2), reps, configs)
    points = sweep(sweep_batch, ks, sizes, chans, True, args.sweep_budget)
    planned = 2 * len(ks) * len(sizes) * len(chans)
    note = (f"All {planned} points measured." if len(points) == planned else
            f"Subsampled: {len(points)} of {planned} points measured before the time budget "
            f"({args.sweep_budget:.0f} s) ran out; the rest are marked '-'.")
    note += (" Repetitions: 3 where one direct call takes under 1 s, else 1 (medians of interleaved runs).")
    choice = {f"{p['dtype']},{p['k']},{p['size']},{p['channels']}": p["winner"] for p in points}
    result = {"machine": info, "quick": args.quick, "table_batch": table_batch, "sweep_batch": sweep_batch,
              "threads": [1, 2], "table_2_3": table, "sweep": points, "sweep_note": note, "choice": choice,
              "targets": targets(table, points), "wall_s": None}
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    write_report(result)
    print(f"wrote {RESULTS / 'dfnt_conv.md'} and .json in {result['wall_s']} s")
    for t in result["targets"]:
        print(("MET     " if t["met"] else "NOT MET ") + f"{t['target']}: min {t['measured_min']} (goal {t['goal']})")


if __name__ == "__main__":
    main()
