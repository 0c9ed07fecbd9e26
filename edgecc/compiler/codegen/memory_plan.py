"""Static activation arena: every intermediate buffer gets a fixed offset, planned by
liveness so buffers whose lifetimes do not overlap share memory.

A buffer lives from the step that writes it to the last step that reads it (both
inclusive), so a node's outputs and scratch never overlap its inputs. Placement is
"greedy by size" (as TFLite Micro's planner): largest buffers first, each at the
lowest 64-byte-aligned offset that does not collide with an already placed buffer
whose lifetime overlaps.
"""
from __future__ import annotations

from dataclasses import dataclass

ALIGN = 64


@dataclass
class Buffer:
    name: str
    nbytes: int
    first: int      # step that writes it
    last: int       # last step that reads it
    offset: int = -1

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryPlan:
    buffers: list[Buffer]
    arena_bytes: int

    @property
    def naive_bytes(self) -> int:
        """What one buffer per value would take (for the summary)."""
        return sum(_aligned(b.nbytes) for b in self.buffers)

    def to_dict(self) -> dict:
        return {"arena_bytes": self.arena_bytes, "unshared_bytes": self.naive_bytes,
                "alignment": ALIGN,
                "buffers": [{"name": b.name, "offset": b.offset, "bytes": b.nbytes,
                             "live_steps": [b.first, b.last]} for b in self.buffers]}


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def plan_memory(buffers: list[Buffer]) -> MemoryPlan:
    placed: list[Buffer] = []
    for b in sorted(buffers, key=lambda b: (-b.nbytes, b.first, b.name)):
        if b.first > b.last:
            raise ValueError(f"buffer {b.name!r}: lifetime [{b.first}, {b.last}] is empty")
        busy = sorted((p.offset, p.offset + _aligned(p.nbytes)) for p in placed if p.overlaps_in_time(b))
        offset = 0
        for lo, hi in busy:
            if offset + _aligned(b.nbytes) <= lo:
                break
            offset = max(offset, hi)
        b.offset = offset
        placed.append(b)
    arena = max((b.offset + _aligned(b.nbytes) for b in buffers), default=0)
    return MemoryPlan(list(buffers), arena)
