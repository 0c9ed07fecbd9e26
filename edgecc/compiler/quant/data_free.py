"""Data-free calibration (thesis ch.8 eq 8.1, AutoReCon / GDFQ / ZeroQ): synthesize
inputs whose batch statistics at every batch-norm layer match the stored running
statistics, then calibrate the quantizers on them.

    samples = synthesize_calibration(graph, n=64, seed=0)   # list of input arrays
    qgraph, report = quantize_int(graph, calib=samples)      # or calib="data-free"

The loss is the sum over BN layers of ||mu_batch - mu_running||^2 +
||sigma_batch - sigma_running||^2 (sigma = sqrt(var + eps), per channel, batch
statistics over N, H, W of the BN *input*), minimized by Adam on the inputs
themselves (no generator: a compiler has no labels or training loop to spare). The
graph runs as a PyTorch module (runtime/torch_module.to_torch).

Works on the graph before BN folding (batch_norm nodes) and after it: fold_batchnorm
keeps the statistics as node.meta["folded_bn"] (or "folded_bn_slices") and the folded
conv output is y = s * (BN input - mean) + beta with s = gamma / sqrt(var + eps), so
the BN input statistics follow from y's: mu = (mu_y - beta) / s + mean,
var = var_y / s^2. The loss is the same function of the inputs either way.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...errors import InputError
from ..ir import Graph, Value

DEFAULT_SAMPLES = 64


@dataclass
class BNTarget:
    """One BN layer's statistics, measured at `value` (channels lo:hi of axis 1)."""
    name: str
    value: Value
    lo: int
    hi: int
    mean: np.ndarray
    var: np.ndarray
    eps: float
    folded: bool                      # value is the folded output y, not the BN input
    gamma: np.ndarray | None = None
    beta: np.ndarray | None = None


def bn_targets(graph: Graph) -> list[BNTarget]:
    """Every batch norm whose running statistics the graph still knows."""
    out = []
    for n in graph.nodes:
        if n.op == "batch_norm" and all(v.is_constant for v in n.inputs[1:]):
            x = n.inputs[0]
            if x.type.rank >= 2 and x.dtype.is_float:
                out.append(BNTarget(n.name, x, 0, x.shape[1], n.inputs[3].data, n.inputs[4].data,
                                    n.attrs["eps"], False))
        stats = [n.meta["folded_bn"]] if "folded_bn" in n.meta else []
        stats += n.meta.get("folded_bn_slices", [])
        for st in stats:
            y = n.outputs[0]
            if "epilogue" in st:  # shared weight: BN became mul + add after the conv
                y = graph.node(st["epilogue"][1]).outputs[0]
            lo, hi = st.get("channels", (0, y.shape[1]))
            out.append(BNTarget(st["node"], y, lo, hi, st["mean"], st["var"], st["eps"], True,
                                st["scale"], st["bias"]))
    return out


def synthesize_calibration(graph: Graph, n: int | None = None, seed: int = 0, steps: int = 200,
                           lr: float = 0.1) -> list[np.ndarray]:
    """`n` synthetic inputs (default: the smallest multiple of the graph batch >= 64),
    optimized jointly so their BN batch statistics match the running ones; returned as
    n / batch arrays of exactly the graph's input shape, ready for quantize_int."""
    from ...runtime.torch_module import to_torch

    if len(graph.inputs) != 1 or not graph.inputs[0].dtype.is_float:
        raise InputError(f"synthesize_calibration: graph {graph.name!r} must have one float input, "
                         f"has {[str(v.type) for v in graph.inputs]}")
    shape = graph.inputs[0].shape
    batch = shape[0]
    if n is None:
        n = batch * -(-DEFAULT_SAMPLES // batch)
    if not isinstance(n, (int, np.integer)) or n < 2 or n % batch:
        raise InputError(f"synthesize_calibration: n={n!r} must be a multiple of the graph's batch "
                         f"size {batch} (input {graph.inputs[0].name!r} {list(shape)}) and >= 2")
    if steps < 1:
        raise InputError(f"synthesize_calibration: steps={steps!r} must be >= 1")
    targets = bn_targets(graph)
    if not targets:
        raise InputError(f"synthesize_calibration: graph {graph.name!r} keeps no batch-norm "
                         "statistics (no batch_norm node, no folded_bn meta); data-free "
                         "calibration needs them: give calibration data instead")
    module = to_torch(graph, taps=[t.value for t in targets])
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((int(n),) + shape[1:], generator=gen).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    want = [_want(t) for t in targets]
    try:
        for _ in range(steps):
            opt.zero_grad()
            _, taps = module(x)
            loss = sum(_mismatch(t, a, w) for t, a, w in zip(targets, taps, want))
            loss.backward()
            opt.step()
    except RuntimeError as e:  # e.g. a reshape that fixes the batch size
        raise InputError(f"synthesize_calibration: graph {graph.name!r} does not run on a batch of "
                         f"{n}: {str(e)[:200]}") from e
    data = x.detach().numpy().astype(graph.inputs[0].dtype.numpy)
    return [np.ascontiguousarray(data[i:i + batch]) for i in range(0, int(n), batch)]


def bn_statistics_loss(graph: Graph, x: np.ndarray) -> float:
    """The eq 8.1 loss of inputs `x` (any batch size the graph runs with)."""
    from ...runtime.torch_module import to_torch
    targets = bn_targets(graph)
    module = to_torch(graph, taps=[t.value for t in targets])
    with torch.no_grad():
        _, taps = module(torch.from_numpy(np.asarray(x, dtype=np.float32)))
        return float(sum(_mismatch(t, a, _want(t)) for t, a in zip(targets, taps)))


def _want(t: BNTarget):
    """(running mean, running sigma, s, channel mask) as float32 tensors."""
    mean = torch.from_numpy(np.asarray(t.mean, np.float64))
    var = torch.from_numpy(np.asarray(t.var, np.float64))
    sigma = torch.sqrt(var + t.eps)
    if t.folded:
        s = torch.from_numpy(np.asarray(t.gamma, np.float64)) / sigma
        mask = s != 0                     # gamma 0: the folded output forgets the input
    else:
        s, mask = torch.ones_like(mean), torch.ones_like(mean, dtype=torch.bool)
    return mean.float(), sigma.float(), torch.where(mask, s, torch.ones_like(s)).float(), mask


def _mismatch(t: BNTarget, a: torch.Tensor, want) -> torch.Tensor:
    mean, sigma, s, mask = want
    a = a[:, t.lo:t.hi].transpose(0, 1).reshape(t.hi - t.lo, -1)
    mu = a.mean(dim=1)
    var = a.var(dim=1, unbiased=False)
    if t.folded:  # statistics of the BN input, from those of the folded output
        mu = (mu - torch.from_numpy(np.asarray(t.beta, np.float32))) / s + mean
        var = var / (s * s)
    sig = torch.sqrt(var + t.eps)
    return (((mu - mean) ** 2 + (sig - sigma) ** 2) * mask).sum()
