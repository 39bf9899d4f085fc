"""OGBench's dataset files as downloaded (``cube-single-play-v0.npz``), trained under an ``ogbench:`` task.

The file holds ``observations``, ``actions``, ``terminals``, ``qpos`` and ``qvel``: one extra state per trajectory
and no rewards. ``ogbench.make_env_and_datasets`` computes a singletask task's rewards and masks when it loads the
file; lawr does the same with ogbench's own functions, ``ogbench.utils.load_dataset`` (drops each trajectory's
extra state, derives ``next_observations``) and ``ogbench.relabel_utils.relabel_dataset`` with the task's env,
and reads the result as the plain OGBench layout (``plain.py``). Needs the ogbench package (in the lock).
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from lawr_ext.data.episodes import DatasetError, Episodes
from lawr_ext.data.plain import OPTIONAL_KEYS, REQUIRED_KEYS, plain_episodes
from lawr_ext.tasks.ogbench import PREFIX, ogbench_name

#: what a downloaded file holds (and ``rewards`` it does not)
DOWNLOADED_KEYS = ("observations", "actions", "terminals", "qpos")


def is_ogbench_download(path: str | os.PathLike) -> bool:
    """A ``.npz`` in OGBench's downloaded layout: its arrays and no rewards (unreadable files: False, the plain
    reader names the problem)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return set(DOWNLOADED_KEYS) <= set(npz.files) and "rewards" not in npz.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False


def read_ogbench_download(path: str | os.PathLike, task: str | None) -> tuple[Episodes, str]:
    """(the file's episodes with the rewards and masks of ``task``'s singletask goal, a one-line note)."""
    path = Path(path)
    if task is None or not task.startswith(PREFIX):
        raise DatasetError(path, "no 'rewards': this is an OGBench file as downloaded, whose singletask rewards "
                                 f"ogbench computes at load time; train it under its task (--task {PREFIX}<dataset>-"
                                 "singletask[-taskN]-v0) and lawr relabels it with ogbench's functions")
    name = ogbench_name(task)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")  # OGBench's Box bounds
        episodes = _relabelled(path, name)
    note = (f"OGBench file as downloaded: rewards and masks of {name}'s goal computed by ogbench "
            f"(ogbench.relabel_utils.relabel_dataset), {episodes.num_episodes} trajectories")
    return episodes, note


def _relabelled(path: Path, name: str) -> Episodes:
    env = _singletask_env(path, name)
    try:
        from ogbench.relabel_utils import relabel_dataset
        from ogbench.utils import load_dataset

        for key, space in (("observations", env.observation_space), ("actions", env.action_space)):
            with np.load(path, allow_pickle=False) as npz:
                width = npz[key].shape[-1] if npz[key].ndim == 2 else None
            if width != space.shape[0]:
                raise DatasetError(path, f"'{key}' have dim {width}, OGBench's {name} has {space.shape[0]}: a file of "
                                         "another task?")
        try:
            dataset = load_dataset(str(path), add_info=True)
            relabel_dataset(env.spec.id, env, dataset)
        except (ValueError, IndexError, KeyError, OSError) as error:
            raise DatasetError(path, f"ogbench cannot relabel this file for {name} ({type(error).__name__}: "
                                     f"{error})") from None
    finally:
        env.close()
    arrays = {key: dataset[key] for key in REQUIRED_KEYS + OPTIONAL_KEYS if key in dataset}
    return plain_episodes(path, arrays, set(dataset))


def _singletask_env(path: Path, name: str):
    """OGBench's own env of ``name`` (its singletask goal is what the rewards are relabelled for)."""
    from lawr_ext.tasks.ogbench.env import headless_gl

    headless_gl()
    try:
        import ogbench
    except ImportError as error:
        raise DatasetError(path, f"relabelling an OGBench file needs the ogbench package (requirements/lock.txt, "
                                 f"installed by scripts/setup.sh): {error}") from None
    return ogbench.make_env_and_datasets(name, env_only=True)
