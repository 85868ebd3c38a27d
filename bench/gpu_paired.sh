#!/usr/bin/env bash
# Paired vs single-lane speed of a Hermes-4-14B-shaped model (random weights, NF4) on a GPU machine.
#
# The GPU machine has no network and its own python3 with torch, transformers and accelerate.
# Carry what it lacks as wheels in .wheels/ (made here with
#   pip download --no-deps -d .wheels bitsandbytes==0.50.2 pydantic-settings==2.16.3 python-dotenv psutil
# ) and run from the repo root:  bash bench/gpu_paired.sh [--tokens 256] [--tiny]
# Figures go to $OUT/gpu_paired.json (or stdout's last line); commit them under bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ -d .wheels ]; then
  "$PY" -m pip install --quiet --no-index --find-links .wheels bitsandbytes pydantic-settings psutil
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
"$PY" -m bench.gpu_paired "$@"
