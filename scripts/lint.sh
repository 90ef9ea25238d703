#!/usr/bin/env bash
# Lint the tree as CI does: flake8, isort --check and yapf --diff over mmbeit tools tests configs
# (settings in setup.cfg). Exits non-zero on any finding; fix with
#   .venv/bin/python -m isort mmbeit tools tests configs setup.py
#   .venv/bin/python -m yapf -i -r -p mmbeit tools tests configs setup.py
# Uses .venv (installing requirements/lint.txt into it if missing), or $PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if ! "$PY" -c "import flake8, isort, yapf" 2>/dev/null; then
  "$PY" -m pip install -q -r requirements/lint.txt
fi
PATHS=(mmbeit tools tests configs setup.py)
status=0
echo "flake8"; "$PY" -m flake8 "${PATHS[@]}" || status=1
echo "isort"; "$PY" -m isort --check-only --diff "${PATHS[@]}" || status=1
echo "yapf"; "$PY" -m yapf --diff --recursive --parallel "${PATHS[@]}" || status=1
if [ "$status" -ne 0 ]; then
  echo "lint failed: see above (scripts/lint.sh's header says how to fix)" >&2
fi
exit "$status"
