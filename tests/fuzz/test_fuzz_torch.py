"""Fuzz: PyTorch frontend: example input specs of every kind.
Every input must give a correct result or a clear error (see targets.TARGETS); a crash,
hang, other exception or wrong result fails. EDGECC_FUZZ_EXAMPLES sets the count."""
from hypothesis import given

from mutators import FUZZ_SETTINGS, torch_inputs


@FUZZ_SETTINGS
@given(torch_inputs())
def test_fuzz_torch(worker, payload):
    worker.check("torch", payload)
