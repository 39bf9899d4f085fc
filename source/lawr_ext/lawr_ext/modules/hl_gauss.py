"""HL-Gauss: scalar values as categorical distributions over a fixed support.

Farebrother et al. 2024, "Stop Regressing: Training Value Functions via Classification for Scalable Deep RL".
A scalar target y becomes the histogram of a Gaussian N(y, sigma^2) over ``num_bins`` equal bins on
[v_min, v_max] (mass of bin i = difference of the Gaussian CDF at its two edges, renormalised to the mass
inside the support); the network's logits are trained toward it with cross-entropy and the value is the
expectation of the predicted distribution over the bin centres. sigma = sigma_ratio * bin width
(0.75 in the paper) spreads each target over ~6 neighbouring bins, which is what makes it better than a
one-hot or two-hot target.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class HLGauss(nn.Module):
    """Transform between scalars and categorical distributions; holds no trainable parameters."""

    def __init__(self, v_min: float, v_max: float, num_bins: int, sigma_ratio: float = 0.75):
        super().__init__()
        if not v_max > v_min:
            raise ValueError(f"HLGauss: v_max ({v_max}) must be greater than v_min ({v_min})")
        if num_bins < 2 or sigma_ratio <= 0:
            raise ValueError(f"HLGauss: need num_bins >= 2 and sigma_ratio > 0, got {num_bins}, {sigma_ratio}")
        self.v_min, self.v_max, self.num_bins = float(v_min), float(v_max), int(num_bins)
        self.sigma = sigma_ratio * (self.v_max - self.v_min) / self.num_bins
        edges = torch.linspace(self.v_min, self.v_max, self.num_bins + 1)
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("centers", (edges[:-1] + edges[1:]) / 2, persistent=False)

    def target_probs(self, target: torch.Tensor) -> torch.Tensor:
        """[...] scalar targets -> [..., num_bins] probabilities (each row sums to 1).

        Targets outside the support are clipped to it first, so a return the support does not cover
        degrades to "as high/low as representable" instead of an all-zero histogram.
        """
        target = target.clamp(self.v_min, self.v_max).unsqueeze(-1)
        cdf = torch.special.erf((self.edges - target) / (math.sqrt(2.0) * self.sigma))
        # Normalise by the Gaussian mass inside [v_min, v_max] (cdf at the last minus the first edge).
        return (cdf[..., 1:] - cdf[..., :-1]) / (cdf[..., -1:] - cdf[..., :1])

    def expectation(self, logits: torch.Tensor) -> torch.Tensor:
        """[..., num_bins] logits -> [...] expected value."""
        return (torch.softmax(logits, dim=-1) * self.centers).sum(-1)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample cross-entropy between the HL-Gauss histogram of ``target`` and ``logits`` -> [...]."""
        return -(self.target_probs(target) * torch.log_softmax(logits, dim=-1)).sum(-1)

    @staticmethod
    def entropy(logits: torch.Tensor) -> torch.Tensor:
        """[..., num_bins] logits -> [...] entropy in nats (log num_bins = uniform, 0 = one bin)."""
        log_p = torch.log_softmax(logits, dim=-1)
        return -(log_p.exp() * log_p).sum(-1)
