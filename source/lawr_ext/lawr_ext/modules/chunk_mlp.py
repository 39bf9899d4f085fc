"""The MLP-ResNet chunk generator (``FlowConfig.arch = "mlp"``): ResidualMLP on the flattened chunk."""

from __future__ import annotations

import torch
from torch import nn

from lawr_ext.modules.embeddings import FlowCondition
from lawr_ext.modules.mlp import ResidualMLP


class ChunkMLP(nn.Module):
    """(z_t [B,H,A], t [B], r [B], obs_norm [B,O]) -> x_hat [B,H,A], the predicted clean chunk."""

    def __init__(self, horizon: int, action_dim: int, obs_dim: int, width: int, depth: int, time_embed_dim: int):
        super().__init__()
        self.horizon, self.action_dim = horizon, action_dim
        self.condition = FlowCondition(obs_dim, width, time_embed_dim)
        self.net = ResidualMLP(horizon * action_dim + width, width, horizon * action_dim, num_blocks=depth)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, r: torch.Tensor, obs_norm: torch.Tensor) -> torch.Tensor:
        features = torch.cat([z_t.flatten(1), self.condition(t, r, obs_norm)], dim=-1)
        return self.net(features).view_as(z_t)
