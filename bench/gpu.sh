#!/usr/bin/env bash
# GPU benchmark: W3 (ResNet-50 shape) and W2G (MiniLM shape), random weights, fp16, on CUDA.
#   bash bench/gpu.sh                 # on the lent GPU machine; results in bench/results/
#   bash bench/gpu.sh --tiny          # tiny models on CPU: an import and wiring check
#   bash bench/gpu.sh --run modelserve:w2g:workers=4:c=256   # one configuration
# Options go to `python -m bench.gpu` (see --help). A GPU machine without modelserve's
# dependencies gets them from wheels carried in .whl/ (bench/README.md says which).
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch, modelserve' 2>/dev/null; then
    PY=.venv/bin/python
  else
    PY=python3
  fi
fi

if ! "$PY" -c 'import fastapi, uvicorn, pydantic_settings, orjson, httptools, typer' 2>/dev/null; then
  if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/bench-site .whl/*.whl
    export PYTHONPATH="/tmp/bench-site${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="/tmp/bench-site/bin:$PATH"  # py-spy, when its wheel is carried
  else
    echo "gpu.sh: modelserve's dependencies are missing and there is no .whl/ folder" >&2
    exit 2
  fi
fi

# wrk: a carried copy (.whl/wrk/wrk, a wrapper with its own libraries) when the machine has none.
if ! command -v wrk >/dev/null && [ -x .whl/wrk/wrk ]; then
  export PATH="$PWD/.whl/wrk:$PATH"
fi

# The repo (bench) and src/ (modelserve, when it is not installed) are importable everywhere,
# including in the server processes the harness starts.
export PYTHONPATH="$PWD:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
exec "$PY" -m bench.gpu "$@"
