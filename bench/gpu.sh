#!/usr/bin/env bash
# One script for a GPU machine with JAX but no TensorFlow, no keras and no internet (Python 3.12):
# installs keras and the two small wheels it lacks from .whl/ (see bench/README.md), puts leukml on
# the path without its dependencies, and runs bench/gpu.py on the JAX backend.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import keras" 2>/dev/null; then
  if ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "bench/gpu.sh: no keras here and no wheels in .whl/: fetch them (bench/README.md) and carry .whl" >&2
    exit 2
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}   # leukml's core, no dependencies installed
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 bench/gpu.py "$@"
