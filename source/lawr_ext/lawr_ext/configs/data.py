"""Where the offline dataset comes from and how its chunks are cut."""

from __future__ import annotations

from dataclasses import dataclass


#: data.reward_from's conventions for data without rewards (besides "column:<name>")
REWARD_FROM = ("success", "last_frame")


def check_mix(owner: str, name: str, mix) -> None:
    """A probability mix (expert qualities, strategies): non-negative weights with a positive sum."""
    if mix is not None and (not mix or min(mix) < 0 or sum(mix) <= 0):
        raise ValueError(f"{owner}.{name}: needs non-negative weights with a positive sum, got {list(mix)}")


@dataclass
class DataConfig:
    path: str | None = None          # dataset (shard directory, .hdf5 or .npz); None -> collect a shard directory
                                     # <run_dir>/dataset with the settings below
    horizon: int = 50                # H: actions per chunk (50 steps = 1 s at 50 Hz)
    gamma: float = 0.99              # per-step discount; a chunk bootstraps with gamma^k (k = its valid steps)
    # Per-dimension action coordinates every learner trains in (modules/normalizer.py): "min_max" maps the data's
    # range of each action onto [-1, 1] (the env's actions are scaled to the joint limits, where the arms' data
    # spans a tenth of the grippers'); "mean_std" gives each dimension zero mean and unit variance, the scale of
    # the flow's N(0, I) prior (a few extreme commands no longer squeeze the bulk of a dimension; LeRobot's
    # MEAN_STD); "none" trains on the env's actions as they are.
    action_normalization: str = "min_max"
    # The numbers a learner sees per chunk (modules/chunk_basis.py): "steps" the H actions themselves; "dct" the
    # first chunk_coeffs cosines of each action dimension (K of H), decoded to H steps inside every policy. Every
    # learner (flow, critics, planner latent, baselines) then works on K x A numbers instead of H x A.
    chunk_basis: str = "steps"
    chunk_coeffs: int = 10           # K for chunk_basis=dct (ignored for "steps")
    # Reading datasets recorded elsewhere (docs/data.md): LeRobot v3 and Isaac Lab recorder files. obs_keys: the
    # observation vectors, concatenated in this order (LeRobot: observation.state; recorder: obs/policy, when
    # empty); action_key: LeRobot "action", recorder "actions" when None; reward_from, for data without rewards:
    # "success" (1 where the step's success flag is set), "last_frame" (1 on each episode's last frame) or
    # "column:<name>" (a reward column of the dataset); None: the dataset's own rewards.
    obs_keys: tuple[str, ...] = ()
    action_key: str | None = None
    reward_from: str | None = None
    # Train on some of the episodes only, by the labels the dataset records (collected data: quality 0 clean,
    # 1 noisy, 2 suboptimal; strategy 0..3); empty: every episode. E.g. keep_qualities=[0] keep_strategies=[0]:
    # one expert's clean demonstrations, the data of a unimodal imitation baseline.
    keep_qualities: tuple[int, ...] = ()
    keep_strategies: tuple[int, ...] = ()
    collect_num_envs: int = 16       # parallel envs when collecting (CPU-sized; raise on a GPU host)
    collect_num_episodes: int = 200  # scripted-expert episodes in a collected dataset
    # Probability of each expert quality (clean, noisy, suboptimal) in a collected dataset. More suboptimal
    # episodes make behaviour cloning's failures visible: with (0.25, 0.25, 0.5) the data succeed 64% of the time
    # and L-AWR's interval clears flow BC's (README "Measured results").
    collect_quality_mix: tuple[float, ...] = (0.5, 0.3, 0.2)

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"DataConfig.horizon: must be >= 1, got {self.horizon}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"DataConfig.gamma: must lie in (0, 1], got {self.gamma}")
        if self.action_normalization not in ("min_max", "mean_std", "none"):
            raise ValueError(f"DataConfig.action_normalization: expected 'min_max', 'mean_std' or 'none', "
                             f"got {self.action_normalization!r}")
        if self.chunk_basis not in ("steps", "dct"):
            raise ValueError(f"DataConfig.chunk_basis: expected 'steps' or 'dct', got {self.chunk_basis!r}")
        if self.chunk_basis == "dct" and not 1 <= self.chunk_coeffs <= self.horizon:
            raise ValueError(f"DataConfig.chunk_coeffs: must lie in [1, horizon={self.horizon}] for chunk_basis=dct, "
                             f"got {self.chunk_coeffs}")
        if self.reward_from is not None and self.reward_from not in REWARD_FROM \
                and not (self.reward_from.startswith("column:") and len(self.reward_from) > len("column:")):
            raise ValueError(f"DataConfig.reward_from: expected one of {REWARD_FROM} or 'column:<name>', "
                             f"got {self.reward_from!r}")
        for name in ("keep_qualities", "keep_strategies"):
            if any(label < 0 for label in getattr(self, name)):
                raise ValueError(f"DataConfig.{name}: labels are >= 0, got {list(getattr(self, name))}")
        for name in ("collect_num_envs", "collect_num_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"DataConfig.{name}: must be >= 1, got {getattr(self, name)}")
        check_mix("DataConfig", "collect_quality_mix", tuple(self.collect_quality_mix))
