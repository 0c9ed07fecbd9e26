"""Element types of IR tensors."""
from __future__ import annotations

import enum

import numpy as np


class DType(enum.Enum):
    f32 = "f32"
    f64 = "f64"
    i8 = "i8"
    u8 = "u8"
    i16 = "i16"
    i32 = "i32"
    i64 = "i64"
    bool = "bool"
    # Bit-packed {0,1} planes: logical shape as written, storage is uint64 words
    # along the channel axis (64 channels per word, zero-filled).
    b1 = "b1"

    @property
    def numpy(self) -> np.dtype:
        return _TO_NUMPY[self]

    @property
    def bits(self) -> int:
        return 1 if self is DType.b1 else self.numpy.itemsize * 8

    @property
    def is_float(self) -> bool:
        return self in (DType.f32, DType.f64)

    @property
    def is_int(self) -> bool:
        return self in (DType.i8, DType.u8, DType.i16, DType.i32, DType.i64)

    @staticmethod
    def from_numpy(dt) -> "DType":
        dt = np.dtype(dt)
        for k, v in _TO_NUMPY.items():
            if k is not DType.b1 and v == dt:
                return k
        raise TypeError(f"numpy dtype {dt} has no edgecc IR dtype")

    def __str__(self) -> str:
        return self.value


_TO_NUMPY = {
    DType.f32: np.dtype(np.float32), DType.f64: np.dtype(np.float64),
    DType.i8: np.dtype(np.int8), DType.u8: np.dtype(np.uint8),
    DType.i16: np.dtype(np.int16), DType.i32: np.dtype(np.int32), DType.i64: np.dtype(np.int64),
    DType.bool: np.dtype(np.bool_), DType.b1: np.dtype(np.uint64),
}
