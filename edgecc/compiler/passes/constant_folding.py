"""Replace nodes whose inputs are all constants by the constants they compute.

Evaluated with the numpy reference kernels, so folding is exactly what the
interpreter would have computed. Nodes whose result would be large (more than
`max_elements` in all outputs) stay in the graph rather than bloat the weights,
and so do nodes that produce a graph output (backends need not handle graph
outputs that are constants). Bit-packed (b1) tensors are left alone.
"""
from __future__ import annotations

from ...errors import EdgeccError
from ...kernels.reference import IMPLS
from ..ir import DType, Graph, Node
from .manager import log_change

NAME = "fold_constants"
MAX_ELEMENTS = 1 << 24  # 16M elements (64 MiB of f32)


class ConstantFolding:
    """`ConstantFolding(max_elements=...)` is the pass with another size cap."""

    name = NAME

    def __init__(self, max_elements: int = MAX_ELEMENTS):
        self.max_elements = max_elements

    def __call__(self, graph: Graph) -> bool:
        outputs = {id(v) for v in graph.outputs}
        folded = []
        for n in graph.nodes:
            if self._foldable(n, outputs):
                self._fold(graph, n)
                folded.append(n)
        graph.remove_nodes(folded)
        return bool(folded)

    def _foldable(self, n: Node, graph_outputs: set[int]) -> bool:
        return (n.op in IMPLS and all(v.is_constant for v in n.inputs)
                and not any(id(v) in graph_outputs for v in n.outputs)
                and sum(v.type.numel for v in n.outputs) <= self.max_elements
                and not any(v.dtype is DType.b1 for v in n.inputs + n.outputs))

    @staticmethod
    def _fold(graph: Graph, n: Node) -> None:
        try:
            results = IMPLS[n.op]([v.data for v in n.inputs], n.attrs)
        except Exception as e:  # e.g. integer division by zero in constant weights
            raise EdgeccError(f"node {n.name!r} (op {n.op}): evaluating it on its constant "
                              f"inputs failed: {type(e).__name__}: {e}") from e
        names = []
        for v, data in zip(n.outputs, results):
            if tuple(data.shape) != v.shape or data.dtype != v.dtype.numpy:
                raise EdgeccError(f"node {n.name!r} (op {n.op}): reference kernel gave "
                                  f"{data.dtype}{list(data.shape)}, IR says {v.type}")
            # The node goes away, so its output's name is free for the constant.
            c = Graph.constant(v.name, data)
            c.meta.update(v.meta)
            graph.replace_all_uses(v, c)
            names.append(v.name)
        log_change(graph, NAME, f"folded {n.name} (op {n.op}) into constant "
                                f"{', '.join(names)}")


fold_constants = ConstantFolding()
