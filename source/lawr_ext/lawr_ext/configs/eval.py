"""Evaluation config: how a ChunkPolicy is rolled out in the vectorized env and how chunks are executed."""

from __future__ import annotations

from dataclasses import dataclass

from lawr_ext.configs.checks import check_device


@dataclass
class EvalConfig:
    task: str = "Bimanual-Chunk"     # registered task id
    num_envs: int = 8                # parallel envs (CPU default small; 4096 on a GPU host)
    num_episodes: int = 16           # episodes in total, spread evenly over the envs
    device: str = "cpu"              # device of the env and the policy
    seed: int = 0                    # env seed and torch seed (stochastic policies draw from torch's RNG)
    exec_horizon: int = 8            # steps of each predicted chunk executed before replanning (1..H)
    temporal_ensemble: bool = False  # ACT-style: average every still-valid chunk prediction for the current step
    ensemble_decay: float = 0.01     # m in the ensembling weight exp(-m*i), i = 0 for the oldest prediction
    strategy_key: str = "strategy"   # extras key with the strategy an episode followed (breakdown if present)
    progress: bool = True            # show a progress bar over finished episodes

    def __post_init__(self) -> None:
        check_device(self.device, "EvalConfig.device")
        # exec_horizon <= H is checked by the rollout, which knows the policy's H
        for name in ("num_envs", "num_episodes", "exec_horizon"):
            if getattr(self, name) < 1:
                raise ValueError(f"EvalConfig.{name}: must be >= 1, got {getattr(self, name)}")
        if self.ensemble_decay < 0:
            raise ValueError(f"EvalConfig.ensemble_decay: must be >= 0, got {self.ensemble_decay}")
