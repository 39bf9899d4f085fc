"""What every trainable phase and baseline shares, so one runner can train, checkpoint and resume them all."""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torch import nn


class Learner(nn.Module):
    """A phase's (or a baseline's) networks and optimizers. ``update`` is one gradient step.

    Subclasses put their optimizers in ``self.optimizers`` (name -> optimizer) so that
    ``training_state`` captures everything a resumed run needs to continue bit-identically.
    Randomness comes from torch's global RNG; the runner saves and restores it with the checkpoint.
    """

    def __init__(self) -> None:
        super().__init__()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def update(self, batch: TensorDict) -> dict[str, float]:
        raise NotImplementedError

    def training_state(self) -> dict:
        return {"modules": self.state_dict(), "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()}}

    def load_training_state(self, state: dict) -> None:
        self.load_state_dict(state["modules"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])


class ChunkPolicy(nn.Module):
    """Every evaluated or exported policy: raw observations [B, O] -> action chunks [B, H, A].

    Actions are in the env's normalized action space. ``forward`` must be deterministic for a
    deterministic policy (L-AWR, Gaussian mean); stochastic ones (flow BC, diffusion) draw from
    torch's global RNG so that a seeded evaluation is reproducible.
    """

    horizon: int
    action_dim: int

    def forward(self, obs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError
