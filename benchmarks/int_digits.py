"""Integer post-training quantization (int8 / int16) of the digits model.

    python -m benchmarks.int_digits

The bundled float DigitsResNet (edgecc/zoo/data/digits_float.pt) is imported as an IR
graph (batch GRAPH_BATCH), cleaned by default_pipeline() (BN folded where it can be),
and quantized with edgecc.compiler.quant.int_quant.quantize_int: every conv becomes
qconv2d, the classifier stays float. Calibration either on CALIB_IMAGES training images
("data") or on inputs synthesized from the BN statistics ("data-free", thesis eq 8.1;
one run per seed in DF_SEEDS, synthesized on the unfolded graph). Accuracy on the 450
test images through the reference interpreter. A second table compares int8
activation-range estimators (max |x|, 99.99th percentile, MSE-optimal clipping) by
accuracy and logit error against float. Writes benchmarks/results/int_digits.{md,json}.
"""
from __future__ import annotations

import copy
import datetime
import json
import os
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch

import edgecc
from benchmarks._common import cpu_name
from edgecc.compiler.passes import default_pipeline
from edgecc.compiler.quant import calibration as C
from edgecc.compiler.quant import int_quant as IQ
from edgecc.compiler.quant.data_free import synthesize_calibration
from edgecc.zoo import digits as D

GRAPH_BATCH = 150          # the 450 test images run as 3 batches
CALIB_IMAGES = 300         # first training images, 2 batches
DF_SEEDS = (0, 1, 2)
DF_SAMPLES, DF_STEPS = 150, 200
THREADS = 1
RESULTS = Path(__file__).parent / "results"


def logits(g, x) -> np.ndarray:
    return np.concatenate([edgecc.interpret(g, x[i:i + GRAPH_BATCH])[0]
                           for i in range(0, len(x), GRAPH_BATCH)])


def weight_bits(g) -> int:
    """pa_digits convention: 32 bits per float conv weight and linear parameter; a
    quantized conv: its weight bits plus 32 per output-channel scale. Conv biases are
    the folded BNs here (the model's convs have none), and BN is not counted."""
    bits = 0
    for n in g.nodes:
        if n.op == "conv2d":
            bits += 32 * n.inputs[1].type.numel
        elif n.op == "gemm":
            bits += sum(32 * v.type.numel for v in n.inputs[1:] if v.is_constant)
        elif n.op == "qconv2d":
            w = n.inputs[1]
            bits += w.type.numel * w.dtype.bits + 32 * w.shape[0]
    return bits


def main():
    torch.set_num_threads(THREADS)
    t0 = time.time()
    xtr, _, xte, yte = D.load_digits_split()
    x, y = xte.numpy(), yte.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unfolded = edgecc.load(D.load_bundled("float"), (xte[:GRAPH_BATCH],))
    g = copy.deepcopy(unfolded)
    default_pipeline().run(g)
    lf = logits(g, x)
    float_acc = float((lf.argmax(1) == y).mean())
    calib = [xtr[i:i + GRAPH_BATCH].numpy() for i in range(0, CALIB_IMAGES, GRAPH_BATCH)]

    synth, synth_seconds = {}, []
    for seed in DF_SEEDS:
        ts = time.time()
        synth[seed] = synthesize_calibration(unfolded, n=DF_SAMPLES, seed=seed, steps=DF_STEPS)
        synth_seconds.append(time.time() - ts)

    rows = [{"precision": "float32", "calibration": "-", "accuracy_per_seed": [float_acc],
             "accuracy_mean": float_acc, "gap_points": 0.0, "weight_storage_bits": weight_bits(g),
             "ir_constant_bits": IQ.storage_bits(g), "logit_max_abs_err": 0.0}]
    for bits in (8, 16):
        for how in ("data", "data-free"):
            accs, errs = [], []
            for seed in (DF_SEEDS if how == "data-free" else (None,)):
                q, report = IQ.quantize_int(g, bits=bits, calib=calib if seed is None else synth[seed])
                lq = logits(q, x)
                accs.append(float((lq.argmax(1) == y).mean()))
                errs.append(float(np.abs(lq - lf).max()))
            mean = statistics.mean(accs)
            rows.append({"precision": f"int{bits}", "calibration": how, "accuracy_per_seed": accs,
                         "accuracy_mean": mean, "gap_points": 100 * (float_acc - mean),
                         "weight_storage_bits": weight_bits(q), "ir_constant_bits": IQ.storage_bits(q),
                         "logit_max_abs_err": max(errs), "layers": str(report)})
            print(f"int{bits} {how}: {accs} ({time.time() - t0:.1f}s)", flush=True)

    estimators = [("max |x|", lambda v, q: C.range_max_abs(v)),
                  ("99.99th percentile", lambda v, q: float(np.percentile(
                      np.abs(np.concatenate([a.ravel() for a in v])), 99.99))),
                  ("MSE-optimal clipping (default)", C.range_mse)]
    est_rows = []
    for name, fn in estimators:
        q, _ = IQ.quantize_int(g, bits=8, calib=calib, estimator=fn)
        lq = logits(q, x)
        est_rows.append({"estimator": name, "accuracy": float((lq.argmax(1) == y).mean()),
                         "logit_rms_err": float(np.sqrt(np.mean((lq - lf) ** 2))),
                         "logit_max_abs_err": float(np.abs(lq - lf).max())})

    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": cpu_name(), "threads": THREADS, "python": platform.python_version(),
        "torch": torch.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__,
        "load_average": os.getloadavg(),
        "dataset": f"sklearn load_digits, stratified split seed {D.SPLIT_SEED}, test fraction "
                   f"{D.TEST_FRACTION}: {len(xtr)} train / {len(xte)} test",
        "calibration_images": CALIB_IMAGES, "graph_batch": GRAPH_BATCH,
        "data_free": {"seeds": list(DF_SEEDS), "samples": DF_SAMPLES, "adam_steps": DF_STEPS,
                      "seconds_per_synthesis": [round(s, 1) for s in synth_seconds]},
        "wall_seconds": round(time.time() - t0, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "int_digits.json").write_text(json.dumps(
        {"meta": meta, "results": rows, "int8_estimators": est_rows}, indent=1) + "\n")
    write_markdown(meta, rows, est_rows)


