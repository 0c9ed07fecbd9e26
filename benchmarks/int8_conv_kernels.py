"""edgecc's direct int8 conv against oneDNN's s8 x s8 -> s32 conv (and PyTorch int8) on
the ResNet-18 conv layers and some MobileNet-V2 depthwise / pointwise layers, batch 1,
ONE thread: the measurement behind int_kernel_choice.onednn_rule.

    python -m benchmarks.int8_conv_kernels            # ~2 minutes on a shared core
    python -m benchmarks.int8_conv_kernels --quick    # smoke run (few layers, few reps)

Three timings per layer, medians of interleaved repetitions:

  step   a compiled model (edgecc compile's code) holding every layer twice, forced to
         "direct" and to "onednn"; per-step wall time from CompiledModel.profile. One
         step = float32 input -> int8 quantize -> integer conv -> requantize epilogue ->
         float32 output, so it includes everything each path pays: for oneDNN, its NCHW
         -> blocked/NHWC reorder of the input and the reorder of the int32 sums back.
  conv   the integer convolution alone, int8 in, int32 out (a new output array per call):
         edgecc.kernels.direct's DirectConv2d vs the model's own oneDNN wrapper
         (codegen/onednn_s8.py, reorders included). Same quantized input for both;
         outputs compared bit for bit.
  torch  PyTorch quantized Conv2d (x86 engine, fbgemm), per-channel qint8 weights:
         quantize_per_tensor + conv (requantized to quint8) + dequantize, i.e. float in,
         float out like "step" (PyTorch requantizes to 8 bits, edgecc to float32).

GMAC/s = the layer's multiply-accumulates / median time. Writes
benchmarks/results/int8_conv_kernels.{md,json}.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # idle OpenMP threads sleep (shared cores)

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks._common import cpu_name, gcc_version, interleaved_samples  # noqa: E402

RESULTS = Path(__file__).parent / "results"

# (name, class, C, O, k, stride, pad, H=W, groups)
LAYERS = [
    ("r18.conv1 7x7/2", "stem", 3, 64, 7, 2, 3, 224, 1),
    ("r18.l1 3x3 @56", "3x3", 64, 64, 3, 1, 1, 56, 1),
    ("r18.l2 3x3/2 56->28", "3x3/2", 64, 128, 3, 2, 1, 56, 1),
    ("r18.l2 3x3 @28", "3x3", 128, 128, 3, 1, 1, 28, 1),
    ("r18.l2 ds 1x1/2", "1x1/2", 64, 128, 1, 2, 0, 56, 1),
    ("r18.l3 3x3/2 28->14", "3x3/2", 128, 256, 3, 2, 1, 28, 1),
    ("r18.l3 3x3 @14", "3x3", 256, 256, 3, 1, 1, 14, 1),
    ("r18.l3 ds 1x1/2", "1x1/2", 128, 256, 1, 2, 0, 28, 1),
    ("r18.l4 3x3/2 14->7", "3x3/2", 256, 512, 3, 2, 1, 14, 1),
    ("r18.l4 3x3 @7", "3x3", 512, 512, 3, 1, 1, 7, 1),
    ("r18.l4 ds 1x1/2", "1x1/2", 256, 512, 1, 2, 0, 14, 1),
    ("mnv2 dw 3x3 32 @112", "depthwise", 32, 32, 3, 1, 1, 112, 32),
    ("mnv2 dw 3x3/2 96 @112", "depthwise", 96, 96, 3, 2, 1, 112, 96),
    ("mnv2 dw 3x3 144 @56", "depthwise", 144, 144, 3, 1, 1, 56, 144),
    ("mnv2 dw 3x3 384 @14", "depthwise", 384, 384, 3, 1, 1, 14, 384),
    ("mnv2 dw 3x3 960 @7", "depthwise", 960, 960, 3, 1, 1, 7, 960),
    ("mnv2 dw 3x3/2 576 14->7", "depthwise", 576, 576, 3, 2, 1, 14, 576),
    ("mnv1 dw 3x3 1024 @7", "depthwise", 1024, 1024, 3, 1, 1, 7, 1024),
    ("mnv1 dw 3x3 512 @14", "depthwise", 512, 512, 3, 1, 1, 14, 512),
    ("mnv1 dw 3x3/2 256 28->14", "depthwise", 256, 256, 3, 2, 1, 28, 256),
    ("mnv2 pw 16->96 @112", "1x1", 16, 96, 1, 1, 0, 112, 1),
    ("mnv2 pw 144->24 @56", "1x1", 144, 24, 1, 1, 0, 56, 1),
    ("mnv2 pw 384->64 @14", "1x1", 384, 64, 1, 1, 0, 14, 1),
    ("mnv2 pw 960->320 @7", "1x1", 960, 320, 1, 1, 0, 7, 1),
]
QUICK = [LAYERS[1], LAYERS[4], LAYERS[13], LAYERS[15], LAYERS[21]]


def layer_class(L) -> str:
    """The classes onednn_rule speaks of: depthwise split by stride and output size."""
    if L[1] != "depthwise":
        return L[1]
    if L[5] > 1:
        return "depthwise 3x3/2"
    return "depthwise 3x3, out <= 7x7" if out_size(L) <= 7 else "depthwise 3x3, out >= 14x14"


def out_size(L) -> int:
    _, _, _, _, k, s, p, hw, _ = L
    return (hw + 2 * p - k) // s + 1


def macs(L) -> int:
    _, _, c, o, k, _, _, _, g = L
    return o * out_size(L) ** 2 * (c // g) * k * k


def weights(L, rng) -> np.ndarray:
    _, _, c, o, k, _, _, _, g = L
    return rng.integers(-127, 128, size=(o, c // g, k, k)).astype(np.int8)


def build_graph(layers, rng):
    """Every layer twice (same weights): direct_<i> and onednn_<i>, each on its own input."""
    from edgecc.compiler.ir import Graph
    g = Graph("int8_conv_kernels")
    kernels, outs = {}, []
    for i, L in enumerate(layers):
        _, _, c, o, k, s, p, hw, groups = L
        x = g.add_input(f"x{i}", (1, c, hw, hw))
        w = Graph.constant(f"w{i}", weights(L, rng))
        scale = Graph.constant(f"s{i}", np.full(o, 1e-4, np.float32))
        bias = Graph.constant(f"b{i}", np.zeros(o, np.float32))
        for kernel in ("direct", "onednn"):
            name = f"{kernel}_{i}"
            attrs = dict(strides=(s, s), pads=(p, p, p, p), groups=groups, x_scale=0.02, relu=True)
            outs.append(g.add_node("qconv2d", [x, w, scale, bias], attrs, name=name).outputs[0])
            kernels[name] = kernel
    g.outputs = outs
    return g, kernels


def compile_graph(g, kernels, outdir: Path):
    """codegen + build, like edgecc compile (the graph already holds qconv2d nodes)."""
    import edgecc.runtime
    from edgecc.compiler import compile as compile_module
    from edgecc.compiler.codegen import build as B
    from edgecc.compiler.codegen import cpp as C
    src = outdir / "src"
    src.mkdir(parents=True)
    tgt = B.resolve_target("host")
    opts = C.CodegenOptions(isa_request=tgt.isa_request, onednn=True, layer_kernels=kernels)
    gen = C.generate(g, options=opts, required_flags=tgt.required_flags, build_info="int8_conv_kernels",
                     weights_path="weights.bin")
    (src / "weights.bin").write_bytes(gen.weights)
    (src / "model.cpp").write_text(gen.model_cpp)
    (src / "entry.cpp").write_text(gen.entry_cpp)
    shutil.move(B.build_library(src, tgt), outdir / "model.so")
    lib = outdir / "model.so"
    meta = compile_module._metadata(g, gen, tgt, "int", "int8_conv_kernels", lib, lib.stat().st_size)
    (outdir / "model.json").write_text(json.dumps(meta, indent=1))
    return edgecc.runtime.load(outdir), meta


def torch_int8(L, w: np.ndarray, x: np.ndarray):
    """float in -> quantize -> quantized conv (x86 / fbgemm) -> dequantize."""
    import torch
    import torch.ao.nn.quantized as nnq
    _, _, c, o, k, s, p, _, groups = L
    conv = nnq.Conv2d(c, o, k, stride=s, padding=p, groups=groups)
    wq = torch.quantize_per_channel(torch.from_numpy(w.astype(np.float32)), torch.ones(o, dtype=torch.double),
                                    torch.zeros(o, dtype=torch.long), 0, torch.qint8)
    conv.set_weight_bias(wq, None)
    conv.scale, conv.zero_point = 64.0, 128
    xt = torch.from_numpy(x)

    def run():
        with torch.no_grad():
            return conv(torch.quantize_per_tensor(xt, 0.02, 128, torch.quint8)).dequantize()
    return run



def measure(layers, reps: int) -> list[dict]:
    import torch

    from edgecc.compiler.codegen.onednn_s8 import OnednnS8Conv
    from edgecc.kernels.direct import DirectConv2d
    torch.backends.quantized.engine = "x86"
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    g, kernels = build_graph(layers, rng)
    with tempfile.TemporaryDirectory() as tmp:
        model, meta = compile_graph(g, kernels, Path(tmp) / "m")
        model.threads = 1
        xs = [(rng.standard_normal(v.shape) * 1.5).astype(np.float32) for v in g.inputs]
        prof = {r["node"]: r for r in model.profile(*xs, runs=reps, warmup=2)}
        layer_meta = {m["node"]: m for m in meta["layers"]}
    rows = []
    for i, L in enumerate(layers):
        _, _, c, o, k, s, p, hw, groups = L
        w = g.node(f"direct_{i}").inputs[1].data
        q = np.clip(np.rint(xs[i] / 0.02), -127, 127).astype(np.int8)
        direct = DirectConv2d(w, stride=(s, s), padding=(p, p, p, p), groups=groups, isa="")
        onednn = OnednnS8Conv((1, c, hw, hw, o, k, k, s, s, 1, 1, p, p, p, p, groups), w)
        if not np.array_equal(np.asarray(direct(q, threads=1)), onednn(q, 1)):
            raise SystemExit(f"{L[0]}: oneDNN and direct int32 sums differ")
        # both allocate their int32 output per call, both on one thread
        conv = interleaved_samples({"direct": lambda: direct(q, threads=1), "onednn": lambda: onednn(q, 1),
                                    "torch": torch_int8(L, w, xs[i])}, reps)
        mac = macs(L)
        row = {"layer": L[0], "class": layer_class(L), "C": c, "O": o, "k": k, "stride": s, "hw": hw, "groups": groups,
               "macs": mac,
               "step_direct_ms": prof[f"direct_{i}"]["ms"], "step_onednn_ms": prof[f"onednn_{i}"]["ms"],
               "step_direct_min_ms": prof[f"direct_{i}"]["ms_min"],
               "step_onednn_min_ms": prof[f"onednn_{i}"]["ms_min"],
               "conv_direct_ms": statistics.median(conv["direct"]) * 1e3,
               "conv_onednn_ms": statistics.median(conv["onednn"]) * 1e3,
               "torch_int8_ms": statistics.median(conv["torch"]) * 1e3,
               "conv_direct_min_ms": min(conv["direct"]) * 1e3, "conv_onednn_min_ms": min(conv["onednn"]) * 1e3,
               "torch_int8_min_ms": min(conv["torch"]) * 1e3,
               "direct_kernel": layer_meta[f"direct_{i}"]["kernel"].split(" ")[0],
               "onednn_impl": layer_meta[f"onednn_{i}"]["kernel"].split("(")[1].split(" ")[0]}
        row["onednn_vs_direct_step"] = row["step_direct_ms"] / row["step_onednn_ms"]
        row["onednn_vs_direct_conv"] = row["conv_direct_ms"] / row["conv_onednn_ms"]
        row["onednn_vs_direct_step_min"] = row["step_direct_min_ms"] / row["step_onednn_min_ms"]
        row["direct_vs_torch"] = row["torch_int8_ms"] / row["step_direct_ms"]
        row["winner_step"] = "onednn" if row["onednn_vs_direct_step"] > 1 else "direct"
        rows.append(row)
        print(f"{L[0]:24s} step direct {row['step_direct_ms']:7.3f} onednn {row['step_onednn_ms']:7.3f} ms "
              f"(x{row['onednn_vs_direct_step']:.2f}); conv x{row['onednn_vs_direct_conv']:.2f}; "
              f"torch {row['torch_int8_ms']:7.3f} ms", flush=True)
    return rows


def environment() -> dict:
    import torch

    from edgecc.compiler.codegen import onednn
    lib = onednn.find()
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu_name(), "threads": 1, "uptime": subprocess.run(["uptime"], capture_output=True,
                                                                      text=True).stdout.strip(),
            "python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
            "onednn": lib.describe() if lib else None, "compiler": gcc_version()}


def write(rows, env, reps):
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "int8_conv_kernels.json").write_text(json.dumps({"machine": env, "reps": reps, "layers": rows},
                                                               indent=1))
    gm = lambda r, key: r["macs"] / (r[key] * 1e6)   # noqa: E731  GMAC/s from ms
    L = ["# edgecc direct int8 conv vs oneDNN s8s8s32 vs PyTorch int8, batch 1, 1 thread", "",
         f"{env['date']}, {env['cpu']}, 1 thread, {env['onednn']}, torch {env['torch']} (x86 engine), "
         f"{env['compiler']}, Python {env['python']}. Load: `{env['uptime']}` (2 cores shared with other "
         f"jobs, which preempt a run for ~4 ms at times: absolute times are noisy, the ratios are side by side). "
         f"Medians of {reps} interleaved runs; minimum times in the json and the class table.", "",
         "step = float32 in -> int8 quantize -> integer conv -> requantize -> float32 out, in a compiled model "
         "(oneDNN's NCHW reorders in and out included); conv = int8 in -> int32 out only; torch = quantize + "
         "quantized Conv2d + dequantize. x = direct time / oneDNN time (> 1: oneDNN faster).", "",
         "| layer | class | MMAC | direct kernel | oneDNN impl | step direct ms (GMAC/s) | step oneDNN ms "
         "(GMAC/s) | x step | x conv | torch int8 ms (GMAC/s) | direct vs torch |",
         "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        L.append(f"| {r['layer']} | {r['class']} | {r['macs'] / 1e6:.1f} | {r['direct_kernel']} | {r['onednn_impl']} "
                 f"| {r['step_direct_ms']:.3f} ({gm(r, 'step_direct_ms'):.1f}) "
                 f"| {r['step_onednn_ms']:.3f} ({gm(r, 'step_onednn_ms'):.1f}) "
                 f"| {r['onednn_vs_direct_step']:.2f} | {r['onednn_vs_direct_conv']:.2f} "
                 f"| {r['torch_int8_ms']:.3f} ({gm(r, 'torch_int8_ms'):.1f}) | {r['direct_vs_torch']:.2f} |")
    classes = {}
    for r in rows:
        classes.setdefault(r["class"], []).append(r)
    L += ["", "## By layer class (what int_kernel_choice.onednn_rule uses)", "",
          "| class | layers | oneDNN wins (step) | geomean x step | geomean x conv | geomean x step, minimum times |",
          "|---|---:|---:|---:|---:|---:|"]
    for cls, rs in classes.items():
        geo = lambda key: float(np.exp(np.mean([np.log(r[key]) for r in rs])))   # noqa: E731
        L.append(f"| {cls} | {len(rs)} | {sum(r['winner_step'] == 'onednn' for r in rs)} "
                 f"| {geo('onednn_vs_direct_step'):.2f} | {geo('onednn_vs_direct_conv'):.2f} "
                 f"| {geo('onednn_vs_direct_step_min'):.2f} |")
    L += ["", "Rule taken from this table (int_kernel_choice.onednn_rule, models compiled with oneDNN): int8 "
          "3x3 depthwise layers with stride 2 or outputs <= 7 wide run oneDNN; every other int8 layer stays "
          "direct (its ratios are below 1 or within run-to-run noise of 1). `--tune` times direct, DFNT and "
          "oneDNN per layer on the target machine instead."]
    (RESULTS / "int8_conv_kernels.md").write_text("\n".join(L) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="four layers, few repetitions (no results written)")
    ap.add_argument("--reps", type=int, default=41)
    args = ap.parse_args()
    layers, reps = (QUICK, 3) if args.quick else (LAYERS, args.reps)
    env = environment()
    rows = measure(layers, reps)
    env["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    if not args.quick:
        write(rows, env, reps)
        print(f"wrote {RESULTS / 'int8_conv_kernels.md'}")


if __name__ == "__main__":
    main()
