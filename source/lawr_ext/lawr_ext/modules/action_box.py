"""The action box in the learners' coordinates: what a learner clamps a chunk to, or squashes a mean into.

The env's actions lie in [-1, 1] (scaled to its actuators). Learners read and write chunks in the coordinates of
the action normalizer and the chunk basis (``learner_batch``), where that box lies elsewhere:

  * ``mean_std``: per step the normalizer's image of [-1, 1] (``ActionNormalizer.learner_box``), about
    (+-1 - mean) / std per dimension. [-1, 1] there is +-1 std and would cut a third of the data;
  * ``none``: [-1, 1] itself, the same image;
  * ``min_max``: [-1, 1], the data's box, as FQL, QC and Diffusion Policy clip. The env's image is wider wherever
    the data stop short of the env's limits; [-1, 1] is kept because every result measured with min_max was
    measured with it (and a policy that leaves the data's range is the failure those clips guard against).

The chunk basis decides what a box on steps means for the numbers a learner holds:

  * "steps": the box per step, as it is;
  * "dct": K cosine coefficients per dimension, where a box on the coefficients is no box on the steps (the
    first coefficient is sqrt(H) times the chunk's mean: [-1, 1] there allows a mean of 1 / sqrt(H) only).
    ``clamp`` decodes to the H steps, clamps them, and adds the change projected back on the basis: the
    coefficients of the chunk the env will execute. A chunk whose steps all lie in the box comes back bit for
    bit; one whose K-cosine reconstruction leaves it (a gripper step, overshooting by a few percent) comes back
    as the chunk the env's clamp makes of it. ``squash`` (tanh, one number at a time) cannot act on steps: it maps
    into the smallest box of coefficients that holds every chunk whose steps lie in the box, coefficient k of
    dimension a within center_a sum_n D_kn +- half_a sum_n |D_kn|.

The box is fixed when a learner or policy is built (the normalizer is frozen after Phase 1) and kept in
non-persistent buffers: checkpoints, their content hashes and exports' weights are what they were without it.
"""

from __future__ import annotations

import torch
from torch import nn

from lawr_ext.modules.chunk_basis import ChunkBasis
from lawr_ext.modules.normalizer import ActionNormalizer


class ActionBox(nn.Module):
    """A per-step box [low, high] (per action dimension; none given: [-1, 1]) in a chunk basis's coordinates."""

    def __init__(self, low: torch.Tensor | None = None, high: torch.Tensor | None = None,
                 chunk_basis: ChunkBasis | None = None):
        super().__init__()
        if (low is None) != (high is None):
            raise ValueError("ActionBox: give both low and high, or neither ([-1, 1])")
        if low is None:
            low, high = torch.tensor(-1.0), torch.tensor(1.0)
        low, high = low.detach().float(), high.detach().float()
        if not bool((low < high).all()):
            raise ValueError("ActionBox: low must lie below high in every dimension")
        self.kind = "steps" if chunk_basis is None else chunk_basis.kind
        # exactly [-1, 1] on steps: the scalar clamp and the plain tanh, as before the box followed the normalizer
        self.unit = self.kind == "steps" and bool((low == -1).all()) and bool((high == 1).all())
        self.register_buffer("low", low.clone(), persistent=False)
        self.register_buffer("high", high.clone(), persistent=False)
        center, half = (high + low) / 2, (high - low) / 2
        if self.kind == "steps":
            self.register_buffer("squash_center", center, persistent=False)
            self.register_buffer("squash_half", half, persistent=False)
        else:
            basis = chunk_basis.basis.detach().float().clone()  # [K, H]
            self.register_buffer("basis", basis, persistent=False)
            # the coefficient box of every chunk in the step box: [K, A] (or [K, 1] for a box shared by all dims)
            self.register_buffer("squash_center", basis.sum(dim=1, keepdim=True) * center, persistent=False)
            self.register_buffer("squash_half", basis.abs().sum(dim=1, keepdim=True) * half, persistent=False)

    def clamp(self, chunks: torch.Tensor) -> torch.Tensor:
        """Chunks in the learners' coordinates [..., K, A] with their steps clamped into the box (module doc)."""
        if self.unit:
            return chunks.clamp(-1.0, 1.0)
        if self.kind == "steps":
            return torch.clamp(chunks, self.low, self.high)
        steps = torch.einsum("kh,...ka->...ha", self.basis, chunks)
        change = torch.clamp(steps, self.low, self.high) - steps
        return chunks + torch.einsum("kh,...ha->...ka", self.basis, change)

    def squash(self, raw: torch.Tensor) -> torch.Tensor:
        """Any [..., K, A] -> the box (its coefficient box under "dct"), by tanh mapped affinely onto it."""
        if self.unit:
            return torch.tanh(raw)
        return self.squash_center + self.squash_half * torch.tanh(raw)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, unit={self.unit}"

    @classmethod
    def of(cls, action_normalizer: ActionNormalizer, chunk_basis: ChunkBasis | None = None,
           action_normalization: str | None = None) -> ActionBox:
        """The box the learners clamp to under ``action_normalization`` (``DataConfig.action_normalization``):
        the env's box under "mean_std" and "none", the data's [-1, 1] under "min_max" and when not given."""
        if action_normalization in (None, "min_max"):
            return cls(chunk_basis=chunk_basis)
        return cls(*action_normalizer.learner_box(), chunk_basis=chunk_basis)

    @classmethod
    def for_stage(cls, inputs) -> ActionBox:
        """The box of a stage built on Phase 1's product (``inputs["flow"]``: its normalizer and chunk basis) under
        the run's ``action_normalization`` (a ``StageInputs``)."""
        behavior = inputs["flow"]
        return cls.of(behavior.action_normalizer, behavior.chunk_basis, inputs.action_normalization).to(
            behavior.action_normalizer.center.device)
