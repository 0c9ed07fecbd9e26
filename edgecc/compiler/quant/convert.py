"""Turn a float model into a PA / ABC-Net / sign-binarized model (thesis ch.3 setup).

Rules (the same for the three schemes): the first Conv2d (in registration order) and the
last Linear stay full precision; every other Conv2d (1x1 downsample convs included) and
Linear is replaced by its binarized version, which quantizes its own input. The model is
expected to apply BN (then ReLU) right before each binarized layer, as a pre-activation
ResNet does (edgecc.zoo.digits); a ReLU in front of a PA layer changes nothing in the
forward because PA maps everything below v_1 > 0 to 0. Weights are copied; activation
quantizers must then be initialized with `calibration.calibrate`.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch.nn as nn

from ...errors import InputError
from .abc import ABCConv2d, ABCLinear
from .pa import PAConv2d, PALinear
from .sign import SignConv2d, SignLinear


def _binarizable(model: nn.Module) -> list[str]:
    """Qualified names of the layers to binarize."""
    convs = [n for n, m in model.named_modules() if type(m) is nn.Conv2d]
    linears = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    if not convs:
        raise InputError("convert: the model has no nn.Conv2d to binarize")
    return convs[1:] + linears[:-1]


def _replace(model: nn.Module, make: Callable[[nn.Module], nn.Module]) -> nn.Module:
    model = copy.deepcopy(model)
    for name in _binarizable(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(getattr(parent, child)))
    return model


def pa_convert(model: nn.Module, m: int, n: int, lambda_w: float = 1.0, lambda_a: float = 1.0,
               lambda_delta: float = 0.5) -> nn.Module:
    """Copy of `model` with PA layers (M weight bases, N activation bases)."""
    kw = dict(lambda_w=lambda_w, lambda_a=lambda_a, lambda_delta=lambda_delta)
    return _replace(model, lambda mod: (PAConv2d if isinstance(mod, nn.Conv2d) else PALinear)
                    .from_float(mod, m, n, **kw))


def abc_convert(model: nn.Module, m: int, n: int) -> nn.Module:
    """Copy of `model` with ABC-Net layers (M weight, N activation +-1 bases)."""
    return _replace(model, lambda mod: (ABCConv2d if isinstance(mod, nn.Conv2d) else ABCLinear)
                    .from_float(mod, m, n))


def sign_convert(model: nn.Module, act_backward: str = "bireal") -> nn.Module:
    """Copy of `model` with single sign binarization (weights and activations)."""
    return _replace(model, lambda mod: (SignConv2d if isinstance(mod, nn.Conv2d) else SignLinear)
                    .from_float(mod, act_backward=act_backward))


def binary_layers(model: nn.Module) -> dict[str, nn.Module]:
    """name -> binarized layer of a converted model."""
    kinds = (PAConv2d, PALinear, ABCConv2d, ABCLinear, SignConv2d, SignLinear)
    return {n: m for n, m in model.named_modules() if isinstance(m, kinds)}
