"""Schemes of `edgecc compile`: what happens to a model before code generation.

    fp32    the float graph as it is (binary layers refused)
    int8    every conv -> qconv2d, int8 per-channel weights, calibrated activation scales
    int16   the same with int16
    pa      PA(M, N) multiple-binary layers. A model that already holds binary layers (a
            trained PA model exported with quant.export) is taken as it is; a float model
            is converted post-training: rebuilt as a PyTorch module, pa_convert'ed,
            calibrated and imported back (no fine-tuning, so expect an accuracy loss).
    binary  single sign binarization (+-1 bases), the same two routes with sign_convert.

Calibration data (`calib`): an .npz file (one array per model input, by input name, or a
single array), a list of arrays, or "data-free" (inputs synthesized so that the batch
statistics at every batch norm match its stored running statistics, thesis ch.8).
Per-layer overrides: a JSON file or dict {"layers": {NODE: {"precision": "fp32"} |
{"kernel": "direct" | "dfnt" | "onednn"}}}.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .ir import Graph

SCHEMES = ("fp32", "int8", "int16", "pa", "binary")
BINARY_OPS = ("binary_conv2d", "binary_linear")
KERNELS = ("direct", "dfnt", "onednn")
DATA_FREE = "data-free"


def binary_nodes(graph: Graph) -> list[str]:
    return [n.name for n in graph.nodes if n.op in BINARY_OPS]


# ---- per-layer overrides ------------------------------------------------------------
@dataclass
class Overrides:
    float_layers: set[str] = field(default_factory=set)       # kept in fp32 by the integer schemes
    kernels: dict[str, str] = field(default_factory=dict)     # node -> forced integer kernel

    @property
    def names(self) -> set[str]:
        return self.float_layers | set(self.kernels)


def load_overrides(spec) -> Overrides:
    """A path to a JSON file, a dict, or None -> Overrides (every entry validated)."""
    if spec is None:
        return Overrides()
    where = "overrides"
    if isinstance(spec, (str, os.PathLike)):
        where = os.fspath(spec)
        try:
            with open(spec) as f:
                spec = json.load(f)
        except OSError as e:
            raise InputError(f"--override {where}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise InputError(f"--override {where}: not valid JSON ({e})") from None
    layers = spec.get("layers") if isinstance(spec, dict) else None
    if not isinstance(layers, dict):
        raise InputError(f"{where}: expected {{\"layers\": {{NODE: {{...}}}}}}")
    out = Overrides()
    for name, entry in layers.items():
        if not isinstance(entry, dict) or not entry or set(entry) - {"precision", "kernel"}:
            raise InputError(f"{where}: layer {name!r}: expected {{\"precision\": \"fp32\"}} or "
                             f"{{\"kernel\": \"direct\"|\"dfnt\"|\"onednn\"}}, got {entry!r}")
        if "precision" in entry:
            if entry["precision"] != "fp32":
                raise InputError(f"{where}: layer {name!r}: precision {entry['precision']!r} "
                                 "(only \"fp32\" can be forced per layer)")
            out.float_layers.add(name)
        if "kernel" in entry:
            if entry["kernel"] not in KERNELS:
                raise InputError(f"{where}: layer {name!r}: kernel {entry['kernel']!r}, expected one of "
                                 f"{', '.join(KERNELS)}")
            out.kernels[name] = entry["kernel"]
    return out


def check_override_names(overrides: Overrides, graph: Graph, scheme: str) -> None:
    """Every overridden name must be a conv of the graph (after passes) and the scheme
    must be an integer one."""
    if not overrides.names:
        return
    if scheme not in ("int8", "int16"):
        raise InputError(f"per-layer overrides apply to the int8 / int16 schemes, not {scheme!r}")
    convs = {n.name for n in graph.nodes if n.op in ("conv2d", "qconv2d")}
    unknown = sorted(overrides.names - convs)
    if unknown:
        some = ", ".join(sorted(convs)[:8]) + (" ..." if len(convs) > 8 else "")
        raise InputError(f"overrides name {len(unknown)} node(s) that are not convolutions of the "
                         f"model: {', '.join(unknown)} (convolutions: {some})")


# ---- calibration data ---------------------------------------------------------------
def load_calibration(calib, graph: Graph) -> list[list[np.ndarray]] | str | None:
    """Calibration data -> batches shaped like the graph inputs ([[x0, x1, ...], ...]), or
    "data-free", or None. Samples are cut into batches of the graph's batch size."""
    if calib is None or (isinstance(calib, str) and calib == DATA_FREE):
        return calib
    where = "calibration data"
    if isinstance(calib, (str, os.PathLike)):
        where = os.fspath(calib)
        try:
            with np.load(calib, allow_pickle=False) as npz:
                files = dict(npz.items()) if hasattr(npz, "files") else {"": npz}
        except (OSError, ValueError) as e:
            raise InputError(f"--calib {where}: cannot read it as .npz ({e})") from None
        names = [v.name for v in graph.inputs]
        if len(files) == 1 and len(names) == 1:
            arrays = list(files.values())
        else:
            missing = [n for n in names if n not in files]
            if missing:
                raise InputError(f"--calib {where}: holds {sorted(files)}, needs one array per model "
                                 f"input named {names} (missing {missing})")
            arrays = [files[n] for n in names]
    else:
        arrays = [calib] if isinstance(calib, np.ndarray) else list(calib)
    if len(arrays) != len(graph.inputs):
        raise InputError(f"{where}: {len(arrays)} array(s) for {len(graph.inputs)} model input(s)")
    batches = None
    for v, a in zip(graph.inputs, arrays):
        a = np.asarray(a, dtype=np.float32)
        per = tuple(v.shape[1:])
        if a.ndim != len(v.shape) or tuple(a.shape[1:]) != per:
            raise InputError(f"{where}: input {v.name!r} samples have shape {list(a.shape)}, "
                             f"the model takes [N, {', '.join(map(str, per))}]")
        b = v.shape[0]
        if a.shape[0] < b:
            raise InputError(f"{where}: input {v.name!r} has {a.shape[0]} sample(s), the model's batch "
                             f"is {b}: give at least one batch")
        chunks = [a[i:i + b] for i in range(0, a.shape[0] - b + 1, b)]
        if not np.isfinite(a).all():
            raise InputError(f"{where}: input {v.name!r} holds NaN or infinite values")
        batches = [[c] for c in chunks] if batches is None else \
            [prev + [c] for prev, c in zip(batches, chunks)]
    return batches


