"""`edgecc compile`: a model -> a directory with model.so, model.h, model.json.

    compile(model, outdir, *, scheme="fp32"|"int8"|"int16"|"pa"|"binary",
            target="host"|"avx512"|"avx2"|"generic", pa_bases=(M, N), calib=None,
            tune=False, onednn=None, overrides=None)

Steps: [1/5] import (a path to .onnx / .ecir / .pt, an IR Graph, or a torch module with
example_inputs), [2/5] scheme + passes (schemes.py: binarization or integer
quantization, default_pipeline), [3/5] plan (supported-op check, memory plan), [4/5] codegen + build
(g++), [5/5] metadata (model.json with every layer, its kernel and why, the memory
plan, versions, SHA-256 of the weights section and of model.so). Everything is built
in a temporary sibling directory and moved into place at the end, so a failure never
leaves a half-written artifact in `outdir` (an existing artifact there stays intact).
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from .. import __version__
from ..errors import EdgeccError, InputError
from .codegen import build as B
from .codegen import cpp as C
from . import schemes as S
from .ir import Graph
from .ir import save as save_ecir

SCHEMES = S.SCHEMES
TVM_TARGETS = {"cuda": "cuda", "tvm-llvm": "llvm"}   # --target -> TVM target (codegen/tvm_export.py)
ARTIFACTS = ("model.so", "model.h", "model.json", "model_api.h")


def _say(log: Callable[[str], None] | None, msg: str) -> None:
    if log is not None:
        log(msg)


def _source_of(path) -> dict:
    path = os.path.abspath(os.fspath(path))
    fmt = {".onnx": "onnx", ".ecir": "ecir", ".pt": "pt", ".pt2": "pt"}.get(Path(path).suffix.lower(), "?")
    return {"format": fmt, "path": path}


def _load(model, example_inputs) -> tuple[Graph, dict]:
    """-> (graph, where it came from)."""
    if isinstance(model, Graph):
        # the passes rewrite in place; keep the caller's graph
        return model.copy(), {"format": "graph", "name": model.name}
    from ..api import load
    if isinstance(model, (str, os.PathLike)):
        return load(os.fspath(model)), _source_of(model)
    if hasattr(model, "named_modules") and example_inputs is not None:
        return load(model, example_inputs), {"format": "torch.nn.Module", "name": type(model).__name__}
    raise InputError(f"compile: model must be a path to .onnx / .ecir / .pt, an edgecc Graph, or a "
                     f"torch.nn.Module with example_inputs, got {type(model).__name__}")


def _apply_scheme(graph: Graph, scheme: str, pa_bases, calib, overrides: S.Overrides, run_passes: bool,
                  log) -> tuple[Graph, dict]:
    """Binarize / quantize the float layers of `graph` as `scheme` asks and run the passes;
    returns the graph to compile and the scheme's report for model.json."""
    from .passes import default_pipeline
    binary = S.binary_nodes(graph)
    listed = f"{', '.join(binary[:4])}{' ...' if len(binary) > 4 else ''}"
    report: dict = {"scheme": scheme}
    if scheme == "fp32" and binary:
        raise EdgeccError(f"--scheme fp32: the model holds {len(binary)} binary layer(s) ({listed}); "
                          "use --scheme pa or binary")
    if scheme in ("int8", "int16") and binary:
        raise EdgeccError(f"--scheme {scheme}: the model already holds {len(binary)} binary layer(s) "
                          f"({listed}); integer quantization takes a float model")
    batches = S.load_calibration(calib, graph)
    if scheme in ("pa", "binary") and binary:
        report["conversion"] = "the model's own binary layers (trained and exported)"
        if scheme == "binary":
            bad = [n.name for n in graph.nodes if n.op in S.BINARY_OPS and
                   (n.inputs[1].shape[0] != 1 or n.inputs[3].shape[1] != 1)]
            if bad:
                raise EdgeccError(f"--scheme binary: layer(s) {', '.join(bad[:4])} have several bases "
                                  "(a PA / ABC-Net model); use --scheme pa")
    elif scheme in ("pa", "binary"):
        if batches is None:
            batches = S.DATA_FREE
        if batches == S.DATA_FREE:
            _say(log, "      calibration: data-free (inputs synthesized from the batch-norm statistics)")
            batches = S.synthesize(graph)
        m, n = pa_bases if scheme == "pa" else (1, 1)
        _say(log, f"      post-training {'PA(%d,%d)' % (m, n) if scheme == 'pa' else 'sign'} conversion "
                  f"of the float model (no fine-tuning)")
        graph = S.binarize(graph, scheme, m, n, batches)
        report["conversion"] = (f"post-training {'PA(%d,%d)' % (m, n) if scheme == 'pa' else 'sign'} "
                                f"conversion, {len(S.binary_nodes(graph))} binary layers, calibrated on "
                                f"{len(batches)} batch(es); no fine-tuning")
    elif scheme in ("int8", "int16"):
        if batches is None:
            raise EdgeccError(f"--scheme {scheme} needs calibration data: --calib data.npz or "
                              "--calib data-free")
        if batches == S.DATA_FREE:
            _say(log, "      calibration: data-free (inputs synthesized from the batch-norm statistics)")
            batches = S.synthesize(graph)
            report["calibration"] = f"data-free, {sum(b[0].shape[0] for b in batches)} synthesized samples"
        else:
            report["calibration"] = f"{sum(b[0].shape[0] for b in batches)} samples"
    if run_passes:
        default_pipeline().run(graph)
    S.check_override_names(overrides, graph, scheme)
    if scheme in ("int8", "int16"):
        from .quant.int_quant import quantize_int
        _say(log, f"      {scheme} quantization: per-channel weights, per-tensor activations")
        graph, qreport = quantize_int(graph, bits=int(scheme[3:]), calib=batches,
                                      skip=tuple(sorted(overrides.float_layers)))
        report["quantization"] = dataclasses.asdict(qreport)
    return graph, report