def write_markdown(meta, rows, est_rows):
    df = meta["data_free"]
    load = ", ".join(f"{v:.2f}" for v in meta["load_average"])
    lines = [
        "# Integer quantization on sklearn digits (python -m benchmarks.int_digits)", "",
        f"{meta['date']}, {meta['machine']}, {meta['threads']} thread, torch {meta['torch']}, "
        f"numpy {meta['numpy']}, scikit-learn {meta['sklearn']}, Python {meta['python']}; "
        f"load average {load}; wall time {meta['wall_seconds']} s.", "",
        f"Data: {meta['dataset']}. Bundled float DigitsResNet, IR graph at batch {meta['graph_batch']} "
        "after default_pipeline(); all 8 convs quantized (qconv2d: per-channel symmetric weights, "
        "per-tensor activation scale), the classifier gemm stays float. Accuracy through the "
        "reference interpreter.", "",
        f"Calibration: **data** = the first {meta['calibration_images']} training images; "
        f"**data-free** = {df['samples']} inputs synthesized from the BN running statistics "
        f"(thesis eq 8.1, Adam {df['adam_steps']} steps, {df['seconds_per_synthesis']} s each), "
        f"seeds {df['seeds']}. Activation range: int8 MSE-optimal clipping, int16 max \\|x\\|.", "",
        "| precision | calibration | accuracy (mean) | per seed | gap (points) | weight bits | "
        "all IR constant bits | max logit error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per = ", ".join(f"{100 * a:.2f}" for a in r["accuracy_per_seed"])
        lines.append(f"| {r['precision']} | {r['calibration']} | {100 * r['accuracy_mean']:.2f}% | {per} | "
                     f"{r['gap_points']:.2f} | {r['weight_storage_bits']} | {r['ir_constant_bits']} | "
                     f"{r['logit_max_abs_err']:.4f} |")
    lines += ["", "Weight bits: 32 per float conv/linear parameter; a quantized conv counts 8 or 16 "
              "bits per weight plus a 32-bit scale per output channel (BN, folded into the bias, "
              "is not counted, as in pa_digits). All IR constant bits: every constant of the graph "
              "(unfolded BNs, biases, scales included). One test image = 0.22 points.", "",
              "## int8 activation-range estimators (data calibration)", "",
              "| estimator | accuracy | logit RMS error | max logit error |", "|---|---|---|---|"]
    for r in est_rows:
        name = r["estimator"].replace("|", "\\|")    # a literal | inside a table cell
        lines.append(f"| {name} | {100 * r['accuracy']:.2f}% | {r['logit_rms_err']:.4f} | "
                     f"{r['logit_max_abs_err']:.4f} |")
    (RESULTS / "int_digits.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
