# Last run: 271 passed, 63 xfailed (node tests 227 passed / 52 xfailed; PyTorch-exported
# models 42 / 11; simple models 2 / 0), onnx 1.23.2, CPU.
"""ONNX backend node tests (onnx.backend.test, generated offline from the onnx wheel)
for the ops the ONNX frontend supports, run through edgecc: import with the ONNX
frontend, execute with the numpy reference interpreter, compare with ONNX's expected
outputs. Every expected failure is listed below with its reason.
"""
from __future__ import annotations

import re
import warnings

import numpy as np
import onnx
import onnx.backend.test
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep

import edgecc
from edgecc.compiler.frontends.onnx import import_onnx
from edgecc.compiler.frontends.onnx_ops import CONVERTERS

INCLUDE = [
    r"^test_(basic_conv|conv)_with(out)?_",
    r"^test_(maxpool|averagepool|globalaveragepool)_",
    r"^test_batchnorm_",
    r"^test_(relu|leakyrelu|prelu|clip|hardsigmoid|hardswish|sigmoid|tanh|sign)_",
    r"^test_(gemm|matmul|concat|reshape|flatten|softmax|transpose|split|slice)_",
    r"^test_(un)?squeeze_",
    r"^test_(constant|edge|reflect|wrap)_pad_",
    r"^test_(upsample|resize)_",
    r"^test_(add|sub|mul|div|sum)_",
    r"^test_(identity|dropout_default|constant|shape)_",
    # PyTorch-exported models (onnx/backend/test/data/pytorch-*), 2-D layers only
    r"^test_(Conv2d|AvgPool2d|MaxPool2d|BatchNorm2d|PReLU_2d|Linear)",
    r"^test_(ConstantPad2d|ReflectionPad2d|ReplicationPad2d|ZeroPad2d)_",
    r"^test_(ReLU|LeakyReLU|Sigmoid|Tanh|Softmax)_",
    r"^test_operator_(add|basic|chunk|clip|concat2|conv_|flatten|maxpool|mm|pad|params|"
    r"permute2|view|non_float_params|index)",
    r"^test_single_relu_model_",
]

# pattern -> why it is skipped (not our op set) or expected to fail.
EXCLUDE = {
    r"_expanded(_ver\d+)?_": "function-expanded form built from ops outside the set "
                             "(CastLike, Less, Where, ReduceMax, Max, ...)",
    r"^test_split_to_sequence_": "SplitToSequence (sequence types) is not in the op set",
    r"_cuda$": "CPU only",
}
XFAIL = {
    r"^test_(add|sub|mul|div)_uint(16|32|64)_": "uint16/uint32/uint64 are not IR dtypes",
    r"^test_(averagepool|maxpool)_(1d|3d)_": "1-D and 3-D pooling are not in the IR (2-D only)",
    r"^test_operator_maxpool_": "1-D max pooling is not in the IR",
    r"^test_averagepool_2d_dilations_": "avg_pool2d has no dilations attribute",
    r"^test_maxpool_with_argmax_": "MaxPool's Indices output is not in the IR",
    r"^test_batchnorm_.*_training_mode_": "training-mode BatchNormalization (batch statistics)",
    r"^test_identity_(opt|sequence)_": "optional and sequence types are not tensors",
    r"^test_wrap_pad_": "Pad mode 'wrap' is not in the IR (constant, reflect, edge)",
    r"^test_resize_.*cubic": "cubic resize is not in the IR (nearest, linear)",
    r"^test_resize_.*antialias": "antialiased resize is not in the IR",
    r"^test_resize_tf_crop_and_resize": "tf_crop_and_resize (roi) is not in the IR",
    r"^test_resize_.*half_pixel_symmetric": "half_pixel_symmetric coordinates (opset 19) "
                                            "are not in the IR",
    r"^test_resize_downsample_scales_linear_align_corners_":
        "ONNX's reference uses the fractional length in*scale=2.4 for align_corners; "
        "ONNX Runtime and edgecc use the integer output size 2 (edgecc matches ORT)",
    r"^test_PReLU_2d": "opset-6 PRelu (per-channel 1-D slope) predates the supported opset 7+",
    r"^test_operator_(add_|addconstant|basic|non_float_params|params)":
        "opset-6 Add/Mul/Neg with the legacy broadcast attribute; ops before opset 7 "
        "are not supported",
}

_INC = [re.compile(p) for p in INCLUDE]
_EXC = [re.compile(p) for p in EXCLUDE]


def _parameter_inputs(model: onnx.ModelProto) -> list[str]:
    """Graph inputs that feed a shape parameter (Reshape's shape, Slice's starts, ...):
    the test feeds them at run time, edgecc needs them at import time."""
    graph_inputs = {i.name for i in model.graph.input}
    out = []
    for node in model.graph.node:
        conv = CONVERTERS.get(node.op_type)
        for i in conv.const_inputs if conv else ():
            if i < len(node.input) and node.input[i] in graph_inputs:
                out.append(node.input[i])
    return out


def _freeze(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = [vi for vi in m.graph.input if vi.name not in values]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    m.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in values.items())
    return m


class EdgeccRep(BackendRep):
    def __init__(self, model: onnx.ModelProto):
        inits = {t.name for t in model.graph.initializer}
        self.model = model
        self.input_names = [i.name for i in model.graph.input if i.name not in inits]
        self.params = _parameter_inputs(model)
        self.graph = None if self.params else import_onnx(model)

    def run(self, inputs, **kwargs):
        feeds = dict(zip(self.input_names, inputs))
        graph = self.graph or import_onnx(_freeze(self.model, {k: feeds[k] for k in self.params}))
        return edgecc.interpret(graph, *[feeds[v.name] for v in graph.inputs])


class EdgeccBackend(Backend):
    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        return EdgeccRep(model)


with warnings.catch_warnings():  # the case generators overflow casts on purpose
    warnings.simplefilter("ignore")
    _backend_test = onnx.backend.test.BackendTest(EdgeccBackend, __name__)
for _p in XFAIL:
    _backend_test.xfail(_p)

# Keep only the included tests (the runner would otherwise list ~3,800 skips).
for _name, _case in _backend_test.test_cases.items():
    for _attr in [a for a in vars(_case) if a.startswith("test_")]:
        if not any(p.search(_attr) for p in _INC) or any(p.search(_attr) for p in _EXC):
            delattr(_case, _attr)
    if any(a.startswith("test_") for a in vars(_case)):
        globals()[_name] = _case
del _name, _case, _attr
