#!/usr/bin/env bash
# Install (if needed) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# the linters that scripts/lint.sh (run by .ci/run after the tests) needs
.venv/bin/python -c "import flake8, isort, yapf" 2>/dev/null || .venv/bin/pip install -q -r requirements/lint.txt
# one compute thread per process: subprocess tests run data workers beside it on 2 cores
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
