"""Isaac Lab recorder files (``record_demos.py``, mimic): robomimic's ``data/demo_<i>`` layout as Isaac Lab's
``HDF5DatasetFileHandler`` writes it, read with the keys the user names::

    /data/demo_<i>      attrs: num_samples, seed, success (optional: the demo succeeded)
        obs/<key>       [T, d] each recorded observation term
        actions         [T, A]
        next_obs/<key>  optional: the observation after each step
        rewards, success, dones   optional per-step arrays

The observation is ``obs/<key>`` for each key of ``data.obs_keys``, concatenated (default ``obs/policy``), the
action ``data.action_key`` (default ``actions``). Isaac Lab's recorders record no ``next_obs`` by default; lawr
needs none: a chunk's next observation is the next step's ``obs`` of the same demo, and a demo's last step, whose
next observation is unknown, is then never a chunk step. Where ``next_obs`` is recorded it must be the next step's
``obs`` within each demo, and the last one lets that last step be bootstrapped. Rewards: ``rewards``, else
``data.reward_from`` (``data/reading.py``). lawr's own shards (files with ``lawr_meta``) are read by ``hdf5.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import torch

from lawr_ext.data.episodes import DatasetError, Episodes, as_vectors
from lawr_ext.data.hdf5 import demo_names, open_hdf5
from lawr_ext.data.plain import NEXT_OBS_TOLERANCE
from lawr_ext.data.reading import Reading, resolve_rewards

OBS, NEXT_OBS, ACTIONS, REWARDS, SUCCESS, DONES = "obs", "next_obs", "actions", "rewards", "success", "dones"


def read_recorder(path: str | os.PathLike, reading: Reading = Reading()) -> tuple[Episodes, str]:
    """(the demos of the recorder file ``path`` as episodes, a one-line note on how it was read)."""
    path = Path(path)
    with open_hdf5(path) as file:
        try:
            return _read(path, file, reading)
        except (OSError, KeyError, RuntimeError) as error:  # h5py's errors for damaged groups/chunks
            raise DatasetError(path, f"corrupt HDF5 content ({error})") from None


def _read(path: Path, file: h5py.File, reading: Reading) -> tuple[Episodes, str]:
    names = demo_names(path, file)
    if not names:
        raise DatasetError(path, "no demos in 'data' (empty dataset)")
    obs_keys, action_key = tuple(reading.obs_keys) or ("policy",), reading.action_key or ACTIONS
    column = reading.reward_from[len("column:"):] if (reading.reward_from or "").startswith("column:") else None
    optional = [key for key in (REWARDS, SUCCESS, DONES, column) if key is not None]
    obs, actions, finals, lengths, per_step = [], [], [], [], {key: [] for key in optional}
    demo_success = []
    for name in names:
        demo, where = file["data"][name], f"{path}:data/{name}"
        recorded = sorted(demo[OBS].keys()) if isinstance(demo.get(OBS), h5py.Group) else []
        missing = [key for key in obs_keys if key not in recorded]
        if missing:
            raise DatasetError(where, f"no observation {[f'obs/{k}' for k in missing]} (recorded: "
                                      f"{[f'obs/{k}' for k in recorded]}); name them with data.obs_keys=[...]")
        if not isinstance(demo.get(action_key), h5py.Dataset):
            arrays = sorted(k for k in demo if isinstance(demo[k], h5py.Dataset))
            raise DatasetError(where, f"no action array '{action_key}' (arrays: {arrays}); name it with "
                                      "data.action_key=...")
        demo_obs = torch.cat([as_vectors(where, f"obs/{key}", demo[OBS][key][()]) for key in obs_keys], dim=1)
        demo_actions = as_vectors(where, action_key, demo[action_key][()])
        if len(demo_obs) != len(demo_actions) or len(demo_actions) == 0:
            raise DatasetError(where, f"obs and '{action_key}' have {len(demo_obs)} and {len(demo_actions)} steps")
        if obs and (demo_obs.shape[1], demo_actions.shape[1]) != (obs[0].shape[1], actions[0].shape[1]):
            raise DatasetError(where, f"observation/action dims ({demo_obs.shape[1]}, {demo_actions.shape[1]}) "
                                      f"differ from the first demo's ({obs[0].shape[1]}, {actions[0].shape[1]})")
        finals.append(_final_obs(where, demo, obs_keys, demo_obs))
        for key in optional:
            per_step[key].append(demo[key][()] if isinstance(demo.get(key), h5py.Dataset) else None)
        demo_success.append(bool(demo.attrs["success"]) if "success" in demo.attrs else None)
        obs.append(demo_obs)
        actions.append(demo_actions)
        lengths.append(len(demo_actions))
    columns = {}
    for key, values in per_step.items():
        present = [v is not None for v in values]
        if any(present) and not all(present):
            raise DatasetError(path, f"only some demos have '{key}' (first without: data/{names[present.index(False)]})")
        if all(present):
            columns[key] = torch.cat([_steps(path, key, v, n) for v, n in zip(values, lengths)])
    lengths = torch.tensor(lengths, dtype=torch.int64)
    rewards = resolve_rewards(
        path, reading, lengths, rewards=columns.get(REWARDS), success=columns.get(SUCCESS), done=columns.get(DONES),
        columns={column: columns[column]} if column in columns else {}, reward_key=REWARDS, success_key=SUCCESS,
        done_key=DONES, episode_success=torch.tensor(demo_success) if None not in demo_success else None)
    has_next = all(final is not None for final in finals)
    episodes = Episodes(obs=torch.cat(obs), actions=torch.cat(actions), rewards=rewards.rewards, lengths=lengths,
                        terminated=rewards.terminated, success=rewards.success,
                        strategy=torch.tensor([int(file["data"][n].attrs.get("strategy", -1)) for n in names]),
                        quality=torch.tensor([int(file["data"][n].attrs.get("quality", -1)) for n in names]),
                        final_obs=torch.stack(finals) if has_next else None, no_bootstrap=rewards.no_bootstrap)
    note = (f"Isaac Lab recorder file, {len(names)} demos: observations {[f'obs/{k}' for k in obs_keys]}, actions "
            f"'{action_key}', {rewards.note}, next observations "
            f"{'from next_obs' if has_next else 'the next step of each demo'}")
    return episodes, note


def _final_obs(where: str, demo: h5py.Group, obs_keys: tuple[str, ...], obs: torch.Tensor) -> torch.Tensor | None:
    """The recorded observation after the demo's last step (None: no ``next_obs``), once ``next_obs`` is checked to
    be the next step's ``obs`` inside the demo."""
    group = demo.get(NEXT_OBS)
    if not isinstance(group, h5py.Group) or any(key not in group for key in obs_keys):
        return None
    next_obs = torch.cat([as_vectors(where, f"next_obs/{key}", group[key][()]) for key in obs_keys], dim=1)
    if next_obs.shape != obs.shape:
        raise DatasetError(where, f"'next_obs' has shape {list(next_obs.shape)}, 'obs' {list(obs.shape)}")
    allowed = NEXT_OBS_TOLERANCE["atol"] + NEXT_OBS_TOLERANCE["rtol"] * obs[1:].abs()
    differ = ((next_obs[:-1] - obs[1:]).abs() > allowed).any(dim=1)
    if differ.any():
        raise DatasetError(where, f"'next_obs' is not the next step's 'obs' (first at step {int(differ.nonzero()[0])}): "
                                  "fix it or leave 'next_obs' out")
    return next_obs[-1]


def _steps(path: Path, key: str, values, length: int) -> torch.Tensor:
    tensor = torch.as_tensor(values)
    if len(tensor) != length:
        raise DatasetError(path, f"'{key}' has {len(tensor)} steps in a demo of {length}")
    return tensor
