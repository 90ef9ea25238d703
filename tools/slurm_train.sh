#!/usr/bin/env bash
# Training on a Slurm cluster (mmengine's `slurm` launcher, DDP over NCCL, one task per GPU):
#   GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py options...]
# Environment: GPUS (total, default 8), GPUS_PER_NODE (default min(GPUS, 8)), CPUS_PER_TASK (default 5),
# SRUN_ARGS (extra srun options, e.g. "--quotatype=auto"), PYTHON (default python).
# e.g. GPUS=16 bash tools/slurm_train.sh dev beit-pt configs/beit/beit_beit-base-p16_8xb256-amp-coslr-300e_in1k.py
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 PARTITION JOB_NAME CONFIG [WORK_DIR] [tools/train.py options...]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=${4:-}
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(( GPUS < 8 ? GPUS : 8 ))}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
EXTRA=("${@:5}")
if [ -n "$WORK_DIR" ]; then
  case "$WORK_DIR" in
    -*) EXTRA=("${@:4}") ;;  # no WORK_DIR given: the 4th argument is already an option
    *) EXTRA=(--work-dir "$WORK_DIR" "${@:5}") ;;
  esac
fi

# shellcheck disable=SC2086
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" --launcher slurm "${EXTRA[@]}"
