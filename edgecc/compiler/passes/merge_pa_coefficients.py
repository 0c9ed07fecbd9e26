"""Merge the PA scaling coefficients of each binary layer into one phi matrix.

The frontends give a binary_conv2d / binary_linear its coefficients as factors:
phi = mul(alpha[O, M, 1], beta[1, 1, P]) (PA: alpha_i beta_j, thesis eq 3.19; ABC-Net:
eps_i beta_j; sign: alpha_o). This pass replaces that product by one constant
phi[O, M, P] owned by the layer, computed exactly as the mul node would (float32
product), so outputs do not change. The mul node is removed when nothing else reads
it. A phi computed at run time from non-constants is left alone and logged.
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph
from .manager import log_change

NAME = "merge_pa_coefficients"
BINARY_OPS = ("binary_conv2d", "binary_linear")


def merge_pa_coefficients(graph: Graph) -> bool:
    producers = {id(v): n for n in graph.nodes for v in n.outputs}
    changed = False
    for node in [n for n in graph.nodes if n.op in BINARY_OPS]:
        phi = node.inputs[2]
        if phi.is_constant:
            continue
        prod = producers.get(id(phi))
        if prod is None or prod.op != "mul" or not all(v.is_constant for v in prod.inputs):
            what = "a graph input" if prod is None else f"{prod.name} (op {prod.op})"
            log_change(graph, NAME, f"kept {node.name}: phi {phi.name!r} comes from {what}, "
                                    "not a product of constant coefficients")
            continue
        a, b = prod.inputs
        data = np.multiply(a.data, b.data).astype(phi.dtype.numpy)   # what the mul computes
        merged = Graph.constant(graph.unique_name(f"{node.name}.phi"), data)
        node.inputs = [merged if i == 2 else v for i, v in enumerate(node.inputs)]
        if not graph.users().get(id(phi)) and not any(v is phi for v in graph.outputs):
            graph.remove_nodes([prod])
        log_change(graph, NAME, f"merged {a.name} x {b.name} into phi {list(data.shape)} "
                                f"of {node.name}")
        changed = True
    return changed
