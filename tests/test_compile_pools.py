"""Compiled max pooling (model_ops.h: vectorized interior columns, checked borders)
equals the reference interpreter exactly, NaN propagation included."""
from __future__ import annotations

import numpy as np

import edgecc
import edgecc.runtime
from edgecc.compiler.ir import Graph

POOLS = [  # kernel, strides, pads, dilations, ceil_mode
    ((3, 3), (2, 2), (1, 1, 1, 1), (1, 1), False),   # ResNet stem
    ((2, 2), (2, 2), (0, 0, 0, 0), (1, 1), True),    # ceil mode: last window hangs over
    ((3, 2), (1, 1), (1, 0, 1, 1), (1, 1), False),   # stride 1, asymmetric pads
    ((3, 3), (3, 2), (0, 1, 2, 0), (2, 1), False),   # runtime stride 3, dilation
    ((5, 5), (1, 3), (2, 2, 2, 2), (1, 2), True),
]


def test_max_pools_match_interpreter_with_nans(tmp_path):
    g = Graph("pools")
    x = g.add_input("x", (2, 5, 23, 301))      # > 256 interior columns: several column blocks
    outs = []
    for i, (k, s, p, d, ceil) in enumerate(POOLS):
        outs.append(g.add_node("max_pool2d", [x], {"kernel": k, "strides": s, "pads": p, "dilations": d,
                                                   "ceil_mode": ceil}, name=f"pool{i}").outputs[0])
    g.outputs = outs
    edgecc.compile(g, tmp_path / "m", onednn=False)
    model = edgecc.runtime.load(tmp_path / "m")
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((2, 5, 23, 301)).astype(np.float32)
    xs.reshape(-1)[rng.choice(xs.size, 40, replace=False)] = np.nan
    xs[0, 0, 0, :5] = -np.inf
    for threads in (1, 2):
        model.threads = threads
        for got, want in zip(model.run(xs), edgecc.interpret(g, xs)):
            assert np.isnan(want).any()
            np.testing.assert_array_equal(got, want)
