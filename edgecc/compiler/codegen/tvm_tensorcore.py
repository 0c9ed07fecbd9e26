"""Binary / PA convolution on NVIDIA tensor cores: an implicit GEMM over packed bits
run by the 1-bit MMA, written as a TVM TIR PrimFunc (TVMScript). Two instructions
(TensorCoreTiles.instruction):
  "mma.sync"  `mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc` (sm_80 and
              later), operands loaded straight into registers; the default.
  "wgmma"     Hopper's `wgmma.mma_async.sync.aligned.m64nNk256.s32.b1.b1.and.popc`
              (sm_90a), operands staged in shared memory and read through matrix
              descriptors. Not yet run on a GPU: the shared-memory tile layout and the
              descriptor offsets follow the PTX ISA (K-major, no swizzle) but only a
              Hopper run can confirm them (benchmarks/gpu_binary_conv.py checks it).
TVM 0.27 prints both itself: `T.ptx_legacy.mma` with operand types "int1" and bit
operator "and", and `T.ptx["wgmma...b1.b1.and.popc"]` with
`T.cuda.wgmma.encode_matrix_descriptor` (the tests check the generated source and
compile it with nvcc).

Only AND is used, also for +-1 bases: XOR+popc is slow or absent on Hopper tensor
cores, and the AND form decodes exactly (see tvm_binary's module doc):
    pm1 w, 01 a:  2 AND - SA      SA = ones of a in the window
    01 w, pm1 a:  2 AND - SW      SW = ones of w over the valid taps
    pm1 x pm1:    4 AND - 2 SA - 2 SW + NV     NV = Cg * valid taps
SA comes from the tensor cores for free: the weight matrix gets one extra column of
all-ones bits (every channel of every tap), whose AND count is SA.

The GEMM, per group g (grid z):
    rows  r = ((n*P + j)*OH + y)*OW + x          (image, activation plane, pixel)
    cols  c = i*Og + o_local  (+ the ones column) (weight basis, output channel)
    K     kk = tap*KW + w     (32-bit words; tap = ky*kw + kx, w = channel word)
    A[r, kk] = packed activation word at the tap's input pixel (0 if padded)
    B[c, kk] = packed weight word (packed once at compile time: pack_gemm_weights)
    D[r, c]  = sum_kk popc(A[r, kk] & B[c, kk])

Three kernels in one PrimFunc: pack (one thread per activation word), the MMA GEMM
(each warp a 16 x 8*n_tiles tile, `warps` warps per block stacked along rows,
accumulators in registers over the whole K loop; wgmma: one warpgroup per block, a
64 x 8*n_tiles tile), decode + phi/bias epilogue (one thread per output element,
output channels fastest so the reads of D coalesce).
With emulate=True the same PrimFunc is built for a CPU: the thread loops run
serially and each MMA is computed from the lanes' fragment registers (mma.sync) or
from the shared-memory tiles through the descriptor layout (wgmma) with the same index
math (a_frag/b_frag/c_frag, smem_word), so the LLVM build checks the implicit-GEMM
indexing and fragment layouts bit-exactly. The layouts are those of the PTX ISA
("Matrix Fragments for mma.m16n8k256" .b1; wgmma's m64nN accumulators are four warps
of that C layout); only a GPU run can confirm the hardware agrees
(benchmarks/gpu_binary_conv.py checks every kernel against the C++ engine).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InputError, ShapeError
from .tvm_binary import BinaryConvSpec, _tvm

SCHEDULE_NAME = "cuda tensor-core b1"
WGMMA_SCHEDULE_NAME = "cuda tensor-core b1 wgmma"
INSTRUCTIONS = ("mma.sync", "wgmma")
WGMMA_N = (8, 16, 24, *range(32, 257, 16))   # wgmma .b1 m64nNk256 widths
LBO_16B, SBO_16B = 8, 16   # wgmma tile layout: 128 B between K core matrices, 256 B between 8-row groups
MMA_K_WORDS = 8          # m16n8k256: 256 bits = 8 words of K per MMA
THREADS = 256            # threads per block of the pack and epilogue kernels
MAX_UNROLLED_K_STEPS = 36


@dataclass(frozen=True)
class TensorCoreTiles:
    warps: int = 4       # warps per block, each 16 GEMM rows
    n_tiles: int = 4     # 8-column MMA tiles per warp (the A fragment is reused for all)
    instruction: str = "mma.sync"   # or "wgmma" (sm_90a): one m64n(8*n_tiles)k256 per K step

    def __post_init__(self):
        if not (1 <= self.warps <= 32 and 1 <= self.n_tiles <= 32):
            raise InputError(f"tensor-core tiles: warps={self.warps}, n_tiles={self.n_tiles}; "
                             "each must be in 1..32")
        if self.instruction not in INSTRUCTIONS:
            raise InputError(f"tensor-core instruction {self.instruction!r}: expected one of {INSTRUCTIONS}")
        if self.instruction == "wgmma" and (self.warps != 4 or 8 * self.n_tiles not in WGMMA_N):
            raise InputError(f"wgmma tiles: warps={self.warps}, n_tiles={self.n_tiles}; wgmma needs one "
                             f"warpgroup (warps=4) and 8*n_tiles in {WGMMA_N}")


WGMMA_TILES = TensorCoreTiles(4, 8, "wgmma")


# ---- fragment layouts of mma.m16n8k256 .b1 (PTX ISA), lane = 4*group + thread_in_group ------
def a_frag(lane, reg):
    """A (16 x 8 words, row major): register reg of lane holds A[row, word]."""
    return lane // 4 + 8 * (reg % 2), lane % 4 + 4 * (reg // 2)


def a_owner(row, word):
    """Inverse of a_frag: (lane, reg) holding A[row, word]."""
    return (row % 8) * 4 + word % 4, row // 8 + 2 * (word // 4)


def b_frag(lane, reg):
    """B (8 words x 8 columns, column major): register reg of lane holds B[col, word]."""
    return lane // 4, lane % 4 + 4 * reg


def b_owner(col, word):
    return col * 4 + word % 4, word // 4


def c_frag(lane, reg):
    """C/D (16 x 8 int32): register reg of lane holds D[row, col]."""
    return lane // 4 + 8 * (reg // 2), 2 * (lane % 4) + reg % 2


# ---- GEMM geometry and compile-time constants ------------------------------------------------
def _ceil_to(v: int, m: int) -> int:
    return -(-v // m) * m


@dataclass(frozen=True)
class GemmShape:
    rows: int            # N*P*OH*OW
    cols: int            # M*Og (+1 ones column for pm1 weights)
    k_words: int         # kh*kw*KW
    rows_pad: int
    cols_pad: int
    k_pad: int

    @classmethod
    def of(cls, spec: BinaryConvSpec, tiles: TensorCoreTiles) -> "GemmShape":
        rows = spec.n * spec.p * spec.out_h * spec.out_w
        cols = spec.m * spec.og + (1 if spec.weight_basis == "pm1" else 0)
        k = spec.kh * spec.kw * spec.words_per_group
        return cls(rows, cols, k, _ceil_to(rows, 16 * tiles.warps), _ceil_to(cols, 8 * tiles.n_tiles),
                   _ceil_to(k, MMA_K_WORDS))


def _check_spec(spec: BinaryConvSpec):
    if spec.word_bits != 32:
        raise InputError(f"the tensor-core schedule uses 32-bit words, spec has word_bits={spec.word_bits}")


def pack_gemm_weights(wb: np.ndarray, spec: BinaryConvSpec, tiles: TensorCoreTiles = TensorCoreTiles()):
    """Weight bases wb [M, O, Cg, kh, kw] -> B words [G, cols_pad, k_pad] uint32 (zero padded;
    for pm1 weights column M*Og is the all-ones column that counts SA)."""
    from .tvm_binary import pack_weight_bases
    _check_spec(spec)
    gs = GemmShape.of(spec, tiles)
    words = pack_weight_bases(wb, spec)                        # [M, O, kh, kw, KW]
    kwg, og = spec.words_per_group, spec.og
    out = np.zeros((spec.groups, gs.cols_pad, gs.k_pad), np.uint32)
    for g in range(spec.groups):
        block = words[:, g * og:(g + 1) * og].reshape(spec.m * og, gs.k_words)   # c = i*Og + o
        out[g, :spec.m * og, :gs.k_words] = block
    if spec.weight_basis == "pm1":
        ones = np.zeros((spec.kh * spec.kw, kwg * 32), np.uint8)
        ones[:, :spec.cg] = 1
        out[:, spec.m * og, :gs.k_words] = np.packbits(ones, axis=-1, bitorder="little").view("<u4").reshape(-1)
    return out


def weight_tap_ones(wb: np.ndarray, spec: BinaryConvSpec) -> np.ndarray:
    """Ones of each weight basis per output channel and tap: [M, O, kh*kw] int32."""
    wb = np.asarray(wb)
    if wb.shape != (spec.m, spec.o, spec.cg, spec.kh, spec.kw):
        raise ShapeError(f"weight bases have shape {list(wb.shape)}, expected "
                         f"{[spec.m, spec.o, spec.cg, spec.kh, spec.kw]}")
    return np.ascontiguousarray((wb > 0).sum(axis=2, dtype=np.int32).reshape(spec.m, spec.o, -1))


# ---- the PrimFunc -----------------------------------------------------------------------------
def layer_prim_func(spec: BinaryConvSpec, *, output: str = "float", emulate: bool = False,
                    tiles: TensorCoreTiles = TensorCoreTiles()):
    """Arguments (x, wg, wones, phi, t, bias, out): out is y f32 [N,O,OH,OW] for
    output="float", counts int32 [N,M,P,O,OH,OW] for output="counts" (phi and bias are
    then not read). wg from pack_gemm_weights, wones from weight_tap_ones."""
    _tvm()
    from tvm import tirx
    from tvm.script import tirx as T
    if output not in ("float", "counts"):
        raise InputError(f"output={output!r}: expected 'float' or 'counts'")
    _check_spec(spec)
    gs = GemmShape.of(spec, tiles)
    N, C, H, W, O, M, P = spec.n, spec.c, spec.h, spec.w, spec.o, spec.m, spec.p
    KW_, OH, OW = spec.kw, spec.out_h, spec.out_w
    S0, S1 = spec.strides
    D0, D1 = spec.dilations
    P0, P1 = spec.pads[0], spec.pads[1]
    G, CG, OG, KW, TAPS = spec.groups, spec.cg, spec.og, spec.words_per_group, spec.kh * spec.kw
    GK = G * KW
    RP, CP, KP, KWORDS = gs.rows_pad, gs.cols_pad, gs.k_pad, gs.k_words
    WARPS, NT = tiles.warps, tiles.n_tiles
    TR, TC = 16 * WARPS, 8 * NT
    W_PM1, A_PM1 = spec.weight_basis == "pm1", spec.act_basis == "pm1"
    PLANE_BAND = spec.act_basis == "01" and P > 1      # {0,1} planes: below the next threshold too
    COUNTS = output == "counts"
    OUT_SHAPE = (N, M, P, O, OH, OW) if COUNTS else (N, O, OH, OW)
    OUT_DTYPE = "int32" if COUNTS else "float32"
    N_WORDS, N_OUT = N * P * H * W * GK, N * O * OH * OW
    if max(G * RP * CP, N_WORDS, N * M * P * O * OH * OW, N * C * H * W) >= 2**31:
        raise InputError(f"binary conv {N}x{C}x{H}x{W} -> {O} channels, M={M}, P={P}: the GEMM "
                         f"({G}x{RP}x{CP} counts) is too large for 32-bit indexing; use a smaller batch")
    CUDA = not emulate
    WGMMA = tiles.instruction == "wgmma"

    def loop(extent, tag):
        """A thread-bound loop on CUDA, a serial (or parallel) one on the CPU."""
        if CUDA:
            return T.thread_binding(extent, thread=tag)
        return T.parallel(extent) if tag == "blockIdx.x" else T.serial(extent)

    def k_loop(steps):
        """The MMA K loop, unrolled when short so nvcc can issue the next loads early."""
        return T.unroll(steps) if steps <= MAX_UNROLLED_K_STEPS else T.serial(steps)

    def a_word(words, g, row, kk):
        """A[row, kk] of group g: the packed activation word under tap kk // KW (im2col)."""
        xx, yy = row % OW, row // OW % OH
        j, n = row // (OW * OH) % P, row // (OW * OH * P)
        tap, w = kk // KW, kk % KW
        iy = yy * S0 - P0 + tap // KW_ * D0
        ix = xx * S1 - P1 + tap % KW_ * D1
        ok = tirx.all(row < gs.rows, kk < KWORDS, iy >= 0, iy < H, ix >= 0, ix < W)
        return tirx.if_then_else(ok, words[n, j, iy, ix, g * KW + w], tirx.const(0, "uint32"))

    def valid_tap(yy, xx, tap):
        iy = yy * S0 - P0 + tap // KW_ * D0
        ix = xx * S1 - P1 + tap % KW_ * D1
        return tirx.all(iy >= 0, iy < H, ix >= 0, ix < W)

    def smem_word(row, word):
        """Word offset of (row, 32-bit word) of a K-major wgmma tile in shared memory without
        swizzle: 8 rows x 16 bytes per core matrix; the two core matrices of a 256-bit row
        LBO bytes apart, successive 8-row groups SBO bytes apart."""
        return row // 8 * (SBO_16B * 4) + word // 4 * (LBO_16B * 4) + row % 8 * 4 + word % 4

    def wgmma_call(acc, a_desc, b_desc):
        name = f"wgmma.mma_async.sync.aligned.m64n{TC}k256.s32.b1.b1.and.popc"
        return T.ptx[name](*[acc[i] for i in range(NT * 4)], a_desc[0], b_desc[0], T.ptx.pred(T.bool(True)))

    def whole(buf):
        return buf[tuple(slice(0, d) for d in buf.shape)]

    def popc(v):
        return tirx.popcount(v).astype("int32")

    @T.prim_func(s_tir=True)
    def func(x: T.Buffer((N, C, H, W), "float32"), wg: T.Buffer((G, CP, KP), "uint32"),
             wones: T.Buffer((M, O, TAPS), "int32"), phi: T.Buffer((O, M, P), "float32"),
             t: T.Buffer((C, P), "float32"), bias: T.Buffer((O,), "float32"),
             out: T.Buffer(OUT_SHAPE, OUT_DTYPE)):
        words = T.alloc_buffer((N, P, H, W, GK), "uint32")
        dmat = T.alloc_buffer((G, RP, CP), "int32")
        # 1. pack: word k of pixel (y, x), plane j; bit b = channel (k % KW)*32 + b of group k // KW
        for bx in loop((N_WORDS + THREADS - 1) // THREADS, "blockIdx.x"):
            for tx in loop(THREADS, "threadIdx.x"):
                with T.sblock("pack"):
                    T.reads(x[0:N, 0:C, 0:H, 0:W], t[0:C, 0:P])
                    T.writes(words[0:N, 0:P, 0:H, 0:W, 0:GK])
                    acc = T.alloc_buffer((1,), "uint32", scope="local")
                    idx = T.meta_var(bx * THREADS + tx)
                    if idx < N_WORDS:
                        k = T.meta_var(idx % GK)
                        xx = T.meta_var(idx // GK % W)
                        yy = T.meta_var(idx // (GK * W) % H)
                        j = T.meta_var(idx // (GK * W * H) % P)
                        n = T.meta_var(idx // (GK * W * H * P))
                        acc[0] = T.uint32(0)
                        for b in range(32):
                            if k % KW * 32 + b < CG:
                                c = T.meta_var(k // KW * CG + k % KW * 32 + b)
                                if x[n, c, yy, xx] >= t[c, j]:
                                    if PLANE_BAND:
                                        if j == P - 1 or x[n, c, yy, xx] < t[c, T.min(j + 1, P - 1)]:
                                            acc[0] = acc[0] | (T.uint32(1) << T.Cast("uint32", b))
                                    else:
                                        acc[0] = acc[0] | (T.uint32(1) << T.Cast("uint32", b))
                        words[n, j, yy, xx, k] = acc[0]
        # 2. implicit GEMM on the 1-bit tensor cores (or its CPU emulation): mma.sync per warp
        if not WGMMA:
            for g in loop(G, "blockIdx.z"):
                for rb in loop(RP // TR, "blockIdx.x"):
                    for cb in loop(CP // TC, "blockIdx.y"):
                        for wy in loop(WARPS, "threadIdx.y"):
                            if CUDA:
                                for lane in T.thread_binding(32, thread="threadIdx.x"):
                                    with T.sblock("gemm"):
                                        T.reads(words[0:N, 0:P, 0:H, 0:W, 0:GK], wg[0:G, 0:CP, 0:KP])
                                        T.writes(dmat[0:G, 0:RP, 0:CP])
                                        acc = T.alloc_buffer((NT * 4,), "int32", scope="local")
                                        afr = T.alloc_buffer((4,), "uint32", scope="local")
                                        bfr = T.alloc_buffer((NT * 2,), "uint32", scope="local")
                                        for r in T.unroll(NT * 4):
                                            acc[r] = 0
                                        for ks in k_loop(KP // MMA_K_WORDS):
                                            for r in T.unroll(4):
                                                ar, aw = T.meta_var(a_frag(lane, r))
                                                afr[r] = a_word(words, g, rb * TR + wy * 16 + ar, ks * 8 + aw)
                                            for nt in T.unroll(NT):
                                                for r in T.unroll(2):
                                                    bc, bw = T.meta_var(b_frag(lane, r))
                                                    bfr[nt * 2 + r] = wg[g, cb * TC + nt * 8 + bc, ks * 8 + bw]
                                            for nt in T.unroll(NT):
                                                with T.sblock("mma"):
                                                    T.reads(afr[0:4], bfr[0:NT * 2], acc[0:NT * 4])
                                                    T.writes(acc[0:NT * 4])
                                                    T.evaluate(T.ptx_legacy.mma(
                                                        "m16n8k256", "row", "col", "int1", "int1", "int32",
                                                        afr.data, 0, bfr.data, nt * 2, acc.data, nt * 4,
                                                        False, "and", dtype="int32"))
                                        for nt in T.unroll(NT):
                                            for r in T.unroll(4):
                                                cr, cc = T.meta_var(c_frag(lane, r))
                                                dmat[g, rb * TR + wy * 16 + cr, cb * TC + nt * 8 + cc] = acc[nt * 4 + r]
                            else:
                                with T.sblock("gemm_emulated"):
                                    T.reads(words[0:N, 0:P, 0:H, 0:W, 0:GK], wg[0:G, 0:CP, 0:KP])
                                    T.writes(dmat[0:G, 0:RP, 0:CP])
                                    acc = T.alloc_buffer((32, NT * 4), "int32")
                                    afr = T.alloc_buffer((32, 4), "uint32")
                                    bfr = T.alloc_buffer((32, NT * 2), "uint32")
                                    for lane, r in T.grid(32, NT * 4):
                                        acc[lane, r] = 0
                                    for ks in range(KP // MMA_K_WORDS):
                                        for lane, r in T.grid(32, 4):   # each lane's fragment registers
                                            ar, aw = T.meta_var(a_frag(lane, r))
                                            afr[lane, r] = a_word(words, g, rb * TR + wy * 16 + ar, ks * 8 + aw)
                                        for lane, nt, r in T.grid(32, NT, 2):
                                            bc, bw = T.meta_var(b_frag(lane, r))
                                            bfr[lane, nt * 2 + r] = wg[g, cb * TC + nt * 8 + bc, ks * 8 + bw]
                                        # the MMA: D[row, col] += popc(A[row, :] & B[col, :]) across lanes
                                        for lane, nt, r, kw in T.grid(32, NT, 4, MMA_K_WORDS):
                                            cr, cc = T.meta_var(c_frag(lane, r))
                                            al, areg = T.meta_var(a_owner(cr, kw))
                                            bl, breg = T.meta_var(b_owner(cc, kw))
                                            acc[lane, nt * 4 + r] = acc[lane, nt * 4 + r] + popc(
                                                afr[al, areg] & bfr[bl, nt * 2 + breg])
                                    for lane, nt, r in T.grid(32, NT, 4):
                                        cr, cc = T.meta_var(c_frag(lane, r))
                                        dmat[g, rb * TR + wy * 16 + cr, cb * TC + nt * 8 + cc] = acc[lane, nt * 4 + r]
        else:   # wgmma: one warpgroup (4 warps) per block, operands staged in shared memory
            for g in loop(G, "blockIdx.z"):
                for rb in loop(RP // TR, "blockIdx.x"):
                    for cb in loop(CP // TC, "blockIdx.y"):
                        if CUDA:
                            for tid in T.thread_binding(128, thread="threadIdx.x"):
                                with T.sblock("gemm_wgmma"):
                                    T.reads(words[0:N, 0:P, 0:H, 0:W, 0:GK], wg[0:G, 0:CP, 0:KP])
                                    T.writes(dmat[0:G, 0:RP, 0:CP])
                                    a_s = T.alloc_buffer((TR * 8,), "uint32", scope="shared", align=128)
                                    b_s = T.alloc_buffer((TC * 8,), "uint32", scope="shared", align=128)
                                    acc = T.alloc_buffer((NT * 4,), "uint32", scope="local")
                                    a_desc = T.alloc_buffer((1,), "uint64", scope="local")
                                    b_desc = T.alloc_buffer((1,), "uint64", scope="local")
                                    for r in T.unroll(NT * 4):
                                        acc[r] = T.uint32(0)
                                    T.evaluate(T.cuda.wgmma.encode_matrix_descriptor(
                                        T.address_of(a_desc[0]), T.address_of(a_s[0]), LBO_16B, SBO_16B, 0))
                                    T.evaluate(T.cuda.wgmma.encode_matrix_descriptor(
                                        T.address_of(b_desc[0]), T.address_of(b_s[0]), LBO_16B, SBO_16B, 0))
                                    for ks in range(KP // MMA_K_WORDS):
                                        for e in T.unroll(TR * 8 // 128):
                                            a_s[smem_word((e * 128 + tid) // 8, tid % 8)] = a_word(
                                                words, g, rb * TR + (e * 128 + tid) // 8, ks * 8 + tid % 8)
                                        for e in T.unroll((TC * 8 + 127) // 128):
                                            if e * 128 + tid < TC * 8:
                                                b_s[smem_word((e * 128 + tid) // 8, tid % 8)] = wg[
                                                    g, cb * TC + (e * 128 + tid) // 8, ks * 8 + tid % 8]
                                        # each thread's generic-proxy stores -> visible to the async proxy
                                        # that wgmma reads with, then all threads' stores done
                                        T.evaluate(T.ptx["fence.proxy.async.shared::cta"]())
                                        T.tvm_storage_sync("shared")
                                        T.evaluate(T.ptx["wgmma.fence.sync.aligned"]())
                                        T.evaluate(wgmma_call(acc, a_desc, b_desc))
                                        T.evaluate(T.ptx["wgmma.commit_group.sync.aligned"]())
                                        T.evaluate(T.ptx["wgmma.wait_group.sync.aligned"](0))
                                        T.tvm_storage_sync("shared")   # before the next step overwrites the tiles
                                    for nt in T.unroll(NT):
                                        for r in T.unroll(4):
                                            cr, cc = T.meta_var(c_frag(tid % 32, r))
                                            dmat[g, rb * TR + tid // 32 * 16 + cr, cb * TC + nt * 8 + cc] = T.Cast(
                                                "int32", acc[nt * 4 + r])
                        else:
                            with T.sblock("gemm_wgmma_emulated"):
                                T.reads(words[0:N, 0:P, 0:H, 0:W, 0:GK], wg[0:G, 0:CP, 0:KP])
                                T.writes(dmat[0:G, 0:RP, 0:CP])
                                a_s = T.alloc_buffer((TR * 8,), "uint32")
                                b_s = T.alloc_buffer((TC * 8,), "uint32")
                                acc = T.alloc_buffer((128, NT * 4), "int32")
                                for tid, r in T.grid(128, NT * 4):
                                    acc[tid, r] = 0
                                for ks in range(KP // MMA_K_WORDS):
                                    for e, tid in T.grid(TR * 8 // 128, 128):
                                        a_s[smem_word((e * 128 + tid) // 8, tid % 8)] = a_word(
                                            words, g, rb * TR + (e * 128 + tid) // 8, ks * 8 + tid % 8)
                                    for e, tid in T.grid((TC * 8 + 127) // 128, 128):
                                        if e * 128 + tid < TC * 8:
                                            b_s[smem_word((e * 128 + tid) // 8, tid % 8)] = wg[
                                                g, cb * TC + (e * 128 + tid) // 8, ks * 8 + tid % 8]
                                    # the warpgroup MMA reading the tiles through the descriptors' layout
                                    for tid, nt, r, kw in T.grid(128, NT, 4, MMA_K_WORDS):
                                        cr, cc = T.meta_var(c_frag(tid % 32, r))
                                        acc[tid, nt * 4 + r] = acc[tid, nt * 4 + r] + popc(
                                            a_s[smem_word(tid // 32 * 16 + cr, kw)] & b_s[smem_word(nt * 8 + cc, kw)])
                                for tid, nt, r in T.grid(128, NT, 4):
                                    cr, cc = T.meta_var(c_frag(tid % 32, r))
                                    dmat[g, rb * TR + tid // 32 * 16 + cr, cb * TC + nt * 8 + cc] = acc[tid, nt * 4 + r]
        # 3. decode the AND counts, then y = sum_ij phi * counts + bias (or store the counts)
        for bx in loop((N_OUT + THREADS - 1) // THREADS, "blockIdx.x"):
            for tx in loop(THREADS, "threadIdx.x"):
                with T.sblock("epilogue"):
                    T.reads(dmat[0:G, 0:RP, 0:CP], wones[0:M, 0:O, 0:TAPS], phi[0:O, 0:M, 0:P], bias[0:O])
                    T.writes(whole(out))
                    s = T.alloc_buffer((1,), "float32", scope="local")
                    sw = T.alloc_buffer((1,), "int32", scope="local")
                    nv = T.alloc_buffer((1,), "int32", scope="local")
                    idx = T.meta_var(bx * THREADS + tx)
                    if idx < N_OUT:
                        o = T.meta_var(idx % O)         # channels fastest: D's columns, coalesced
                        xx = T.meta_var(idx // O % OW)
                        yy = T.meta_var(idx // (O * OW) % OH)
                        n = T.meta_var(idx // (O * OW * OH))
                        s[0] = T.float32(0)
                        nv[0] = 0
                        for tap in range(TAPS):
                            if valid_tap(yy, xx, tap):
                                nv[0] = nv[0] + CG
                        for i in range(M):
                            sw[0] = 0
                            if A_PM1:
                                for tap in range(TAPS):
                                    if valid_tap(yy, xx, tap):
                                        sw[0] = sw[0] + wones[i, o, tap]
                            for j in range(P):
                                r = T.meta_var(((n * P + j) * OH + yy) * OW + xx)
                                a = T.meta_var(dmat[o // OG, r, i * OG + o % OG])
                                sa = T.meta_var(dmat[o // OG, r, M * OG])
                                if W_PM1 and A_PM1:
                                    cnt = T.meta_var(4 * a - 2 * sa - 2 * sw[0] + nv[0])
                                elif W_PM1:
                                    cnt = T.meta_var(2 * a - sa)
                                elif A_PM1:
                                    cnt = T.meta_var(2 * a - sw[0])
                                else:
                                    cnt = T.meta_var(a)
                                if COUNTS:
                                    out[n, i, j, o, yy, xx] = cnt
                                else:
                                    s[0] = s[0] + phi[o, i, j] * T.Cast("float32", cnt)
                        if not COUNTS:
                            out[n, o, yy, xx] = s[0] + bias[o]
    return func


def default_arch(tiles: TensorCoreTiles) -> str:
    return "sm_90a" if tiles.instruction == "wgmma" else "sm_90"


def check_arch(arch: str, tiles: TensorCoreTiles) -> None:
    if tiles.instruction == "wgmma" and arch != "sm_90a":
        raise InputError(f"arch={arch!r}: wgmma needs sm_90a (Hopper, arch-specific features)")
    if not arch.startswith("sm_") or not arch[3:5].isdigit() or int(arch[3:5]) < 80:
        raise InputError(f"arch={arch!r}: the 1-bit m16n8k256 MMA needs sm_80 or later")


def build_layer(spec: BinaryConvSpec, target: str = "cuda", *, output: str = "float", arch: str | None = None,
                tiles: TensorCoreTiles = TensorCoreTiles()):
    """Compile one layer: target "cuda" (tensor cores; `arch` sm_80 or later for mma.sync,
    sm_90a for wgmma; default sm_90 / sm_90a) or "llvm" (the CPU emulation of the same
    GEMM). Returns the tvm Executable; arguments as layer_prim_func."""
    tvm = _tvm()
    from .tvm_binary import LLVM_TARGET
    if target == "cuda":
        arch = arch or default_arch(tiles)
        check_arch(arch, tiles)
        tgt = tvm.target.Target({"kind": "cuda", "arch": arch}, host=LLVM_TARGET)
    elif target == "llvm":
        tgt = tvm.target.Target(LLVM_TARGET)
    else:
        raise InputError(f"target={target!r}: expected 'cuda' or 'llvm'")
    func = layer_prim_func(spec, output=output, emulate=target == "llvm", tiles=tiles)
    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=tgt)
