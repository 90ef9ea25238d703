#!/usr/bin/env bash
# Install (if needed) and run the main job on the bundled sample data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python tools/run_sample_job.py "$@"
