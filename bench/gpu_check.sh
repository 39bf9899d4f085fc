#!/usr/bin/env bash
# One GPU visit (docs/gpu.md "GPU check"): bench/gpu_check.py with the offline path's packages on the path.
#
#     bash bench/gpu_check.sh OUT_DIR [--device cpu] [gpu_check.py options] [hydra overrides]
#     PYTHON=/path/to/python bash bench/gpu_check.sh OUT_DIR    # the interpreter with torch (default python3)
#
# The GPU host has torch, numpy, h5py, onnxruntime, tqdm and tensorboard; the rest (tensordict, hydra,
# omegaconf, rsl_rl, ...) travel as wheels in .whl/ (bench/fetch_gpu_wheels.sh) and are installed into
# /tmp when missing. lawr itself is not installed there: source/lawr_ext goes on PYTHONPATH.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bash bench/gpu_check.sh OUT_DIR [--device cpu] [options]" >&2; exit 2; }
out=$(realpath -m "$1"); shift
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c "import tensordict, hydra, omegaconf, yaml, rsl_rl" 2>/dev/null; then
    ls .whl/*.whl >/dev/null 2>&1 || { echo "gpu_check: packages missing and no .whl/ (run bench/fetch_gpu_wheels.sh, carry .whl)" >&2; exit 1; }
    site=${TMPDIR:-/tmp}/lawr-gpu-site
    if "$PY" -m pip --version >/dev/null 2>&1; then
        PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q --no-index --no-deps --no-compile \
            --disable-pip-version-check --upgrade --target "$site" .whl/*.whl
    else  # no pip: a wheel is a zip archive laid out as site-packages
        for wheel in .whl/*.whl; do "$PY" -m zipfile -e "$wheel" "$site"; done
    fi
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/source/lawr_ext${PYTHONPATH:+:$PYTHONPATH}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # the GPU does the work; CPU threads only contend
exec "$PY" bench/gpu_check.py --out "$out" "$@"
