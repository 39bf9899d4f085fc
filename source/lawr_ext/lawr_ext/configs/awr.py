"""Advantage weighting shared by L-AWR's planner and the Gaussian AWR baseline, so the two differ only in the actor."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AWRWeightConfig:
    """How advantages become regression weights, w = min(exp(A / temperature), max_weight)."""

    temperature: float = 1.0         # tau: large -> plain (mode-averaging) BC, small -> greedy on the advantage
    max_weight: float = 100.0        # clip of exp(A / tau) (IQL's choice): one lucky chunk cannot dominate a batch
    standardize: bool = False        # divide A by its batch std first, so tau is in units of the advantage's spread

    def __post_init__(self) -> None:
        for name in ("temperature", "max_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"AWRWeightConfig.{name}: must be > 0, got {getattr(self, name)}")
