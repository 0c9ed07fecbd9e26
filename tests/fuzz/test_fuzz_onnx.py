"""Fuzz: ONNX importer: mutated real and hand-built models.
Every input must give a correct result or a clear error (see targets.TARGETS); a crash,
hang, other exception or wrong result fails. EDGECC_FUZZ_EXAMPLES sets the count."""
from hypothesis import given

from mutators import FUZZ_SETTINGS, onnx_inputs


@FUZZ_SETTINGS
@given(onnx_inputs())
def test_fuzz_onnx(worker, payload):
    worker.check("onnx", payload)
