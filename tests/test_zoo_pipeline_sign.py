"""The sign-binarized zoo models (Bi-Real, NASB, UA) through the whole pipeline of
test_zoo_pipeline.py (both frontends, interpreter vs PyTorch, fp32 and int8 libraries vs
the interpreter, tie-aware). A file of their own so that the two halves run side by side
under pytest-xdist."""
from __future__ import annotations

import pytest

from tests.test_zoo_pipeline import SIGN_MODELS, check_pipeline

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", sorted(SIGN_MODELS))
def test_sign_zoo_model_imports_interprets_and_compiles(name, tmp_path):
    check_pipeline(name, tmp_path)
