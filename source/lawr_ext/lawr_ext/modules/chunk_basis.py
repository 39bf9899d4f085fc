"""Chunk coordinates: the numbers a learner reads and writes for one action chunk.

``steps`` is the chunk itself, H values per action dimension. ``dct`` keeps the first K cosines of an
orthonormal DCT-II per action dimension, so a chunk is K numbers per dimension instead of H:

    coeffs [B, K, A] = D_K @ chunk [B, H, A],       chunk_hat = D_K^T @ coeffs,    D_K D_K^T = I_K

Robot chunks are smooth (joint targets moved at servo speed), so K = 10 of H = 50 reconstruct them to about a
millimetre at the grasp points, while a generator and a latent planner have a fifth of the numbers to learn and
to search. Because the rows are orthonormal, a squared error between coefficient vectors equals the squared error
between the chunks they decode to: every loss keeps its meaning. The basis is a fixed function of (H, K); it is
stored as a buffer so that a saved or exported policy decodes with exactly the matrix it was trained with.
Grippers are step-like: K cosines round a step over about H / K steps (and overshoot it by a few percent before
the env's clamp to [-1, 1]).
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: What ``DataConfig.chunk_basis`` may name.
CHUNK_BASES = ("steps", "dct")


def dct_matrix(horizon: int, num_coeffs: int) -> torch.Tensor:
    """The first ``num_coeffs`` rows of the orthonormal DCT-II matrix of size ``horizon``: [K, H]."""
    if not 1 <= num_coeffs <= horizon:
        raise ValueError(f"dct_matrix: need 1 <= num_coeffs <= horizon, got K={num_coeffs}, H={horizon}")
    n = torch.arange(horizon, dtype=torch.float64)
    k = torch.arange(num_coeffs, dtype=torch.float64)[:, None]
    basis = torch.cos(math.pi * (n + 0.5) * k / horizon) * math.sqrt(2.0 / horizon)
    basis[0] /= math.sqrt(2.0)
    return basis.float()


class ChunkBasis(nn.Module):
    """Chunks [B, H, A] <-> the learners' chunk coordinates [B, K, A] (``kind`` "steps": K = H, the identity)."""

    def __init__(self, horizon: int, kind: str = "steps", num_coeffs: int | None = None):
        super().__init__()
        if kind not in CHUNK_BASES:
            raise ValueError(f"chunk basis: expected one of {CHUNK_BASES}, got {kind!r}")
        self.kind, self.horizon = kind, horizon
        self.num_coeffs = horizon if kind == "steps" else num_coeffs
        if kind == "dct":
            if num_coeffs is None:
                raise ValueError("chunk basis 'dct' needs a number of coefficients (data.chunk_coeffs)")
            self.register_buffer("basis", dct_matrix(horizon, num_coeffs))

    def encode(self, chunks: torch.Tensor) -> torch.Tensor:
        """Chunks [..., H, A] -> coordinates [..., K, A] (the least-squares projection for "dct")."""
        if self.kind == "steps":
            return chunks
        return torch.einsum("kh,...ha->...ka", self.basis, chunks)

    def decode(self, coeffs: torch.Tensor) -> torch.Tensor:
        """Coordinates [..., K, A] -> chunks [..., H, A]."""
        if self.kind == "steps":
            return coeffs
        return torch.einsum("kh,...ka->...ha", self.basis, coeffs)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, horizon={self.horizon}, num_coeffs={self.num_coeffs}"
