"""Export a whole IR graph built with TVM as a directory that edgecc.runtime loads:

    lib.so       TVM's exported library (host code; for CUDA the device code inside)
    device.cu    (CUDA only) the generated device source, for reading
    params.npz   the constants (binary weights already bit-packed for their schedule)
    model.json   "backend": "tvm", the target, inputs/outputs, every layer and its
                 schedule ("cuda tensor-core b1", "cuda popc", "llvm", ...), the call
                 plan, SHA-256 of lib.so and params.npz

    meta = export(graph, "out/", target="cuda")     # or "llvm"
    model = edgecc.runtime.compiled.load("out/")    # -> runtime.tvm_artifact.TvmArtifactModel

The directory is written next to `outdir` and moved into place only when complete (as
edgecc.compiler.compile does), so a failed build leaves an existing artifact intact.
Building for CUDA needs nvcc, not a GPU; running it needs a GPU.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...runtime.tvm_artifact import FORMAT, PLAN_VERSION
from ..ir import Graph
from .tvm_graph import TARGETS, TvmGraph


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(graph: Graph, outdir, target: str = "llvm", *, binary_schedule: str | None = None) -> dict:
    """Build `graph` with TVM for `target` ("llvm" or "cuda") into `outdir`; returns the
    model.json contents. binary_schedule: see tvm_graph.BINARY_SCHEDULES (None: default)."""
    from ..compile import _install, _prepare_outdir
    if target not in TARGETS:
        raise InputError(f"target={target!r}: the TVM backend builds for {TARGETS}")
    outdir = Path(outdir)
    _prepare_outdir(outdir)
    built = TvmGraph(graph, target, binary_schedule)
    plan = built.plan()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-", dir=outdir.parent))
    try:
        built.executable.export_library(str(tmp / "lib.so"))
        np.savez(tmp / "params.npz", **built.constants)
        if target == "cuda":   # the generated CUDA source, for reading and for the tests
            (tmp / "device.cu").write_text(built.executable.mod.imports[0].inspect_source())
        import tvm
        meta = {
            "format": FORMAT, "plan_version": PLAN_VERSION, "backend": "tvm",
            "model": graph.name, "target": target, "binary_schedule": built.binary_schedule,
            "tvm_target": str(built.tvm_target), "tvm": tvm.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "inputs": [{k: d[k] for k in ("name", "shape", "dtype")} for d in plan["inputs"]],
            "outputs": [{k: d[k] for k in ("name", "shape", "dtype")} for d in plan["outputs"]],
            "layers": built.layers,
            "library": {"file": "lib.so", "sha256": _sha256(tmp / "lib.so")},
            "params": {"file": "params.npz", "sha256": _sha256(tmp / "params.npz"),
                       "count": len(built.constants),
                       "bytes": int(sum(a.nbytes for a in built.constants.values()))},
            "plan": plan,
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=1))
        _install(tmp, outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta
