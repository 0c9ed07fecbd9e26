"""PA training demo on the scikit-learn digits (thesis ch.3, Algorithm 2).

    python -m benchmarks.pa_digits

Trains the float DigitsResNet, then fine-tunes from it PA (M,N) = (8,7), (4,5), (2,3),
ABC-Net with the same numbers of bases (and (5,5), the thesis' ABC baseline), and single
sign binarization. Every fine-tune uses the same recipe (calibrate on 512 training images,
Adam + cosine, FT_EPOCHS epochs) for each seed in FT_SEEDS. Writes
benchmarks/results/pa_digits.{md,json} and the state_dicts edgecc/zoo/data/digits_float.pt,
digits_pa45.pt, digits_pa23.pt (PA ones from the first seed).
"""
from __future__ import annotations

import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import sklearn
import torch

from benchmarks._common import cpu_name
from edgecc.compiler.quant.calibration import calibrate, constrain_
from edgecc.compiler.quant.convert import abc_convert, binary_layers, pa_convert, sign_convert
from edgecc.zoo import digits as D

FLOAT_SEED = 0
FLOAT_EPOCHS, FLOAT_LR = 30, 3e-3
FT_SEEDS = (1, 2)
FT_EPOCHS, FT_LR = 20, 1e-3
CALIB_IMAGES = 512
THREADS = 1   # the CPU is shared; 2 OpenMP threads thrash under load
RESULTS = Path(__file__).parent / "results"

SCHEMES = [  # (name, kind, M, N)
    ("PA", "pa", 8, 7), ("PA", "pa", 4, 5), ("PA", "pa", 2, 3),
    ("ABC-Net", "abc", 8, 7), ("ABC-Net", "abc", 5, 5), ("ABC-Net", "abc", 4, 5), ("ABC-Net", "abc", 2, 3),
    ("Sign (Bi-Real backward)", "sign", 1, 1),
]
# (kind, M, N) -> the bundled model it is saved as (first seed)
SAVED = {("pa", *mn): name for name, (_, mn) in D.BUNDLED.items() if mn is not None}


def convert(model, kind, m, n):
    if kind == "pa":
        return pa_convert(model, m, n)
    if kind == "abc":
        return abc_convert(model, m, n)
    return sign_convert(model)


def storage_bits(model, kind, m, n) -> int:
    """32 bits per full-precision conv/linear parameter and per quantizer scalar, m bits
    per binarized weight (m one-hot/+-1 planes; 1 for sign); BN is not counted."""
    bits = 0
    binary = binary_layers(model)
    binary_names = set(binary)
    for name, mod in model.named_modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) and name not in binary_names:
            bits += 32 * sum(p.numel() for p in mod.parameters())
    for mod in binary.values():
        w = mod.weight
        if kind == "sign":
            bits += w.numel() + 32 * (w.shape[0] + mod.aq.threshold.numel())
        else:
            bits += m * w.numel() + 32 * (m + 2 * n)
        if mod.bias is not None:
            bits += 32 * mod.bias.numel()
    return bits


