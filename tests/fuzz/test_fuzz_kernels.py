"""Fuzz: edgecc.kernels entry points: shapes, dtypes, strides, geometry, thresholds.
Every input must give a correct result or a clear error (see targets.TARGETS); a crash,
hang, other exception or wrong result fails. EDGECC_FUZZ_EXAMPLES sets the count."""
from hypothesis import given

from mutators import FUZZ_SETTINGS, kernel_calls


@FUZZ_SETTINGS
@given(kernel_calls())
def test_fuzz_kernels(worker, payload):
    worker.check("kernel", payload)
