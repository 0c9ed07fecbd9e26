"""TVM CUDA binary / PA convolution (edgecc.compiler.codegen.tvm_binary) on a GPU:
correctness of every kernel against the C++ engine on the CPU, then timings of the
ResNet-18 3x3 layers (64ch@56, 128ch@28, 256ch@14, 512ch@7; stride 1, pad 1) at batch 1
and 64 for a single binary conv (+-1 x +-1) and PA (M, N) = (2,3), (4,5), against
PyTorch fp16 conv2d (cuDNN) on the same GPU.

    python -m benchmarks.gpu_binary_conv [--quick] [--out benchmarks/results]
    python -m benchmarks.gpu_binary_conv --build-only   # no GPU: build every kernel (nvcc)

Float32 in, float32 out (bit-packing and the phi/bias epilogue included). Times are
medians of TVM's time_evaluator / CUDA-event rounds after a warm-up. Writes
gpu-<device>.md and .json with device, versions and date. Exits with status 2 and a
message when no CUDA GPU / runtime is present.
"""
from __future__ import annotations

import argparse
import datetime
import json
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


def _spec(TB, c, hw, batch, m, p, basis):
    return TB.BinaryConvSpec(batch, c, hw, hw, c, m, p, 3, 3, (1, 1), (1, 1, 1, 1),
                             weight_basis=basis, act_basis=basis, word_bits=32)


def _data(spec, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(spec.n, spec.c, spec.h, spec.w)).astype(np.float32)
    t = np.sort(rng.normal(size=(spec.c, spec.p)), axis=1).astype(np.float32)
    wb = rng.integers(0, 2, size=(spec.m, spec.o, spec.cg, spec.kh, spec.kw)).astype(np.int8)
    if spec.weight_basis == "pm1":
        wb = (2 * wb - 1).astype(np.int8)
    phi = rng.normal(size=(spec.o, spec.m, spec.p)).astype(np.float32)
    bias = rng.normal(size=spec.o).astype(np.float32)
    return x, t, wb, phi, bias


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


def _gpu_or_exit(tvm):
    dev = tvm.cuda(0)
    if not dev.exist:
        print("gpu_binary_conv: no CUDA GPU / runtime present (tvm.cuda(0) does not exist); "
              "run this on a machine with an NVIDIA GPU (use --build-only to just build)", file=sys.stderr)
        raise SystemExit(2)
    return dev


def _tvm_timer(ex, dev, args, repeats):
    f = ex.time_evaluator("main", dev, number=10, repeat=repeats, min_repeat_ms=20)
    return 1e3 * statistics.median(f(*args).results)


