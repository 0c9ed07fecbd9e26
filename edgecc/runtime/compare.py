"""Side-by-side latency of a compiled model and the same model in PyTorch and ONNX Runtime
(`edgecc bench OUTDIR --compare`).

    engines = [edgecc_engine(model, xs), *baseline_engines(module, xs, threads=1, workdir=tmp)]
    measure(engines, runs=20, min_time=1.0, max_time=10.0, reference="edgecc")
    print(format_table(engine_dicts(engines, reference_latency="edgecc")))

The baselines run the float source model: PyTorch eager fp32, PyTorch int8 (FX
post-training static quantization, x86 backend), ONNX Runtime fp32 and ONNX Runtime
int8 (quant_pre_process + quantize_static, QDQ, per-channel weights, U8S8). Both int8 baselines are
calibrated on the same seeded random batches (plus the benchmark inputs). Every engine
gets the same inputs and the same thread count. A baseline that cannot be built or run
stays in the report with its reason.

Timing is interleaved in blocks: each round runs every engine for about BLOCK_S seconds
(the first call of a block is a discarded warm-up after switching engines), rounds
rotate the order, so a change of machine load hits every engine alike.
"""
from __future__ import annotations

import copy
import logging
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import EdgeccError
from .bench import Latency, check_limits

BLOCK_S = 0.25
CALIB_BATCHES = 4


@dataclass
class Engine:
    """One thing to time: `run()` returns the outputs as float arrays."""

    key: str
    label: str
    run: Callable[[], list[np.ndarray]] | None = None
    error: str | None = None       # why it is not available
    setup_s: float = 0.0
    note: str = ""
    # filled by measure()
    first_run_ms: float | None = None
    latency: Latency | None = None
    outputs: list[np.ndarray] | None = field(default=None, repr=False)
    agreement: dict | None = None


def reason(e: BaseException, limit: int = 400) -> str:
    """One line for a table cell: the exception type and its (joined) message."""
    text = " / ".join(line.strip() for line in str(e).strip().splitlines() if line.strip())
    text = text.replace("|", "/")     # keep markdown tables intact
    return f"{type(e).__name__}: {text[:limit]}{' ...' if len(text) > limit else ''}"


def _build(key: str, label: str, make: Callable[[], Callable[[], list[np.ndarray]]], note: str = "") -> Engine:
    """Run the engine's setup; a failure becomes the engine's reason (never a crash)."""
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn = make()
    except Exception as e:  # noqa: BLE001 - any failure of a third-party stack is reported
        return Engine(key, label, error=reason(e), note=note)
    return Engine(key, label, run=fn, setup_s=time.perf_counter() - t0, note=note)


def _as_arrays(out) -> list[np.ndarray]:
    import torch
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [o.detach().float().numpy() if isinstance(o, torch.Tensor) else np.asarray(o) for o in outs]


# ---- engines ----------------------------------------------------------------------
def edgecc_engine(model, inputs: list[np.ndarray], key: str = "edgecc", label: str = "edgecc",
                  note: str | None = None) -> Engine:
    def make():
        xs = [np.ascontiguousarray(x, dtype=np.float32) for x in inputs]
        return lambda: model.run(*xs)
    return _build(key, label, make, note=f"scheme {model.meta.get('scheme')}" if note is None else note)


def torch_fp32_engine(module, inputs: list[np.ndarray]) -> Engine:
    def make():
        import torch
        m = module.eval()
        ts = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in inputs]

        def run():
            with torch.inference_mode():
                return _as_arrays(m(*ts))
        return run
    return _build("torch_fp32", "PyTorch fp32 (eager)", make)


def torch_int8_engine(module, inputs: list[np.ndarray], calib: list[list[np.ndarray]]) -> Engine:
    def make():
        import torch
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
        if "x86" not in torch.backends.quantized.supported_engines:
            raise EdgeccError(f"this PyTorch has no x86 quantized engine "
                              f"({torch.backends.quantized.supported_engines})")
        torch.backends.quantized.engine = "x86"
        ts = [torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in inputs]
        prepared = prepare_fx(copy.deepcopy(module).eval(), get_default_qconfig_mapping("x86"), tuple(ts))
        with torch.inference_mode():
            for batch in calib:
                prepared(*[torch.from_numpy(b) for b in batch])
        q = convert_fx(prepared)

        def run():
            with torch.inference_mode():
                return _as_arrays(q(*ts))
        return run
    return _build("torch_int8", "PyTorch int8 (FX PTQ, x86)", make,
                  note=f"calibrated on {len(calib)} batch(es)")


