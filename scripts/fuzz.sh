#!/usr/bin/env bash
# Long fuzz run of the importers, loaders, kernel entry points and the compiled-model C API (tests/fuzz), at least
# 10,000 inputs per target; writes benchmarks/results/reliability.{json,md}.
#   scripts/fuzz.sh [examples-per-target]   (default 10000)
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
OUT=benchmarks/results
mkdir -p "$OUT"
STATS_DIR=$(mktemp -d)
declare -A RC SECS
for target in onnx ecir torch kernels; do
  start=$(date +%s)
  EDGECC_FUZZ_EXAMPLES=$N EDGECC_FUZZ_STATS=$STATS_DIR/$target.json EDGECC_FUZZ_FINDINGS=$STATS_DIR/$target.findings \
    .venv/bin/python -m pytest -q -p no:cacheprovider "tests/fuzz/test_fuzz_$target.py" > "$STATS_DIR/$target.log" 2>&1
  RC[$target]=$?
  SECS[$target]=$(( $(date +%s) - start ))
  echo "fuzz $target: exit ${RC[$target]} in ${SECS[$target]} s"
done
.venv/bin/python - "$STATS_DIR" "$OUT" "$N" "${RC[onnx]}" "${RC[ecir]}" "${RC[torch]}" "${RC[kernels]}" \
  "${SECS[onnx]}" "${SECS[ecir]}" "${SECS[torch]}" "${SECS[kernels]}" <<'PY'
import datetime, json, os, platform, sys
import hypothesis, numpy, onnx, torch
stats_dir, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rcs, secs = sys.argv[4:8], sys.argv[8:12]
names = {"onnx": "onnx", "ecir": "ecir", "torch": "torch", "kernels": "kernel"}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
res = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": cpu,
       "cpus": os.cpu_count(), "threads": 1, "examples_per_target": n,
       "versions": {"python": platform.python_version(), "numpy": numpy.__version__, "onnx": onnx.__version__,
                    "torch": torch.__version__, "hypothesis": hypothesis.__version__},
       "targets": {}}
for (key, target), rc, s in zip(names.items(), rcs, secs):
    path = os.path.join(stats_dir, key + ".json")
    counts = json.load(open(path)).get(target, {}) if os.path.exists(path) else {}
    found = os.path.join(stats_dir, key + ".findings")
    log = open(found).read() if os.path.exists(found) else open(os.path.join(stats_dir, key + ".log")).read()
    res["targets"][key] = {"inputs_tried": sum(counts.values()), "outcomes": counts,
                           "crashes": counts.get("crash", 0), "hangs": counts.get("hang", 0),
                           "bad": counts.get("bad", 0), "passed": rc == "0", "seconds": int(s),
                           "finding": log[:3000] if rc != "0" else ""}
json.dump(res, open(os.path.join(out, "reliability.json"), "w"), indent=1)
lines = [f"# Reliability: fuzzing ({res['date']})", "",
         f"Machine: {cpu}, {res['cpus']} CPUs, 1 kernel thread; " +
         ", ".join(f"{k} {v}" for k, v in res["versions"].items()), "",
         f"`scripts/fuzz.sh {n}`: hypothesis inputs per target, each run in a worker subprocess "
         "(crash = worker died, hang = no answer in 60 s, bad = an exception other than the "
         "documented errors, or a result differing from the reference). Hypothesis stops a "
         "target at its first finding (and shrinks it), so 'passed' means no finding at all.", "",
         "| target | inputs tried | accepted (checked) | rejected cleanly | crashes | hangs | bad | passed | seconds |",
         "|---|---|---|---|---|---|---|---|---|"]
for k, t in res["targets"].items():
    o = t["outcomes"]
    lines.append(f"| {k} | {t['inputs_tried']} | {o.get('ok', 0)} | {o.get('rejected', 0)} | {t['crashes']} | "
                 f"{t['hangs']} | {t['bad']} | {'yes' if t['passed'] else 'NO'} | {t['seconds']} |")
lines += ["", "Findings fixed (found by these fuzzers while writing them):", "",
          "- `.ecir` load: a `graph.json` that is valid JSON but not an object (e.g. `null`), or "
          "whose constants/inputs are not lists of objects, raised AttributeError/TypeError; now "
          "ModelLoadError (edgecc/compiler/ir/serialize.py).",
          "- `.ecir` load: a mangled `.npy` header made numpy raise tokenize.TokenError, which escaped; "
          "now ModelLoadError naming the entry (serialize.py).",
          "- `.ecir` load: a zip entry with an unknown compression method (NotImplementedError), "
          "an encrypted entry (RuntimeError) or a corrupt deflate stream (zlib.error) escaped; now "
          "ModelLoadError (serialize.py).",
          "- ONNX import: a pooling/conv stride (or kernel, dilation) of 0 divided by zero in shape "
          "inference (ZeroDivisionError); conv_out_size now raises ShapeError (edgecc/compiler/ir/ops.py).",
          "- ONNX import: an input declaring a negative dim raised a bare ValueError; now ShapeError "
          "(edgecc/compiler/frontends/onnx.py).",
          "- ONNX import: an input whose element type code has no ONNX name crashed while building the "
          "error message (ValueError); now ModelLoadError 'unknown code N' (onnx.py).",
          "- ONNX import: non-UTF-8 node names (protobuf hands them over as bytes) made building "
          "UnsupportedOpsError's message raise TypeError; names are now str()-ed (edgecc/errors.py).",
          "", "Not a defect: a flipped byte made a weight ~2e37; ONNX Runtime's float32 global average "
          "pool overflowed to inf/nan where edgecc stayed finite. The ORT comparison now skips "
          "elements where the reference is not finite or |ref| >= 1e30."]
for k, t in res["targets"].items():
    if not t["passed"]:
        lines += ["", f"## {k}: finding (first, unshrunk)", "", "```", t["finding"], "```"]
open(os.path.join(out, "reliability.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
# C API through ctypes (tests/fuzz/fuzz_c_api.py): appends its section to reliability.{md,json}
.venv/bin/python tests/fuzz/fuzz_c_api.py --inputs "$N" --report "$OUT"; RC_CAPI=$?
rm -rf "$STATS_DIR"
[ "$RC_CAPI" -eq 0 ] || exit 1
for target in onnx ecir torch kernels; do [ "${RC[$target]}" -eq 0 ] || exit 1; done
