"""PyTorch frontend: torch.nn.Module -> IR graph through torch.export.

The module is exported in eval mode with `torch.export.export` and functionalized with
`run_decompositions({})`, which keeps layer-level ATen ops (conv2d, linear,
hardswish, ...) instead of lowering them to core ATen primitives. Every FX node is
then mapped to IR ops by the converters in torch_ops.py / torch_ops_nn.py.

Dynamic shapes are not supported: the graph is specialized to the shapes (and
dtypes) of the example inputs.
"""
from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import torch

from ...errors import ModelLoadError, UnsupportedOpsError
from ..ir import DType, Graph, Value, infer_node_types, verify
from . import torch_ops_nn  # noqa: F401  (registers the layer converters)
from . import torch_ops_binary  # noqa: F401
from . import torch_ops_gather  # noqa: F401  (channel gathers: REAF, RPW)
from .torch_ops import CONVERTERS, NO_OPS, REJECTED, bind_args, op_key

_DTYPES = {torch.float32: DType.f32, torch.float64: DType.f64, torch.int8: DType.i8,
           torch.uint8: DType.u8, torch.int16: DType.i16, torch.int32: DType.i32,
           torch.int64: DType.i64, torch.bool: DType.bool}


def import_torch(module: torch.nn.Module, example_inputs: tuple) -> Graph:
    """Export `module` (in eval mode) with the example inputs, a tuple of tensors, and
    return the verified IR graph. Parameters and buffers become constants named after
    their module path; a parameter shared by several layers becomes one constant.
    The graph is specialized to the example input shapes (no dynamic shapes)."""
    ep = _export(module, example_inputs)
    _scan(ep.graph)
    graph = _Importer(ep, type(module).__name__).run()
    verify(graph)
    return graph


def import_exported_program(path) -> Graph:
    """A torch.export archive (`torch.export.save(ep, "model.pt")`) -> the verified IR
    graph, specialized to the shapes the program was exported with."""
    from ..quant import export as _binary_ops  # noqa: F401  (registers edgecc:: ops archives may hold)
    try:
        ep = torch.export.load(path)
    except Exception as e:
        raise ModelLoadError(f"{path}: not a torch.export archive (save one with torch.export.save): "
                             f"{type(e).__name__}: {str(e).strip()[:300]}") from e
    try:
        ep = ep.run_decompositions({})
    except Exception as e:
        raise ModelLoadError(f"{path}: run_decompositions failed: {type(e).__name__}: {str(e)[:300]}") from e
    _scan(ep.graph)
    name = os.path.splitext(os.path.basename(os.fspath(path)))[0]
    graph = _Importer(ep, name).run()
    verify(graph)
    return graph


def _export(module, example_inputs):
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"expected a torch.nn.Module, got {type(module).__name__}")
    if isinstance(example_inputs, torch.Tensor):
        raise ModelLoadError("example_inputs must be a tuple of tensors, got a single Tensor "
                             "(write (x,) for one input)")
    if not isinstance(example_inputs, (tuple, list)):
        raise ModelLoadError(f"example_inputs must be a tuple of tensors, "
                             f"got {type(example_inputs).__name__}")
    for i, t in enumerate(example_inputs):
        if not isinstance(t, torch.Tensor):
            raise ModelLoadError(f"example_inputs[{i}] is a {type(t).__name__}, not a torch.Tensor")
        if t.dtype not in _DTYPES:
            raise ModelLoadError(f"example_inputs[{i}] has dtype {t.dtype}; supported: "
                                 f"{', '.join(str(d) for d in _DTYPES)}")
    shapes = ", ".join(f"{list(t.shape)} {t.dtype}" for t in example_inputs)
    was_training = module.training
    try:
        ep = torch.export.export(module.eval(), tuple(example_inputs))
        return ep.run_decompositions({})
    except Exception as e:
        msg = str(e).strip().splitlines()
        msg = " ".join(msg[:4])[:600] if msg else ""
        raise ModelLoadError(f"torch.export failed for {type(module).__name__} with example "
                             f"inputs ({shapes}): {type(e).__name__}: {msg}") from e
    finally:
        module.train(was_training)


def _scan(fx_graph) -> None:
    """Raise one UnsupportedOpsError listing every node edgecc cannot import."""
    bad: dict[tuple[str, str], list[str]] = defaultdict(list)
    for node in fx_graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        key = op_key(node.target) if node.op == "call_function" else f"{node.op} {node.target}"
        if key in NO_OPS:
            continue
        reason = _dtype_problem(node)
        conv = CONVERTERS.get(key) if node.op == "call_function" else None
        if reason is None and conv is None:
            reason = REJECTED.get(key, "no edgecc IR mapping")
        if reason is None and conv.check is not None:
            reason = conv.check(node, bind_args(node))
        if reason is not None:
            bad[(key, reason)].append(node.name)
    if bad:
        raise UnsupportedOpsError([(op, why, names) for (op, why), names in bad.items()])


def _dtype_problem(node) -> str | None:
    vals = node.meta.get("val")
    for v in vals if isinstance(vals, (list, tuple)) else [vals]:
        if isinstance(v, torch.Tensor) and v.dtype not in _DTYPES:
            return f"tensor dtype {v.dtype}"
    return None


