"""The MLP-ResNet chunk generator (``FlowConfig.arch = "mlp"``): ResidualMLP on the flattened chunk."""

from __future__ import annotations

import torch
from torch import nn

from lawr_ext.modules.embeddings import FlowCondition
from lawr_ext.modules.mlp import ResidualMLP


class ChunkMLP(nn.Module):
    """(z_t [B,H,A], t [B], r [B], obs_norm [B,O]) -> x_hat [B,H,A], the predicted clean chunk.

    The condition (times and observation, one vector) sits beside the flat chunk at the input. With
    ``conditioning="film"`` it also shifts and scales each residual block's normalized input (FiLM), so every
    block sees the state and the time, not only what the first layer kept of them."""

    def __init__(self, horizon: int, action_dim: int, obs_dim: int, width: int, depth: int, time_embed_dim: int,
                 conditioning: str = "concat"):
        super().__init__()
        self.horizon, self.action_dim = horizon, action_dim
        self.condition = FlowCondition(obs_dim, width, time_embed_dim)
        self.net = ResidualMLP(horizon * action_dim + width, width, horizon * action_dim, num_blocks=depth)
        self.film = None
        if conditioning == "film":
            self.film = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width)) for _ in range(depth))
            for layer in self.film:  # zero: the blocks start as the concat network's
                nn.init.zeros_(layer[-1].weight)
                nn.init.zeros_(layer[-1].bias)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, r: torch.Tensor, obs_norm: torch.Tensor) -> torch.Tensor:
        cond = self.condition(t, r, obs_norm)
        features = torch.cat([z_t.flatten(1), cond], dim=-1)
        modulation = None if self.film is None else [film(cond).chunk(2, dim=-1) for film in self.film]
        return self.net(features, modulation).view_as(z_t)
