#!/usr/bin/env bash
# Creates (or reuses) the project's Python 3.12 venv in .venv and installs the exact lock.
# Idempotent: a stamp keyed by the lock file and pyproject skips the install when nothing changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

py="${LAWR_PYTHON:-}"
if [ -z "$py" ]; then
  for c in python3.12 "$HOME/.pyenv/versions/3.12.1/bin/python" /usr/bin/python3.12; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      py="$c"; break
    fi
  done
fi
[ -n "$py" ] || { echo "setup.sh: Isaac Lab 3.0 needs Python 3.12; none found (set LAWR_PYTHON)" >&2; exit 1; }

stamp=".venv/.lawr-installed"
want="$(cat requirements/lock.txt pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  exit 0
fi

echo "setup.sh: installing the pinned environment into .venv (first time: ~3 GB download, a few minutes)" >&2
[ -x .venv/bin/python ] || "$py" -m venv .venv
# The lock is a full `pip freeze`: --no-deps installs exactly it, no resolver surprises.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements/lock.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
# isaaclab declares many optional-in-practice dependencies (teleop, importers, UI) that the kit-less
# Newton path never imports; the lock leaves them out on purpose, so verify by importing what we use.
.venv/bin/python -c "import lawr_ext, isaaclab, isaaclab_newton, warp, newton, mujoco_warp, torch, tensordict, rsl_rl, hydra, h5py, onnxruntime"
MUJOCO_GL=disable .venv/bin/python -c "import ogbench, dm_control.mjcf"  # the OGBench tasks' envs (no display needed)
.venv/bin/python -c "import lerobot.datasets.lerobot_dataset"  # LeRobotDataset v3 in and out (docs/data.md)
mkdir -p build/warp_cache
echo "$want" > "$stamp"
