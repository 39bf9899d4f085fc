"""Datasets in Isaac Lab's HDF5 layout (robomimic-compatible), written as crash-safe shards.

One file (what Isaac Lab's ``HDF5DatasetFileHandler`` writes, plus our labels)::

    /                     attrs: format_version, lawr_meta (JSON: task, obs_dim, action_dim, control_hz,
                                 chunk_horizon, action_joint_names, strategy/quality names, collection settings)
    /data                 attrs: total (steps in the file), env_args (JSON: env_name, type=2)
    /data/demo_<id>       attrs: num_samples (T), success (bool), seed, strategy (int), quality (int)
        obs/policy        float32 [T, O]  observation before each action
        obs/images        uint8 [T, cameras, H, W, 3]  image tasks only: the camera frames seen before each
                          action, in lawr_meta's "cameras" order (gzip, one HDF5 chunk per frame)
        actions           float32 [T, A]  normalized action in [-1, 1]
        rewards           float32 [T]
        dones             bool    [T]     terminated (True at most on the last step)
        truncated         bool    [T]     timed out (True at most on the last step)
        success           bool    [T]     the env's success flag after each step

A collected dataset is a *directory* of such files, ``shard_000000.hdf5``, ``shard_000001.hdf5``, ...:
HDF5 files are not crash-safe when a process dies mid-write, so every shard is written whole to a
temporary file, fsynced and renamed into place (lawr_ext.utils.io.atomic_path); a kill can only lose
the shard being written, never damage one already on disk. Demo ids are global across shards, so the
shards can be merged by copying groups. The reader takes either a directory of shards or one file
(e.g. from Isaac Lab's recorder, when it has rewards); ``dones``/``truncated``/``success`` and the
labels are optional there (an episode without a done flag counts as cut off, not terminated).

Reading is h5py alone, so training needs no Isaac Lab; collection writes the shards with Isaac Lab's own
handler (``hdf5_writer.py``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import h5py
import torch

from lawr_ext.data.episodes import DatasetError, Episodes, as_flags, as_float32

SHARD_PATTERN = re.compile(r"shard_(\d+)\.hdf5")
DEMO_PATTERN = re.compile(r"demo_(\d+)")


def shard_path(directory: str | os.PathLike, index: int) -> Path:
    return Path(directory) / f"shard_{index:06d}.hdf5"


def list_shards(directory: str | os.PathLike) -> list[Path]:
    """Shard files of a dataset directory in index order (temporary files of killed writes are ignored)."""
    shards = [p for p in Path(directory).iterdir() if SHARD_PATTERN.fullmatch(p.name)]
    return sorted(shards, key=lambda p: int(SHARD_PATTERN.fullmatch(p.name).group(1)))


def read_shard_info(path: str | os.PathLike) -> tuple[dict, int]:
    """(``lawr_meta`` of one file, {} if none; its number of episodes) without reading the episodes."""
    with open_hdf5(path) as file:
        if "data" not in file:
            raise DatasetError(path, "no 'data' group (expected Isaac Lab / robomimic layout data/demo_<i>)")
        return json.loads(file.attrs.get("lawr_meta", "{}")), len(file["data"])


def read_hdf5(path: str | os.PathLike) -> Episodes:
    """Read a shard directory or a single Isaac Lab / robomimic HDF5 file into :class:`Episodes`."""
    path = Path(path)
    if not path.is_dir():
        ids, _, episodes = _read_file(path)
        _check_unique(path, ids)
        return episodes
    shards = list_shards(path)
    if not shards:
        raise DatasetError(path, "dataset directory has no shard_*.hdf5 files (empty dataset)")
    ids, parts, shard_of_content = [], [], {}
    for shard in shards:
        shard_ids, seeds, episodes = _read_file(shard)
        if parts and episodes.meta != parts[0].meta:
            raise DatasetError(shard, f"metadata differs from {shards[0].name}; "
                                      "shards of different collections were mixed")
        content = episodes.fingerprint()  # demo ids are not part of it: a copy renumbered is the same content
        if content in shard_of_content:
            raise DatasetError(shard, f"holds the same episodes (seeds {sorted({s for s in seeds if s is not None})}) "
                                      f"as {shard_of_content[content].name} under other demo ids: a shard copied in "
                                      "twice? remove the copy")
        shard_of_content[content] = shard
        ids += shard_ids
        parts.append(episodes)
    _check_unique(path, ids)
    return Episodes.concatenate(parts)


def open_hdf5(path: Path) -> h5py.File:
    if not Path(path).is_file():
        raise DatasetError(path, "file not found")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise DatasetError(path, f"not a readable HDF5 file, truncated or corrupt ({error})") from None


def _check_unique(source: Path, ids: list[int]) -> None:
    if len(set(ids)) != len(ids):
        raise DatasetError(source, "the same demo id appears twice")


def _read_file(path: Path) -> tuple[list[int], list[int | None], Episodes]:
    with open_hdf5(path) as file:
        try:
            return _read_groups(path, file)
        except (OSError, KeyError, RuntimeError) as error:  # h5py's errors for damaged groups/chunks
            raise DatasetError(path, f"corrupt HDF5 content ({error})") from None


def demo_names(path: Path, file: h5py.File) -> list[str]:
    """The ``data/demo_<i>`` groups of an Isaac Lab / robomimic file, in demo order; anything else is refused."""
    if "data" not in file:
        raise DatasetError(path, "no 'data' group (expected Isaac Lab / robomimic layout data/demo_<i>)")
    names = list(file["data"].keys())
    for name in names:
        if not DEMO_PATTERN.fullmatch(name):
            raise DatasetError(path, f"unexpected group 'data/{name}' (expected demo_<i>)")
    return sorted(names, key=lambda name: int(DEMO_PATTERN.fullmatch(name).group(1)))


def _read_groups(path: Path, file: h5py.File) -> tuple[list[int], list[int | None], Episodes]:
    """(demo ids, the seed each episode was collected with (None: not recorded), the episodes)"""
    names = demo_names(path, file)
    columns = {key: [] for key in
               ("obs", "actions", "rewards", "lengths", "terminated", "success", "strategy", "quality", "images")}
    for name in names:
        demo = file["data"][name]
        where = f"{path}:data/{name}"
        for key in ("obs/policy", "actions", "rewards"):
            if key not in demo:
                raise DatasetError(where, f"missing '{key}'")
        obs = as_float32(where, "obs/policy", demo["obs/policy"][()])
        actions = as_float32(where, "actions", demo["actions"][()])
        rewards = as_float32(where, "rewards", demo["rewards"][()])
        if obs.ndim != 2 or actions.ndim != 2 or rewards.ndim != 1:
            raise DatasetError(where, f"expected obs/policy [T, O], actions [T, A], rewards [T], got "
                               f"{list(obs.shape)}, {list(actions.shape)}, {list(rewards.shape)}")
        widths = (obs.shape[1], actions.shape[1])
        if columns["obs"] and widths != (columns["obs"][0].shape[1], columns["actions"][0].shape[1]):
            raise DatasetError(where, f"obs/action widths {widths} differ from the first episode's")
        length = len(rewards)
        if length == 0 or len(obs) != length or len(actions) != length:
            raise DatasetError(where, f"obs/actions/rewards lengths differ or are zero "
                                      f"({len(obs)}, {len(actions)}, {length})")
        flags = {}
        for key in ("dones", "truncated", "success"):
            flags[key] = as_flags(where, key, demo[key][()]) if key in demo else torch.zeros(length, dtype=torch.bool)
            if len(flags[key]) != length:
                raise DatasetError(where, f"'{key}' has {len(flags[key])} steps, expected {length}")
        ends = flags["dones"] | flags["truncated"]
        if ends[:-1].any():
            raise DatasetError(where, "episode has a done/truncated flag before its last step")
        if columns["obs"] and ("images" in demo["obs"]) != bool(columns["images"]):
            raise DatasetError(where, "some episodes have camera frames (obs/images) and some do not")
        if "images" in demo["obs"]:
            frames = torch.from_numpy(demo["obs/images"][()])
            if frames.dtype != torch.uint8 or frames.ndim != 5 or len(frames) != length or (
                    columns["images"] and frames.shape[1:] != columns["images"][0].shape[1:]):
                raise DatasetError(where, f"obs/images must be uint8 [T={length}, cameras, H, W, 3] like the first "
                                          f"episode's, got {frames.dtype} {list(frames.shape)}")
            columns["images"].append(frames)
        columns["obs"].append(obs)
        columns["actions"].append(actions)
        columns["rewards"].append(rewards)
        columns["lengths"].append(length)
        columns["terminated"].append(bool(flags["dones"][-1]))
        columns["success"].append(bool(demo.attrs.get("success", flags["success"].any())))
        columns["strategy"].append(int(demo.attrs.get("strategy", -1)))
        columns["quality"].append(int(demo.attrs.get("quality", -1)))
    if not names:
        raise DatasetError(path, "no episodes in 'data' (empty dataset)")
    episodes = Episodes(
        obs=torch.cat(columns["obs"]),
        actions=torch.cat(columns["actions"]),
        rewards=torch.cat(columns["rewards"]),
        lengths=torch.tensor(columns["lengths"], dtype=torch.int64),
        terminated=torch.tensor(columns["terminated"]),
        success=torch.tensor(columns["success"]),
        strategy=torch.tensor(columns["strategy"], dtype=torch.int64),
        quality=torch.tensor(columns["quality"], dtype=torch.int64),
        meta=json.loads(file.attrs.get("lawr_meta", "{}")),
        images=torch.cat(columns["images"]) if columns["images"] else None,
    )
    seeds = [int(file["data"][name].attrs["seed"]) if "seed" in file["data"][name].attrs else None for name in names]
    return [int(DEMO_PATTERN.fullmatch(name).group(1)) for name in names], seeds, episodes
