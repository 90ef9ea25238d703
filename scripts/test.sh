#!/usr/bin/env bash
# Install (if needed) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# one compute thread per process: subprocess tests run data workers beside it on 2 cores
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m pytest tests -q -p no:cacheprovider "$@"
