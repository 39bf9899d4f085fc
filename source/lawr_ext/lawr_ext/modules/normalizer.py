"""The frozen coordinates every network sees the data in: the observation and the action normalizer, fitted
together on the whole dataset, once (:func:`fit_normalizers`).

Phase 1 fits them and its product, the behaviour model (``algorithms/flow.py``), owns them; every later stage,
baseline, evaluated and exported policy reads them from it. Nothing after Phase 1 may move them: they are part
of the action manifold's definition (the flow was trained in these coordinates).

Observations: rsl_rl's ``EmpiricalNormalization``. rsl-rl-lib is one of the project's design packages and
this running mean/std module is what it provides for exactly this job; lawr fits it in one pass over the
dataset and freezes it. Actions: :class:`ActionNormalizer`, a per-dimension affine map. How actions are
mapped (``min_max``, ``mean_std`` or ``none``) is ``DataConfig.action_normalization``, the one place that chooses it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from rsl_rl.modules import EmpiricalNormalization


#: How actions are mapped into the learners' coordinates (``DataConfig.action_normalization``).
ACTION_NORMALIZATIONS = ("min_max", "mean_std", "none")


class ActionNormalizer(nn.Module):
    """Per-dimension affine action coordinates: a_n = (a - center) / half_range (as built: the identity).

    ``min_max`` maps each dimension's data range onto [-1, 1] (Diffusion Policy's and LeRobot's MIN_MAX), so the
    action box [-1, 1] the learners clip to is the data's box; ``mean_std`` gives each dimension zero mean and unit
    variance, and the learners clip to the env's box as it lies there (``learner_box``, ``modules/action_box.py``);
    ``none`` is the identity. Why: an env's action space is scaled to its actuators (here the joint limits), not
    to the data. In the Bimanual-Chunk data a waist moves with std 0.04 and a gripper with 0.97, so an unweighted
    squared error spends itself on the grippers while the arm errors it leaves are larger than the arm motions that
    decide a grasp. Undone inside every evaluated and exported policy (``EnvActionPolicy``).
    """

    def __init__(self, action_dim: int):
        super().__init__()
        self.register_buffer("center", torch.zeros(action_dim))
        self.register_buffer("half_range", torch.ones(action_dim))

    def normalize(self, actions: torch.Tensor) -> torch.Tensor:
        """Env actions [..., A] -> the learners' coordinates."""
        return (actions - self.center) / self.half_range

    def unnormalize(self, actions: torch.Tensor) -> torch.Tensor:
        """The learners' coordinates [..., A] -> env actions."""
        return actions * self.half_range + self.center

    def learner_box(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The env's action box [-1, 1] in the learners' coordinates: (low [A], high [A]) = normalize(-1, +1).

        Under ``mean_std`` about (+-1 - mean) / std, several std wide; under ``none`` [-1, 1] itself; under
        ``min_max`` a box holding [-1, 1], the data's box (wider where the data stop short of the env's limits).
        What a learner clamps to is ``modules/action_box.py``'s choice.
        """
        ones = torch.ones_like(self.center)
        return self.normalize(-ones), self.normalize(ones)


class Normalizers(NamedTuple):
    obs: EmpiricalNormalization
    actions: ActionNormalizer


def fit_normalizers(observations: torch.Tensor, actions: torch.Tensor, action_normalization: str,
                    min_half_range: float = 1e-2) -> Normalizers:
    """Fit both normalizers on every observation [N, O] and every action [N, A] of a dataset, frozen.

    The observation normalizer is frozen twice over: it is returned in eval mode (``update`` is a no-op there),
    and ``until`` is set to the number of samples it has seen, so even a module switched back to train mode
    never updates again. ``min_half_range`` keeps an action dimension the data never moves from blowing its
    jitter up into the learners' coordinates.
    """
    if action_normalization not in ACTION_NORMALIZATIONS:
        raise ValueError(f"fit_normalizers: action normalization must be one of {ACTION_NORMALIZATIONS}, "
                         f"got {action_normalization!r}")
    if observations.ndim != 2 or observations.shape[0] < 2:
        raise ValueError(f"fit_normalizers: expected observations of shape [N>=2, O], got {tuple(observations.shape)}")
    if actions.ndim != 2 or actions.shape[0] != observations.shape[0]:
        raise ValueError(f"fit_normalizers: expected actions of shape [N={observations.shape[0]}, A], "
                         f"got {tuple(actions.shape)}")
    for name, values in (("observations", observations), ("actions", actions)):
        if not torch.isfinite(values).all():
            raise ValueError(f"fit_normalizers: {name} contain NaN or Inf")
    obs_normalizer = EmpiricalNormalization(shape=observations.shape[1], until=observations.shape[0])
    obs_normalizer.to(observations.device).train()
    obs_normalizer.update(observations.float())  # one batch: the exact mean and (biased) variance of the dataset
    action_normalizer = ActionNormalizer(actions.shape[1]).to(actions.device)
    if action_normalization == "min_max":
        low, high = actions.min(dim=0).values, actions.max(dim=0).values
        action_normalizer.center.copy_((high + low) / 2)
        action_normalizer.half_range.copy_(((high - low) / 2).clamp_min(min_half_range))
    elif action_normalization == "mean_std":
        action_normalizer.center.copy_(actions.mean(dim=0))
        action_normalizer.half_range.copy_(actions.std(dim=0).clamp_min(min_half_range))
    return Normalizers(obs_normalizer.eval(), action_normalizer.eval())


def unfitted_normalizers(obs_dim: int, action_dim: int) -> Normalizers:
    """Normalizers with empty statistics, to load fitted ones into."""
    return Normalizers(EmpiricalNormalization(shape=obs_dim), ActionNormalizer(action_dim))
