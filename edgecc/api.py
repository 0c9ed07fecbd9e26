"""The two entry points every stage uses: load a model as an IR graph, interpret it."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .compiler.ir import Graph
from .errors import ModelLoadError


def load(model, example_inputs: Sequence | None = None,
         input_shapes: dict[str, Sequence[int]] | None = None) -> Graph:
    """A path to .onnx / .ecir / .pt (torch.export archive), an onnx.ModelProto, or a torch.nn.Module with example
    inputs (a tuple of tensors) -> the verified IR graph. `input_shapes` fixes symbolic
    dimensions of ONNX inputs by input name."""
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise ModelLoadError(f"{path}: no such file")
        ext = os.path.splitext(path)[1].lower()
        if ext == ".onnx":
            from .compiler.frontends.onnx import import_onnx
            return import_onnx(path, input_shapes)
        if ext == ".ecir":
            from .compiler.ir import load as load_ecir
            return load_ecir(path)
        if ext in (".pt", ".pt2"):
            from .compiler.frontends.torch import import_exported_program
            return import_exported_program(path)
        raise ModelLoadError(f"{path}: unknown model file type {ext!r} (expected .onnx, .ecir or a "
                             "torch.export archive .pt / .pt2)")
    if type(model).__module__.startswith("onnx"):
        from .compiler.frontends.onnx import import_onnx
        return import_onnx(model, input_shapes)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a declared dependency
        torch = None
    if torch is not None and isinstance(model, torch.nn.Module):
        if example_inputs is None:
            raise ModelLoadError("a torch.nn.Module needs example_inputs (a tuple of tensors)")
        from .compiler.frontends.torch import import_torch
        return import_torch(model, example_inputs)
    raise ModelLoadError(f"cannot load a model of type {type(model).__name__}")


def interpret(graph: Graph, *arrays: np.ndarray) -> list[np.ndarray]:
    """Run `graph` with the numpy reference interpreter; returns the outputs."""
    from .runtime.interpreter import interpret as _interpret
    return _interpret(graph, *arrays)
