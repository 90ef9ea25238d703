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
if ! .venv/bin/python -c "import torch, torchvision, mmpretrain, mmseg, timm, transformers, dall_e, pytest" 2>/dev/null; then
  # torch 2.14.1 + torchvision 0.29.1 are a matching pair (torch 2.13 + torchvision 0.28 are not).
  .venv/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/pip install -q -r requirements/runtime.txt -r requirements/tests.txt
fi
.venv/bin/pip install -q --no-deps -e .