def _ort_session(path: str, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _ort_runner(sess, inputs: list[np.ndarray]):
    names = [i.name for i in sess.get_inputs()]
    if len(names) != len(inputs):
        raise EdgeccError(f"the ONNX model takes {len(names)} input(s), the compiled model {len(inputs)}")
    feeds = {n: np.ascontiguousarray(x, dtype=np.float32) for n, x in zip(names, inputs)}
    return lambda: [np.asarray(o) for o in sess.run(None, feeds)]


ORT_INT8_NOTE = ("quant_pre_process + quantize_static QDQ, per-channel int8 weights, uint8 activations "
                 "(U8S8, ORT's choice for x86)")


def ort_engine(onnx_path: str | None, inputs: list[np.ndarray], threads: int, *, key: str = "ort_fp32",
               label: str = "ONNX Runtime fp32", why_missing: str = "", note: str = "") -> Engine:
    def make():
        if onnx_path is None:
            raise EdgeccError(why_missing or "no ONNX model")
        return _ort_runner(_ort_session(onnx_path, threads), inputs)
    return _build(key, label, make, note=note)


def quantize_qdq(onnx_path: str, out_path: str, calib: list[list[np.ndarray]]) -> tuple[str, str]:
    """ONNX Runtime's static int8 quantization of `onnx_path`, as its docs advise for x86:
    quant_pre_process (shape inference + graph optimization; without it the QDQ model
    of a ResNet runs ~4x slower), then quantize_static in QDQ format, per-channel
    weights, U8S8, MinMax calibration on `calib`. Returns (path, note)."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    names = [i.name for i in ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).get_inputs()]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([dict(zip(names, b)) for b in calib])

        def get_next(self):
            return next(self._it, None)

    note = ORT_INT8_NOTE
    logging.disable(logging.WARNING)    # the quantizer logs advice on the root logger
    try:
        pre = out_path + ".pre.onnx"
        try:
            quant_pre_process(onnx_path, pre)
        except Exception as e:  # noqa: BLE001 - quantize the model as it is, and say so
            pre, note = onnx_path, note.replace("quant_pre_process + ", "") + \
                f" (quant_pre_process failed: {reason(e, 120)})"
        quantize_static(pre, out_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    return out_path, note


def ort_int8_engine(onnx_path: str | None, inputs: list[np.ndarray], threads: int,
                    calib: list[list[np.ndarray]], workdir: str, why_missing: str = "") -> Engine:
    note = [ORT_INT8_NOTE]     # quantize_qdq says whether pre-processing worked

    def make():
        if onnx_path is None:
            raise EdgeccError(why_missing or "no ONNX model")
        out, note[0] = quantize_qdq(onnx_path, os.path.join(workdir, "model_qdq_int8.onnx"), calib)
        return _ort_runner(_ort_session(out, threads), inputs)
    engine = _build("ort_int8", "ONNX Runtime int8 (QDQ)", make)
    engine.note = f"{note[0]}, calibrated on {len(calib)} batch(es)"
    return engine


def export_onnx(module, inputs: list[np.ndarray], path: str, input_names: list[str] | None = None) -> str:
    """torch module -> ONNX file (TorchScript exporter, opset 17)."""
    import torch
    ts = tuple(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) for x in inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), ts, path, dynamo=False, opset_version=17, input_names=input_names)
    return path


def calibration_batches(inputs: list[np.ndarray], n: int = CALIB_BATCHES, seed: int = 1) -> list[list[np.ndarray]]:
    """The benchmark inputs plus `n` seeded standard-normal batches of the same shapes."""
    rng = np.random.default_rng(seed)
    extra = [[rng.standard_normal(x.shape).astype(np.float32) for x in inputs] for _ in range(n)]
    return [[np.asarray(x, dtype=np.float32) for x in inputs]] + extra


def baseline_engines(module, inputs: list[np.ndarray], *, threads: int, workdir: str,
                     onnx_path: str | None = None, module_error: str = "",
                     calib: list[list[np.ndarray]] | None = None,
                     input_names: list[str] | None = None) -> list[Engine]:
    """The four baselines of the float source model. `module` (a torch module) may be None
    with `module_error` saying why; `onnx_path` (the original ONNX file) is exported from
    `module` when not given."""
    import torch
    torch.set_num_threads(threads)
    calib = calibration_batches(inputs) if calib is None else calib
    onnx_why = ""
    if onnx_path is None:
        if module is None:
            onnx_why = f"no ONNX source and no PyTorch module to export ({module_error})"
        else:
            try:
                onnx_path = export_onnx(module, inputs, os.path.join(workdir, "model_fp32.onnx"), input_names)
            except Exception as e:  # noqa: BLE001
                onnx_why = f"torch.onnx.export failed: {reason(e)}"
    if module is None:
        why = module_error or "no PyTorch module"
        torch_engines = [Engine("torch_fp32", "PyTorch fp32 (eager)", error=why),
                         Engine("torch_int8", "PyTorch int8 (FX PTQ, x86)", error=why)]
    else:
        torch_engines = [torch_fp32_engine(module, inputs), torch_int8_engine(module, inputs, calib)]
    return torch_engines + [ort_engine(onnx_path, inputs, threads, why_missing=onnx_why),
                            ort_int8_engine(onnx_path, inputs, threads, calib, workdir, onnx_why)]


# ---- the source model of a compile output -------------------------------------------
def source_models(model) -> tuple[object | None, str | None, str]:
    """(torch module or None, original ONNX path or None, reason when no module) for a
    CompiledModel: from model.json "source" when it is a file, else the compiled IR
    (OUTDIR/src/model.ecir, after passes)."""
    from ..api import load as load_graph
    from .torch_module import to_torch

    src = model.meta.get("source") or {}
    path, fmt = src.get("path"), src.get("format")
    onnx_path = path if fmt == "onnx" and path and os.path.isfile(path) else None
    candidates = []
    if path and os.path.isfile(path) and fmt in ("onnx", "ecir", "pt"):
        candidates.append((f"source {path}", path))
    ecir = os.path.join(model.path, "src", "model.ecir")
    if os.path.isfile(ecir):
        candidates.append((f"compiled IR {ecir}", ecir))
    reasons = []
    for what, p in candidates:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return to_torch(load_graph(p)), onnx_path, ""
        except Exception as e:  # noqa: BLE001
            reasons.append(f"{what}: {reason(e)}")
    if not candidates:
        reasons.append("model.json names no source file and OUTDIR/src/model.ecir is missing")
    return None, onnx_path, "; ".join(reasons)


# ---- timing -------------------------------------------------------------------------
def measure(engines: list[Engine], *, runs: int, min_time: float, max_time: float,
            reference: str | None = None) -> list[Engine]:
    """Time every available engine (interleaved blocks, see the module doc); each engine
    gets >= runs timed calls and >= min_time seconds, or max_time seconds."""
    check_limits(runs, min_time, max_time)
    live = []
    for e in engines:
        if e.run is None:
            continue
        try:
            t0 = time.perf_counter()
            e.outputs = e.run()
            e.first_run_ms = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            e.run()
            est = time.perf_counter() - t0
        except Exception as ex:  # noqa: BLE001
            e.error, e.run = f"run failed: {reason(ex)}", None
            continue
        live.append((e, max(1, int(BLOCK_S / max(est, 1e-6)))))
    samples = {id(e): [] for e, _ in live}
    spent = {id(e): 0.0 for e, _ in live}
    capped = set()
    rnd = 0
    while live:
        order = live[rnd % len(live):] + live[:rnd % len(live)]
        for e, block in order:
            e.run()    # warm-up after switching engines, not counted
            for _ in range(block):
                t0 = time.perf_counter()
                e.run()
                dt = time.perf_counter() - t0
                samples[id(e)].append(dt)
                spent[id(e)] += dt
        rnd += 1
        still = []
        for e, block in live:
            n, s = len(samples[id(e)]), spent[id(e)]
            if n >= runs and s >= min_time:
                continue
            if s >= max_time:
                capped.add(id(e))
                continue
            still.append((e, block))
        live = still
    for e in engines:
        if id(e) in samples:
            e.latency = Latency.of(samples[id(e)], capped=id(e) in capped and len(samples[id(e)]) < runs)
    if reference is not None:
        attach_agreement(engines, reference)
    return engines


def attach_agreement(engines: list[Engine], reference: str) -> None:
    """Attach to each engine its output agreement with the engine keyed `reference`."""
    ref = next((e for e in engines if e.key == reference), None)
    for e in engines:
        e.agreement = None
        if ref is None or ref.outputs is None or e.outputs is None or e is ref:
            continue
        if len(e.outputs) != len(ref.outputs) or any(a.shape != b.shape for a, b in zip(e.outputs, ref.outputs)):
            e.agreement = {"error": f"output shapes {[list(a.shape) for a in e.outputs]} vs "
                                    f"{[list(b.shape) for b in ref.outputs]}"}
            continue
        diff = max(float(np.abs(a.astype(np.float64) - b).max(initial=0.0)) for a, b in zip(e.outputs, ref.outputs))
        scale = max(float(np.abs(b).max(initial=0.0)) for b in ref.outputs)
        a, b = e.outputs[0], ref.outputs[0]
        top1 = float((a.argmax(1) == b.argmax(1)).mean()) if a.ndim == 2 and a.shape[1] > 1 else None
        e.agreement = {"max_abs_diff": diff, "rel_diff": diff / scale if scale else diff, "top1_agree": top1}


def engine_dicts(engines: list[Engine], reference_latency: str | None = None) -> list[dict]:
    base = next((e for e in engines if e.key == reference_latency and e.latency), None)
    rows = []
    for e in engines:
        row = {"key": e.key, "engine": e.label, "note": e.note, "available": e.latency is not None,
               "error": e.error, "setup_s": round(e.setup_s, 3), "first_run_ms": e.first_run_ms,
               "latency": e.latency.to_dict() if e.latency else None,
               "agreement": e.agreement}
        if base is not None and e.latency is not None:
            row["ratio_ref_over_engine"] = base.latency.median_ms / e.latency.median_ms
        rows.append(row)
    return rows


def format_table(rows: list[dict], ref_label: str = "edgecc") -> str:
    """Markdown table: median, p10-p90, runs, edgecc/engine latency ratio, agreement."""
    head = (f"| engine | median ms | p10-p90 ms | p99 ms | runs | {ref_label}/engine | "
            f"max abs diff vs {ref_label} | rel diff | top-1 agree |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        if r["latency"] is None:
            lines.append(f"| {r['engine']} | not available: {r['error']} | | | | | | | |")
            continue
        lat, ag = r["latency"], r.get("agreement") or {}
        ratio = f"{r['ratio_ref_over_engine']:.3f}" if "ratio_ref_over_engine" in r else "-"
        if "error" in ag:
            agree = [ag["error"], "", ""]
        elif ag:
            agree = [f"{ag['max_abs_diff']:.3g}", f"{ag['rel_diff']:.3g}",
                     "-" if ag["top1_agree"] is None else f"{100 * ag['top1_agree']:.0f}%"]
        else:
            agree = ["(reference)", "", ""]
        capped = " (capped)" if lat["capped"] else ""
        lines.append(f"| {r['engine']} | {lat['median_ms']:.3f} | {lat['p10_ms']:.3f}-{lat['p90_ms']:.3f} | "
                     f"{lat['p99_ms']:.3f} | {lat['runs']}{capped} | {ratio} | " + " | ".join(agree) + " |")
    notes = [f"- {r['engine']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(lines + ([""] + notes if notes else []))


def compare_compiled(model, inputs: list[np.ndarray], *, threads: int, runs: int, min_time: float,
                     max_time: float, calib: list[list[np.ndarray]] | None = None,
                     torch_module=None, onnx_path: str | None = None) -> list[dict]:
    """The --compare run of one compiled model: edgecc + the four baselines of its source
    (found by source_models unless torch_module / onnx_path are given)."""
    module_error = ""
    if torch_module is None and onnx_path is None:
        try:
            torch_module, onnx_path, module_error = source_models(model)
        except Exception as e:  # noqa: BLE001 - e.g. the torch_module converter missing
            module_error = f"cannot rebuild the source model in PyTorch: {reason(e)}"
    model.threads = threads
    with tempfile.TemporaryDirectory(prefix="edgecc-compare-") as work:
        engines = [edgecc_engine(model, inputs)]
        engines += baseline_engines(torch_module, inputs, threads=threads, workdir=work, onnx_path=onnx_path,
                                    module_error=module_error, calib=calib,
                                    input_names=[d["name"] for d in model.inputs])
        measure(engines, runs=runs, min_time=min_time, max_time=max_time, reference="edgecc")
    return engine_dicts(engines, reference_latency="edgecc")


# ---- plot -------------------------------------------------------------------------
def plot_rows(ax, rows: list[dict], title: str = "") -> None:
    """Median latency bars with p10-p90 whiskers on a matplotlib axis; unavailable
    engines are drawn as an empty slot labelled 'n/a'."""
    labels = [r["engine"] for r in rows]
    med = [r["latency"]["median_ms"] if r["latency"] else 0.0 for r in rows]
    lo = [r["latency"]["median_ms"] - r["latency"]["p10_ms"] if r["latency"] else 0.0 for r in rows]
    hi = [r["latency"]["p90_ms"] - r["latency"]["median_ms"] if r["latency"] else 0.0 for r in rows]
    y = np.arange(len(rows))
    colors = ["tab:blue" if r["key"].startswith("edgecc") else "tab:gray" for r in rows]
    ax.barh(y, med, xerr=[lo, hi], color=colors, capsize=3)
    for i, r in enumerate(rows):
        ax.text(med[i] + hi[i], i, f"  {med[i]:.4g} ms" if r["latency"] else "  not available", va="center",
                fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.2 * max(m + h for m, h in zip(med, hi)) or 1.0)
    ax.set_xlabel("latency, ms (median, whiskers p10-p90)")
    if title:
        ax.set_title(title, fontsize=9)


def plot(rows: list[dict], path, title: str = "") -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EdgeccError("--plot needs matplotlib (pip install matplotlib)") from None
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    plot_rows(ax, rows, title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
