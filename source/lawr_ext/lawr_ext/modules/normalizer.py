"""The frozen observation normalizer every network sees its observations through.

It is rsl_rl's ``EmpiricalNormalization``, fitted once on the whole dataset and then frozen: the
statistics are part of the action manifold's definition (the flow was trained on these normalized
observations), so nothing after Phase 1 may move them.
"""

from __future__ import annotations

import torch
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
