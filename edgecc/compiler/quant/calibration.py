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


# ---- activation ranges for symmetric integer quantization (int8 / int16) -------------
def _sample(values, limit: int):
    """All |values| of the given arrays as one float64 vector, thinned by a fixed stride
    to at most `limit` entries (deterministic, keeps the maximum)."""
    import numpy as np
    flat = np.concatenate([np.abs(np.asarray(v, dtype=np.float64)).ravel() for v in values])
    flat = flat[np.isfinite(flat)]
    if flat.size > limit:
        peak = flat.max()
        flat = np.append(flat[:: -(-flat.size // limit)], peak)
    return flat


def range_max_abs(values) -> float:
    """max |x| over the calibration activations (no clipping)."""
    flat = _sample(values, 1 << 62)
    return float(flat.max()) if flat.size else 0.0


def range_mse(values, qmax: int, candidates: int = 128, limit: int = 1 << 18) -> float:
    """The clipping bound c in (0, max|x|] minimizing the mean squared error of symmetric
    quantization with scale c / qmax (round half to even, clip to +-qmax) over the
    calibration activations: a grid search over `candidates` evenly spaced bounds.
    Clipping a few outliers buys finer steps for the bulk of the values."""
    import numpy as np
    flat = _sample(values, limit)
    peak = float(flat.max()) if flat.size else 0.0
    if peak == 0.0:
        return 0.0
    best, best_err = peak, np.inf
    for c in peak * np.arange(candidates, 0, -1) / candidates:
        s = c / qmax
        err = float(np.mean((np.minimum(np.rint(flat / s), qmax) * s - flat) ** 2))
        if err < best_err:
            best, best_err = float(c), err
    return best
