"""Load and run a model compiled by `edgecc compile` (a directory with model.so,
model.json, model.h).

    model = edgecc.runtime.load("out/digits")
    (logits,) = model.run(x)          # float32 arrays of the compiled shapes
    model.threads = 2                 # 0 = OpenMP default
    model.inputs, model.outputs       # [{"name", "dtype", "shape"}]
    rows = model.profile(x, runs=20)  # per-layer wall time, see CompiledModel.profile
    model.close()                     # or `with edgecc.runtime.load(d) as model:`

Threads: one model runs one call at a time (runs from several Python threads are
serialized by a lock, here and in the C library; results are identical to serial runs).
For parallel throughput load the directory once per thread: each load has its own
handle and activation arena.

Loading checks, before the library runs any code: model.json parses and describes an
edgecc model of this ABI; model.so matches the SHA-256 recorded in model.json. Opening
then checks the CPU flags and the embedded weights' SHA-256 inside the library itself.
"""
from __future__ import annotations

import hashlib
import json
import statistics
import threading
from pathlib import Path

import numpy as np

from .. import _native
from ..errors import InputError, ModelLoadError

ABI_VERSION = 1
MAX_THREADS = 1024   # EDGECC_MODEL_MAX_THREADS of model_api.h


class CompiledModel:
    def __init__(self, outdir: Path, meta: dict, lib):
        self.path, self.meta, self._lib = outdir, meta, lib
        self._lock = threading.Lock()   # one call at a time (run / profile)
        self.inputs = [{"name": d["name"], "dtype": d["dtype"], "shape": tuple(d["shape"])} for d in lib.inputs()]
        self.outputs = [{"name": d["name"], "dtype": d["dtype"], "shape": tuple(d["shape"])} for d in lib.outputs()]

    def close(self) -> None:
        """Release the handle and its arena now (idempotent); later calls raise InputError."""
        with self._lock:
            self._lib.close()

    @property
    def closed(self) -> bool:
        return self._lib.closed

    def __enter__(self) -> "CompiledModel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _require_open(self) -> None:
        if self._lib.closed:
            raise InputError(f"model {self.meta.get('model')!r} ({self.path}) is closed")

    @property
    def threads(self) -> int:
        self._require_open()
        return self._lib.threads

    @threads.setter
    def threads(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_THREADS:
            raise InputError(f"threads={value!r}: expected 0 (OpenMP default) or an integer from 1 to {MAX_THREADS}")
        self._require_open()
        self._lib.threads = int(value)

    @property
    def build_info(self) -> str:
        return self._lib.build_info

    @property
    def workspace_size(self) -> int:
        return self._lib.workspace_size

    def run(self, *arrays) -> list[np.ndarray]:
        checked = self._check(arrays)
        with self._lock:
            return self._call(checked)

    __call__ = run

    def _check(self, arrays) -> list[np.ndarray]:
        self._require_open()
        if len(arrays) != len(self.inputs):
            raise InputError(f"model {self.meta.get('model')!r} takes {len(self.inputs)} input(s) "
                             f"({', '.join(d['name'] for d in self.inputs)}), got {len(arrays)}")
        checked = []
        for d, a in zip(self.inputs, arrays):
            a = np.asarray(a)
            if a.dtype != np.float32:
                raise InputError(f"input {d['name']!r}: expected dtype f32 (float32), got {a.dtype}")
            if tuple(a.shape) != d["shape"]:
                raise InputError(f"input {d['name']!r}: expected shape {list(d['shape'])}, got {list(a.shape)}")
            # no copy when already C-contiguous and float-aligned (kernels may rely on both)
            checked.append(np.require(a, np.float32, ["C_CONTIGUOUS", "ALIGNED"]))
        return checked

    def _call(self, checked) -> list[np.ndarray]:
        """Run checked arrays; the caller holds self._lock."""
        try:
            return list(self._lib.run(checked))
        except RuntimeError as e:   # a kernel failed: the message names node and op
            raise InputError(f"model {self.meta.get('model')!r}: {e}") from None
        except ValueError as e:     # closed by another thread after _check
            raise InputError(f"model {self.meta.get('model')!r} ({self.path}): {e}") from None

    def profile(self, *arrays, runs: int = 10, warmup: int = 1) -> list[dict]:
        """Per-layer wall time: run `warmup` untimed then `runs` timed runs on `arrays`.

        Returns one row per step, in execution order: {"step", "node", "op", "kernel",
        "ms" (median over the runs), "ms_min", "ms_mean", "runs"}; step i is layer i of
        model.json "layers" (kernel copied from there), the last row ("copy_outputs")
        copies outputs not written in place. Timing is on only inside this call (the C
        API's edgecc_model_set_profiling); ordinary runs read no clock."""
        if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or runs < 1:
            raise InputError(f"profile: runs={runs!r}, expected a positive integer")
        if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
            raise InputError(f"profile: warmup={warmup!r}, expected an integer >= 0")
        if not self._lib.has_profiling:
            raise InputError(f"{self.path}: the library predates profiling; recompile it")
        checked = self._check(arrays)
        samples: list[list[float]] = []
        with self._lock:   # other threads' runs wait, so every sample is one of ours
            for _ in range(int(warmup)):
                self._call(checked)
            self._lib.set_profiling(True)
            try:
                for _ in range(int(runs)):
                    self._call(checked)
                    rows = self._lib.step_profiles()
                    samples.append([r["last_ms"] for r in rows])
            finally:
                self._lib.set_profiling(False)
        kernels = {layer.get("step"): layer.get("kernel", "") for layer in self.meta.get("layers", [])}
        out = []
        for r, times in zip(rows, zip(*samples)):
            out.append({"step": r["step"], "node": r["node"], "op": r["op"],
                        "kernel": kernels.get(r["step"], "") if r["op"] != "copy_outputs" else "copy_bytes",
                        "ms": statistics.median(times), "ms_min": min(times),
                        "ms_mean": statistics.fmean(times), "runs": len(times)})
        return out

    def __repr__(self) -> str:
        ins = ", ".join(f"{d['name']}: f32{list(d['shape'])}" for d in self.inputs)
        return f"CompiledModel({str(self.path)!r}, {ins})"


def _read_meta(outdir: Path) -> dict:
    path = outdir / "model.json"
    if not path.is_file():
        raise ModelLoadError(f"{outdir}: no model.json (not an edgecc compile output directory)")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path}: not valid JSON ({e}); the file is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != "edgecc-model":
        raise ModelLoadError(f"{path}: not an edgecc model description")
    if meta.get("abi_version") != ABI_VERSION:
        raise ModelLoadError(f"{path}: ABI version {meta.get('abi_version')!r}, this edgecc reads {ABI_VERSION}")
    for key in ("library", "weights", "inputs", "outputs"):
        if key not in meta:
            raise ModelLoadError(f"{path}: missing {key!r}; the file is damaged")
    for key in ("library", "weights"):
        if not isinstance(meta[key], dict) or not isinstance(meta[key].get("sha256"), str):
            raise ModelLoadError(f"{path}: {key!r} must be an object with a 'sha256' string; the file is damaged")
    for key in ("inputs", "outputs"):
        if not isinstance(meta[key], list) or not all(isinstance(d, dict) and isinstance(d.get("shape"), list)
                                                      for d in meta[key]):
            raise ModelLoadError(f"{path}: {key!r} must be a list of objects with a 'shape' list; "
                                 "the file is damaged")
    return meta


