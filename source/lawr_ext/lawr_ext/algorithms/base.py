"""What every trainable stage shares, so one runner can train, checkpoint and resume them all."""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torch import nn

from lawr_ext.data import keys
from lawr_ext.modules.chunk_basis import ChunkBasis
from lawr_ext.modules.vision import pack_observation


class Learner(nn.Module):
    """A stage's networks and optimizers. ``update`` is one gradient step; ``product`` is what it leaves behind.

    Subclasses put their optimizers in ``self.optimizers`` (name -> optimizer) so that
    ``training_state`` captures everything a resumed run needs to continue bit-identically.
    Randomness comes from torch's global RNG; the runner saves and restores it with the checkpoint.
    """

    def __init__(self) -> None:
        super().__init__()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}

    def update(self, batch: TensorDict) -> dict[str, float]:
        raise NotImplementedError

    def policy(self) -> ChunkPolicy:
        """The policy it trained (learners of policy stages)."""
        raise NotImplementedError(f"{type(self).__name__} trains no policy")

    def product(self) -> nn.Module:
        """What its stage saves once trained (``<stage>/final.pt``): by default the policy it trained."""
        return self.policy()

    def training_state(self) -> dict:
        return {"modules": self.state_dict(), "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()}}

    def load_training_state(self, state: dict) -> None:
        self.load_state_dict(state["modules"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])


class ChunkPolicy(nn.Module):
    """Every evaluated or exported policy: raw observations [B, O] -> action chunks [B, H, A].

    A method's own policy acts in its learners' action coordinates (Phase 1's action normalizer);
    ``EnvActionPolicy`` around it gives the env's actions, and that is what is evaluated and exported.
    ``forward`` must be deterministic for a
    deterministic policy (L-AWR, Gaussian mean); stochastic ones (flow BC, diffusion) draw from
    torch's global RNG so that a seeded evaluation is reproducible.
    """

    horizon: int
    action_dim: int

    @property
    def name(self) -> str:
        """What reports and export metadata call it: its class name."""
        return type(self).__name__

    def forward(self, obs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class EnvActionPolicy(ChunkPolicy):
    """A method's policy with its chunks mapped from the learners' coordinates back to env actions (decoded from
    the chunk basis to H steps, then un-normalized), clipped to the env's action box [-1, 1]: the policy that is
    evaluated, exported and deployed."""

    def __init__(self, policy: ChunkPolicy, action_normalizer: nn.Module, chunk_basis: ChunkBasis | None = None):
        super().__init__()
        self.policy = policy
        self.action_normalizer = action_normalizer
        self.chunk_basis = chunk_basis if chunk_basis is not None else ChunkBasis(policy.horizon)
        self.horizon, self.action_dim = self.chunk_basis.horizon, policy.action_dim

    @property
    def name(self) -> str:
        return self.policy.name

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.action_normalizer.unnormalize(self.chunk_basis.decode(self.policy(obs))).clamp(-1.0, 1.0)


def learner_batch(batch: TensorDict, action_normalizer: nn.Module, chunk_basis: ChunkBasis) -> TensorDict:
    """A dataset batch (env actions [B, H, A], real-step mask) in the learners' coordinates: actions normalized,
    then projected on the chunk basis (and, on image data, each observation packed with its frames:
    ``modules/vision.py``); ``EnvActionPolicy`` is the way back. With a basis other than "steps" the
    mask is all True: a padded chunk (its last real action held) is encoded as a whole."""
    actions = chunk_basis.encode(action_normalizer.normalize(batch[keys.ACTIONS]))
    mapped = batch.copy()  # shallow: only the actions (and the mask) are replaced
    if keys.IMAGES in batch.keys():  # image data: observations packed with their frames (modules/vision.py)
        mapped[keys.OBS] = pack_observation(batch[keys.OBS], batch[keys.IMAGES])
        mapped[keys.NEXT_OBS] = pack_observation(batch[keys.NEXT_OBS], batch[keys.NEXT_IMAGES])
        mapped = mapped.exclude(keys.IMAGES, keys.NEXT_IMAGES)
    mapped[keys.ACTIONS] = actions
    if chunk_basis.kind != "steps":
        mapped[keys.MASK] = torch.ones(actions.shape[:2], dtype=torch.bool, device=actions.device)
    return mapped


def freeze(module: nn.Module) -> nn.Module:
    """No parameter takes a gradient, no layer is in train mode: how every stage's product is handed on."""
    return module.requires_grad_(False).eval()
