"""Whole episodes in memory: the one representation every on-disk format is read into.

Steps of all episodes are concatenated; episode ``e`` owns rows ``starts[e] : starts[e] + lengths[e]``.
Row ``t`` holds the observation seen at step t, the action taken there and the reward it earned.

Two optional fields carry what OGBench / D4RL files record and Isaac Lab's auto-reset loses:
``final_obs[e]``, the observation after episode e's last step (so a cut-off episode's last step can still be
bootstrapped), and ``no_bootstrap``, transitions after which nothing is bootstrapped *inside* an episode
(OGBench's ``masks == 0``: a success in singletask data, with the recorded trajectory going on after it).
An image task's data also holds ``images``, the camera frames of every step, as uint8.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from lawr_ext.utils.cli import OneLineWarning


class DatasetError(ValueError):
    """A dataset file that cannot be used; the message is one line naming the file and the problem."""

    def __init__(self, source: object, problem: str):
        super().__init__(f"{source}: {' '.join(str(problem).split())}")


class DatasetWarning(OneLineWarning):
    """A dataset that is read, but not as its flags alone would say (the convention used is named)."""

    def __init__(self, source: object, note: str):
        super().__init__(f"{source}: {' '.join(str(note).split())}")


@dataclass
class Episodes:
    obs: torch.Tensor  # float32 [N, O]  observation at each step
    actions: torch.Tensor  # float32 [N, A]  normalized action taken at each step, in [-1, 1]
    rewards: torch.Tensor  # float32 [N]     reward earned by that action
    lengths: torch.Tensor  # int64 [E]       steps per episode (>= 1)
    terminated: torch.Tensor  # bool [E]     ended by termination; False = timed out / cut off (last next-obs unknown)
    success: torch.Tensor  # bool [E]
    strategy: torch.Tensor  # int64 [E]      scripted-expert strategy id, -1 if unknown
    quality: torch.Tensor  # int64 [E]       expert quality label, -1 if unknown
    meta: dict = field(default_factory=dict)  # env/task metadata stored with the dataset (task, action_dim, ...)
    final_obs: torch.Tensor | None = None  # float32 [E, O] observation after each episode's last step; None: unknown
    no_bootstrap: torch.Tensor | None = None  # bool [N] transitions whose next state must not be bootstrapped
    # uint8 [N, cameras, H, W, 3] camera frames seen at each step (image tasks' collected data; meta["cameras"]
    # names them in this order); None: a state-only dataset
    images: torch.Tensor | None = None

    @property
    def starts(self) -> torch.Tensor:
        return torch.cumsum(self.lengths, 0) - self.lengths

    @property
    def num_episodes(self) -> int:
        return len(self.lengths)

    @property
    def num_steps(self) -> int:
        return len(self.rewards)

    def select(self, keep: torch.Tensor) -> Episodes:
        """The episodes where ``keep`` (bool [E]) is True, in order, with the same metadata."""
        keep = torch.as_tensor(keep, dtype=torch.bool)
        if keep.shape != (self.num_episodes,):
            raise ValueError(f"Episodes.select: keep has shape {tuple(keep.shape)}, expected ({self.num_episodes},)")
        step_episode = torch.repeat_interleave(torch.arange(self.num_episodes), self.lengths)
        rows = keep[step_episode]
        return Episodes(obs=self.obs[rows], actions=self.actions[rows], rewards=self.rewards[rows],
                        lengths=self.lengths[keep], terminated=self.terminated[keep], success=self.success[keep],
                        strategy=self.strategy[keep], quality=self.quality[keep], meta=dict(self.meta),
                        final_obs=None if self.final_obs is None else self.final_obs[keep],
                        no_bootstrap=None if self.no_bootstrap is None else self.no_bootstrap[rows],
                        images=None if self.images is None else self.images[rows])

    def keep_labelled(self, source: object, qualities: tuple[int, ...] = (), strategies: tuple[int, ...] = ()
                      ) -> Episodes:
        """The episodes whose quality is one of ``qualities`` and whose strategy is one of ``strategies`` (an
        empty tuple keeps every label); refuses in one line a selection that keeps nothing."""
        keep = torch.ones(self.num_episodes, dtype=torch.bool)
        for name, labels, column in (("quality", qualities, self.quality), ("strategy", strategies, self.strategy)):
            if labels:
                keep &= torch.isin(column, torch.tensor(list(labels), dtype=column.dtype))
        if not keep.any():
            raise DatasetError(source, f"no episode has quality in {list(qualities) or 'any'} and strategy in "
                                       f"{list(strategies) or 'any'} (data.keep_qualities, data.keep_strategies)")
        return self if keep.all() else self.select(keep)

    @staticmethod
    def concatenate(parts: list[Episodes], meta: dict | None = None) -> Episodes:
        def cat(name: str) -> torch.Tensor:
            return torch.cat([getattr(p, name) for p in parts])

        names = ("obs", "actions", "rewards", "lengths", "terminated", "success", "strategy", "quality")
        optional = {}
        for name in ("final_obs", "no_bootstrap", "images"):
            present = [getattr(p, name) is not None for p in parts]
            if any(present) and not all(present):
                raise ValueError(f"Episodes.concatenate: only some parts carry {name!r}")
            optional[name] = cat(name) if parts and all(present) else None
        return Episodes(**{name: cat(name) for name in names}, **optional,
                        meta=dict(meta or (parts[0].meta if parts else {})))

    def fingerprint(self, num_episodes: int | None = None) -> str:
        """SHA-256 of the content of the first ``num_episodes`` episodes (default all): every array, its dtype and
        shape. One pass over the data (~20 ms for 16 MB); a dataset grown by appending episodes keeps its old
        fingerprint as the fingerprint of its first episodes, which is how a resume tells "grown" from "other"."""
        num_episodes = self.num_episodes if num_episodes is None else num_episodes
        num_steps = int(self.lengths[:num_episodes].sum())
        digest = hashlib.sha256()
        for name, rows in (("obs", num_steps), ("actions", num_steps), ("rewards", num_steps),
                           ("lengths", num_episodes), ("terminated", num_episodes), ("success", num_episodes),
                           ("strategy", num_episodes), ("quality", num_episodes)):
            array = np.ascontiguousarray(getattr(self, name)[:rows].numpy())
            digest.update(f"{name}:{array.dtype}:{array.shape};".encode())
            digest.update(array.data)
        if self.images is not None:  # a state-only dataset's fingerprint is what it always was
            array = np.ascontiguousarray(self.images[:num_steps].numpy())
            digest.update(f"images:{array.dtype}:{array.shape};".encode())
            digest.update(array.data)
        return digest.hexdigest()

    def check_dims(self, source: object, obs_dim: int | None, action_dim: int | None, expected_by: str) -> None:
        """Raise :class:`DatasetError` (naming the field and both values) unless observations and actions have
        the dims ``expected_by`` ("the config", "task 'X'") expects; None: anything."""
        for name, expected, actual in (("observations", obs_dim, self.obs.shape[-1]),
                                       ("actions", action_dim, self.actions.shape[-1])):
            if expected is not None and expected != actual:
                raise DatasetError(source, f"'{name}' have dim {actual}, {expected_by} expects {expected}")

    def validate(self, source: object) -> None:
        """Raise :class:`DatasetError` unless shapes, dtypes and values form a usable dataset."""
        if self.num_episodes == 0 or self.num_steps == 0:
            raise DatasetError(source, "dataset is empty (no episodes)")
        for name, value, ndim, dtype in (
            ("observations", self.obs, 2, torch.float32),
            ("actions", self.actions, 2, torch.float32),
            ("rewards", self.rewards, 1, torch.float32),
        ):
            if value.ndim != ndim or value.dtype != dtype:
                raise DatasetError(source, f"'{name}' must be {dtype} with {ndim} dims, "
                                           f"got {value.dtype} {list(value.shape)}")
            if len(value) != self.num_steps:
                raise DatasetError(source, f"'{name}' has {len(value)} rows but the dataset has {self.num_steps} steps")
            if not torch.isfinite(value).all():
                bad = int((~torch.isfinite(value)).reshape(len(value), -1).any(1).nonzero()[0])
                raise DatasetError(source, f"'{name}' contains NaN or inf (first at step {bad})")
        for name, value in (("observations", self.obs), ("actions", self.actions)):
            if value.shape[1] < 1:
                raise DatasetError(source, f"'{name}' have dimension 0 (shape {list(value.shape)})")
        if self.actions.abs().max() > 1.0 + 1e-5:
            raise DatasetError(
                source, f"actions must be normalized to [-1, 1], found |a| up to {self.actions.abs().max():.3g}"
            )
        if (self.lengths < 1).any() or int(self.lengths.sum()) != self.num_steps:
            raise DatasetError(source, "episode lengths do not add up to the number of steps")
        for name in ("terminated", "success", "strategy", "quality"):
            if len(getattr(self, name)) != self.num_episodes:
                raise DatasetError(source, f"'{name}' has {len(getattr(self, name))} entries "
                                           f"for {self.num_episodes} episodes")
        if self.final_obs is not None:
            if self.final_obs.shape != (self.num_episodes, self.obs.shape[1]) or self.final_obs.dtype != torch.float32:
                raise DatasetError(source, f"'next_observations' give final observations of shape "
                                           f"{list(self.final_obs.shape)}, expected [{self.num_episodes}, {self.obs.shape[1]}]")
            if not torch.isfinite(self.final_obs).all():
                raise DatasetError(source, "'next_observations' contains NaN or inf")
        if self.images is not None and (self.images.dtype != torch.uint8 or self.images.ndim != 5
                                        or len(self.images) != self.num_steps or self.images.shape[-1] != 3):
            raise DatasetError(source, f"'obs/images' must be uint8 [steps={self.num_steps}, cameras, H, W, 3], got "
                                       f"{self.images.dtype} {list(self.images.shape)}")
        if self.images is not None and self.final_obs is not None:
            raise DatasetError(source, "images with recorded final observations ('next_observations') are not "
                                       "supported: the final frames are not recorded")
        if self.no_bootstrap is not None and (self.no_bootstrap.shape != (self.num_steps,)
                                              or self.no_bootstrap.dtype != torch.bool):
            raise DatasetError(source, f"'masks' must give one flag per step, got {list(self.no_bootstrap.shape)}")


def _numeric(source: object, name: str, array) -> torch.Tensor:
    try:
        return torch.as_tensor(np.asarray(array))
    except (TypeError, ValueError) as error:
        raise DatasetError(source, f"'{name}' is not a numeric array ({error})") from None


def as_float32(source: object, name: str, array) -> torch.Tensor:
    """A float array from disk as float32; integer, bool or object arrays are a format error."""
    tensor = _numeric(source, name, array)
    if not tensor.is_floating_point():
        raise DatasetError(source, f"'{name}' must be a float array, got {tensor.dtype}")
    return tensor.to(torch.float32)


def as_vectors(source: object, name: str, array, rows: str = "steps") -> torch.Tensor:
    """A per-row array from disk as float32 [N, D] (a per-row scalar as [N, 1]); ``rows`` names its rows in the
    error ("steps", "frames")."""
    tensor = as_float32(source, name, array)
    if tensor.ndim == 1:
        tensor = tensor[:, None]
    if tensor.ndim != 2:
        raise DatasetError(source, f"'{name}' has {rows} of shape {list(tensor.shape[1:])}; lawr reads vectors")
    return tensor


def as_flags(source: object, name: str, array) -> torch.Tensor:
    """A 1-D bool array from disk. Integers and floats are accepted when every value is exactly 0 or 1 (OGBench
    and D4RL ship their flags as float32 0./1.); any other value (0.5, NaN, 2) is an error naming the first one."""
    tensor = _numeric(source, name, array)
    if tensor.ndim != 1:
        raise DatasetError(source, f"'{name}' must be 1-D, got shape {list(tensor.shape)}")
    if tensor.dtype != torch.bool:
        bad = ~((tensor == 0) | (tensor == 1))  # NaN compares unequal to both
        if tensor.is_complex() or bad.any():
            row = int(bad.nonzero()[0]) if bad.any() else 0
            raise DatasetError(source, f"'{name}' must hold 0/1 flags (bool, integer or float), "
                                       f"found {tensor[row].item()} at row {row}")
        tensor = tensor.bool()
    return tensor
