"""The plain format for bringing your own offline data: D4RL-style flat arrays in ``.npz`` or HDF5.

Keys ``observations`` [N, O], ``actions`` [N, A] in [-1, 1], ``rewards`` [N], ``terminals`` [N],
``timeouts`` [N] (optional ``success``, ``strategy``, ``quality`` [N]); an episode ends where
``terminals | timeouts``. Full description for users: ``data/FORMAT.md``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch

from lawr_ext.data.episodes import DatasetError, Episodes, as_flags, as_float32

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
OPTIONAL_KEYS = ("success", "strategy", "quality")


def write_plain(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write the plain format as ``.npz`` (keys as documented above); a convenience for users and tests."""
    np.savez(path, **arrays)


def read_plain(path: str | os.PathLike) -> Episodes:
    path = Path(path)
    arrays = _load_arrays(path)
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise DatasetError(path, f"missing required array(s) {missing} (plain format needs {list(REQUIRED_KEYS)})")
    obs = as_float32(path, "observations", arrays["observations"])
    actions = as_float32(path, "actions", arrays["actions"])
    rewards = as_float32(path, "rewards", arrays["rewards"])
    if rewards.ndim != 1:
        raise DatasetError(path, f"'rewards' must be 1-D [N], got shape {list(rewards.shape)}")
    num_steps = len(rewards)
    if num_steps == 0:
        raise DatasetError(path, "dataset is empty (no steps)")
    flags = {key: as_flags(path, key, arrays[key]) for key in ("terminals", "timeouts", "success") if key in arrays}
    for key, value in list(flags.items()) + [("observations", obs), ("actions", actions)]:
        if len(value) != num_steps:
            raise DatasetError(path, f"'{key}' has {len(value)} rows but 'rewards' has {num_steps}")

    # Episode e covers rows (end[e-1], end[e]]; a last episode without a flag is cut off.
    ends = flags["terminals"] | flags["timeouts"]
    ends[-1] = True
    last_rows = ends.nonzero().squeeze(1)
    lengths = torch.diff(last_rows, prepend=torch.tensor([-1]))
    first_rows = last_rows - lengths + 1
    step_success = flags.get("success", torch.zeros(num_steps, dtype=torch.bool))
    episode_of_row = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    success = torch.zeros(len(lengths)).index_add_(0, episode_of_row, step_success.float()) > 0
    labels = {}
    for key in ("strategy", "quality"):
        value = torch.as_tensor(arrays[key]) if key in arrays else torch.full((num_steps,), -1)
        if value.is_floating_point() or value.shape != (num_steps,):
            raise DatasetError(path, f"'{key}' must be an integer array of shape [{num_steps}]")
        if (value != value[first_rows].repeat_interleave(lengths)).any():
            raise DatasetError(path, f"'{key}' changes within an episode")
        labels[key] = value[first_rows].long()
    episodes = Episodes(
        obs=obs,
        actions=actions,
        rewards=rewards,
        lengths=lengths,
        terminated=flags["terminals"][last_rows],
        success=success,
        strategy=labels["strategy"],
        quality=labels["quality"],
    )
    return episodes  # validated by data.dataset.load_episodes


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DatasetError(path, "file not found")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {key: npz[key] for key in npz.files}
        with h5py.File(path, "r") as file:
            return {key: file[key][()] for key in REQUIRED_KEYS + OPTIONAL_KEYS if key in file}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        problem = f"not a readable {path.suffix or 'data'} file, truncated or corrupt ({error})"
        raise DatasetError(path, problem) from None
