"""Load and run a model compiled by `edgecc compile` (a directory with model.so,
model.json, model.h).

    model = edgecc.runtime.load("out/digits")
    (logits,) = model.run(x)          # float32 arrays of the compiled shapes
    model.threads = 2                 # 0 = OpenMP default
    model.inputs, model.outputs       # [{"name", "dtype", "shape"}]

Loading checks, before the library runs any code: model.json parses and describes an
edgecc model of this ABI; model.so matches the SHA-256 recorded in model.json. Opening
then checks the CPU flags and the embedded weights' SHA-256 inside the library itself.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .. import _native
from ..errors import InputError, ModelLoadError

ABI_VERSION = 1


class CompiledModel:
    def __init__(self, outdir: Path, meta: dict, lib):
        self.path, self.meta, self._lib = outdir, meta, lib
        self.inputs = [{"name": d["name"], "dtype": d["dtype"], "shape": tuple(d["shape"])} for d in lib.inputs()]
        self.outputs = [{"name": d["name"], "dtype": d["dtype"], "shape": tuple(d["shape"])} for d in lib.outputs()]

    @property
    def threads(self) -> int:
        return self._lib.threads

    @threads.setter
    def threads(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise InputError(f"threads={value!r}: expected 0 (OpenMP default) or a positive integer")
        self._lib.threads = int(value)

    @property
    def build_info(self) -> str:
        return self._lib.build_info

    @property
    def workspace_size(self) -> int:
        return self._lib.workspace_size

    def run(self, *arrays) -> list[np.ndarray]:
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
            checked.append(np.ascontiguousarray(a))   # no copy when already contiguous
        try:
            return list(self._lib.run(checked))
        except RuntimeError as e:   # a kernel failed: the message names node and op
            raise InputError(f"model {self.meta.get('model')!r}: {e}") from None

    __call__ = run

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
    return meta


def load(outdir, threads: int = 0) -> CompiledModel:
    """Open the compiled model in `outdir` (see the module doc for the checks)."""
    outdir = Path(outdir)
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
