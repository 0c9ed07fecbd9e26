#!/usr/bin/env bash
# The main job: inspect a real ONNX graph, then compile the bundled PA digits network
# to a shared library, run it on the digits test set and compare with PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
light=$(.venv/bin/python -c "import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), 'backend/test/data/light/light_resnet50.onnx'))")
.venv/bin/edgecc inspect "$light" | tail -n 3
exec .venv/bin/python -W ignore::FutureWarning examples/digits_demo.py "$@"
