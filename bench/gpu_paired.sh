#!/usr/bin/env bash
# A Hermes-4-14B-shaped model (random weights, NF4) on every visible GPU: load time, footprint vs plan
# per device, single-lane tokens/s and the pair ratio (bench/gpu_paired.py). One prepared command,
# about 5 minutes on one H200 (build + save ~1-2 min, NF4 load ~1-2 min, 3×3 runs of 256 tokens).
#
# The GPU machine has no network and its own python3 (torch, transformers, accelerate, safetensors,
# tokenizers, psutil). What it lacks travels as wheels in .whl/ (git-ignored), fetched HERE first:
#   bash bench/gpu_paired.sh --wheels
# then on the device machine (carry .whl), from the repo root:
#   bash bench/gpu_paired.sh [--tokens 256] [--repeats 3]
# Figures: bench/results/gpu-<date>.json there, a copy in $OUT, and stdout's last line (JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
# Pinned like requirements.txt; the device's transformers (5.17 when last seen) is used as it is.
WHEELS=(bitsandbytes==0.50.2 pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3
        python-dotenv==1.2.4 typing-inspection==0.4.5 annotated-types==0.8.0)
if [ "${1:-}" = "--wheels" ]; then
  PIP="${PIP:-.venv/bin/pip}"
  "$PIP" download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
  du -sh .whl  # the device tool carries at most 64 MiB with the working tree
  exit 0
fi
if [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader || true
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
"$PY" -m bench.gpu_paired "$@"