def _torch_fp16_ms(c, hw, batch, repeats):
    try:
        import torch
    except ImportError:
        return None, "torch not installed"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} has no CUDA"
    x = torch.randn(batch, c, hw, hw, device="cuda", dtype=torch.float16)
    w = torch.randn(c, c, 3, 3, device="cuda", dtype=torch.float16)
    torch.backends.cudnn.benchmark = True
    conv = lambda: torch.nn.functional.conv2d(x, w, padding=1)  # noqa: E731
    for _ in range(5):
        conv()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            conv()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 10)
    return statistics.median(times), f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="first layer only, fewer repeats")
    ap.add_argument("--build-only", action="store_true", help="build every kernel, run nothing")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
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
        for c, hw in layers:
            for name, m, p, basis in CONFIGS:
                for batch in BATCHES:
                    TB.build_layer(_spec(TB, c, hw, batch, m, p, basis), "cuda", with_bias=True)
                    print(f"built {name} {c}ch@{hw} batch {batch}")
        return 0
    dev = _gpu_or_exit(tvm)
    rows, checks = [], []
    for c, hw in layers:
        for name, m, p, basis in CONFIGS:
            # correctness at batch 1: counts bit-exact, float output within 1e-5 relative
            spec = _spec(TB, c, hw, 1, m, p, basis)
            x, t, wb, phi, bias = _data(spec)
            wp = TB.pack_weight_bases(wb, spec)
            ref_counts, ref_y = _engine_reference(spec, x, t, wb, phi, bias)
            cex = TB.build_layer(spec, "cuda", output="counts")
            counts = tvm.runtime.empty(ref_counts.shape, "int32", dev)
            cex["main"](*[tvm.runtime.tensor(a, dev) for a in (x, wp, t)], counts)
            exact = bool(np.array_equal(counts.numpy(), ref_counts))
            fex = TB.build_layer(spec, "cuda", output="float", with_bias=True)
            y = tvm.runtime.empty(ref_y.shape, "float32", dev)
            fex["main"](*[tvm.runtime.tensor(a, dev) for a in (x, wp, phi, t, bias)], y)
            rel = float(np.abs(y.numpy() - ref_y).max() / (np.abs(ref_y).max() + 1e-30))
            checks.append(dict(layer=f"{c}ch@{hw}", config=name, counts_exact=exact, float_max_rel_err=rel))
            print(f"check {name} {c}ch@{hw}: counts exact {exact}, float max rel err {rel:.2e}")
            for batch in BATCHES:
                spec = _spec(TB, c, hw, batch, m, p, basis)
                x, t, wb, phi, bias = _data(spec, 1)
                ex = TB.build_layer(spec, "cuda", output="float", with_bias=True)
                dargs = [tvm.runtime.tensor(a, dev) for a in (x, TB.pack_weight_bases(wb, spec), phi, t, bias)]
                dargs.append(tvm.runtime.empty((batch, c, hw, hw), "float32", dev))
                ms = _tvm_timer(ex, dev, dargs, repeats)
                torch_ms, torch_info = _torch_fp16_ms(c, hw, batch, repeats)
                bitmacs = batch * c * c * 9 * hw * hw * m * p
                rows.append(dict(layer=f"{c}ch@{hw}", batch=batch, config=name, tvm_ms=ms,
                                 tera_bitmacs_per_s=bitmacs / ms / 1e9, torch_fp16_ms=torch_ms,
                                 speedup_vs_fp16=(torch_ms / ms) if torch_ms else None))
                print(f"{name:10s} {c}ch@{hw} b{batch}: TVM {ms:.3f} ms"
                      + (f", torch fp16 {torch_ms:.3f} ms" if torch_ms else f" ({torch_info})"))
    device_name = str(dev.device_name) if hasattr(dev, "device_name") else "cuda:0"
    meta = dict(device=device_name, compute_version=str(getattr(dev, "compute_version", "?")),
                host=platform.node(), tvm=tvm.__version__, python=platform.python_version(),
                torch=_torch_fp16_ms(64, 7, 1, 1)[1],
                date=datetime.datetime.now().isoformat(timespec="seconds"), repeats=repeats)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-") or "gpu"
    (out / f"gpu-{slug}.json").write_text(json.dumps(dict(meta=meta, checks=checks, rows=rows), indent=2))
    lines = [f"# TVM CUDA binary / PA convolution on {device_name}", "",
             "| " + " | ".join(f"{k}: {v}" for k, v in meta.items()) + " |", "",
             "Schedule: CUDA cores, 32-bit `__popc`, shared-memory tiles of the bit-packed operands "
             "(edgecc.compiler.codegen.tvm_binary.schedule_cuda); no tensor-core (b1 MMA) path yet.", "",
             "## Correctness vs the C++ engine (batch 1)", "",
             "| layer | config | counts bit-exact | float max rel err |", "|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['config']} | {r['counts_exact']} | {r['float_max_rel_err']:.1e} |"
              for r in checks]
    lines += ["", "## Timings (median ms; float32 in/out incl. bit-packing and epilogue)", "",
              "| layer | batch | config | TVM ms | T bit-MAC/s | PyTorch fp16 ms | fp16 / TVM |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        tms = f"{r['torch_fp16_ms']:.3f}" if r["torch_fp16_ms"] else "n/a"
        sp = f"{r['speedup_vs_fp16']:.2f}" if r["speedup_vs_fp16"] else "n/a"
        lines.append(f"| {r['layer']} | {r['batch']} | {r['config']} | {r['tvm_ms']:.3f} | "
                     f"{r['tera_bitmacs_per_s']:.2f} | {tms} | {sp} |")
    (out / f"gpu-{slug}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / f'gpu-{slug}.md'}")
    return 0 if all(r["counts_exact"] and r["float_max_rel_err"] < 1e-5 for r in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
