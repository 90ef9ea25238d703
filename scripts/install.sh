#!/usr/bin/env bash
# Create .venv (if missing) and install mmbeit with its test extras into it.
# Idempotent: a second run only re-installs mmbeit itself (editable).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import torch, torchvision, mmpretrain, mmseg, timm, transformers, dall_e, pytest, huggingface_hub, onnx, onnxruntime, onnxscript, torchao" 2>/dev/null; then
  # torch 2.14.1 + torchvision 0.29.1 are a matching pair (torch 2.13 + torchvision 0.28 are not).
  .venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/pip install -q -r requirements/runtime.txt -r requirements/tests.txt
fi
# openmim for tests/test_doors.py's `mim train/test` row: without --no-deps its opendatalab/openxlab
# pins downgrade setuptools, urllib3 and requests below what torch 2.14 needs
if ! .venv/bin/python -c "import mim" 2>/dev/null; then
  .venv/bin/pip install -q --no-deps "openmim==0.3.9" "model-index==0.1.11"
  .venv/bin/pip install -q pandas tabulate colorama click markdown ordered-set
fi
.venv/bin/pip install -q --no-deps -e .
