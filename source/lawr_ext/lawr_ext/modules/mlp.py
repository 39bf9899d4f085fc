"""Plain and residual MLPs: the building blocks of critics, planners and the MLP flow variant."""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, out_dim: int, depth: int = 2, act: type[nn.Module] = nn.GELU,
        layer_norm: bool = True) -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden``; LayerNorm before the activation keeps critics stable."""
    layers: list[nn.Module] = []
    d = in_dim
    for _ in range(depth):
        layers.append(nn.Linear(d, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(act())
        d = hidden
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    def __init__(self, width: int, expansion: int = 2):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.ff = nn.Sequential(nn.Linear(width, expansion * width), nn.GELU(), nn.Linear(expansion * width, width))

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None,
                scale: torch.Tensor | None = None) -> torch.Tensor:
        """x + ff(norm(x)), the normalized input shifted and scaled first when given (FiLM, through
        ResidualMLP.forward: modules/chunk_mlp.py)."""
        h = self.norm(x)
        if shift is not None:
            h = h * (1 + scale) + shift
        return x + self.ff(h)


class ResidualMLP(nn.Module):
    """in -> Linear -> N pre-norm residual blocks -> LayerNorm -> Linear -> out."""

    def __init__(self, in_dim: int, width: int, out_dim: int, num_blocks: int = 3):
        super().__init__()
        self.inp = nn.Linear(in_dim, width)
        self.blocks = nn.Sequential(*[ResidualBlock(width) for _ in range(num_blocks)])
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, out_dim))

    def forward(self, x: torch.Tensor,
                modulation: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        """``modulation``: one (shift, scale) per block, applied to its normalized input (FiLM)."""
        if modulation is None:
            return self.out(self.blocks(self.inp(x)))
        h = self.inp(x)
        for block, (shift, scale) in zip(self.blocks, modulation, strict=True):
            h = block(h, shift, scale)
        return self.out(h)
