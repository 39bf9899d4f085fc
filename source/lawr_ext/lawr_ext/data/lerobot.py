"""LeRobotDataset v3 in and out, through the ``lerobot`` package's own ``LeRobotDataset`` (no parquet by hand).

A v3 dataset is a directory: ``meta/info.json`` (features, fps, codebase_version), ``meta/stats.json``,
``meta/tasks.parquet``, ``meta/episodes/...`` and ``data/chunk-XXX/file-YYY.parquet`` with many episodes per file.

Reading (``read_lerobot``): the observation is ``observation.state`` (or the ``observation.*`` vectors named by
``data.obs_keys``, concatenated), the action ``action`` (``data.action_key``), episodes are the runs of
``episode_index``; ``next.reward``, ``next.done`` and ``next.success`` are used where present, and a dataset
without rewards needs ``data.reward_from`` (``data/reading.py``). Cameras (``observation.images.*``) are named in
the note and not read: image observations are not supported yet. Only a local dataset is read (the Hugging Face
Hub is never contacted: a missing file is an error, not a download).

Writing (``write_lerobot``): episodes become a finalized v3 dataset with ``observation.state``, ``action`` (named by
the task's joints where it has an action spec), ``next.reward``, ``next.done`` (a step nothing is bootstrapped
after), ``next.success``, and the ``strategy`` and ``quality`` labels as extra features, at the task's fps.
Read back by lawr it gives the same episodes (``Episodes.fingerprint``); what LeRobot has no field for, the
recorded observation after a cut-off episode's last step (``Episodes.final_obs``), is not written.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from lawr_ext.data.episodes import DatasetError, Episodes, as_vectors
from lawr_ext.data.reading import Reading, resolve_rewards

INFO = Path("meta") / "info.json"
STATE, ACTION, REWARD, DONE, SUCCESS = "observation.state", "action", "next.reward", "next.done", "next.success"
LABELS = ("strategy", "quality")
CAMERA_DTYPES = ("image", "video")


def is_lerobot_dataset(path: str | os.PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / INFO).is_file()


def read_lerobot(path: str | os.PathLike, reading: Reading = Reading()) -> tuple[Episodes, str]:
    """(the episodes of the LeRobot v3 dataset at ``path``, a one-line note on how it was read)."""
    path = Path(path)
    features = _features(path)
    cameras = sorted(k for k, f in features.items() if f.get("dtype") in CAMERA_DTYPES)
    vectors = sorted(k for k in features if k not in cameras)
    obs_keys, action_key = tuple(reading.obs_keys) or (STATE,), reading.action_key or ACTION
    for key in (*obs_keys, action_key):
        if key in cameras:
            raise DatasetError(path, f"'{key}' is a camera: image observations are not supported yet (this dataset "
                                     f"has cameras {cameras}); name vector features with data.obs_keys")
        if key not in features:
            raise DatasetError(path, f"no feature '{key}' (vector features: {vectors}; cameras: {cameras}); name "
                                     "the observation with data.obs_keys=[...] and the action with data.action_key=...")
    column = reading.reward_from[len("column:"):] if (reading.reward_from or "").startswith("column:") else None
    if column is not None and column not in vectors:
        raise DatasetError(path, f"data.reward_from={reading.reward_from}: no feature '{column}' (vector features: "
                                 f"{vectors})")
    wanted = [*obs_keys, action_key, "episode_index"] + [k for k in (REWARD, DONE, SUCCESS, column, *LABELS)
                                                         if k in features and k not in obs_keys]
    table = _read_columns(path, list(dict.fromkeys(wanted)))

    episode_index = torch.as_tensor(table["episode_index"]).reshape(-1)
    if len(episode_index) == 0:
        raise DatasetError(path, "dataset is empty (no frames)")
    run_starts = torch.cat([torch.tensor([True]), episode_index[1:] != episode_index[:-1]])
    if len(set(episode_index[run_starts].tolist())) != int(run_starts.sum()):
        raise DatasetError(path, "the frames of an episode are not consecutive ('episode_index' returns to an "
                                 "earlier episode)")
    lengths = torch.diff(torch.cat([run_starts.nonzero().squeeze(1), torch.tensor([len(episode_index)])]))
    obs = torch.cat([as_vectors(path, key, table[key], "frames") for key in obs_keys], dim=1)
    actions = as_vectors(path, action_key, table[action_key], "frames")
    rewards = resolve_rewards(path, reading, lengths, rewards=table.get(REWARD), success=table.get(SUCCESS),
                              done=table.get(DONE), columns={k: table[k] for k in table if k == column},
                              reward_key=REWARD, success_key=SUCCESS, done_key=DONE)
    first = torch.cumsum(lengths, 0) - lengths
    labels = {key: torch.as_tensor(table[key]).reshape(-1)[first].long() if key in table
              else torch.full((len(lengths),), -1) for key in LABELS}
    episodes = Episodes(obs=obs, actions=actions, rewards=rewards.rewards, lengths=lengths,
                        terminated=rewards.terminated, success=rewards.success, no_bootstrap=rewards.no_bootstrap,
                        **labels)
    note = (f"LeRobot v3 dataset, {len(lengths)} episodes: observations {list(obs_keys)}, actions '{action_key}', "
            f"{rewards.note}")
    if cameras:
        note += f"; this dataset has cameras {cameras}: image observations are not supported yet, they are not read"
    return episodes, note


def write_lerobot(episodes: Episodes, out: str | os.PathLike, *, fps: float, task: str,
                  joint_names: list[str] | None = None) -> Path:
    """Write ``episodes`` as a finalized LeRobot v3 dataset in the new directory ``out`` (module docstring). It is
    built in ``<out>.partial`` and renamed when complete, so ``out`` is never a half-written dataset."""
    out = Path(out)
    if out.exists():
        raise DatasetError(out, "already exists; choose a new directory for the LeRobot dataset")
    if episodes.images is not None:
        raise DatasetError(out, "the dataset holds camera frames, which the LeRobot export does not write yet "
                                "(observation.images.*): converting would drop them")
    if abs(fps - round(fps)) > 1e-9 or round(fps) < 1:
        raise DatasetError(out, f"LeRobot datasets have an integer fps, the task runs at {fps} Hz")
    obs_dim, action_dim = episodes.obs.shape[1], episodes.actions.shape[1]
    if joint_names is not None and len(joint_names) != action_dim:
        raise DatasetError(out, f"{len(joint_names)} joint names for actions of dim {action_dim}")
    scalar = {"shape": (1,), "names": None}
    features = {STATE: {"dtype": "float32", "shape": (obs_dim,), "names": None},
                ACTION: {"dtype": "float32", "shape": (action_dim,), "names": joint_names},
                REWARD: {"dtype": "float32", **scalar}, DONE: {"dtype": "bool", **scalar},
                SUCCESS: {"dtype": "bool", **scalar}} | {label: {"dtype": "int64", **scalar} for label in LABELS}
    last = torch.zeros(episodes.num_steps, dtype=torch.bool)
    last[torch.cumsum(episodes.lengths, 0) - 1] = True
    step_episode = torch.repeat_interleave(torch.arange(episodes.num_episodes), episodes.lengths)
    done = episodes.no_bootstrap.clone() if episodes.no_bootstrap is not None else torch.zeros_like(last)
    done |= last & episodes.terminated[step_episode]
    success = (last | done) & episodes.success[step_episode]
    columns = {STATE: episodes.obs.numpy(), ACTION: episodes.actions.numpy(),
               REWARD: episodes.rewards.numpy()[:, None], DONE: done.numpy()[:, None],
               SUCCESS: success.numpy()[:, None]} | {
        label: getattr(episodes, label)[step_episode].numpy()[:, None] for label in LABELS}

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # a killed conversion's leftover
    dataset_class = _lerobot_dataset_class(out)
    from lerobot.utils.utils import SuppressProgressBars  # one bar per saved episode says nothing

    dataset = dataset_class.create(f"local/{out.name}", fps=round(fps), features=features, root=partial,
                                                 robot_type=task, use_videos=False, video_backend="pyav")
    try:
        with SuppressProgressBars():
            for start, length in zip((torch.cumsum(episodes.lengths, 0) - episodes.lengths).tolist(),
                                     episodes.lengths.tolist()):
                for row in range(start, start + length):
                    dataset.add_frame({key: values[row] for key, values in columns.items()} | {"task": task})
                dataset.save_episode()
            dataset.finalize()
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def _features(path: Path) -> dict:
    try:
        info = json.loads((path / INFO).read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(path / INFO, f"not a readable LeRobot info file ({error})") from None
    version = str(info.get("codebase_version", "?"))
    if not version.startswith("v3"):
        raise DatasetError(path, f"LeRobot dataset format {version}; lawr reads v3.x (convert it with lerobot's "
                                 "lerobot.datasets.v30.convert_dataset_v21_to_v30)")
    if not isinstance(info.get("features"), dict):
        raise DatasetError(path / INFO, "has no 'features'")
    return info["features"]


def _lerobot_dataset_class(source: object):
    # A local dataset only: with the Hub offline, an incomplete dataset is an error instead of a download.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError as error:
        raise DatasetError(source, f"LeRobot datasets need the lerobot package (requirements/lock.txt, installed by "
                                   f"scripts/setup.sh): {error}") from None
    return LeRobotDataset


def _read_columns(path: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """Whole columns of the dataset, as LeRobotDataset loads them (rows in frame order)."""
    dataset_class = _lerobot_dataset_class(path)
    try:
        dataset = dataset_class(f"local/{path.name}", root=path, video_backend="pyav", download_videos=False)
        rows = dataset.hf_dataset.select_columns(keys).with_format("numpy")[:]
    except Exception as error:  # lerobot, datasets and pyarrow raise many kinds: any is a dataset it cannot read
        raise DatasetError(path, f"not a readable LeRobot v3 dataset ({type(error).__name__}: {error})") from None
    return {key: np.asarray(rows[key]) for key in keys}
