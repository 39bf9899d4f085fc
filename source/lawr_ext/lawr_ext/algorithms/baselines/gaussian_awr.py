"""Gaussian AWR / IQL actor: the unimodal baseline the paper argues against.

One diagonal Gaussian over the flattened chunk (H x A dims), trained by advantage-weighted maximum likelihood

    loss = - E_data[ w(A(s, a)) * log N(a | mu(s), sigma) ],     w = min(exp(A / tau), max_weight)

with A from the SAME frozen Phase-2 critic L-AWR uses, so that only the actor differs in the comparison.
On multimodal data a single Gaussian fits the weighted mixture by its mean: with a large tau (nearly uniform
weights) it lands between the modes (mode averaging); only a small tau pushes it onto the better mode.
The evaluated policy is the mean. Reuses: the frozen observation normalizer and the Phase-2 critic.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torch import nn

from lawr_ext.algorithms.awr import AdvantageFn, awr_weights
from lawr_ext.algorithms.base import ChunkPolicy, Learner
from lawr_ext.algorithms.stage import Stage
from lawr_ext.algorithms.training import masked_mean, optimizer_step
from lawr_ext.configs.baselines import GaussianAWRConfig
from lawr_ext.data import keys
from lawr_ext.modules.action_box import ActionBox
from lawr_ext.modules.mlp import mlp

class GaussianChunkActor(nn.Module):
    """obs_norm [B, O] -> Normal over the flat chunk; mean squashed by tanh into the action box (``action_box``,
    ``modules/action_box.py``; None: [-1, 1]), mapped affinely onto it.

    Only the mean is squashed: the chunk itself is Normal, so its log-density needs no change-of-variables term
    (nor the log of the box's half-width); the box's width only scales the mean's range.
    """

    def __init__(self, cfg: GaussianAWRConfig, obs_dim: int, horizon: int, action_dim: int,
                 action_box: ActionBox | None = None):
        super().__init__()
        self.cfg = cfg
        self.horizon, self.action_dim = horizon, action_dim
        self.action_box = action_box if action_box is not None else ActionBox()
        chunk_dim = horizon * action_dim
        self.net = mlp(obs_dim, cfg.hidden_dim, 2 * chunk_dim if cfg.state_dependent_std else chunk_dim,
                       depth=cfg.num_layers)
        self.log_std = None if cfg.state_dependent_std else nn.Parameter(torch.full((chunk_dim,), cfg.log_std_init))

    def mean_and_log_std(self, obs_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(obs_norm)
        if self.cfg.state_dependent_std:
            mean, log_std = out.chunk(2, dim=-1)
        else:
            mean, log_std = out, self.log_std.expand_as(out)
        mean = self.action_box.squash(mean.view(-1, self.horizon, self.action_dim)).flatten(1)
        return mean, log_std.clamp(self.cfg.log_std_min, self.cfg.log_std_max)

    def distribution(self, obs_norm: torch.Tensor) -> torch.distributions.Normal:
        mean, log_std = self.mean_and_log_std(obs_norm)
        return torch.distributions.Normal(mean, log_std.exp())

    def mean_chunk(self, obs_norm: torch.Tensor) -> torch.Tensor:
        """The mean without building a distribution (whose argument checks do not export)."""
        return self.mean_and_log_std(obs_norm)[0].view(-1, self.horizon, self.action_dim)


class GaussianAWR(Learner):
    def __init__(self, cfg: GaussianAWRConfig, obs_dim: int, horizon: int, action_dim: int,
                 obs_normalizer: nn.Module, advantage_fn: AdvantageFn, action_box: ActionBox | None = None):
        super().__init__()
        self.cfg = cfg
        self.obs_normalizer = obs_normalizer
        self.advantage_fn = advantage_fn  # frozen: called under no_grad, never trained here
        self.actor = GaussianChunkActor(cfg, obs_dim, horizon, action_dim, action_box)
        self.optimizers["actor"] = torch.optim.Adam(self.actor.parameters(), lr=cfg.learning_rate)

    def update(self, batch: TensorDict) -> dict[str, float]:
        with torch.no_grad():
            advantage = self.advantage_fn(batch)
            weight = awr_weights(advantage, self.cfg.weights)
        actions = batch[keys.ACTIONS]
        dist = self.actor.distribution(self.obs_normalizer(batch[keys.OBS]))
        log_prob = dist.log_prob(actions.flatten(1)).view_as(actions)
        log_likelihood = masked_mean(log_prob, batch[keys.MASK], dim=(1, 2))  # over each chunk's real dims
        loss = -(weight * log_likelihood).mean()
        grad_norm = optimizer_step(self.optimizers["actor"], loss, self.actor.parameters(), self.cfg.max_grad_norm,
                                   "GaussianAWR", advantage_mean=advantage.mean())
        return {
            "gaussian_awr/loss": loss.item(),
            "gaussian_awr/advantage_mean": advantage.mean().item(),
            "gaussian_awr/weight_mean": weight.mean().item(),
            "gaussian_awr/weight_max": weight.max().item(),
            "gaussian_awr/std_mean": dist.stddev.mean().item(),
            "gaussian_awr/grad_norm": grad_norm.item(),
        }

    def policy(self) -> GaussianAWRPolicy:
        return GaussianAWRPolicy(self.actor, self.obs_normalizer)


class GaussianAWRPolicy(ChunkPolicy):
    """raw obs -> normalize -> the Gaussian's mean chunk (deterministic)."""

    def __init__(self, actor: GaussianChunkActor, obs_normalizer: nn.Module):
        super().__init__()
        self.actor = actor
        self.obs_normalizer = obs_normalizer
        self.horizon, self.action_dim = actor.horizon, actor.action_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.mean_chunk(self.obs_normalizer(obs))


STAGE = Stage(
    "gaussian_awr", config="baselines.gaussian_awr", needs=("flow", "critic"), method="gaussian_awr",
    learner=lambda cfg, x: GaussianAWR(cfg, *x.dims, x["flow"].obs_normalizer, x["critic"].advantage,
                                       ActionBox.for_stage(x)),
    product=lambda cfg, x: GaussianAWRPolicy(GaussianChunkActor(cfg, *x.dims, ActionBox.for_stage(x)),
                                             x["flow"].obs_normalizer),
)
