#!/usr/bin/env bash
# Distributed training with torchrun (mmengine's `pytorch` launcher, DDP):
#   bash tools/dist_train.sh CONFIG GPUS [train.py options...]
# Several nodes: NNODES=2 NODE_RANK=0|1 MASTER_ADDR=host PORT=29500 on each node.
# On CPUs (no GPU) set the config's env_cfg.dist_cfg.backend to 'gloo', e.g.
#   bash tools/dist_train.sh CONFIG 2 --cfg-options env_cfg.dist_cfg.backend=gloo
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG GPUS [tools/train.py options...]" >&2
  exit 2
fi
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$ROOT/tools/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
