"""Shared fixtures (kept minimal)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

# tests/fuzz holds helpers that test modules import too (fuzz_c_api: the C API via ctypes,
# the two-input model).
FUZZ_DIR = str(Path(__file__).resolve().parent / "fuzz")
if FUZZ_DIR not in sys.path:
    sys.path.insert(0, FUZZ_DIR)


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


@pytest.fixture
def one_torch_thread():
    """PyTorch on one thread during the test: on tiny kernels extra OpenMP threads only
    thrash on a shared CPU. Use with pytestmark = pytest.mark.usefixtures(...)."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def two_input_model(tmp_path_factory) -> Path:
    """fuzz_c_api's two-input fp32 model compiled once for the session. Shared: tests
    that damage it must work on a copy."""
    import fuzz_c_api
    return fuzz_c_api.compile_two_input_model(tmp_path_factory.mktemp("two_input") / "two")
