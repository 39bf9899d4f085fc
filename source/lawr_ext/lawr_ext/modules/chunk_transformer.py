"""The JiT-like chunk generator: a small DiT over the H steps of an action chunk that predicts the clean chunk.

One token per chunk step (A action dims -> width), a learned position embedding, and adaLN-Zero
conditioning on (t, t - r, obs). Attention is written out (not ``scaled_dot_product_attention``)
because the Mean Flow target needs forward-mode AD (``torch.func.jvp``), which the fused kernels lack.
"""

from __future__ import annotations

import torch
from torch import nn

from lawr_ext.modules.embeddings import FlowCondition


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class SelfAttention(nn.Module):
    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, D))


class AdaLNBlock(nn.Module):
    """Pre-norm transformer block whose norms are shifted/scaled/gated by the condition (adaLN-Zero)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(width, num_heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ff = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(approximate="tanh"),
                                nn.Linear(mlp_ratio * width, width))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        # Zero init: every block starts as the identity, so depth does not destabilize early training.
        nn.init.zeros_(self.modulation[-1].weight)
        nn.init.zeros_(self.modulation[-1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond).chunk(6, dim=-1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.ff(modulate(self.norm2(x), shift2, scale2))


class ChunkTransformer(nn.Module):
    """(z_t [B,H,A], t [B], r [B], obs_norm [B,O]) -> x_hat [B,H,A], the predicted clean chunk."""

    def __init__(self, horizon: int, action_dim: int, obs_dim: int, width: int, depth: int, num_heads: int,
                 mlp_ratio: int, time_embed_dim: int):
        super().__init__()
        self.horizon, self.action_dim = horizon, action_dim
        self.action_in = nn.Linear(action_dim, width)
        self.position = nn.Parameter(torch.randn(1, horizon, width) * 0.02)
        self.condition = FlowCondition(obs_dim, width, time_embed_dim)
        self.blocks = nn.ModuleList([AdaLNBlock(width, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.action_out = nn.Linear(width, action_dim)
        for layer in (self.final_modulation[-1], self.action_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, r: torch.Tensor, obs_norm: torch.Tensor) -> torch.Tensor:
        cond = self.condition(t, r, obs_norm)
        x = self.action_in(z_t) + self.position
        for block in self.blocks:
            x = block(x, cond)
        shift, scale = self.final_modulation(cond).chunk(2, dim=-1)
        return self.action_out(modulate(self.final_norm(x), shift, scale))
