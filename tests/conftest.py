"""Shared fixtures (kept minimal)."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def ort_run():
    """Run an onnx.ModelProto with ONNX Runtime (the independent reference):
    ort_run(model, {name: array}) -> list of output arrays."""
    import onnxruntime as ort

    def run(model, feeds):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3  # quiet about unused initializers
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        return sess.run(None, {k: np.asarray(v) for k, v in feeds.items()})
    return run