class _Importer:
    """Walks the exported FX graph in order, building the IR graph. This is also the
    context `cx` the converters use to create values and nodes."""

    def __init__(self, ep, name: str):
        self.ep = ep
        self.g = Graph(name=name, meta={"frontend": "torch.export"})
        self.env: dict = {}               # FX node -> Value | list of (Value | None)
        self.by_tensor: dict[int, Value] = {}  # id(parameter tensor) -> its one constant
        self.taken = {n.name for n in ep.graph.nodes}  # FX names; node outputs use them

    # ---- context API for converters -----------------------------------------
    def value(self, arg) -> Value:
        v = self.env.get(arg) if isinstance(arg, torch.fx.Node) else None
        if not isinstance(v, Value):
            raise ModelLoadError(f"expected a tensor argument, got {arg!r}")
        return v

    def operand(self, arg, dtype: DType, node, role: str) -> Value:
        """A binary-op operand in the result dtype torch computed: Python scalars become
        constants of that dtype, constants are cast; other tensors must match."""
        if isinstance(arg, (bool, int, float)):
            return self.const(f"{node.name}.{role}", np.asarray(arg, dtype=dtype.numpy))
        v = self.value(arg)
        if v.dtype == dtype:
            return v
        if v.is_constant:
            return self.const(f"{v.name}.{dtype}", v.data.astype(dtype.numpy))
        raise self.unsupported(node, f"implicit type promotion of {v.name!r} from "
                                     f"{v.dtype} to {dtype}")

    def const(self, base: str, data: np.ndarray) -> Value:
        name = self.g.unique_name(base, self.taken)
        self.taken.add(name)
        return Graph.constant(name, np.asarray(data))

    def emit(self, node, op: str, inputs, attrs=None, suffix: str | None = None):
        """Add an IR node for FX node `node` (helper nodes get a name suffix); returns
        its output value, or the list of them for multi-output ops."""
        name = node.name if suffix is None else f"{node.name}.{suffix}"
        meta = {"torch_op": op_key(node.target)}
        stack = node.meta.get("nn_module_stack")
        path = list(stack.values())[-1][0] if stack else ""
        if path:  # the innermost module that ran this op, e.g. "layer1.0.bn1"
            meta["module"] = path
        # Name outputs here: add_node cannot see constants this node is about to use.
        n_out = len(infer_node_types(op, [v.type for v in inputs], dict(attrs or {}), name)[0])
        out_names = []
        for base in [name] if n_out == 1 else [f"{name}:{i}" for i in range(n_out)]:
            out_names.append(self.g.unique_name(base, self.taken))
            self.taken.add(out_names[-1])
        n = self.g.add_node(op, inputs, attrs or {}, name=name, output_names=out_names, meta=meta)
        return n.outputs[0] if len(n.outputs) == 1 else list(n.outputs)

    def out_type(self, node) -> tuple[tuple[int, ...], DType]:
        val = node.meta["val"]
        return tuple(int(d) for d in val.shape), _DTYPES[val.dtype]

    def unsupported(self, node, reason: str) -> UnsupportedOpsError:
        return UnsupportedOpsError([(op_key(node.target), reason, [node.name])])

    # ---- the walk ---------------------------------------------------------------
    def run(self) -> Graph:
        sig = self.ep.graph_signature
        specs = {s.arg.name: s for s in sig.input_specs}
        for node in self.ep.graph.nodes:
            if node.op == "placeholder":
                self.env[node] = self._placeholder(node, specs[node.name])
            elif node.op == "call_function":
                key = op_key(node.target)
                if key in NO_OPS:
                    continue
                result = CONVERTERS[key].convert(self, node, bind_args(node))
                self._check_matches_torch(node, result)
                self.env[node] = result
            elif node.op == "output":
                self._outputs(node, sig)
        return self.g

    def _placeholder(self, node, spec) -> Value:
        kind = spec.kind.name
        if kind == "USER_INPUT":
            shape, dt = self.out_type(node)
            self.taken.add(node.name)
            return self.g.add_input(node.name, shape, dt)
        if kind in ("PARAMETER", "BUFFER", "CONSTANT_TENSOR"):
            t = self.ep.state_dict.get(spec.target)
            if t is None:
                t = self.ep.constants[spec.target]
            if id(t) not in self.by_tensor:  # the same tensor lifted twice stays one constant
                data = t.detach().cpu().contiguous().numpy().copy()
                self.by_tensor[id(t)] = self.const(spec.target, data)
            return self.by_tensor[id(t)]
        raise ModelLoadError(f"exported input {node.name!r} of kind {kind} is not supported")

    def _outputs(self, node, sig) -> None:
        results = node.args[0]
        for spec, arg in zip(sig.output_specs, results):
            if spec.kind.name != "USER_OUTPUT":
                continue  # buffer mutations: eval-mode inference does not need them
            v = self.env.get(arg) if isinstance(arg, torch.fx.Node) else None
            if not isinstance(v, Value):
                raise ModelLoadError(f"model output {spec.arg.name!r} is not a tensor ({arg!r})")
            if v.is_constant:  # the IR wants outputs produced by a node or an input
                v = self.emit(arg, "identity", [v], suffix="out")
            self.g.outputs.append(v)

    def _check_matches_torch(self, node, result) -> None:
        """The IR types must equal what torch computed; a mismatch is a converter bug
        that would otherwise give silently wrong numbers."""
        vals = node.meta.get("val")
        pairs = zip(result, vals) if isinstance(result, list) else [(result, vals)]
        for v, t in pairs:
            if v is None or not isinstance(t, torch.Tensor):
                continue
            want = (tuple(int(d) for d in t.shape), _DTYPES[t.dtype])
            if (v.shape, v.dtype) != want:
                raise ModelLoadError(
                    f"node {node.name!r} ({op_key(node.target)}): edgecc computes {v.type}, "
                    f"torch gives {want[1]}[{','.join(map(str, want[0]))}]")
