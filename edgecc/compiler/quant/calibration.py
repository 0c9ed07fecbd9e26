"""Data-driven initialization of activation quantizers (PA endpoints/betas, ABC
thresholds/betas, sign thresholds): one float forward pass over calibration batches."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

from ...errors import InputError


def activation_quantizers(model: nn.Module) -> list[nn.Module]:
    """Every module with an `observing` switch and `init_from_observed` (our act quantizers)."""
    return [m for m in model.modules() if hasattr(m, "observing") and hasattr(m, "init_from_observed")]


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Run `batches` through the float version of `model` (eval mode, quantizers
    observing) and initialize every activation quantizer from what it saw."""
    quants = activation_quantizers(model)
    if not quants:
        raise InputError("calibrate: the model has no activation quantizers (convert it first)")
    was_training = model.training
    model.eval()
    for q in quants:
        q.observing = True
    try:
        seen = 0
        for x in batches:
            model(x)
            seen += 1
        if seen == 0:
            raise InputError("calibrate: no calibration batches given")
        for q in quants:
            q.init_from_observed()
    finally:
        for q in quants:
            q.observing = False
        model.train(was_training)
    return model


@torch.no_grad()
def constrain_(model: nn.Module) -> None:
    """Re-impose parameter constraints (increasing PA endpoints) after an optimizer step."""
    for m in model.modules():
        if hasattr(m, "constrain_") and m is not model:
            m.constrain_()
