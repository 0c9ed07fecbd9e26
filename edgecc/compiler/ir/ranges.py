"""Channel index lists as runs of consecutive indices (the `ranges` of indexed_conv2d,
and how both frontends turn a constant-index channel gather into slices + concat)."""
from __future__ import annotations


def index_runs(index) -> list[tuple[int, int]]:
    """[(start, end), ...]: the index list as maximal runs of consecutive values."""
    runs: list[list[int]] = []
    for i in (int(v) for v in index):
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    return [(s, e) for s, e in runs]
