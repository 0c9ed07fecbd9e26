"""Binary / PA convolution (IR op `binary_conv2d`) as TVM tensor-expression computes,
with schedules for LLVM CPUs and CUDA GPUs (CUDA cores; the tensor-core kernels are in
tvm_tensorcore).

Stages of one layer (all TE, one PrimFunc):
  pack    x f32 [N,C,H,W], t f32 [C,P] -> words [N,P,H,W,G*KW]: plane j of channel
          c = g*Cg + k*B + b at bit b of word g*KW + k (B = 32 or 64 bits per word)
  and     AND[n,i,j,o,y,x] = sum over taps and words of popcount(x_word & w_word)
          (padded taps read zero words, so they count nothing)
  counts  decoded dot products from AND alone (no XOR, the form tensor cores run):
            01 x 01:   AND
            pm1 w, 01 a: 2 AND - SA          SA = ones of a in the window
            01 w, pm1 a: 2 AND - SW          SW = ones of w over the valid taps
            pm1 x pm1:   4 AND - 2 SA - 2 SW + NV   NV = Cg * valid taps
  epilogue y[n,o,y,x] = sum_ij phi[o,i,j] * counts + bias[o]   (float32)

Weight bases are packed once at compile time (pack_weight_bases) to
[M, O, kh, kw, KW] words of the same bit order. Semantics are those of the IR op and
of the C++ engine (edgecc.kernels.binary): plane j of a {0,1} activation is
t_j <= x < t_{j+1} (last plane open above); a pm1 activation has one +-1 plane per
threshold (x >= t_j); padded taps contribute 0 in every basis.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InputError, ShapeError

BASES = ("01", "pm1")


def _tvm():
    try:
        import tvm  # noqa: F401
        from tvm import te, tirx  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised only without tvm
        raise InputError("the TVM backend needs apache-tvm==0.27.0.post1 "
                         f"(pip install apache-tvm==0.27.0.post1): {e}") from None
    import tvm
    return tvm


@dataclass(frozen=True)
class BinaryConvSpec:
    """Static geometry of one binary_conv2d layer (canonical IR attributes)."""
    n: int
    c: int
    h: int
    w: int
    o: int
    m: int      # weight bases
    p: int      # activation planes (thresholds)
    kh: int
    kw: int
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)   # top, left, bottom, right
    dilations: tuple[int, int] = (1, 1)
    groups: int = 1
    weight_basis: str = "01"
    act_basis: str = "01"
    word_bits: int = 64

    def __post_init__(self):
        dims = dict(n=self.n, c=self.c, h=self.h, w=self.w, o=self.o, m=self.m, p=self.p,
                    kh=self.kh, kw=self.kw, groups=self.groups)
        bad = {k: v for k, v in dims.items() if int(v) < 1}
        if bad:
            raise ShapeError(f"binary conv spec: dimensions must be positive, got {bad}")
        if self.c % self.groups or self.o % self.groups:
            raise ShapeError(f"binary conv spec: groups={self.groups} must divide C={self.c} and O={self.o}")
        if self.weight_basis not in BASES or self.act_basis not in BASES:
            raise InputError(f"binary conv spec: weight_basis={self.weight_basis!r}, "
                             f"act_basis={self.act_basis!r}; expected '01' or 'pm1'")
        if self.word_bits not in (32, 64):
            raise InputError(f"binary conv spec: word_bits={self.word_bits}, expected 32 or 64")
        if min(self.strides) < 1 or min(self.dilations) < 1 or min(self.pads) < 0:
            raise ShapeError(f"binary conv spec: strides {self.strides}, dilations {self.dilations}, "
                             f"pads {self.pads} out of range")
        if self.out_h < 1 or self.out_w < 1:
            raise ShapeError(f"binary conv spec: kernel {self.kh}x{self.kw} (dilation {self.dilations}, "
                             f"pads {self.pads}) does not fit input {self.h}x{self.w}")

    def random_arrays(self, seed: int = 0):
        """Seeded (x, t, wb, phi, bias) of this layer, for checks and benchmarks: normal x,
        sorted per-channel thresholds, random bases of the weight basis."""
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(self.n, self.c, self.h, self.w)).astype(np.float32)
        t = np.sort(rng.normal(size=(self.c, self.p)), axis=1).astype(np.float32)
        wb = rng.integers(0, 2, size=(self.m, self.o, self.cg, self.kh, self.kw)).astype(np.int8)
        if self.weight_basis == "pm1":
            wb = (2 * wb - 1).astype(np.int8)
        phi = rng.normal(size=(self.o, self.m, self.p)).astype(np.float32)
        bias = rng.normal(size=self.o).astype(np.float32)
        return x, t, wb, phi, bias

    @classmethod
    def from_node_attrs(cls, x_shape, wb_shape, p: int, attrs: dict, word_bits: int) -> "BinaryConvSpec":
        n, c, h, w = (int(v) for v in x_shape)
        m, o, _, kh, kw = (int(v) for v in wb_shape)
        return cls(n, c, h, w, o, m, int(p), kh, kw, tuple(attrs["strides"]), tuple(attrs["pads"]),
                   tuple(attrs["dilations"]), int(attrs["groups"]), attrs["weight_basis"],
                   attrs["act_basis"], word_bits)

    @property
    def cg(self) -> int:
        return self.c // self.groups

    @property
    def og(self) -> int:
        return self.o // self.groups

    @property
    def words_per_group(self) -> int:
        return -(-self.cg // self.word_bits)

    @property
    def word_dtype(self) -> str:
        return f"uint{self.word_bits}"

    @property
    def out_h(self) -> int:
        return (self.h + self.pads[0] + self.pads[2] - self.dilations[0] * (self.kh - 1) - 1) // self.strides[0] + 1

    @property
    def out_w(self) -> int:
        return (self.w + self.pads[1] + self.pads[3] - self.dilations[1] * (self.kw - 1) - 1) // self.strides[1] + 1

    @property
    def padded_hw(self) -> tuple[int, int]:
        return self.h + self.pads[0] + self.pads[2], self.w + self.pads[1] + self.pads[3]


def pack_weight_bases(wb: np.ndarray, spec: BinaryConvSpec) -> np.ndarray:
    """Weight bases wb [M, O, Cg, kh, kw] ({0,1}, or {-1,+1} for pm1) -> words
    [M, O, kh, kw, KW]: input channel c of the group at bit c % B of word c // B."""
    wb = np.asarray(wb)
    want = (spec.m, spec.o, spec.cg, spec.kh, spec.kw)
    if wb.shape != want:
        raise ShapeError(f"weight bases have shape {list(wb.shape)}, expected {list(want)}")
    allowed = (-1, 1) if spec.weight_basis == "pm1" else (0, 1)
    if not np.isin(wb, allowed).all():
        raise InputError(f"weight bases hold values outside {set(allowed)} (weight_basis {spec.weight_basis!r})")
    bits = np.zeros((spec.m, spec.o, spec.kh, spec.kw, spec.words_per_group * spec.word_bits), np.uint8)
    bits[..., :spec.cg] = (wb > 0).transpose(0, 1, 3, 4, 2)
    packed = np.packbits(bits, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed.view(f"<u{spec.word_bits // 8}"))


