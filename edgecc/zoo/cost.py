"""Storage and FLOPs of a model under the thesis' binary-network cost model (ch.3-5):
storage bits = 32 x full-precision weights + 1 x binary weights (BN parameters and biases
not counted); FLOPs = full-precision MACs + binary MACs / 64. Counted over conv and linear
layers with forward hooks on one sample; pooling, BN, joins and additions are not counted.
"""
import torch
from torch import nn

from .binary import BinaryConv2d


def binary_cost(model, input_size):
    """Returns dict(storage_bits, flops, fp_macs, binary_macs) for one input of shape input_size (C, H, W)."""
    totals = {"storage_bits": 0, "fp_macs": 0, "binary_macs": 0}
    seen = set()

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            macs = output[0].numel() * module.weight[0].numel()
        else:
            macs = output[0].numel() * module.in_features
        binary = isinstance(module, BinaryConv2d)
        totals["binary_macs" if binary else "fp_macs"] += macs
        if id(module) not in seen:  # a shared layer stores its weight once
            seen.add(id(module))
            totals["storage_bits"] += module.weight.numel() * (1 if binary else 32)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    totals["flops"] = totals["fp_macs"] + totals["binary_macs"] / 64
    return totals
