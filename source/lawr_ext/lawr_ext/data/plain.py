"""The plain format for bringing your own offline data: D4RL-style or OGBench-style flat arrays in ``.npz`` or HDF5.

Keys ``observations`` [N, O], ``actions`` [N, A] in [-1, 1], ``rewards`` [N], ``terminals`` [N] and either
``timeouts`` [N] (D4RL) or ``masks`` [N] (OGBench); optional ``next_observations`` [N, O], ``success``,
``strategy``, ``quality`` [N]. Flags may be bool, 0/1 integers or 0./1. floats. Two conventions, told apart by
``masks``:

* D4RL (no ``masks``): an episode ends where ``terminals | timeouts``; ``terminals`` marks a terminal state
  (nothing is bootstrapped after it), ``timeouts`` a cut-off.
* OGBench (``masks`` present): ``terminals`` (and ``timeouts``, if there) mark where a *trajectory* ends, not a
  terminal state; ``masks == 0`` marks a transition whose next state must not be bootstrapped, also in the
  middle of a trajectory (a success in singletask data). ``success`` defaults to ``masks == 0`` (OGBench's
  singletask masks are 1 - success).

With ``next_observations`` the last step of a cut-off episode is bootstrapped from it, and a row whose
``next_observations`` differs from the next row's ``observations`` by more than ``NEXT_OBS_TOLERANCE`` ends an
episode there even without a flag (D4RL files whose flags miss a reset); where most rows differ, the array is not
the next state at all and the file is refused. Flags that contradict each other under the convention used
(``timeouts = 1`` with ``masks = 0``; ``terminals`` with all-ones ``masks``) are read as documented above, with a
one-line ``DatasetWarning`` that says so. ``qpos``, ``qvel`` and ``infos`` are ignored. Full description for
users: ``docs/data.md``.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch

from lawr_ext.data.episodes import DatasetError, DatasetWarning, Episodes, as_flags, as_float32

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
END_KEYS = ("timeouts", "masks")  # one of them: D4RL's cut-offs or OGBench's bootstrap masks
OPTIONAL_KEYS = ("timeouts", "masks", "next_observations", "success", "strategy", "quality")
#: next_observations[t] is the same state as observations[t+1] within |difference| <= atol + rtol * |observation|:
#: float round-off of a copy is not a reset.
NEXT_OBS_TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}


def write_plain(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write the plain format as ``.npz`` (keys as documented above); a convenience for users and tests."""
    np.savez(path, **arrays)


def read_plain(path: str | os.PathLike) -> Episodes:
    path = Path(path)
    return plain_episodes(path, *_load_arrays(path))


def plain_episodes(path: Path, arrays: dict[str, np.ndarray], names: set[str]) -> Episodes:
    """The episodes of plain-format ``arrays`` read from ``path`` (``names``: every array the file holds)."""
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if "rewards" in missing and "qpos" in names:
        raise DatasetError(path, "no 'rewards': this looks like an OGBench file as downloaded, whose singletask "
                                 "rewards ogbench computes at load time; train it under its task, e.g. --task "
                                 "ogbench:cube-single-play-singletask-v0, and lawr relabels it as ogbench does")
    if missing or not any(key in arrays for key in END_KEYS):
        raise DatasetError(path, f"missing required array(s) {missing or ['timeouts or masks']} (plain format needs "
                                 f"{list(REQUIRED_KEYS)} and 'timeouts' (D4RL) or 'masks' (OGBench))")
    obs = as_float32(path, "observations", arrays["observations"])
    actions = as_float32(path, "actions", arrays["actions"])
    rewards = as_float32(path, "rewards", arrays["rewards"])
    if rewards.ndim != 1:
        raise DatasetError(path, f"'rewards' must be 1-D [N], got shape {list(rewards.shape)}")
    num_steps = len(rewards)
    if num_steps == 0:
        raise DatasetError(path, "dataset is empty (no steps)")
    flags = {key: as_flags(path, key, arrays[key])
             for key in ("terminals", "timeouts", "masks", "success") if key in arrays}
    next_obs = as_float32(path, "next_observations", arrays["next_observations"]) \
        if "next_observations" in arrays else None
    for key, value in list(flags.items()) + [("observations", obs), ("actions", actions),
                                             ("next_observations", next_obs)]:
        if value is not None and len(value) != num_steps:
            raise DatasetError(path, f"'{key}' has {len(value)} rows but 'rewards' has {num_steps}")
    if next_obs is not None and next_obs.shape != obs.shape:
        raise DatasetError(path, f"'next_observations' has shape {list(next_obs.shape)}, 'observations' "
                                 f"{list(obs.shape)}")

    ogbench = "masks" in flags
    no_bootstrap = ~flags["masks"] if ogbench else None
    if ogbench:
        _note_conflicting_flags(path, flags)
    # Episode e covers rows (end[e-1], end[e]]; a last episode without a flag is cut off.
    ends = flags["terminals"] | flags.get("timeouts", torch.zeros_like(flags["terminals"]))
    if next_obs is not None:  # a recorded next state that is not the next row's state: a reset happened there
        ends[:-1] |= _resets_in_next_observations(path, obs, next_obs, ends)
    ends[-1] = True
    last_rows = ends.nonzero().squeeze(1)
    lengths = torch.diff(last_rows, prepend=torch.tensor([-1]))
    first_rows = last_rows - lengths + 1
    # D4RL: 'terminals' is a terminal state. OGBench: a trajectory end; its terminal states are masks == 0.
    terminated = no_bootstrap[last_rows] if ogbench else flags["terminals"][last_rows]
    step_success = flags.get("success", no_bootstrap if ogbench else torch.zeros(num_steps, dtype=torch.bool))
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
        terminated=terminated,
        success=success,
        strategy=labels["strategy"],
        quality=labels["quality"],
        final_obs=next_obs[last_rows] if next_obs is not None else None,
        no_bootstrap=no_bootstrap,
    )
    return episodes  # validated by data.dataset.load_episodes


