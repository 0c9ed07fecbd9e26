"""ONNX frontend: an ONNX model (file or ModelProto) -> a verified IR graph.

Steps: load and check the model; scan every node and fail once, listing every
unsupported op; resolve static input shapes; convert node by node (onnx_ops.py),
evaluating shape subgraphs on constants with numpy; verify the graph; cross-check
every value's type against ONNX shape inference.

Support is decided per op version (the since_version of the schema the model's
opset selects), so a model at opset 22 using Conv-22 (which only adds bfloat16)
imports, while an op version whose semantics we have not checked is reported.
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from ...errors import EdgeccError, ModelLoadError, ShapeError, UnsupportedOpsError
from ..ir import DType, Graph, TensorType, Value, verify
from . import onnx_ops_binary  # noqa: F401  (registers the edgecc-domain converters)
from .onnx_ops import CONVERTERS, OnnxNode, decode_attrs

_DEFAULT_DOMAINS = ("", "ai.onnx")
_CUSTOM_DOMAINS = ("edgecc",)  # converters registered as "<domain>.<OpType>"
_ELEM_TO_DTYPE = {
    onnx.TensorProto.FLOAT: DType.f32, onnx.TensorProto.DOUBLE: DType.f64,
    onnx.TensorProto.INT8: DType.i8, onnx.TensorProto.UINT8: DType.u8,
    onnx.TensorProto.INT16: DType.i16, onnx.TensorProto.INT32: DType.i32,
    onnx.TensorProto.INT64: DType.i64, onnx.TensorProto.BOOL: DType.bool,
}


def import_onnx(model: str | os.PathLike | onnx.ModelProto,
                input_shapes: Mapping[str, tuple] | None = None) -> Graph:
    """Import an ONNX model as an IR graph with static shapes.

    `input_shapes` gives the shape of inputs whose ONNX shape has symbolic (or
    missing) dims, e.g. {"x": (1, 3, 224, 224)}; dims the model fixes must agree."""
    model, where = _load(model)
    opset = _default_opset(model, where)
    nodes = _decode_nodes(model, opset)
    _scan(model, nodes)
    return _Importer(model, nodes, where).run(input_shapes)


# ---- loading and scanning ------------------------------------------------------
def _load(model) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, (str, os.PathLike)):
        where = os.fspath(model)
        if not os.path.exists(where):
            raise ModelLoadError(f"{where}: no such file")
        try:
            model = onnx.load(where)
        except Exception as e:
            raise ModelLoadError(f"{where}: not a readable ONNX model (truncated or corrupt?): "
                                 f"{type(e).__name__}: {e}") from e
    elif isinstance(model, onnx.ModelProto):
        where = f"ONNX model {model.graph.name or '(unnamed)'!r}"
    else:
        raise ModelLoadError("expected an .onnx path or onnx.ModelProto, "
                             f"got {type(model).__name__}")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"{where}: invalid ONNX model (onnx.checker): {first}") from e
    return model, where


def _default_opset(model: onnx.ModelProto, where: str) -> int:
    for o in model.opset_import:
        if o.domain in _DEFAULT_DOMAINS:
            return int(o.version)
    raise ModelLoadError(f"{where}: imports no default-domain (ai.onnx) opset")


def _decode_nodes(model: onnx.ModelProto, opset: int) -> list[OnnxNode]:
    opsets = {o.domain or "": int(o.version) for o in model.opset_import}
    out = []
    for i, p in enumerate(model.graph.node):
        domain = p.domain or ""
        version = 0
        if domain in _DEFAULT_DOMAINS:
            try:
                version = onnx.defs.get_schema(p.op_type, opset, "").since_version
            except Exception:  # unknown op or op not in this opset: reported by _scan
                version = 0
        elif domain in _CUSTOM_DOMAINS:
            version = opsets.get(domain, 0)
        out.append(OnnxNode(name=p.name or f"{p.op_type}_{i}", op=p.op_type,
                            inputs=list(p.input), outputs=list(p.output),
                            attrs=decode_attrs(p), version=version,
                            opset=opsets.get(domain, opset), domain=domain))
    return out


def _scan(model: onnx.ModelProto, nodes: list[OnnxNode]) -> None:
    """Collect every unsupported node, then raise once (grouped by op and reason)."""
    ranks = _onnx_ranks(model)
    const = {t.name for t in model.graph.initializer}
    found: dict[tuple[str, str], list[str]] = {}

    def report(n, reason):
        found.setdefault((n.op, reason), []).append(n.name)

    for n in nodes:
        dom = n.domain
        where = f"{dom or 'ai.onnx'} opset {n.opset}"
        conv = CONVERTERS.get(_converter_key(n))
        if conv is None or n.version == 0:
            report(n, where)
            continue
        if n.version < conv.min_version:
            report(n, f"{where}: op version {n.version} is older than supported "
                      f"({conv.min_version})")
            continue
        why = conv.check(n, ranks.get) if conv.check else None
        dyn = [i for i in conv.const_inputs if n.input(i) and n.input(i) not in const]
        if why:
            report(n, f"{where}: {why}")
        elif dyn:
            report(n, f"{where}: input {dyn[0]} ({n.input(dyn[0])!r}) is computed at run time; "
                      "shape parameters must be constants")
        present = [i for i in n.inputs if i]
        if conv.shape_only or (conv.folds and all(i in const for i in present)):
            const.update(o for o in n.outputs if o)
        elif conv.fold_only:
            report(n, f"{where}: only supported on constant inputs (shape subgraphs)")
    if found:
        raise UnsupportedOpsError([(op, why, names) for (op, why), names in found.items()])


def _converter_key(n: OnnxNode) -> str:
    return n.op if n.domain in _DEFAULT_DOMAINS else f"{n.domain}.{n.op}"


def _onnx_ranks(model: onnx.ModelProto) -> dict[str, int]:
    """Rank of every value ONNX shape inference knows (used to reject e.g. 3-D pooling
    during the scan); empty when inference fails."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    g = inferred.graph
    ranks = {t.name: len(t.dims) for t in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.HasField("shape"):
            ranks[vi.name] = len(tt.shape.dim)
    return ranks


# ---- conversion ---------------------------------------------------------------
class _Importer:
    """Conversion state; the context object onnx_ops converters call."""

    def __init__(self, model: onnx.ModelProto, nodes: list[OnnxNode], where: str):
        self.model, self.nodes, self.where = model, nodes, where
        self.graph = Graph(name=model.graph.name or "onnx_graph")
        self.env: dict[str, Value] = {}          # ONNX name -> IR value (non-constant)
        self.consts: dict[str, np.ndarray] = {}  # ONNX name -> constant data
        self.const_values: dict[str, Value] = {}  # ONNX name -> its one IR constant
        self.node: OnnxNode | None = None

    # -- context API used by converters --
    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const(self, name: str) -> np.ndarray:
        if name not in self.consts:
            if name not in self.env:
                self._undefined(name)
            raise ShapeError(f"{self.node.where()}: input {name!r} must be a constant")
        return self.consts[name]

    def value(self, name: str) -> Value:
        if name in self.env:
            return self.env[name]
        if name in self.consts:
            if name not in self.const_values:  # created once: users share the object
                data = self.consts[name]
                try:
                    dtype = DType.from_numpy(data.dtype)
                except TypeError:
                    raise ModelLoadError(f"{self.where}: constant {name!r} has dtype {data.dtype}, "
                                         "which the IR does not support") from None
                # Not Graph.constant: its ascontiguousarray turns 0-d data into shape [1].
                self.const_values[name] = Value(name, TensorType(data.shape, dtype), data)
            return self.const_values[name]
        self._undefined(name)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.consts[name].shape) if name in self.consts else self.value(name).shape

    def dtype(self, name: str) -> np.dtype:
        return self.consts[name].dtype if name in self.consts else self.value(name).dtype.numpy

    def bind(self, name: str, v: Value) -> None:
        if name:
            self.env[name] = v

    def bind_const(self, name: str, data: np.ndarray) -> None:
        if name:
            self.consts[name] = np.asarray(data, order="C")  # keeps 0-d, unlike ascontiguousarray

    def emit(self, n: OnnxNode, op: str, inputs: list[Value], attrs: dict,
             out: str | list[str] | None = None) -> Value:
        """Add an IR node for ONNX node `n`. `out`: output name(s); default the ONNX
        node's first output. Returns the first output value."""
        names = [out] if isinstance(out, str) else (out or [n.output(0)])
        node = self.graph.add_node(op, inputs, attrs, name=n.name, output_names=names,
                                   meta={"onnx_op": n.op})
        for name, v in zip(names, node.outputs):
            if out is None or isinstance(out, list):
                self.bind(name, v)
        return node.outputs[0]

    def _undefined(self, name: str):
        raise ModelLoadError(f"{self.where}: {self.node.where() if self.node else 'graph'} reads "
                             f"{name!r}, which no input, initializer or earlier node defines "
                             "(missing initializer?)")

    # -- driver --
    def run(self, input_shapes) -> Graph:
        self._load_initializers()
        self._add_inputs(input_shapes)
        for n in self.nodes:
            self.node = n
            try:
                CONVERTERS[_converter_key(n)].convert(self, n)
            except (ValueError, TypeError, IndexError, KeyError) as e:  # e.g. odd attribute values
                raise ShapeError(f"{self.where}: {n.where()}: cannot convert: "
                                 f"{type(e).__name__}: {e}") from e
            for o in n.outputs:
                if o and o not in self.env and o not in self.consts:
                    raise ShapeError(f"{n.where()}: output {o!r} was not produced")
        self.node = None
        self._set_outputs()
        try:
            verify(self.graph)
        except EdgeccError as e:
            raise type(e)(f"{self.where}: imported graph does not verify: {e}") from e
        self._cross_check()
        return self.graph

    def _load_initializers(self):
        for t in self.model.graph.initializer:
            try:
                self.consts[t.name] = np.asarray(numpy_helper.to_array(t), order="C")
            except Exception as e:
                raise ModelLoadError(f"{self.where}: initializer {t.name!r} cannot be read "
                                     f"(missing external data?): {e}") from e

    def _add_inputs(self, input_shapes):
        given = {k: tuple(v) for k, v in (input_shapes or {}).items()}
        inputs = [vi for vi in self.model.graph.input if vi.name not in self.consts]
        names = [vi.name for vi in inputs]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ShapeError(f"{self.where}: input_shapes names unknown input(s) {unknown}; "
                             f"the model's inputs are {names}")
        for vi in inputs:
            if not vi.type.HasField("tensor_type"):
                raise ModelLoadError(f"{self.where}: input {vi.name!r} is not a tensor "
                                     f"({vi.type.WhichOneof('value')})")
            tt = vi.type.tensor_type
            dtype = _ELEM_TO_DTYPE.get(tt.elem_type)
            if dtype is None:
                raise ModelLoadError(
                    f"{self.where}: input {vi.name!r} has element type "
                    f"{_elem_name(tt.elem_type)}; the IR supports "
                    f"{', '.join(onnx.TensorProto.DataType.Name(k) for k in _ELEM_TO_DTYPE)}")
            shape = _resolve_shape(vi, given.get(vi.name), self.where)
            self.env[vi.name] = self.graph.add_input(vi.name, shape, dtype)

    def _set_outputs(self):
        outs = []
        for vi in self.model.graph.output:
            name = vi.name
            if name in self.env and self.env[name].name == name:
                outs.append(self.env[name])
            elif name in self.env:  # an alias (Identity, Dropout): keep the ONNX output name
                node = self.graph.add_node("identity", [self.env[name]], {}, name=f"{name}/output",
                                           output_names=[name])
                outs.append(node.outputs[0])
            elif name in self.consts:  # a constant output still needs a node to define it
                const = self.value(name)
                const.name = self.graph.unique_name(f"{name}/const")  # the output keeps `name`
                node = self.graph.add_node("identity", [const], {}, name=f"{name}/output",
                                           output_names=[name])
                outs.append(node.outputs[0])
            else:
                raise ModelLoadError(f"{self.where}: graph output {name!r} is not produced "
                                     "by any node")
        self.graph.outputs = outs

    def _cross_check(self):
        """Every value with a fully known ONNX-inferred type must match the IR type."""
        fixed = onnx.ModelProto()
        fixed.CopyFrom(self.model)
        for vi in fixed.graph.input:
            if vi.name in self.env:
                dims = vi.type.tensor_type.shape
                del dims.dim[:]
                for d in self.env[vi.name].shape:
                    dims.dim.add().dim_value = d
        try:
            inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
        except Exception:  # no inference, nothing to cross-check against
            return
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type") or not tt.HasField("shape") or \
                    any(not d.HasField("dim_value") for d in tt.shape.dim):
                continue
            onnx_shape = tuple(d.dim_value for d in tt.shape.dim)
            onnx_dtype = _ELEM_TO_DTYPE.get(tt.elem_type)
            if vi.name in self.env:
                ours = self.env[vi.name].type
            elif vi.name in self.consts:
                c = self.consts[vi.name]
                try:
                    ours = TensorType(c.shape, DType.from_numpy(c.dtype))
                except TypeError:
                    continue
            else:
                continue
            if ours.shape != onnx_shape or (onnx_dtype is not None and ours.dtype != onnx_dtype):
                want = f"{onnx_dtype or tt.elem_type}[{','.join(map(str, onnx_shape))}]"
                raise ShapeError(f"{self.where}: value {vi.name!r}: edgecc infers {ours}, "
                                 f"ONNX shape inference gives {want}")


