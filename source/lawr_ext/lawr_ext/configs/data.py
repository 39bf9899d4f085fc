"""Where the offline dataset comes from and how its chunks are cut."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataConfig:
    path: str | None = None          # dataset (shard directory, .hdf5 or .npz); None -> collect a shard directory
                                     # <run_dir>/dataset with the settings below
    horizon: int = 50                # H: actions per chunk (50 steps = 1 s at 50 Hz)
    gamma: float = 0.99              # per-step discount; a chunk bootstraps with gamma^k (k = its valid steps)
    collect_num_envs: int = 16       # parallel envs when collecting (CPU-sized; raise on a GPU host)
    collect_num_episodes: int = 200  # scripted-expert episodes in a collected dataset

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"DataConfig.horizon: must be >= 1, got {self.horizon}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"DataConfig.gamma: must lie in (0, 1], got {self.gamma}")
        for name in ("collect_num_envs", "collect_num_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"DataConfig.{name}: must be >= 1, got {getattr(self, name)}")
