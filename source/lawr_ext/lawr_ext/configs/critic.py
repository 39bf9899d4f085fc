"""Phase 2 config: the HL-Gauss distributional critics V(s) and Q(s, a_chunk)."""

from __future__ import annotations

import math
from dataclasses import dataclass

ADVANTAGE_FORMS = ("q_minus_v", "one_step")


@dataclass
class CriticConfig:
    """Hyperparameters of :class:`lawr_ext.algorithms.critic.DistributionalCritic`.

    The discount is not here on purpose: chunk-level TD uses the batch's ``reward`` (sum_i gamma^i r_i) and
    ``discount`` (gamma^k) that the data loader precomputes, so gamma and the horizon H live in the data
    config alone and the critic cannot disagree with the dataset about them.
    """

    # Return support: must cover every discounted chunk return of the dataset (targets are clipped to it).
    v_min: float = 0.0
    v_max: float = 50.0
    num_bins: int = 101             # categories over [v_min, v_max]
    sigma_ratio: float = 0.75       # HL-Gauss sigma as a multiple of the bin width (paper's default)

    hidden_dim: int = 512           # width of each V / Q MLP
    num_layers: int = 3             # hidden layers of each V / Q MLP
    learning_rate: float = 3e-4
    batch_size: int = 256           # chunks per gradient step
    num_steps: int = 100_000        # gradient steps of Phase 2
    max_grad_norm: float = 10.0     # global grad-norm clip over V and both Q heads
    target_update_rate: float = 0.005  # Polyak rate of the target V and Q networks

    expectile: float = 0.5          # kappa: 0.5 = behaviour value, > 0.5 = IQL-style in-sample maximum
    advantage: str = "q_minus_v"    # "q_minus_v": min-Q(s,a) - V(s);  "one_step": r + gamma^k V(s') - V(s)
    # image tasks: train a copy of Phase 1's frozen vision encoder with the critics (its own, in its product);
    # False: read the frozen features, as every other stage does
    finetune_encoder: bool = False

    def __post_init__(self) -> None:
        for name in ("v_min", "v_max"):  # the support's ends: its bins are spaced (v_max - v_min) / num_bins
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"CriticConfig.{name} must be a finite number, got {getattr(self, name)}")
        if not self.v_max > self.v_min:
            raise ValueError(f"CriticConfig: v_max ({self.v_max}) must be greater than v_min ({self.v_min})")
        for name in ("num_bins", "hidden_dim", "num_layers", "batch_size", "num_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"CriticConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("sigma_ratio", "learning_rate", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"CriticConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 < self.expectile < 1.0:
            raise ValueError(f"CriticConfig.expectile must be in (0, 1), got {self.expectile}")
        if not 0.0 < self.target_update_rate <= 1.0:
            raise ValueError(f"CriticConfig.target_update_rate must be in (0, 1], got {self.target_update_rate}")
        if self.advantage not in ADVANTAGE_FORMS:
            raise ValueError(f"CriticConfig.advantage must be one of {ADVANTAGE_FORMS}, got {self.advantage!r}")


@dataclass
class GuardConfig:
    """When the critic is declared diverged and its run stopped (NaN/inf in any loss or metric always stops a run)."""

    max_outside_support: float = 0.25  # fraction of a batch's critic TD targets outside [v_min, v_max]
    max_td_error: float = 1.0          # mean |Q - TD target| as a multiple of the critic's support width

    def __post_init__(self) -> None:
        if not 0.0 < self.max_outside_support <= 1.0:
            raise ValueError(f"GuardConfig.max_outside_support: must lie in (0, 1], got {self.max_outside_support}")
        if not self.max_td_error > 0:
            raise ValueError(f"GuardConfig.max_td_error: must be > 0, got {self.max_td_error}")