# ---- TE compute definitions -------------------------------------------------------
def pack_activations_te(x, t, spec: BinaryConvSpec):
    """x f32 [N,C,H,W], t f32 [C,P] -> words [N, P, H, W, G*KW] (see module doc)."""
    _tvm()
    from tvm import te, tirx
    bits, kwg, cg, p = spec.word_bits, spec.words_per_group, spec.cg, spec.p
    dt = spec.word_dtype
    b = te.reduce_axis((0, bits), name="bit")

    def word(n, j, y, xx, k):
        cin = (k % kwg) * bits + b                 # channel inside the group
        c = tirx.min((k // kwg) * cg + cin, spec.c - 1)
        v = x[n, c, y, xx]
        on = v >= t[c, j]
        if spec.act_basis == "01" and p > 1:       # in plane j only below the next threshold
            on = tirx.all(on, tirx.any(j == p - 1, v < t[c, tirx.min(j + 1, p - 1)]))
        bit = tirx.if_then_else(tirx.all(cin < cg, on),
                                tirx.const(1, dt) << b.var.astype(dt), tirx.const(0, dt))
        return te.sum(bit, axis=b)
    return te.compute((spec.n, p, spec.h, spec.w, spec.groups * kwg), word, name="pack")


def _valid_tap(spec: BinaryConvSpec, y, xx, ky, kx):
    from tvm import tirx
    iy = y * spec.strides[0] + ky * spec.dilations[0] - spec.pads[0]
    ix = xx * spec.strides[1] + kx * spec.dilations[1] - spec.pads[1]
    return tirx.all(iy >= 0, iy < spec.h, ix >= 0, ix < spec.w)


def binary_conv_counts_te(words, wp, spec: BinaryConvSpec):
    """words [N,P,H,W,G*KW], wp [M,O,kh,kw,KW] -> int32 counts [N, M, P, O, OH, OW]
    (the decoded dot products conv(T_i, V_j); the `and` stage is named 'and_counts')."""
    from tvm import te, tirx
    s, d = spec.strides, spec.dilations
    ph, pw = spec.padded_hw
    kwg, og, dt = spec.words_per_group, spec.og, spec.word_dtype
    shape = (spec.n, spec.m, spec.p, spec.o, spec.out_h, spec.out_w)

    def inside(y, xx):
        return tirx.all(y >= spec.pads[0], y < spec.pads[0] + spec.h,
                        xx >= spec.pads[1], xx < spec.pads[1] + spec.w)
    xp = te.compute((spec.n, spec.p, ph, pw, spec.groups * kwg),
                    lambda n, j, y, xx, k: tirx.if_then_else(
                        inside(y, xx), words[n, j, y - spec.pads[0], xx - spec.pads[1], k],
                        tirx.const(0, dt)), name="pad")
    ky = te.reduce_axis((0, spec.kh), name="ky")
    kx = te.reduce_axis((0, spec.kw), name="kx")
    k = te.reduce_axis((0, kwg), name="k")
    pop = lambda v: tirx.popcount(v).astype("int32")  # noqa: E731
    and_counts = te.compute(
        shape, lambda n, i, j, o, y, xx: te.sum(
            pop(xp[n, j, y * s[0] + ky * d[0], xx * s[1] + kx * d[1], (o // og) * kwg + k]
                & wp[i, o, ky, kx, k]), axis=[ky, kx, k]),
        name="and_counts")
    w_pm1, a_pm1 = spec.weight_basis == "pm1", spec.act_basis == "pm1"
    if not (w_pm1 or a_pm1):
        return and_counts
    terms = []
    if w_pm1:   # ones of the activation words in the window (padded words are zero)
        sky, skx, sk = (te.reduce_axis((0, e), name=nm) for e, nm in
                        ((spec.kh, "sky"), (spec.kw, "skx"), (kwg, "sk")))
        sa = te.compute((spec.n, spec.p, spec.groups, spec.out_h, spec.out_w),
                        lambda n, j, g, y, xx: te.sum(pop(
                            xp[n, j, y * s[0] + sky * d[0], xx * s[1] + skx * d[1], g * kwg + sk]),
                            axis=[sky, skx, sk]), name="act_ones")
        terms.append(sa)
    if a_pm1:   # ones of the weights over the taps that hit the image, and those taps
        wk = te.reduce_axis((0, kwg), name="wk")
        wones = te.compute((spec.m, spec.o, spec.kh, spec.kw),
                           lambda i, o, a, b: te.sum(pop(wp[i, o, a, b, wk]), axis=wk), name="w_ones")
        vy, vx = te.reduce_axis((0, spec.kh), name="vy"), te.reduce_axis((0, spec.kw), name="vx")
        sw = te.compute((spec.m, spec.o, spec.out_h, spec.out_w),
                        lambda i, o, y, xx: te.sum(tirx.if_then_else(
                            _valid_tap(spec, y, xx, vy, vx), wones[i, o, vy, vx], 0), axis=[vy, vx]),
                        name="w_ones_valid")
        ny, nx = te.reduce_axis((0, spec.kh), name="ny"), te.reduce_axis((0, spec.kw), name="nx")
        nv = te.compute((spec.out_h, spec.out_w), lambda y, xx: te.sum(tirx.if_then_else(
            _valid_tap(spec, y, xx, ny, nx), spec.cg, 0), axis=[ny, nx]), name="valid_taps")
        terms += [sw, nv]

    def decode(n, i, j, o, y, xx):
        a = and_counts[n, i, j, o, y, xx]
        if w_pm1 and a_pm1:
            sa, sw, nv = terms
            return 4 * a - 2 * sa[n, j, o // og, y, xx] - 2 * sw[i, o, y, xx] + nv[y, xx]
        if w_pm1:
            return 2 * a - terms[0][n, j, o // og, y, xx]
        return 2 * a - terms[0][i, o, y, xx]
    return te.compute(shape, decode, name="counts")


def epilogue_te(counts, phi, bias, spec: BinaryConvSpec):
    """counts int32 [N,M,P,O,OH,OW], phi f32 [O,M,P], bias f32 [O] or None ->
    y f32 [N, O, OH, OW] = sum_ij phi[o,i,j] * counts[n,i,j,o] + bias[o]."""
    from tvm import te
    i = te.reduce_axis((0, spec.m), name="ei")
    j = te.reduce_axis((0, spec.p), name="ej")
    acc = te.compute((spec.n, spec.o, spec.out_h, spec.out_w),
                     lambda n, o, y, xx: te.sum(phi[o, i, j] * counts[n, i, j, o, y, xx].astype("float32"),
                                                axis=[i, j]), name="phi_sum")
    if bias is None:
        return acc
    return te.compute(acc.shape, lambda n, o, y, xx: acc[n, o, y, xx] + bias[o], name="bias_add")


def placeholders(spec: BinaryConvSpec, with_bias: bool):
    """TE placeholders (x, packed weights, phi, thresholds, bias?) of one layer."""
    from tvm import te
    x = te.placeholder((spec.n, spec.c, spec.h, spec.w), "float32", name="x")
    wp = te.placeholder((spec.m, spec.o, spec.kh, spec.kw, spec.words_per_group), spec.word_dtype, name="wp")
    phi = te.placeholder((spec.o, spec.m, spec.p), "float32", name="phi")
    t = te.placeholder((spec.c, spec.p), "float32", name="t")
    bias = te.placeholder((spec.o,), "float32", name="bias") if with_bias else None
    return x, wp, phi, t, bias


def layer_prim_func(spec: BinaryConvSpec, *, output: str = "float", with_bias: bool = False):
    """One PrimFunc for the whole layer. output="float": (x, wp, phi, t[, bias], y);
    output="counts": (x, wp, t, counts)."""
    _tvm()
    from tvm import te
    if output not in ("float", "counts"):
        raise InputError(f"output={output!r}: expected 'float' or 'counts'")
    x, wp, phi, t, bias = placeholders(spec, with_bias)
    counts = binary_conv_counts_te(pack_activations_te(x, t, spec), wp, spec)
    if output == "counts":
        return te.create_prim_func([x, wp, t, counts])
    y = epilogue_te(counts, phi, bias, spec)
    args = [x, wp, phi, t] + ([bias] if with_bias else []) + [y]
    return te.create_prim_func(args)


# ---- schedules ---------------------------------------------------------------------
def _has_block(sch, name: str) -> bool:
    try:
        sch.get_sblock(name)
        return True
    except Exception:  # noqa: BLE001 - TVM raises its own error types
        return False


def _inline_pad(sch):
    sch.compute_inline(sch.get_sblock("pad"))


def schedule_llvm(func, spec: BinaryConvSpec):
    """CPU: the AND stage runs one output row per task (parallel over N*OH), output
    channels innermost with the taps unrolled; small stages stay serial."""
    tvm = _tvm()
    from tvm import s_tir
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    _inline_pad(sch)
    blk = sch.get_sblock("and_counts")
    n, i, j, o, y, x, ky, kx, k = sch.get_loops(blk)
    sch.reorder(n, y, x, i, j, o, ky, kx, k)
    row = sch.fuse(n, y)
    sch.parallel(row)
    sch.unroll(kx)
    pack = sch.get_sblock("pack")
    pn, pj, py = sch.get_loops(pack)[:3]
    sch.parallel(sch.fuse(pn, pj, py))
    return sch.mod["main"]


def _is_bound(sch, name: str) -> bool:
    return any(sch.get(lp).thread_binding is not None for lp in sch.get_loops(sch.get_sblock(name)))


def _bind_simple(sch, name: str, threads: int = 256):
    """Fuse a block's spatial loops (all but trailing reduction loops) and bind them to
    blockIdx.x / threadIdx.x; reductions stay serial inside each thread."""
    blk = sch.get_sblock(name)
    loops = sch.get_loops(blk)
    kinds = [iv.iter_type for iv in sch.get(blk).iter_vars]
    spatial = [lp for lp, kind in zip(loops, kinds) if kind == 0]
    fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
    bx, tx = sch.split(fused, [None, threads])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    if len(spatial) < len(loops):   # a reduction: accumulate in a register
        sch.reverse_compute_at(sch.cache_write(blk, 0, "local"), tx)


@dataclass(frozen=True)
class CudaTiles:
    pixels: int = 16        # output pixels per thread block
    channels: int = 16      # output channels per thread block
    k_chunk: int = 4        # 32-bit words staged in shared memory per step


def schedule_cuda(func, spec: BinaryConvSpec, tiles: CudaTiles = CudaTiles()):
    """GPU (CUDA cores, 32-bit __popc): a thread block computes `pixels` x `channels`
    outputs for every (i, j) plane pair; per tap and word chunk the block stages the
    bit-packed activation words of its pixels and the weight words of its channels in
    shared memory (loaded cooperatively by all its threads); each thread keeps its M*P
    accumulators in registers. The other stages get one thread per output element."""
    tvm = _tvm()
    from tvm import s_tir
    if spec.word_bits != 32:
        raise InputError(f"the CUDA schedule uses 32-bit words (__popc), spec has {spec.word_bits}")
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    blk = sch.get_sblock("and_counts")
    n, i, j, o, y, x, ky, kx, k = sch.get_loops(blk)
    sch.reorder(n, y, x, o, ky, kx, k, i, j)
    pix = sch.fuse(n, y, x)
    pix_b, pix_t = sch.split(pix, [None, tiles.pixels])
    o_b, o_t = sch.split(o, [None, tiles.channels])
    k_o, k_i = sch.split(k, [None, tiles.k_chunk])
    sch.reorder(o_b, pix_b, o_t, pix_t, ky, kx, k_o, k_i, i, j)
    sch.bind(pix_b, "blockIdx.x")
    sch.bind(o_b, "blockIdx.y")
    thread = sch.fuse(o_t, pix_t)
    sch.bind(thread, "threadIdx.x")
    n_threads = tiles.pixels * tiles.channels
    acc = sch.cache_write(blk, 0, "local")     # acc copies the registers out
    if _has_block(sch, "phi_sum") and not _has_block(sch, "counts"):
        # Fused epilogue ({0,1} x {0,1}): each thread turns its M*P register counts into
        # one float, so the counts never reach global memory (M*P times the output).
        # +-1 bases keep the counts in global memory: their correction terms come from
        # other kernels, and TVM moves a consumer under the thread loop only when all
        # its producers are there.
        sch.compute_inline(acc)
        sch.reverse_compute_at(sch.get_sblock("phi_sum"), thread)
        if _has_block(sch, "bias_add"):
            sch.reverse_compute_at(sch.get_sblock("bias_add"), thread)
    else:
        sch.reverse_compute_at(acc, thread)
    for buf_index in (0, 1):                       # 0: activation words, 1: weight words
        shared = sch.cache_read(blk, buf_index, "shared", consumer_blocks=[blk])
        sch.compute_at(shared, k_o)
        own = sch.get_loops(shared)[6:]   # below o_b, pix_b, thread, ky, kx, k_o
        fused = sch.fuse(*own) if len(own) > 1 else own[0]
        _, tx = sch.split(fused, [None, n_threads])
        sch.bind(tx, "threadIdx.x")
    _inline_pad(sch)
    sch.decompose_reduction(blk, ky)
    for name in ("pack", "act_ones", "w_ones", "w_ones_valid", "valid_taps", "counts", "phi_sum",
                 "bias_add"):
        if _has_block(sch, name) and not _is_bound(sch, name):   # absent or fused: skipped
            _bind_simple(sch, name)
    return sch.mod["main"]


# ---- build helpers -------------------------------------------------------------------
LLVM_TARGET = {"kind": "llvm"}
CUDA_TARGET = {"kind": "cuda", "arch": "sm_90"}


def build_layer(spec: BinaryConvSpec, target: str = "llvm", *, output: str = "float",
                with_bias: bool = False):
    """Compile one layer: target "llvm" (CPU, spec.word_bits 64 or 32) or "cuda"
    (spec.word_bits 32, sm_90). Returns the tvm Executable."""
    tvm = _tvm()
    func = layer_prim_func(spec, output=output, with_bias=with_bias)
    if target == "llvm":
        func = schedule_llvm(func, spec)
        tgt = tvm.target.Target(LLVM_TARGET)
    elif target == "cuda":
        func = schedule_cuda(func, spec)
        tgt = tvm.target.Target(CUDA_TARGET, host=LLVM_TARGET)
    else:
        raise InputError(f"target={target!r}: expected 'llvm' or 'cuda'")
    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=tgt)
