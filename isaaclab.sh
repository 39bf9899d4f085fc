#!/usr/bin/env bash
# Isaac Lab's launcher convention inside this repo: `./isaaclab.sh -p scripts/train_lawr.py --task Bimanual-Chunk`.
# Sets up the pinned venv if needed, then hands every argument to Isaac Lab 3.0's own CLI (`isaaclab -p ...`),
# exactly as ./isaaclab.sh does in an Isaac Lab checkout. In such a checkout, use its isaaclab.sh instead after
# `./isaaclab.sh -p -m pip install -e /path/to/lawr`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$root/scripts/setup.sh"
exec "$root/.venv/bin/isaaclab" "$@"