def main():
    torch.set_num_threads(THREADS)
    xtr, ytr, xte, yte = D.load_digits_split()
    D.DATA_DIR.mkdir(exist_ok=True)

    t0 = time.time()
    torch.manual_seed(FLOAT_SEED)
    fmodel = D.train(D.DigitsResNet(), xtr, ytr, FLOAT_EPOCHS, FLOAT_LR, seed=FLOAT_SEED, weight_decay=1e-4)
    float_acc = D.accuracy(fmodel, xte, yte)
    torch.save(fmodel.state_dict(), D.bundled_path("float"))
    print(f"float: {float_acc:.4f} ({time.time() - t0:.1f}s)", flush=True)

    rows = []
    for name, kind, m, n in SCHEMES:
        accs, init_accs = [], []
        for seed in FT_SEEDS:
            torch.manual_seed(seed)
            q = convert(fmodel, kind, m, n)
            calibrate(q, [xtr[:CALIB_IMAGES]])
            init_accs.append(D.accuracy(q, xte, yte))
            D.train(q, xtr, ytr, FT_EPOCHS, FT_LR, seed=seed, after_step=constrain_)
            accs.append(D.accuracy(q, xte, yte))
            if seed == FT_SEEDS[0] and (kind, m, n) in SAVED:
                torch.save(q.state_dict(), D.bundled_path(SAVED[(kind, m, n)]))
        mean = statistics.mean(accs)
        rows.append({
            "scheme": name, "M": m if kind != "sign" else 1, "N": n if kind != "sign" else 1,
            "accuracy_per_seed": accs, "accuracy_mean": mean, "gap_points": 100 * (float_acc - mean),
            "accuracy_after_calibration_per_seed": init_accs,
            "binary_convs_per_layer": m * n if kind != "sign" else 1,
            "binary_layers": len(binary_layers(q)),
            "weight_storage_bits": storage_bits(q, kind, m, n),
        })
        print(f"{name} M={m} N={n}: {accs} mean {mean:.4f} ({time.time() - t0:.1f}s)", flush=True)

    float_bits = 32 * sum(p.numel() for mod in fmodel.modules()
                          if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)) for p in mod.parameters())
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": cpu_name(), "threads": THREADS, "python": platform.python_version(),
        "torch": torch.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__,
        "dataset": f"sklearn load_digits, stratified split seed {D.SPLIT_SEED}, test fraction {D.TEST_FRACTION}: "
                   f"{len(xtr)} train / {len(xte)} test",
        "float": {"seed": FLOAT_SEED, "epochs": FLOAT_EPOCHS, "lr": FLOAT_LR, "weight_decay": 1e-4,
                  "accuracy": float_acc, "weight_storage_bits": float_bits},
        "finetune": {"seeds": list(FT_SEEDS), "epochs": FT_EPOCHS, "lr": FT_LR, "optimizer": "Adam + cosine",
                     "calibration_images": CALIB_IMAGES,
                     "pa_lambdas": {"lambda_w": 1.0, "lambda_a": 1.0, "lambda_delta": 0.5}},
        "wall_seconds": round(time.time() - t0, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pa_digits.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n")
    write_markdown(meta, rows)


def write_markdown(meta, rows):
    f = meta["float"]
    lines = [
        "# PA on sklearn digits (python -m benchmarks.pa_digits)", "",
        f"{meta['date']}, {meta['machine']}, {meta['threads']} threads, torch {meta['torch']}, "
        f"numpy {meta['numpy']}, scikit-learn {meta['sklearn']}, Python {meta['python']}; "
        f"wall time {meta['wall_seconds']} s.", "",
        f"Data: {meta['dataset']}. Float DigitsResNet: seed {f['seed']}, {f['epochs']} epochs Adam lr {f['lr']}; "
        f"test accuracy **{100 * f['accuracy']:.2f}%**, {f['weight_storage_bits']} weight bits.", "",
        f"Fine-tuning from the float model (Algorithm 2): seeds {meta['finetune']['seeds']}, "
        f"{meta['finetune']['epochs']} epochs, Adam lr {meta['finetune']['lr']} cosine, calibration on "
        f"{meta['finetune']['calibration_images']} training images. Stem conv and classifier stay float; "
        "7 convs (incl. the 1x1 downsample) are binarized.", "",
        "| scheme | M | N | accuracy (mean) | per seed | gap (points) | binary convs/layer | weight bits |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per = ", ".join(f"{100 * a:.2f}" for a in r["accuracy_per_seed"])
        lines.append(f"| {r['scheme']} | {r['M']} | {r['N']} | {100 * r['accuracy_mean']:.2f}% | {per} | "
                     f"{r['gap_points']:.2f} | {r['binary_convs_per_layer']} | {r['weight_storage_bits']} |")
    lines += ["", "Weight bits: 32 per full-precision conv/linear parameter and per quantizer scalar, "
              "M bits per binarized weight (M planes), BN not counted. One test image = 0.22 points."]
    (RESULTS / "pa_digits.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
