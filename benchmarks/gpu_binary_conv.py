"""TVM CUDA binary / PA convolution on a GPU: the 1-bit tensor-core schedules
(edgecc.compiler.codegen.tvm_tensorcore: implicit GEMM on mma.sync m16n8k256 .b1
.and.popc, and on Hopper's wgmma m64nNk256 .b1 .and.popc, sm_90a only) next to the
CUDA-core popcount schedule (tvm_binary.schedule_cuda).

In one run: correctness of every kernel against the C++ engine on the CPU (counts
bit-exact, float output), then timings of the ResNet-18 3x3 layers (64ch@56, 128ch@28,
256ch@14, 512ch@7; stride 1, pad 1) at batch 1 and 64 for a single binary conv
(+-1 x +-1) and PA (M, N) = (2,3), (4,5), against PyTorch conv2d fp16 (cuDNN) and an
int8 GEMM of the same implicit-GEMM shape (torch._int_mm; PyTorch has no int8 CUDA
conv) on the same GPU.

    python -m benchmarks.gpu_binary_conv [--quick] [--out benchmarks/results] [--peak 4e15]
                                         [--tc-tiles 4x4 4x8]   # mma.sync tiles: warps x n_tiles
                                         [--wgmma-tiles 4x8]    # wgmma (Hopper) tiles, 4 x N/8
    python -m benchmarks.gpu_binary_conv --build-only [--quick]   # no GPU: build every kernel

Float32 in, float32 out (bit-packing and the phi/bias epilogue included). bit-MACs =
N*OH*OW*O*C*9*M*P (one AND+popcount of one bit pair); "% peak" is of the 1-bit
tensor-core peak of the device (PEAK_BIT_MACS, or --peak). Times are medians of TVM's
time_evaluator / CUDA-event rounds after a warm-up. Writes gpu-binary-conv.md and .json
with device, versions and date. Exits with status 2 and a message when no CUDA GPU /
runtime is present (use --build-only there).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np

LAYERS = [(64, 56), (128, 28), (256, 14), (512, 7)]
BATCHES = [1, 64]
CONFIGS = [("binary +-1", 1, 1, "pm1"), ("PA(2,3)", 2, 3, "01"), ("PA(4,5)", 4, 5, "01")]
SCHEDULES = ("tensorcore", "wgmma", "popc")   # the tensor-core ones once per --tc-tiles/--wgmma-tiles entry
# dense 1-bit AND+popc tensor-core peaks in bit-MACs/s (approximate; --peak overrides):
# A100 SXM 4992 binary TOPS = 2.5e15 MACs; Hopper (wgmma .b1) ~4e15 per the project's
# performance notes; the mma.sync path used here reaches only part of it on Hopper.
PEAK_BIT_MACS = {"A100": 2.5e15, "H100": 4.0e15, "H200": 4.0e15}


def _spec(TB, c, hw, batch, m, p, basis):
    return TB.BinaryConvSpec(batch, c, hw, hw, c, m, p, 3, 3, (1, 1), (1, 1, 1, 1),
                             weight_basis=basis, act_basis=basis, word_bits=32)


def _data(spec, seed=0):
    return spec.random_arrays(seed)


def _engine_reference(spec, x, t, wb, phi, bias):
    """The C++ engine on the CPU: counts [N,M,P,O,OH,OW] and the float output."""
    from edgecc.kernels import binary as B
    w = B.pack_weights(wb, signed=spec.weight_basis == "pm1")
    geo = dict(stride=spec.strides, padding=spec.pads, dilation=spec.dilations)
    signed = spec.act_basis == "pm1"   # the benchmark's +-1 layers have one plane
    px = B.pack_activations(x, t.T.astype(np.float64), signed=signed)
    counts = B.binary_conv2d_counts(px, w, **geo).reshape(spec.n, spec.m, spec.p, spec.o,
                                                           spec.out_h, spec.out_w)
    return counts, B.binary_conv2d(px, w, phi=phi, bias=bias, **geo)


class Layer:
    """One layer built with one schedule: `args(dev)` are its device arguments in order."""

    def __init__(self, schedule, spec, output="float", data_seed=0):
        from edgecc.compiler.codegen import tvm_binary as TB
        from edgecc.compiler.codegen import tvm_tensorcore as TC
        self.spec, self.output = spec, output
        x, t, wb, phi, bias = self.data = _data(spec, data_seed)
        if schedule.startswith(("tensorcore", "wgmma")):    # "<kind> <warps>x<n_tiles>"
            kind, shape = schedule.split()
            warps, n_tiles = (int(v) for v in shape.split("x"))
            tiles = TC.TensorCoreTiles(warps, n_tiles, "wgmma" if kind == "wgmma" else "mma.sync")
            self.ex = TC.build_layer(spec, "cuda", output=output, tiles=tiles)
            self.host = [x, TC.pack_gemm_weights(wb, spec, tiles), TC.weight_tap_ones(wb, spec), phi, t, bias]
        else:
            self.ex = TB.build_layer(spec, "cuda", output=output, with_bias=output == "float")
            wp = TB.pack_weight_bases(wb, spec)
            self.host = [x, wp, phi, t, bias] if output == "float" else [x, wp, t]
        s = spec
        self.out_shape = ((s.n, s.m, s.p, s.o, s.out_h, s.out_w) if output == "counts"
                          else (s.n, s.o, s.out_h, s.out_w))

    def args(self, tvm, dev):
        out = tvm.runtime.empty(self.out_shape, "int32" if self.output == "counts" else "float32", dev)
        return [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in self.host] + [out]


def _gpu_or_exit(tvm):
    dev = tvm.cuda(0)
    if not dev.exist:
        print("gpu_binary_conv: no CUDA GPU / runtime present (tvm.cuda(0) does not exist); "
              "run this on a machine with an NVIDIA GPU (use --build-only to just build)", file=sys.stderr)
        raise SystemExit(2)
    return dev


def _tvm_ms(ex, dev, args, repeats):
    f = ex.time_evaluator("main", dev, number=10, repeat=repeats, min_repeat_ms=20)
    return 1e3 * statistics.median(f(*args).results)


def _cuda_event_ms(fn, repeats):
    import torch
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 10)
    return statistics.median(times)


def _torch_baselines(c, hw, batch, repeats) -> dict:
    """PyTorch fp16 conv2d (cuDNN) and int8 GEMM of the implicit-GEMM shape, in ms (None: not offered)."""
    try:
        import torch
    except ImportError:
        return dict(fp16=None, int8=None, info="torch not installed")
    if not torch.cuda.is_available():
        return dict(fp16=None, int8=None, info=f"torch {torch.__version__} has no CUDA")
    torch.backends.cudnn.benchmark = True
    x = torch.randn(batch, c, hw, hw, device="cuda", dtype=torch.float16)
    w = torch.randn(c, c, 3, 3, device="cuda", dtype=torch.float16)
    fp16 = _cuda_event_ms(lambda: torch.nn.functional.conv2d(x, w, padding=1), repeats)
    int8 = None
    try:   # [N*H*W, C*9] x [C*9, O]: the conv's MACs as one int8 GEMM (im2col not timed)
        a = torch.randint(-8, 8, (batch * hw * hw, c * 9), device="cuda", dtype=torch.int8)
        b = torch.randint(-8, 8, (c * 9, c), device="cuda", dtype=torch.int8)
        int8 = _cuda_event_ms(lambda: torch._int_mm(a, b), repeats)
    except (RuntimeError, AttributeError):
        pass
    return dict(fp16=fp16, int8=int8, info=f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")


def _peak_for(device_name: str, override):
    if override:
        return float(override), "--peak"
    for key, peak in PEAK_BIT_MACS.items():
        if key in device_name.upper():
            return peak, f"{key} table value"
    return None, "unknown device"


def _schedules(tc_tiles, wgmma_tiles, hopper: bool = True) -> list[str]:
    return ([f"tensorcore {t}" for t in tc_tiles] + ([f"wgmma {t}" for t in wgmma_tiles] if hopper else [])
            + ["popc"])


def _build_only(layers, schedules) -> int:
    from edgecc.compiler.codegen import tvm_binary as TB
    for c, hw in layers:
        for name, m, p, basis in CONFIGS:
            for batch in BATCHES:
                for schedule in schedules:
                    Layer(schedule, _spec(TB, c, hw, batch, m, p, basis))
                    print(f"built {schedule:14s} {name} {c}ch@{hw} batch {batch}")
    return 0


def _fmt(v, spec=".3f"):
    return "n/a" if v is None else format(v, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first layer only, fewer repeats")
    ap.add_argument("--build-only", action="store_true", help="build every kernel, run nothing")
    ap.add_argument("--peak", type=float, default=None, help="1-bit tensor-core peak, bit-MACs/s")
    ap.add_argument("--tc-tiles", nargs="+", default=["4x4"],
                    help="mma.sync tiles to time, <warps>x<n_tiles> (16 rows per warp, 8 columns per tile)")
    ap.add_argument("--wgmma-tiles", nargs="*", default=["4x8"],
                    help="wgmma tiles to time, 4x<N/8> (one warpgroup, 64 rows x N columns); none: skip wgmma")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    for t in args.tc_tiles + args.wgmma_tiles:
        if not re.fullmatch(r"[1-9]\d*x[1-9]\d*", t):
            ap.error(f"tiles {t!r}: expected <warps>x<n_tiles>, e.g. 4x4")
    schedules = _schedules(args.tc_tiles, args.wgmma_tiles)
    try:
        import tvm
    except ImportError:
        print("gpu_binary_conv: apache-tvm is not installed (pip install apache-tvm==0.27.0.post1)",
              file=sys.stderr)
        return 2
    if shutil.which("nvcc") is None:
        print("gpu_binary_conv: nvcc is not on PATH; TVM needs it to build CUDA kernels", file=sys.stderr)
        return 2
    from edgecc.compiler.codegen import tvm_binary as TB
    layers = LAYERS[:1] if args.quick else LAYERS
    repeats = 5 if args.quick else 20
    if args.build_only:
        return _build_only(layers, schedules)
    dev = _gpu_or_exit(tvm)
    device_name = str(getattr(dev, "device_name", "cuda:0"))
    peak, peak_source = _peak_for(device_name, args.peak)
    print(f"device: {device_name} (compute {getattr(dev, 'compute_version', '?')}), "
          f"1-bit peak {_fmt(peak, '.2e')} bit-MAC/s ({peak_source})")
    if not str(getattr(dev, "compute_version", "")).startswith("9."):
        print("not a Hopper GPU (sm_90a): the wgmma schedule is skipped")
        schedules = _schedules(args.tc_tiles, args.wgmma_tiles, hopper=False)
    rows, checks = [], []
    for c, hw in layers:
        for name, m, p, basis in CONFIGS:
            spec = _spec(TB, c, hw, 1, m, p, basis)      # correctness at batch 1, both schedules
            ref_counts, ref_y = _engine_reference(spec, *_data(spec))
            for schedule in schedules:
                counts_layer = Layer(schedule, spec, "counts")
                cargs = counts_layer.args(tvm, dev)
                counts_layer.ex["main"](*cargs)
                exact = bool(np.array_equal(cargs[-1].numpy(), ref_counts))
                float_layer = Layer(schedule, spec, "float")
                fargs = float_layer.args(tvm, dev)
                float_layer.ex["main"](*fargs)
                rel = float(np.abs(fargs[-1].numpy() - ref_y).max() / (np.abs(ref_y).max() + 1e-30))
                checks.append(dict(layer=f"{c}ch@{hw}", config=name, schedule=schedule, counts_exact=exact,
                                   float_max_rel_err=rel))
                print(f"check {schedule:14s} {name:10s} {c}ch@{hw}: counts exact {exact}, "
                      f"float max rel err {rel:.2e}")
            for batch in BATCHES:
                spec = _spec(TB, c, hw, batch, m, p, basis)
                bitmacs = batch * c * c * 9 * hw * hw * m * p
                base = _torch_baselines(c, hw, batch, repeats)
                for schedule in schedules:
                    layer = Layer(schedule, spec, "float", data_seed=1)
                    ms = _tvm_ms(layer.ex, dev, layer.args(tvm, dev), repeats)
                    rate = bitmacs / ms * 1e3
                    rows.append(dict(layer=f"{c}ch@{hw}", batch=batch, config=name, schedule=schedule, ms=ms,
                                     bit_macs_per_s=rate, pct_peak=(100 * rate / peak) if peak else None,
                                     torch_fp16_ms=base["fp16"], torch_int8_gemm_ms=base["int8"]))
                    print(f"{schedule:14s} {name:10s} {c}ch@{hw} b{batch}: {ms:.3f} ms, {rate / 1e12:.1f} T bit-MAC/s"
                          + (f" ({100 * rate / peak:.1f}% of peak)" if peak else "")
                          + f"; torch fp16 {_fmt(base['fp16'])} ms, int8 GEMM {_fmt(base['int8'])} ms")
    meta = dict(device=device_name, compute_version=str(getattr(dev, "compute_version", "?")),
                peak_bit_macs_per_s=peak, peak_source=peak_source, host=platform.node(),
                host_cpus=os.cpu_count(), load_average=list(os.getloadavg()), tvm=tvm.__version__,
                python=platform.python_version(), torch=_torch_baselines(64, 7, 1, 1)["info"],
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                repeats=repeats)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-binary-conv.json").write_text(json.dumps(dict(meta=meta, checks=checks, rows=rows), indent=2))
    lines = [f"# TVM CUDA binary / PA convolution on {device_name}", "",
             "Command: `python -m benchmarks.gpu_binary_conv " + " ".join(argv if argv is not None else sys.argv[1:])
             + "`", "",
             "| " + " | ".join(f"{k}: {v}" for k, v in meta.items()) + " |", "",
             "Schedules: `tensorcore WxT` = implicit GEMM on `mma.sync.aligned.m16n8k256 .b1 .and.popc` "
             "(tvm_tensorcore; W warps of 16 rows per block, T 8-column MMA tiles per warp); "
             "`wgmma 4xT` = the same GEMM on `wgmma.mma_async m64n(8T)k256 .b1 .and.popc` (sm_90a; "
             "operands staged in shared memory, one warpgroup per block); "
             "`popc` = CUDA cores, 32-bit `__popc`, shared-memory tiles (tvm_binary.schedule_cuda). "
             "int8 GEMM = `torch._int_mm` of the conv's implicit-GEMM shape "
             "(im2col not timed; PyTorch has no int8 CUDA conv).", "",
             "## Correctness vs the C++ engine (batch 1)", "",
             "| layer | config | schedule | counts bit-exact | float max rel err |", "|---|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['config']} | {r['schedule']} | {r['counts_exact']} | "
              f"{r['float_max_rel_err']:.1e} |" for r in checks]
    lines += ["", "## Timings (median ms; float32 in/out incl. bit-packing and epilogue)", "",
              "| layer | batch | config | schedule | ms | T bit-MAC/s | % 1-bit peak | fp16 cuDNN ms | "
              "int8 GEMM ms | fp16 / this |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sp = f"{r['torch_fp16_ms'] / r['ms']:.2f}" if r["torch_fp16_ms"] else "n/a"
        lines.append(f"| {r['layer']} | {r['batch']} | {r['config']} | {r['schedule']} | {r['ms']:.3f} | "
                     f"{r['bit_macs_per_s'] / 1e12:.1f} | {_fmt(r['pct_peak'], '.1f')} | "
                     f"{_fmt(r['torch_fp16_ms'])} | {_fmt(r['torch_int8_gemm_ms'])} | {sp} |")
    (out / "gpu-binary-conv.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'gpu-binary-conv.md'}")
    return 0 if all(r["counts_exact"] and r["float_max_rel_err"] < 1e-5 for r in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