def load(outdir, threads: int = 0) -> CompiledModel:
    """Open the compiled model in `outdir` (see the module doc for the checks)."""
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 0 <= threads <= MAX_THREADS:
        raise InputError(f"threads={threads!r}: expected 0 (OpenMP default) or an integer from 1 to {MAX_THREADS}")
    outdir = Path(outdir)
    from .tvm_artifact import is_tvm_artifact, load_tvm_artifact
    if is_tvm_artifact(outdir):   # built by the TVM backend (edgecc compile --target cuda|tvm-llvm)
        return load_tvm_artifact(outdir)
    meta = _read_meta(outdir)
    lib_path = outdir / "model.so"
    if not lib_path.is_file():
        raise ModelLoadError(f"{outdir}: no model.so")
    digest = hashlib.sha256(lib_path.read_bytes()).hexdigest()
    if digest != meta["library"].get("sha256"):
        raise ModelLoadError(f"{lib_path}: SHA-256 {digest[:16]}... does not match model.json "
                             f"({str(meta['library'].get('sha256'))[:16]}...): the library was modified, "
                             "truncated or belongs to another build")
    try:
        lib = _native.CompiledModelLibrary(str(lib_path.resolve()), int(threads))
    except ValueError as e:
        raise ModelLoadError(str(e)) from None
    if lib.weights_sha256 != meta["weights"].get("sha256"):
        raise ModelLoadError(f"{outdir}: weights SHA-256 of model.so and model.json differ")
    model = CompiledModel(outdir, meta, lib)
    for kind in ("inputs", "outputs"):
        lib_desc = [(d["name"], list(d["shape"])) for d in getattr(model, kind)]
        json_desc = [(d.get("name"), list(d.get("shape", []))) for d in meta[kind]]
        if lib_desc != json_desc:
            raise ModelLoadError(f"{outdir}: model.json {kind} {json_desc} differ from model.so {lib_desc}")
    return model