def _prepare_outdir(outdir: Path) -> None:
    """Refuse to replace a directory that is not an edgecc artifact (or empty)."""
    if outdir.exists():
        if not outdir.is_dir():
            raise EdgeccError(f"-o {outdir}: exists and is not a directory")
        entries = set(os.listdir(outdir))
        if entries and "model.json" not in entries:
            raise EdgeccError(f"-o {outdir}: directory is not empty and holds no edgecc model "
                              "(refusing to replace it)")


def _install(tmp: Path, outdir: Path) -> None:
    """Move the finished artifact into place: old one aside, new one in, old one removed."""
    old = None
    if outdir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.old-", dir=outdir.parent))
        os.rmdir(old)
        os.rename(outdir, old)
    try:
        os.rename(tmp, outdir)
    except OSError:
        if old is not None:
            os.rename(old, outdir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _summary(graph: Graph, gen: C.GeneratedModel, lib_bytes: int) -> dict:
    kinds: dict[str, int] = {}
    float_layers = []
    params = macs = bmacs = fp32_bytes = 0
    for s in gen.steps:
        kind = s.kernel.split(" (")[0].split(":")[0]   # "binary engine", "f32 direct conv", ...
        kinds[kind] = kinds.get(kind, 0) + 1
        macs += s.macs
        bmacs += s.binary_macs
        if s.node.op in ("conv2d", "gemm") and s.params:
            float_layers.append({"node": s.node.name, "op": s.node.op, "why": s.why})
    seen = set()
    for v in graph.constants():   # shared constants count once
        if id(v) not in seen:
            seen.add(id(v))
            params += v.type.numel
    fp32_bytes = sum(s.fp32_bytes for s in gen.steps)
    stored = len(gen.weights)
    # weight constants read by several layers (DACNN's shared conv): stored once
    users: dict[int, list] = {}
    for n in graph.nodes:
        if n.op in ("conv2d", "gemm", "matmul", "binary_conv2d", "binary_linear", "qconv2d",
                    "indexed_conv2d") and len(n.inputs) > 1 and n.inputs[1].is_constant:
            users.setdefault(id(n.inputs[1]), [n.inputs[1], []])[1].append(n.name)
    shared = [{"constant": v.name, "shape": list(v.shape), "layers": len(names), "bytes": int(v.data.nbytes),
               "nodes": names} for v, names in users.values() if len(names) > 1]
    return {"layers_per_kernel": kinds, "float_layers": float_layers, "params": params,
            "shared_weights": shared,
            "artifact_bytes": lib_bytes, "weights_section_bytes": stored,
            "fp32_equivalent_bytes": fp32_bytes,
            "compression_ratio": round(fp32_bytes / stored, 3) if stored else None,
            "float_macs": macs, "binary_plane_macs": bmacs}


def format_summary(s: dict) -> str:
    kb = lambda n: f"{n / 1024:,.1f} KiB"  # noqa: E731
    sw = s.get("shared_weights", [])
    shared = "none (every layer has its own weights)" if not sw else (
        f"{len(sw)} constant(s) stored once for {sum(w['layers'] for w in sw)} layers ("
        + "; ".join(f"{w['constant']} {w['shape']} by {w['layers']} layers" for w in sw)
        + f"), {kb(sum(w['bytes'] * (w['layers'] - 1) for w in sw))} not duplicated")
    rows = [("layers per kernel", ", ".join(f"{k} {v}" for k, v in s["layers_per_kernel"].items())),
            ("parameters", f"{s['params']:,}"),
            ("shared weights", shared),
            ("model.so", kb(s["artifact_bytes"])),
            ("weights section", kb(s["weights_section_bytes"])),
            ("fp32-equivalent weights", kb(s["fp32_equivalent_bytes"])),
            ("compression (fp32 / weights)", f"{s['compression_ratio']}x"),
            ("float MACs", f"{s['float_macs']:,}"),
            ("binary MACs (x M*P planes)", f"{s['binary_plane_macs']:,}")]
    if s["float_layers"]:
        rows.append(("layers left in float", "; ".join(f"{f['node']} ({f['op']}): {f['why']}"
                                                      for f in s["float_layers"])))
    else:
        rows.append(("layers left in float", "none with weights"))
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(w)}  {v}" for k, v in rows)


