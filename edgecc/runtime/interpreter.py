"""Reference interpreter: executes any IR graph with the numpy reference kernels."""
from __future__ import annotations

import numpy as np

from ..compiler.ir import Graph
from ..errors import EdgeccError, InputError, ShapeError
from ..kernels.reference import IMPLS


def check_inputs(graph: Graph, arrays, cast_float: bool = False) -> list[np.ndarray]:
    """Validate count, shape and dtype of graph inputs; returns contiguous arrays.
    `cast_float`: a floating-point array for a float input is cast to its dtype."""
    if len(arrays) != len(graph.inputs):
        raise InputError(f"graph {graph.name!r} takes {len(graph.inputs)} input(s) "
                         f"({', '.join(v.name for v in graph.inputs)}), got {len(arrays)}")
    out = []
    for v, arr in zip(graph.inputs, arrays):
        arr = np.asarray(arr)
        if tuple(arr.shape) != v.shape:
            raise InputError(f"input {v.name!r}: expected shape {list(v.shape)}, "
                             f"got {list(arr.shape)}")
        if cast_float and v.dtype.is_float and np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(v.dtype.numpy, copy=False)
        if arr.dtype != v.dtype.numpy:
            raise InputError(f"input {v.name!r}: expected dtype {v.dtype} "
                             f"({v.dtype.numpy}), got {arr.dtype}")
        out.append(np.asarray(arr, order="C"))  # ascontiguousarray makes 0-d 1-d
    return out


def execute(graph: Graph, arrays, kernel_for) -> list[np.ndarray]:
    """Run the nodes in order; `kernel_for(node)` gives `fn(input arrays) -> outputs`.
    Shared by the reference interpreter and the engine: checks every output against
    the IR type, names the node on failure, frees activations after their last use."""
    env: dict[int, np.ndarray] = {id(v): a for v, a in zip(graph.inputs, check_inputs(graph, arrays))}
    last_use = {id(v): i for i, n in enumerate(graph.nodes) for v in n.inputs}
    keep = {id(v) for v in graph.outputs}
    for i, n in enumerate(graph.nodes):
        fn = kernel_for(n)
        ins = [v.data if v.is_constant else env[id(v)] for v in n.inputs]
        try:
            outs = fn(ins)
        except (InputError, ShapeError) as e:  # say which node the kernel rejected
            raise type(e)(f"node {n.name!r} (op {n.op}): {e}") from e
        except EdgeccError:
            raise
        except Exception as e:  # a kernel bug or bad data: name the node, keep the cause
            raise EdgeccError(f"node {n.name!r} (op {n.op}) failed: {type(e).__name__}: {e}") from e
        for v, arr in zip(n.outputs, outs):
            if tuple(arr.shape) != v.shape or arr.dtype != v.dtype.numpy:
                raise EdgeccError(f"node {n.name!r} (op {n.op}): kernel produced {arr.dtype}"
                                  f"{list(arr.shape)}, IR says {v.type}")
            env[id(v)] = arr
        for v in n.inputs:  # free activations nobody reads any more
            if last_use.get(id(v)) == i and id(v) not in keep and not v.is_constant:
                env.pop(id(v), None)
    return [v.data.copy() if v.is_constant else env[id(v)] for v in graph.outputs]


def reference_kernel(node):
    fn = IMPLS.get(node.op)
    if fn is None:
        raise EdgeccError(f"node {node.name!r}: the reference interpreter has no kernel for op {node.op!r}")
    return lambda ins: fn(ins, node.attrs)


def interpret(graph: Graph, *arrays) -> list[np.ndarray]:
    return execute(graph, arrays, reference_kernel)
