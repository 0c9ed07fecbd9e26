"""Run models built by edgecc's TVM backend (edgecc.compiler.codegen.tvm_export): a
directory with lib.so (TVM's exported library: host code and, for CUDA, the device
code), params.npz (constants, binary weights already bit-packed) and model.json
("backend": "tvm", the target, inputs/outputs, the call plan, every layer's schedule).

    model = edgecc.runtime.compiled.load("out/")    # dispatches here for "backend": "tvm"
    logits, = model.run(x)

The plan is a list of PrimFunc calls on TVM tensors in graph order; the same runner
executes a TvmGraph built in memory. Needs apache-tvm at run time, and a CUDA GPU for
target "cuda" (a clear error otherwise).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..errors import EdgeccError, InputError, ModelLoadError

FORMAT = "edgecc-tvm-model"
PLAN_VERSION = 1
FILES = ("lib.so", "params.npz", "model.json")


def _tvm():
    try:
        import tvm
    except ImportError as e:
        raise EdgeccError("this model was built by edgecc's TVM backend; running it needs "
                          f"apache-tvm==0.27.0.post1 (pip install apache-tvm==0.27.0.post1): {e}") from None
    return tvm


def device_for(target: str):
    """The TVM device of `target` ("llvm" -> CPU, "cuda" -> GPU 0); raises when absent."""
    tvm = _tvm()
    if target == "cuda":
        dev = tvm.cuda(0)
        if not dev.exist:
            raise EdgeccError("this model was compiled for target 'cuda' but no CUDA GPU (or CUDA driver) "
                              "is present here; run it on a machine with an NVIDIA GPU, or compile "
                              "with target 'llvm' for the CPU")
        return dev
    if target == "llvm":
        return tvm.cpu(0)
    raise ModelLoadError(f"target {target!r}: expected 'llvm' or 'cuda'")


class TvmPlanRunner:
    """Executes a call plan: `functions[name](*args, out)` per step on device tensors;
    `load_functions()` gives the TVM module, called once the device is known to exist."""

    def __init__(self, load_functions, plan: dict, constants: dict, target: str):
        self._load_functions, self.plan, self.target = load_functions, plan, target
        self.functions = None
        self.inputs = [{"name": d["name"], "dtype": d["dtype"], "shape": tuple(d["shape"])} for d in plan["inputs"]]
        self.outputs = [{"name": d["name"], "dtype": d["dtype"], "shape": tuple(d["shape"])}
                        for d in plan["outputs"]]
        self._host_constants = constants
        self._device_constants = None
        self._device = None

    def _check(self, arrays) -> list[np.ndarray]:
        if len(arrays) != len(self.inputs):
            raise InputError(f"the model takes {len(self.inputs)} input(s) "
                             f"({', '.join(d['name'] for d in self.inputs)}), got {len(arrays)}")
        out = []
        for a, d in zip(arrays, self.inputs):
            a = np.asarray(a)
            if a.shape != d["shape"]:
                raise InputError(f"input {d['name']!r}: shape {list(a.shape)}, the model was built for "
                                 f"{list(d['shape'])}")
            if a.dtype != np.dtype(d["dtype"]):
                raise InputError(f"input {d['name']!r}: dtype {a.dtype}, expected {d['dtype']}")
            out.append(np.ascontiguousarray(a))
        return out

    def run(self, *arrays) -> list[np.ndarray]:
        tvm = _tvm()
        checked = self._check(arrays)
        if self._device is None:
            self._device = device_for(self.target)
            self.functions = self._load_functions()
        dev = self._device
        if self._device_constants is None:
            self._device_constants = {k: tvm.runtime.tensor(np.ascontiguousarray(v), dev)
                                      for k, v in self._host_constants.items()}
        env = {d["key"]: tvm.runtime.tensor(a, dev) for d, a in zip(self.plan["inputs"], checked)}
        for step in self.plan["steps"]:
            args = [self._device_constants[key] if kind == "c" else env[key] for kind, key in step["args"]]
            shape = tuple(step["shape"])
            if step["func"] is None:                       # a reshape: a view, no kernel
                env[step["out"]] = args[0]._create_view(shape)
                continue
            if step.get("in_view"):
                args[0] = args[0]._create_view(tuple(step["in_view"]))
            alloc = tuple(step["out_alloc"]) if step.get("out_alloc") else shape
            y = tvm.runtime.empty(alloc, step["dtype"], dev)
            self.functions[step["func"]](*args, y)
            env[step["out"]] = y._create_view(shape) if alloc != shape else y
        results = []
        for d in self.plan["outputs"]:
            kind, key = d["source"]
            results.append(self._host_constants[key].copy() if kind == "c" else env[key].numpy())
        return results

    __call__ = run


class TvmArtifactModel:
    """A TVM-built model directory, loaded (see the module doc); run like CompiledModel."""

    def __init__(self, path: Path, meta: dict, runner: TvmPlanRunner):
        self.path, self.meta, self._runner = path, meta, runner
        self.inputs, self.outputs = runner.inputs, runner.outputs
        self.target = meta["target"]

    def run(self, *arrays) -> list[np.ndarray]:
        return self._runner.run(*arrays)

    __call__ = run

    def __repr__(self) -> str:
        ins = ", ".join(f"{d['name']}: {d['dtype']}{list(d['shape'])}" for d in self.inputs)
        return f"TvmArtifactModel({str(self.path)!r}, target={self.target!r}, {ins})"


def read_meta(outdir: Path) -> dict | None:
    """model.json of a TVM-built artifact, or None when `outdir` holds something else."""
    path = Path(outdir) / "model.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return meta if isinstance(meta, dict) and meta.get("backend") == "tvm" else None


def is_tvm_artifact(outdir) -> bool:
    return read_meta(Path(outdir)) is not None


def load_tvm_artifact(outdir) -> TvmArtifactModel:
    """Open a directory written by tvm_export.export (the device is checked at run time)."""
    outdir = Path(outdir)
    meta = read_meta(outdir)
    if meta is None:
        raise ModelLoadError(f"{outdir}: no model.json of a TVM-built edgecc model")
    if meta.get("format") != FORMAT or meta.get("plan_version") != PLAN_VERSION:
        raise ModelLoadError(f"{outdir}/model.json: format {meta.get('format')!r} version "
                             f"{meta.get('plan_version')!r}, this edgecc reads {FORMAT!r} {PLAN_VERSION}")
    for key in ("target", "plan", "inputs", "outputs", "layers"):
        if key not in meta:
            raise ModelLoadError(f"{outdir}/model.json: missing {key!r}; the file is damaged")
    for name, key in (("lib.so", "library"), ("params.npz", "params")):
        path = outdir / name
        if not path.is_file():
            raise ModelLoadError(f"{outdir}: no {name} (incomplete TVM artifact)")
        want = meta.get(key, {}).get("sha256") if isinstance(meta.get(key), dict) else None
        if hashlib.sha256(path.read_bytes()).hexdigest() != want:
            raise ModelLoadError(f"{path}: SHA-256 does not match model.json: the file was modified, "
                                 "truncated or belongs to another build")
    lib_path = (outdir / "lib.so").resolve()

    def load_lib():
        try:
            return _tvm().runtime.load_module(str(lib_path))
        except Exception as e:  # noqa: BLE001 - TVM raises its own error types
            raise ModelLoadError(f"{lib_path}: TVM cannot load it ({type(e).__name__}: {e})") from None
    if meta["target"] != "cuda":    # CUDA libraries load only where a CUDA driver is: at run time
        lib = load_lib()
        load_lib = lambda: lib  # noqa: E731
    with np.load(outdir / "params.npz", allow_pickle=False) as z:
        constants = {k: z[k] for k in z.files}
    missing = sorted({key for s in meta["plan"]["steps"] for kind, key in s["args"] if kind == "c"} - set(constants))
    if missing:
        raise ModelLoadError(f"{outdir}/params.npz lacks constants {missing[:5]}; the artifact is damaged")
    return TvmArtifactModel(outdir, meta, TvmPlanRunner(load_lib, meta["plan"], constants, meta["target"]))