def synthesize(graph: Graph, seed: int = 0) -> list[list[np.ndarray]]:
    """Data-free calibration batches for `graph` (before batch-norm folding)."""
    if not any(n.op == "batch_norm" for n in graph.nodes):
        raise InputError("--calib data-free needs batch norm statistics, and the model has no "
                         "batch_norm node (give --calib data.npz)")
    from .quant.data_free import synthesize_calibration
    return [[a] for a in synthesize_calibration(graph, seed=seed)]


# ---- post-training binarization of a float model --------------------------------------
def binarize(graph: Graph, scheme: str, m: int, n: int, batches) -> Graph:
    """Float graph -> graph with binary layers (pa: PA(m, n); binary: sign), through the
    PyTorch converters: the same conversion rules as training (first conv and classifier
    stay float), activation quantizers initialized from the calibration batches."""
    import torch

    from ..api import load
    from ..runtime.torch_module import to_torch
    from .quant.calibration import activation_quantizers, calibrate
    from .quant.convert import pa_convert, sign_convert
    from .quant.export import exportable

    class Unpack(torch.nn.Module):   # calibrate() passes one object per batch
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, batch):
            return self.inner(*batch)

    module = to_torch(graph).eval()
    converted = pa_convert(module, m, n) if scheme == "pa" else sign_convert(module)
    if activation_quantizers(converted):
        calibrate(Unpack(converted), [[torch.from_numpy(np.ascontiguousarray(a)) for a in b]
                                      for b in batches])
    example = tuple(torch.from_numpy(np.zeros(v.shape, np.float32)) for v in graph.inputs)
    out = load(exportable(converted), example)
    out.name = graph.name
    return out
