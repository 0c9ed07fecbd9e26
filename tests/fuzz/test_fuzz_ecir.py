"""Fuzz: .ecir loader: truncated, flipped and tampered zip / JSON / .npy entries.
Every input must give a correct result or a clear error (see targets.TARGETS); a crash,
hang, other exception or wrong result fails. EDGECC_FUZZ_EXAMPLES sets the count."""
from hypothesis import given

from mutators import FUZZ_SETTINGS, ecir_inputs


@FUZZ_SETTINGS
@given(ecir_inputs())
def test_fuzz_ecir(worker, payload):
    worker.check("ecir", payload)
