"""ResNet-18 compiled by edgecc (fp32, int8, PA(4,5), PA(2,3), binary) against PyTorch
and ONNX Runtime, measured side by side in one process (issue #9 item 6).

    python -m benchmarks.compiled_models [--threads 1,2] [--budget 600] [--workdir DIR]

The model: edgecc.zoo resnet18, random init (seed 0), eval, 224x224, batch 1. Every
edgecc variant is compiled from the same float IR (saved as .ecir); int8, PA and binary
are edgecc's post-training schemes calibrated on the same CALIB_SAMPLES seeded random
images (no fine-tuning, so their outputs are not expected to match the float model).
Baselines run the float model: PyTorch eager fp32, PyTorch int8 (FX PTQ, x86 backend),
ONNX Runtime fp32 (TorchScript export, opset 17) and ONNX Runtime int8 (quantize_static,
QDQ, per-channel); both int8 baselines use the same calibration images.

All engines of one thread count are timed interleaved (edgecc.runtime.compare.measure):
each gets >= RUNS runs and >= MIN_TIME s, at most MAX_TIME s. A scheme or baseline that
fails is reported as "not available: <reason>" and the rest still run. The 2-thread
measurement is skipped (and says so) when the budget is mostly spent.
Writes benchmarks/results/compiled_models.{md,json,png}.
"""
from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import onnx  # noqa: F401 - imported for its version in the results
import onnxruntime  # noqa: F401
import torch

import edgecc
import edgecc.runtime
from edgecc import zoo
from edgecc.compiler.ir import save as save_ecir
from edgecc.runtime import bench as B
from edgecc.runtime import compare as C

VARIANTS = [  # (name, scheme, PA bases, onednn: None = --onednn, False = edgecc's own kernels only)
    ("fp32", "fp32", None, None), ("fp32-no-onednn", "fp32", None, False),
    ("int8", "int8", None, None), ("int8-no-onednn", "int8", None, False),
    ("PA(4,5)", "pa", (4, 5), None), ("PA(2,3)", "pa", (2, 3), None), ("binary", "binary", None, None),
]
CALIB_SAMPLES = 4
RUNS, MIN_TIME, MAX_TIME = 10, 2.0, 5.0
RESULTS = Path(__file__).parent / "results"
BASELINE_KEYS = ("torch_fp32", "torch_int8", "ort_fp32", "ort_int8")


def log(msg: str) -> None:
    print(msg, flush=True)


def dirname(variant: str) -> str:
    return "resnet18_" + "".join(c for c in variant if c.isalnum())


def compile_variants(ecir: Path, work: Path, calib: np.ndarray, onednn, wanted: list[str]) -> dict:
    """name -> {"outdir", "compile_s", "summary"...} or {"error"}."""
    out = {}
    for name, scheme, bases, own_onednn in VARIANTS:
        if name not in wanted:
            continue
        log(f"[compile] {name} (scheme {scheme})")
        t0 = time.perf_counter()
        try:
            meta = edgecc.compile(str(ecir), work / dirname(name),
                                  scheme=scheme, pa_bases=bases or (4, 5),
                                  calib=None if scheme == "fp32" else [calib],
                                  onednn=onednn if own_onednn is None else own_onednn)
        except Exception as e:  # noqa: BLE001 - reported, the other schemes still run
            out[name] = {"scheme": scheme, "error": C.reason(e)}
            log(f"          not available: {out[name]['error']}")
            continue
        s, report = meta["summary"], meta.get("scheme_report") or {}
        out[name] = {"scheme": scheme, "outdir": str(work / dirname(name)), "onednn": meta["options"]["onednn"],
                     "compile_s": round(time.perf_counter() - t0, 1),
                     "model_so_bytes": s["artifact_bytes"], "weights_bytes": s["weights_section_bytes"],
                     "compression": s["compression_ratio"], "layers_per_kernel": s["layers_per_kernel"],
                     "compiler": meta["versions"]["compiler"],
                     "conversion": report.get("conversion") or report.get("calibration")}
        log(f"          {out[name]['compile_s']} s, model.so {s['artifact_bytes'] / 2**20:.1f} MiB")
    return out


