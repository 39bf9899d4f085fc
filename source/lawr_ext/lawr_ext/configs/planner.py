"""Phase 3 config: the latent planner pi(s) -> z and its advantage-weighted regression through the frozen flow."""

from __future__ import annotations

from dataclasses import dataclass, field

from lawr_ext.configs.awr import AWRWeightConfig


@dataclass
class PlannerConfig:
    """Hyperparameters of :class:`lawr_ext.algorithms.planner.LatentAWR`."""

    hidden_dim: int = 512           # width of the planner's ResidualMLP
    num_blocks: int = 3             # residual blocks of the planner
    # z is squashed radially into the ball ||z|| <= sqrt(d) (1 + margin), d = H * A: the prior N(0, I)
    # puts its mass at ||z|| ~ sqrt(d) +- 0.7, so the flow has never seen latents far beyond that radius.
    typical_set_margin: float = 0.1
    # w = min(exp(A / temperature), max_weight), optionally A / std(A) first (shared with the Gaussian AWR
    # baseline, so that the two differ only in the actor).
    weights: AWRWeightConfig = field(default_factory=AWRWeightConfig)
    learning_rate: float = 3e-4
    max_grad_norm: float = 1.0      # global grad-norm clip of the planner
    batch_size: int = 256           # chunks per gradient step
    num_steps: int = 100_000        # gradient steps of Phase 3

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "num_blocks", "batch_size", "num_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"PlannerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.typical_set_margin < 0:
            raise ValueError(f"PlannerConfig.typical_set_margin must be >= 0, got {self.typical_set_margin}")
        for name in ("learning_rate", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PlannerConfig.{name} must be > 0, got {getattr(self, name)}")
