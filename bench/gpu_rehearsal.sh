#!/usr/bin/env bash
# bench/gpu.sh's dress rehearsal on a CPU machine, before any device time is spent on it: a
# Python 3.12 environment like the GPU machines' image (JAX
# 0.11.2, numpy and the other packages it holds that leukml's core imports; no TensorFlow, keras,
# mlflow or optuna), then `bench/gpu.sh --quick` exactly as a device run goes (keras, namex and
# optree from .whl/ into /tmp/site). It proves the script's imports and paths, not any speed.
# PYTHON312 names the interpreter (default: python3.12, or pyenv's 3.12); the environment is kept in
# LEUKML_REHEARSAL_ENV (default /tmp/leukml-gpu-rehearsal) for the next rehearsal.
set -euo pipefail
cd "$(dirname "$0")/.."
env_dir=${LEUKML_REHEARSAL_ENV:-/tmp/leukml-gpu-rehearsal}
if [ ! -e "$env_dir/.installed" ]; then
  python=${PYTHON312:-}
  for candidate in python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
    [ -n "$python" ] && break
    "$candidate" -V >/dev/null 2>&1 && python=$candidate
  done
  [ -n "$python" ] || { echo "no Python 3.12 found: set PYTHON312 to one" >&2; exit 2; }
  "$python" -m venv "$env_dir"
  "$env_dir/bin/python3" -m pip install -q jax==0.11.2 jaxlib==0.11.2 numpy scipy scikit-learn pillow \
    psutil tqdm pandas matplotlib h5py ml-dtypes absl-py rich packaging typing-extensions
  touch "$env_dir/.installed"
fi
if "$env_dir/bin/python3" -c "import tensorflow" 2>/dev/null; then
  echo "$env_dir holds TensorFlow: not like the GPU image; remove it and run again" >&2
  exit 2
fi
PATH="$env_dir/bin:$PATH" bash bench/gpu.sh --quick "$@"
