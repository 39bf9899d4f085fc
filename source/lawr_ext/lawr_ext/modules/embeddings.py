"""Conditioning shared by the chunk generators: times (t, t - r) and the normalized observation -> one vector."""

from __future__ import annotations

import math

import torch
from torch import nn

from lawr_ext.modules.mlp import mlp


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features [B, dim] of times t [B] in [0, 1], used unscaled (as SiT, not DiT's t * 1000).

    Mean Flow differentiates the network along t (the JVP target); DiT's high frequencies made that
    derivative, and with it training on the bimodal toy, blow up (measured, see tests/test_flow.py)."""
    half = dim // 2
    dtype = torch.promote_types(t.dtype, torch.float32)  # at least fp32 (the JVP test runs in fp64)
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=dtype) / half)
    angles = t.to(dtype)[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class FlowCondition(nn.Module):
    """(t, r, obs_norm) -> [B, width]. Times enter as (t, t - r), MeanFlow's choice: r is implied and the
    interval length t - r is what the average velocity depends on most."""

    def __init__(self, obs_dim: int, width: int, time_embed_dim: int):
        super().__init__()
        self.time_embed_dim = time_embed_dim
        self.time = mlp(time_embed_dim, width, width, depth=1, act=nn.SiLU, layer_norm=False)
        self.interval = mlp(time_embed_dim, width, width, depth=1, act=nn.SiLU, layer_norm=False)
        self.obs = mlp(obs_dim, width, width, depth=1)

    def forward(self, t: torch.Tensor, r: torch.Tensor, obs_norm: torch.Tensor) -> torch.Tensor:
        return (self.time(timestep_embedding(t, self.time_embed_dim))
                + self.interval(timestep_embedding(t - r, self.time_embed_dim))
                + self.obs(obs_norm))
