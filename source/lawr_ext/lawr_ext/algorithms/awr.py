"""Advantage-weighted regression weights, shared by L-AWR's planner and the Gaussian AWR baseline."""

from __future__ import annotations

from typing import Callable

import torch
from tensordict import TensorDict

from lawr_ext.configs.awr import AWRWeightConfig

#: batch (raw observations) -> advantages [B] of its dataset chunks, e.g. ``DistributionalCritic.advantage``.
#: Called under no_grad: nothing an AWR learner does reaches the critic behind it.
AdvantageFn = Callable[[TensorDict], torch.Tensor]


def awr_weights(advantage: torch.Tensor, cfg: AWRWeightConfig) -> torch.Tensor:
    """w = min(exp(A / tau), max_weight), optionally with A divided by its batch std first."""
    if cfg.standardize:
        advantage = advantage / advantage.std().clamp_min(1e-6)
    return torch.exp(advantage / cfg.temperature).clamp(max=cfg.max_weight)


def effective_sample_fraction(weight: torch.Tensor) -> torch.Tensor:
    """Kish's effective sample size over the batch size, (sum w)^2 / (N sum w^2): 1 = uniform, 1/N = one sample."""
    return weight.sum().square() / (weight.numel() * weight.square().sum()).clamp_min(1e-12)
