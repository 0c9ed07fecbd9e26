"""oneDNN's exact s8 x s8 -> s32 convolution (model_onednn.h's OnednnConvS8S32) callable
from Python, for `--tune` and benchmarks/int8_conv_kernels.py: the very wrapper compiled
models call, built once into a small cached library (build/onednn-s8/<hash>/).

    conv = OnednnS8Conv(shape16, w_oihw_int8)     # shape: n c h w o kh kw sh sw dh dw pt pl pb pr groups
    acc = conv(x_nchw_int8, threads=1)            # int32 NCHW, every sum exact
    exact_on_this_cpu()                           # oneDNN int8 is exact here (VNNI)

Errors (oneDNN not installed, a bad shape, a CPU without VNNI) raise EdgeccError.
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np

from ...errors import EdgeccError
from . import onednn

_SOURCE = r'''
#include <cstring>
#include <exception>
#include "edgecc/model_onednn.h"
#define EXPORT extern "C" __attribute__((visibility("default")))
namespace {
void put(const char* s, char* out, int len) {
  std::strncpy(out, s, static_cast<size_t>(len) - 1);
  out[len - 1] = 0;
}
}  // namespace
EXPORT int edgecc_s8conv_exact() { return edgecc::model::OnednnConvS8S32::exact_on_this_cpu() ? 1 : 0; }
// v: n c h w o kh kw sh sw dh dw pt pl pb pr groups
EXPORT void* edgecc_s8conv_open(const int64_t* v, const int8_t* w, char* err, int len) {
  try {
    edgecc::Conv2dShape s;
    s.batch = v[0]; s.in_channels = v[1]; s.in_h = v[2]; s.in_w = v[3]; s.out_channels = v[4];
    s.kernel_h = v[5]; s.kernel_w = v[6]; s.stride_h = v[7]; s.stride_w = v[8]; s.dilation_h = v[9];
    s.dilation_w = v[10]; s.pad_top = v[11]; s.pad_left = v[12]; s.pad_bottom = v[13]; s.pad_right = v[14];
    s.groups = v[15];
    return new edgecc::model::OnednnConvS8S32("oneDNN s8 conv", s, w);
  } catch (const std::exception& e) {
    put(e.what(), err, len);
    return nullptr;
  }
}
EXPORT int edgecc_s8conv_run(void* conv, const int8_t* x, int32_t* y, int threads, char* err, int len) {
  try {
    static_cast<edgecc::model::OnednnConvS8S32*>(conv)->run(x, y, threads);
    return 0;
  } catch (const std::exception& e) {
    put(e.what(), err, len);
    return 1;
  }
}
EXPORT void edgecc_s8conv_close(void* conv) { delete static_cast<edgecc::model::OnednnConvS8S32*>(conv); }
'''


@functools.lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    lib = onednn.helper_library("onednn-s8", _SOURCE, "-O2")
    so = ctypes.CDLL(str(lib))
    so.edgecc_s8conv_open.restype = ctypes.c_void_p
    so.edgecc_s8conv_open.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    so.edgecc_s8conv_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                                     ctypes.c_char_p, ctypes.c_int]
    so.edgecc_s8conv_close.argtypes = [ctypes.c_void_p]
    return so


def exact_on_this_cpu() -> bool:
    """OnednnConvS8S32::exact_on_this_cpu() (False when oneDNN is missing)."""
    try:
        return bool(_library().edgecc_s8conv_exact())
    except EdgeccError:
        return False


def out_hw(shape) -> tuple[int, int]:
    n, c, h, w, o, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, g = shape
    return (h + pt + pb - dh * (kh - 1) - 1) // sh + 1, (w + pl + pr - dw * (kw - 1) - 1) // sw + 1


class OnednnS8Conv:
    """One oneDNN s8 conv primitive (built at construction, weights reordered once)."""

    def __init__(self, shape, w: np.ndarray):
        self.shape = tuple(int(v) for v in shape)
        self._w = np.ascontiguousarray(w, dtype=np.int8)   # oneDNN keeps a pointer to it
        self._so = _library()
        err = ctypes.create_string_buffer(512)
        self._h = self._so.edgecc_s8conv_open((ctypes.c_int64 * 16)(*self.shape), self._w.ctypes.data, err, 512)
        if not self._h:
            raise EdgeccError(err.value.decode())
        oh, ow = out_hw(self.shape)
        self.out_shape = (self.shape[0], self.shape[4], oh, ow)

    def __call__(self, x: np.ndarray, threads: int = 0, out: np.ndarray | None = None) -> np.ndarray:
        n, c, h, w = self.shape[:4]
        if x.dtype != np.int8 or x.shape != (n, c, h, w) or not x.flags.c_contiguous:
            raise EdgeccError(f"oneDNN s8 conv: input must be C-contiguous int8 {(n, c, h, w)}, got {x.dtype} "
                              f"{x.shape}")
        y = np.empty(self.out_shape, np.int32) if out is None else out
        err = ctypes.create_string_buffer(512)
        if self._so.edgecc_s8conv_run(self._h, x.ctypes.data, y.ctypes.data, int(threads), err, 512):
            raise EdgeccError(err.value.decode())
        return y

    def __del__(self):
        if getattr(self, "_h", None):
            self._so.edgecc_s8conv_close(self._h)
            self._h = None