def _note_conflicting_flags(path: Path, flags: dict[str, torch.Tensor]) -> None:
    """Say which convention reads flags that contradict each other (OGBench's, as ``masks`` is present)."""
    cut_but_terminal = flags.get("timeouts", torch.zeros_like(flags["masks"])) & ~flags["masks"]
    if cut_but_terminal.any():
        warnings.warn(DatasetWarning(path, f"{int(cut_but_terminal.sum())} rows have timeouts = 1 and masks = 0 (first: "
                                           f"row {int(cut_but_terminal.nonzero()[0])}): read with OGBench's convention "
                                           "(masks present), masks = 0 decides: nothing is bootstrapped after them"))
    if flags["masks"].all() and flags["terminals"].any():
        warnings.warn(DatasetWarning(path, f"'masks' are all 1 and there are {int(flags['terminals'].sum())} "
                                           "'terminals': read with OGBench's convention (masks present), terminals "
                                           "mark trajectory ends and every step is bootstrapped, also after them; for "
                                           "D4RL's (terminals are terminal states) leave 'masks' out"))


def _resets_in_next_observations(path: Path, obs: torch.Tensor, next_obs: torch.Tensor,
                                 ends: torch.Tensor) -> torch.Tensor:
    """bool [N-1]: rows whose ``next_observations`` is not the next row's observation (within NEXT_OBS_TOLERANCE);
    refused when that is so at most rows that no flag ends, where it cannot be a missed reset."""
    difference = (next_obs[:-1] - obs[1:]).abs()
    allowed = NEXT_OBS_TOLERANCE["atol"] + NEXT_OBS_TOLERANCE["rtol"] * obs[1:].abs()
    resets = (difference > allowed).any(dim=1)
    unflagged = ~ends[:-1]
    if unflagged.any() and (resets & unflagged).sum() > unflagged.sum() / 2:
        raise DatasetError(path, f"'next_observations' differ from the next row's 'observations' at "
                                 f"{int((resets & unflagged).sum())} of {int(unflagged.sum())} rows inside episodes "
                                 f"(by up to {difference.max().item():.3g}; tolerance {NEXT_OBS_TOLERANCE['atol']:g} "
                                 f"+ {NEXT_OBS_TOLERANCE['rtol']:g} * |observation|): they are not the next states "
                                 "of these rows; fix them or leave 'next_observations' out")
    return resets


def _load_arrays(path: Path) -> tuple[dict[str, np.ndarray], set[str]]:
    """The arrays lawr reads (others, e.g. OGBench's qpos/qvel, are not loaded) and the names of all of them."""
    if not path.is_file():
        raise DatasetError(path, "file not found")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                names = set(npz.files)
                return {key: npz[key] for key in REQUIRED_KEYS + OPTIONAL_KEYS if key in names}, names
        with h5py.File(path, "r") as file:
            names = {key for key in file if isinstance(file[key], h5py.Dataset)}
            return {key: file[key][()] for key in REQUIRED_KEYS + OPTIONAL_KEYS if key in names}, names
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        problem = f"not a readable {path.suffix or 'data'} file, truncated or corrupt ({error})"
        raise DatasetError(path, problem) from None
