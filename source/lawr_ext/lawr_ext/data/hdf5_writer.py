"""Write collected episodes as crash-safe HDF5 shards in the layout ``hdf5.py`` describes and reads.

The files are written by Isaac Lab's own ``HDF5DatasetFileHandler``, so they are what Isaac Lab's tools
expect; this module imports Isaac Lab, and only collection imports this module.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
from isaaclab.utils.datasets import EpisodeData, HDF5DatasetFileHandler

from lawr_ext.utils.io import atomic_path


@dataclass
class EpisodeRecord:
    """One finished episode as the collector hands it to the writer."""

    obs: torch.Tensor  # float32 [T, O]
    actions: torch.Tensor  # float32 [T, A]
    rewards: torch.Tensor  # float32 [T]
    terminated: torch.Tensor  # bool [T]
    truncated: torch.Tensor  # bool [T]
    success: torch.Tensor  # bool [T]
    strategy: int
    quality: int
    seed: int  # seed of the env reset that started the episode
    images: torch.Tensor | None = None  # uint8 [T, cameras, H, W, 3]: image tasks' camera frames; None: none


#: gzip level of the camera frames (obs/images): level 4 of gzip after HDF5's byte shuffle (docs/data.md: size)
IMAGE_COMPRESSION = 4


class _LabeledWriter(HDF5DatasetFileHandler):
    """Isaac Lab's writer plus the file metadata and per-episode labels it has no API for."""

    def set_meta(self, meta: dict) -> None:
        self._hdf5_file_stream.attrs["lawr_meta"] = json.dumps(meta)

    def write_labeled_episode(self, record: EpisodeRecord, demo_id: int) -> None:
        episode = EpisodeData()
        episode.data = {
            "obs": {"policy": record.obs},
            "actions": record.actions,
            "rewards": record.rewards,
            "dones": record.terminated,
            "truncated": record.truncated,
            "success": record.success,
        }
        episode.success = bool(record.success.any())
        episode.seed = record.seed
        self.write_episode(episode, demo_id=demo_id)
        group = self._hdf5_data_group[f"demo_{demo_id}"]
        group.attrs["strategy"] = record.strategy
        group.attrs["quality"] = record.quality
        if record.images is not None:
            # one HDF5 chunk per frame (all cameras): a reader may fetch any frame alone; written here, not by Isaac
            # Lab's handler, which chunks as h5py guesses
            frames = record.images.cpu().numpy()
            group["obs"].create_dataset("images", data=frames, chunks=(1, *frames.shape[1:]), compression="gzip",
                                        compression_opts=IMAGE_COMPRESSION, shuffle=True)


def write_episodes(path: str | os.PathLike, records: list[EpisodeRecord], first_id: int, meta: dict) -> None:
    """Atomically write ``records`` as demos ``first_id, first_id+1, ...`` into the file ``path``."""
    with atomic_path(path) as tmp:
        # Isaac Lab's handler appends ".hdf5" to any other name, so write beside tmp and move it over.
        h5_tmp = tmp.with_name(tmp.name + ".hdf5")
        writer = _LabeledWriter()
        try:
            writer.create(str(h5_tmp), env_name=meta.get("task"))
            writer.set_meta(meta)
            for offset, record in enumerate(records):
                writer.write_labeled_episode(record, first_id + offset)
            writer.close()
            os.replace(h5_tmp, tmp)
        finally:
            writer.close()
            h5_tmp.unlink(missing_ok=True)
