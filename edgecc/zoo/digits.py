"""A small pre-activation residual CNN for the 8x8 scikit-learn digits, and the data.

Pre-activation blocks put BN -> ReLU right before every conv but the stem, which is where
PA places BN before each activation approximation (thesis ch.3).
Stem 3x3 conv (16 ch, 8x8) -> block(16) -> block(16->32, stride 2, 1x1 downsample) ->
block(32) -> BN -> ReLU -> global average pool -> linear(10).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

DATA_DIR = Path(__file__).parent / "data"
SPLIT_SEED = 0
TEST_FRACTION = 0.25
# The trained state_dicts written by benchmarks/pa_digits.py: kind -> (file, PA (M, N) or None).
BUNDLED = {"float": ("digits_float.pt", None), "pa45": ("digits_pa45.pt", (4, 5)),
           "pa23": ("digits_pa23.pt", (2, 3))}


class PreActBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.downsample = (nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        pre = self.relu1(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(pre)
        out = self.conv1(pre)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + shortcut


class DigitsResNet(nn.Module):
    def __init__(self, width: int = 16, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.block1 = PreActBlock(width, width)
        self.block2 = PreActBlock(width, 2 * width, stride=2)
        self.block3 = PreActBlock(2 * width, 2 * width)
        self.bn = nn.BatchNorm2d(2 * width)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(self.relu(self.bn(x))), 1))


def load_digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test): the 1797 sklearn digits as [N,1,8,8] floats
    scaled to [0, 1], a fixed stratified split (seed SPLIT_SEED, 25% test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=TEST_FRACTION,
                                          random_state=SPLIT_SEED, stratify=d.target)
    return (torch.from_numpy(xtr), torch.from_numpy(ytr).long(),
            torch.from_numpy(xte), torch.from_numpy(yte).long())


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in eval mode."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    model.train(was_training)
    return acc


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float,
          seed: int, batch: int = 64, weight_decay: float = 0.0, after_step=None) -> nn.Module:
    """Adam with a cosine learning-rate schedule over fixed-seed shuffled mini-batches;
    `after_step(model)` runs after each optimizer step (e.g. quantizer constraints)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(x) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step(model)
    model.eval()
    return model


def bundled_path(kind: str) -> Path:
    """The file of bundled model `kind` ("float", "pa45" or "pa23")."""
    if kind not in BUNDLED:
        from ..errors import InputError
        raise InputError(f"bundled digits model {kind!r}: expected one of {sorted(BUNDLED)}")
    return DATA_DIR / BUNDLED[kind][0]


def load_bundled(kind: str) -> nn.Module:
    """The bundled trained DigitsResNet ("float") or its PA(M, N) version ("pa45",
    "pa23"), in eval mode."""
    path = bundled_path(kind)
    pa = BUNDLED[kind][1]
    if pa is None:
        model = DigitsResNet()
    else:
        from ..compiler.quant.convert import pa_convert   # lazy: the zoo does not need the compiler
        model = pa_convert(DigitsResNet(), *pa)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()
