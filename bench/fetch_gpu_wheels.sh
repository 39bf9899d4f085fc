#!/usr/bin/env bash
# Download the wheels bench/gpu_check.sh installs on the GPU host into .whl/ (git-ignored; name it in the
# device tool's `carry`). The host has torch, numpy, h5py, onnxruntime, tqdm and tensorboard but no network;
# lawr's offline path (lawr_ext.{configs,data,algorithms,runners}) also imports tensordict, hydra/omegaconf
# and rsl_rl (EmpiricalNormalization). Every version is the one pinned in requirements/lock.txt.
#
#     bash bench/fetch_gpu_wheels.sh            # PYTHON=... to choose the interpreter whose pip downloads
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DEST=.whl
# name -> why the offline path needs it
PACKAGES=(
    tensordict              # batches (data/, algorithms/)
    cloudpickle pyvers      # tensordict's own requirements
    hydra-core omegaconf    # configs/train.py: the yaml presets, profiles and recipes
    antlr4-python3-runtime  # hydra/omegaconf's override grammar
    PyYAML                  # omegaconf reads the yaml presets (compiled: the cp312 wheel)
    packaging               # hydra imports it (the host's tensorboard usually brings it; pinned here anyway)
    rsl-rl-lib              # modules/normalizer.py: EmpiricalNormalization (its git/onnx extras are not imported)
)

pinned() {  # the lock's version of package $1 (pip names compare case- and -/_-insensitively)
    local want
    want=$(echo "$1" | tr 'A-Z_' 'a-z-')
    awk -F'==' -v want="$want" '{ name = tolower($1); gsub("_", "-", name) } name == want { print $2 }' \
        requirements/lock.txt
}

mkdir -p "$DEST"
rm -f "$DEST"/*.whl  # a wheel of an older pin would travel too and clash at install
for name in "${PACKAGES[@]}"; do
    version=$(pinned "$name")
    [ -n "$version" ] || { echo "fetch_gpu_wheels: $name is not in requirements/lock.txt" >&2; exit 1; }
    if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 -d "$DEST" "$name==$version"; then
        # antlr4-python3-runtime 4.9.3 is published as an sdist only: build its (pure-python) wheel here
        echo "fetch_gpu_wheels: no wheel of $name==$version on the index; building it from the sdist"
        "$PY" -m pip wheel -q --no-deps -w "$DEST" "$name==$version"
    fi
done

ls -l "$DEST"/*.whl
echo "total: $(du -cb "$DEST"/*.whl | tail -1 | cut -f1 | awk '{ printf "%.2f MiB", $1 / 1048576 }') in $(ls "$DEST"/*.whl | wc -l) wheels (the device tool carries 64 MiB in all)"
