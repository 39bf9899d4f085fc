"""The frozen coordinates every network sees the data in: observations and actions, both fitted on the dataset.

The observation normalizer is rsl_rl's ``EmpiricalNormalization``, fitted once on the whole dataset and then
frozen: the statistics are part of the action manifold's definition (the flow was trained on these normalized
observations), so nothing after Phase 1 may move them. The action normalizer is the same idea for the
output side (:class:`ActionNormalizer`).
"""

from __future__ import annotations

import torch
from torch import nn
from rsl_rl.modules import EmpiricalNormalization


def fit_obs_normalizer(obs: torch.Tensor) -> EmpiricalNormalization:
    """Fit the normalizer on all dataset observations ``obs`` [N, O] and freeze it.

    Frozen twice over: it is returned in eval mode (``update`` is a no-op there), and ``until`` is set to
    the number of samples it has seen, so even a module switched back to train mode never updates again.
    """
    if obs.ndim != 2 or obs.shape[0] < 2:
        raise ValueError(f"fit_obs_normalizer: expected observations of shape [N>=2, O], got {tuple(obs.shape)}")
    if not torch.isfinite(obs).all():
        raise ValueError("fit_obs_normalizer: observations contain NaN or Inf")
    normalizer = EmpiricalNormalization(shape=obs.shape[1], until=obs.shape[0]).to(obs.device)
    normalizer.train()
    normalizer.update(obs.float())  # one batch: the exact mean and (biased) variance of the dataset
    return normalizer.eval()


def unfitted_obs_normalizer(obs_dim: int) -> EmpiricalNormalization:
    """A normalizer with empty statistics, to load fitted ones into."""
    return EmpiricalNormalization(shape=obs_dim)


#: How actions are mapped into the learners' coordinates (``DataConfig.action_normalization``).
ACTION_NORMALIZATIONS = ("min_max", "none")


class ActionNormalizer(nn.Module):
    """Per-dimension affine action coordinates fitted on the dataset: a_n = (a - center) / half_range.

    ``min_max`` maps each dimension's data range onto [-1, 1] (Diffusion Policy's and LeRobot's MIN_MAX), so the
    action box [-1, 1] the learners clip to is the data's box; ``none`` is the identity. Why: an env's action
    space is scaled to its actuators (here the joint limits), not to the data. In the Bimanual-Chunk data a
    waist moves with std 0.04 and a gripper with 0.97, so an unweighted squared error spends itself on the
    grippers while the arm errors it leaves are larger than the arm motions that decide a grasp. Fitted once,
    frozen in Phase 1's product, and undone inside every evaluated and exported policy.
    """

    def __init__(self, action_dim: int):
        super().__init__()
        self.register_buffer("center", torch.zeros(action_dim))
        self.register_buffer("half_range", torch.ones(action_dim))

    @classmethod
    def fit(cls, actions: torch.Tensor, mode: str, min_half_range: float = 1e-2) -> ActionNormalizer:
        """Fit on all dataset actions [N, A]. ``min_half_range`` keeps a dimension the data never moves from
        blowing its jitter up into the learners' coordinates."""
        if mode not in ACTION_NORMALIZATIONS:
            raise ValueError(f"action normalization: expected one of {ACTION_NORMALIZATIONS}, got {mode!r}")
        if actions.ndim != 2 or actions.shape[0] < 1:
            raise ValueError(f"ActionNormalizer.fit: expected actions of shape [N>=1, A], got {tuple(actions.shape)}")
        normalizer = cls(actions.shape[1]).to(actions.device)
        if mode == "min_max":
            low, high = actions.min(dim=0).values, actions.max(dim=0).values
            normalizer.center.copy_((high + low) / 2)
            normalizer.half_range.copy_(((high - low) / 2).clamp_min(min_half_range))
        return normalizer.eval()

    def normalize(self, actions: torch.Tensor) -> torch.Tensor:
        """Env actions [..., A] -> the learners' coordinates."""
        return (actions - self.center) / self.half_range

    def unnormalize(self, actions: torch.Tensor) -> torch.Tensor:
        """The learners' coordinates [..., A] -> env actions."""
        return actions * self.half_range + self.center