def _elem_name(code: int) -> str:
    """ONNX element type name; a corrupt model may hold a code with no name."""
    try:
        return onnx.TensorProto.DataType.Name(code)
    except ValueError:
        return f"unknown code {code}"


def _resolve_shape(vi: onnx.ValueInfoProto, given, where: str) -> tuple[int, ...]:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        if given is None:
            raise ShapeError(f"{where}: input {vi.name!r} has no shape; pass "
                             f"input_shapes={{{vi.name!r}: (...)}}")
        return tuple(int(d) for d in given)
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
    if given is None:
        sym = [(i, d) for i, d in enumerate(dims) if isinstance(d, str)]
        if sym:
            i, d = sym[0]
            raise ShapeError(f"{where}: input {vi.name!r} has symbolic dim {d!r} at axis {i} "
                             f"(shape {dims}); edgecc needs static shapes: pass "
                             f"input_shapes={{{vi.name!r}: (...)}}")
        if any(d < 0 for d in dims):
            raise ShapeError(f"{where}: input {vi.name!r} declares a negative dim (shape {dims})")
        return tuple(dims)
    if len(given) != len(dims):
        raise ShapeError(f"{where}: input_shapes gives {vi.name!r} rank {len(given)} "
                         f"{list(given)}, the model declares rank {len(dims)} {dims}")
    for i, (d, g) in enumerate(zip(dims, given)):
        if not isinstance(g, (int, np.integer)) or g < 0:
            raise ShapeError(f"{where}: input_shapes[{vi.name!r}] = {list(given)}: dims must be "
                             "non-negative integers")
        if isinstance(d, int) and d != g:
            raise ShapeError(f"{where}: input_shapes gives {vi.name!r} dim {g} at axis {i}, "
                             f"the model fixes it to {d} (shape {dims})")
    return tuple(int(g) for g in given)