def ratio_matrix(rows: list[dict]) -> str:
    """edgecc variant x baseline: edgecc median / baseline median (< 1: edgecc faster)."""
    by = {r["key"]: r for r in rows}
    base = [by[k] for k in BASELINE_KEYS]
    head = "| edgecc | " + " | ".join(b["engine"] for b in base) + " |"
    lines = [head, "|" + "---|" * (len(base) + 1)]
    for r in rows:
        if not r["key"].startswith("edgecc"):
            continue
        cells = []
        for b in base:
            if r["latency"] is None or b["latency"] is None:
                cells.append("n/a")
            else:
                cells.append(f"{r['latency']['median_ms'] / b['latency']['median_ms']:.2f}")
        lines.append(f"| {r['engine']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds; later thread counts are skipped "
                    "when 60%% of it is spent (default 600)")
    ap.add_argument("--workdir", help="where compiled models go (default: a temporary directory)")
    ap.add_argument("--onednn", choices=("auto", "on", "off"), default="auto",
                    help="float layers through oneDNN (compile's onednn=None/True/False)")
    ap.add_argument("--results", default=str(RESULTS), help="output directory for .md/.json/.png")
    ap.add_argument("--variants", default=",".join(v[0] for v in VARIANTS),
                    help="subset of the edgecc variants, e.g. fp32,PA(4,5) (default: all)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 runs, at most 1 s per engine")
    args = ap.parse_args(argv)
    wanted = re.findall(r"[^,()]+(?:\([^)]*\))?", args.variants.replace(" ", ""))   # commas inside () stay
    unknown = sorted(set(wanted) - {v[0] for v in VARIANTS})
    if unknown:
        ap.error(f"--variants: unknown {unknown}; choose from {', '.join(v[0] for v in VARIANTS)}")
    timing = (3, 0.0, 1.0) if args.quick else (RUNS, MIN_TIME, MAX_TIME)
    thread_list = [int(t) for t in args.threads.split(",")]
    onednn = {"auto": None, "on": True, "off": False}[args.onednn]
    t_start = time.perf_counter()
    load_start = B.machine()["load_average_1_5_15"]
    warnings.simplefilter("ignore")

    with tempfile.TemporaryDirectory(prefix="edgecc-bench-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        log("[model] resnet18 (edgecc.zoo), random init seed 0, eval, 1x3x224x224")
        torch.manual_seed(0)
        model = zoo.get("resnet18").eval()
        x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        graph = edgecc.load(model, (torch.from_numpy(x),))
        ecir = work / "resnet18.ecir"
        save_ecir(graph, str(ecir))
        calib_batches = C.calibration_batches([x], n=CALIB_SAMPLES - 1)    # x + 3 random images
        calib = np.concatenate([b[0] for b in calib_batches])

        variants = compile_variants(ecir, work, calib, onednn, wanted)

        log("[baselines] PyTorch int8 (FX PTQ), ONNX export, ONNX Runtime QDQ quantization")
        torch.set_num_threads(thread_list[0])
        torch_fp32 = C.torch_fp32_engine(model, [x])
        torch_int8 = C.torch_int8_engine(model, [x], calib_batches)
        onnx_fp32 = onnx_int8 = None
        onnx_why = int8_why = ""
        int8_note = C.ORT_INT8_NOTE
        try:
            onnx_fp32 = C.export_onnx(model, [x], str(work / "resnet18.onnx"), ["x"])
        except Exception as e:  # noqa: BLE001
            onnx_why = f"torch.onnx.export failed: {C.reason(e)}"
        if onnx_fp32:
            try:
                onnx_int8, int8_note = C.quantize_qdq(onnx_fp32, str(work / "resnet18_qdq.onnx"), calib_batches)
            except Exception as e:  # noqa: BLE001
                int8_why = f"quantize_static failed: {C.reason(e)}"
        else:
            int8_why = onnx_why

        per_threads = {}
        for threads in thread_list:
            spent = time.perf_counter() - t_start
            if per_threads and spent > 0.6 * args.budget:
                per_threads[threads] = {"skipped": f"budget: {spent:.0f} s of {args.budget:.0f} s spent"}
                log(f"[measure] {threads} thread(s): skipped ({per_threads[threads]['skipped']})")
                continue
            log(f"[measure] {threads} thread(s), load average {B.machine()['load_average_1_5_15']}")
            torch.set_num_threads(threads)
            engines = []
            for name, v in variants.items():
                if "error" in v:
                    short = v["error"][:150] + (" ... (see the variants table)" if len(v["error"]) > 150 else "")
                    engines.append(C.Engine(f"edgecc_{name}", f"edgecc {name}", error=short))
                    continue
                try:
                    m = edgecc.runtime.load(v["outdir"], threads=threads)
                except Exception as e:  # noqa: BLE001
                    engines.append(C.Engine(f"edgecc_{name}", f"edgecc {name}", error=f"load: {C.reason(e)}"))
                    continue
                engines.append(C.edgecc_engine(m, [x], key=f"edgecc_{name}", label=f"edgecc {name}", note=""))
            for e in (torch_fp32, torch_int8):    # the same prepared modules; threads are global
                engines.append(C.Engine(e.key, e.label, run=e.run, error=e.error, note=e.note))
            engines.append(C.ort_engine(onnx_fp32, [x], threads, why_missing=onnx_why))
            engines.append(C.ort_engine(onnx_int8, [x], threads, key="ort_int8", label="ONNX Runtime int8 (QDQ)",
                                        why_missing=int8_why, note=int8_note))
            C.measure(engines, runs=timing[0], min_time=timing[1], max_time=timing[2], reference="torch_fp32")
            rows = C.engine_dicts(engines, reference_latency="torch_fp32")
            per_threads[threads] = {"rows": rows, "load_average_after": B.machine()["load_average_1_5_15"]}
            log(C.format_table(rows, ref_label="PyTorch fp32"))

    doc = {
        "benchmark": "compiled_models", "model": "resnet18 (edgecc.zoo, random init seed 0, eval)",
        "input": [1, 3, 224, 224], "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": B.machine(), "load_average_at_start": load_start,
        "versions": {**B.versions(extra=("torch", "onnxruntime", "onnx", "matplotlib")),
                     "compiler": next((v["compiler"] for v in variants.values() if "compiler" in v), None)},
        "timing": {"runs": timing[0], "min_time_s": timing[1], "max_time_s": timing[2], "block_s": C.BLOCK_S,
                   "method": "interleaved blocks, first call of each block discarded"},
        "calibration": f"{CALIB_SAMPLES} images: the benchmark input + {CALIB_SAMPLES - 1} seeded normals",
        "variants": variants, "threads": per_threads,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compiled_models.json").write_text(json.dumps(doc, indent=1))
    (out / "compiled_models.md").write_text(markdown(doc))
    plot(doc, out / "compiled_models.png")
    log(f"wrote {out}/compiled_models.md, .json, .png ({doc['wall_s']} s)")
    return 0


def load_warning(doc: dict) -> list[str]:
    """A loaded machine makes multi-threaded timings meaningless (every OpenMP barrier
    waits for a time slice): say so next to the numbers."""
    cpus = doc["machine"]["logical_cpus"] or 1
    loads = [doc["load_average_at_start"]] + [t.get("load_average_after") for t in doc["threads"].values()]
    worst = max((la[0] for la in loads if la), default=0.0)
    if worst <= 0.5 * cpus:
        return []
    return [f"**Warning: the machine was loaded (1-min load average up to {worst} on {cpus} logical CPUs) "
            "while this ran: timings are noisy and multi-threaded ones unreliable. Rerun on a quiet "
            "machine before quoting them.**", ""]


def markdown(doc: dict) -> str:
    m, v = doc["machine"], doc["versions"]
    lines = [
        "# ResNet-18 compiled by edgecc vs PyTorch and ONNX Runtime (python -m benchmarks.compiled_models)", "",
        f"{doc['date']}, {m['cpu']} ({m['logical_cpus']} logical CPUs), load average at start "
        f"{doc['load_average_at_start']}; " + ", ".join(f"{k} {val}" for k, val in v.items() if val) +
        f"; wall time {doc['wall_s']} s.", "",
        f"Model: {doc['model']}, input {doc['input']}. Calibration: {doc['calibration']}. Timing: "
        f">= {doc['timing']['runs']} runs and >= {doc['timing']['min_time_s']} s per engine, at most "
        f"{doc['timing']['max_time_s']} s, {doc['timing']['method']}.", "",
        *load_warning(doc),
        "## edgecc variants", "",
        "| variant | scheme | compile s | model.so MiB | weights MiB | compression | conversion |",
        "|---|---|---|---|---|---|---|"]
    for name, r in doc["variants"].items():
        if "error" in r:
            lines.append(f"| {name} | {r['scheme']} | not available: {r['error']} | | | | |")
        else:
            lines.append(f"| {name} | {r['scheme']} | {r['compile_s']} | {r['model_so_bytes'] / 2**20:.1f} | "
                         f"{r['weights_bytes'] / 2**20:.1f} | {r['compression']}x | {r['conversion'] or ''} |")
    for threads, t in doc["threads"].items():
        lines += ["", f"## {threads} thread(s)", ""]
        if "skipped" in t:
            lines.append(f"Skipped: {t['skipped']}.")
            continue
        lines += [f"Load average after: {t['load_average_after']}.", "",
                  "Latency (ms) and agreement with the float model in PyTorch. 'PyTorch fp32/engine' = "
                  "PyTorch fp32 median / engine median (> 1: faster than PyTorch fp32). int8, PA and binary "
                  "are post-training conversions without fine-tuning: their outputs differ from the float "
                  "model by design.", "",
                  C.format_table(t["rows"], ref_label="PyTorch fp32"), "",
                  "Latency ratio edgecc / baseline (median over median; < 1: edgecc faster):", "",
                  ratio_matrix(t["rows"])]
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(k, t) for k, t in doc["threads"].items() if "rows" in t]
    if not panels:
        return
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 4.2 * len(panels)), squeeze=False)
    for ax, (threads, t) in zip(axes[:, 0], panels):
        C.plot_rows(ax, t["rows"], title=f"ResNet-18 224x224 batch 1, {threads} thread(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