def compile(model, outdir, *, scheme: str = "fp32", target: str = "host", pa_bases=(4, 5), calib=None,
            tune: bool = False, onednn: bool | None = None, overrides=None, example_inputs=None,
            plane_outputs: bool = True, run_passes: bool = True, source_path=None,
            log: Callable[[str], None] | None = None) -> dict:
    """Compile `model` into `outdir`; returns the model.json contents (with "summary").

    pa_bases: (M, N) for the post-training PA conversion of a float model; calib: see
    schemes.py; tune: time direct, DFNT and (int8, with oneDNN) oneDNN per integer conv on
    this machine; onednn:
    float layers through oneDNN (None: when it is installed); overrides: per-layer JSON;
    plane_outputs: binary layers whose readers are all binary write their bit-planes
    directly; source_path: the file a given Graph was loaded from (recorded for
    `edgecc bench --compare`)."""
    if scheme not in SCHEMES:
        raise InputError(f"scheme={scheme!r}: expected one of {', '.join(SCHEMES)}")
    if target not in B.TARGETS and target not in TVM_TARGETS:
        raise InputError(f"target={target!r}: expected one of {', '.join(B.TARGETS + tuple(TVM_TARGETS))}")
    m, n = _check_bases(pa_bases)
    ov = S.load_overrides(overrides)
    outdir = Path(outdir).resolve()
    _prepare_outdir(outdir)
    _say(log, "[1/5] import")
    graph, source = _load(model, example_inputs)
    if source_path is not None:
        source = _source_of(source_path)
    _say(log, f"[2/5] scheme {scheme} + passes")
    graph, scheme_report = _apply_scheme(graph, scheme, (m, n), calib, ov, run_passes, log)
    if target in TVM_TARGETS:
        from .codegen.tvm_export import export
        _say(log, f"[3/5] TVM build for {TVM_TARGETS[target]}, export (TVM artifact: no C++ steps)")
        meta = export(graph, outdir, TVM_TARGETS[target])
        _say(log, f"  {len(meta['layers'])} layers: " + ", ".join(sorted({str(l.get('schedule', '?'))
                                                                      for l in meta["layers"]})))
        return meta
    use_onednn = _resolve_onednn(onednn, log)
    _say(log, "[3/5] plan: supported ops, memory")
    C.check_supported(graph)
    tgt = B.resolve_target(target)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-", dir=outdir.parent))
    try:
        src = tmp / "src"
        src.mkdir()
        weights_path = src / "weights.bin"
        build_info = (f"edgecc {__version__}; model {graph.name}; target {tgt.name} ({' '.join(tgt.march)}); "
                      f"kernel isa {tgt.isa_request or 'auto'}; cpu flags {','.join(tgt.required_flags) or 'x86-64'}")
        if use_onednn:
            from .codegen.onednn import find
            build_info += f"; float layers: {find().describe()}"
        _say(log, "[4/5] codegen + build (g++)")
        options = C.CodegenOptions(isa_request=tgt.isa_request, onednn=use_onednn, tune=tune,
                                   plane_outputs=plane_outputs, layer_kernels=dict(ov.kernels))
        gen = C.generate(graph, options=options,
                         required_flags=tgt.required_flags,
                         build_info=build_info, weights_path="weights.bin")
        weights_path.write_bytes(gen.weights)
        (src / "model.cpp").write_text(gen.model_cpp)
        (src / "entry.cpp").write_text(gen.entry_cpp)
        lib = B.build_library(src, tgt)
        os.replace(lib, tmp / "model.so")
        (tmp / "model.h").write_text(gen.model_h)
        shutil.copyfile(B.INCLUDE / "edgecc" / "model_api.h", tmp / "model_api.h")
        save_ecir(graph, str(src / "model.ecir"))
        _say(log, "[5/5] metadata")
        lib_bytes = (tmp / "model.so").stat().st_size
        meta = _metadata(graph, gen, tgt, scheme, build_info, tmp / "model.so", lib_bytes)
        meta.update(source=source, scheme_report=scheme_report,
                    options={"tune": tune, "onednn": use_onednn, "plane_outputs": plane_outputs, "overrides": {
                        "fp32": sorted(ov.float_layers), "kernels": ov.kernels}})
        (tmp / "model.json").write_text(json.dumps(meta, indent=1))
        _install(tmp, outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _say(log, format_summary(meta["summary"]))
    return meta


def _check_bases(pa_bases) -> tuple[int, int]:
    try:
        m, n = (int(v) for v in pa_bases)
    except (TypeError, ValueError):
        raise InputError(f"pa_bases={pa_bases!r}: expected (M, N), two integers") from None
    if not (1 <= m <= 8 and 1 <= n <= 8):
        raise InputError(f"pa_bases=({m}, {n}): M and N must be between 1 and 8")
    return m, n


def _resolve_onednn(onednn: bool | None, log) -> bool:
    from .codegen import onednn as dnnl
    if onednn is None:
        onednn = dnnl.available()
        if not onednn:
            _say(log, "      oneDNN not found: float layers use edgecc's own kernels")
    elif onednn and not dnnl.available():
        raise EdgeccError(f"onednn=True: oneDNN is not installed: {dnnl.INSTALL_HINT}")
    return bool(onednn)


def _metadata(graph, gen, tgt, scheme, build_info, lib: Path, lib_bytes: int) -> dict:
    import numpy as np
    desc = lambda vs: [{"name": v.name, "dtype": "f32", "shape": list(v.shape)} for v in vs]  # noqa: E731
    return {
        "format": "edgecc-model", "abi_version": 1,
        "model": graph.name, "scheme": scheme,
        "target": {"name": tgt.name, "flags": tgt.march, "kernel_isa": tgt.isa_request or "auto",
                   "sanitize": tgt.sanitize or None,
                   "required_cpu_flags": tgt.required_flags},
        "build_info": build_info,
        "inputs": desc(graph.inputs), "outputs": desc(graph.outputs),
        "layers": [{"step": k, "node": s.node.name, "op": s.node.op,
                    "outputs": [str(v.type) for v in s.node.outputs], "kernel": s.kernel, "why": s.why,
                    "params": s.params, "macs": s.macs, "binary_plane_macs": s.binary_macs}
                   for k, s in enumerate(gen.steps)],
        "memory_plan": {**gen.plan.to_dict(),
                        "note": "kernel-internal scratch (padded/packed inputs) is heap-allocated per call"},
        "weights": {"bytes": len(gen.weights), "sha256": gen.weights_sha256},
        "library": {"file": "model.so", "bytes": lib_bytes,
                    "sha256": hashlib.sha256(lib.read_bytes()).hexdigest()},
        "summary": _summary(graph, gen, lib_bytes),
        "versions": {"edgecc": __version__, "compiler": B.compiler_version(), "python": sys.version.split()[0],
                     "numpy": np.__version__, "platform": platform.platform()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
