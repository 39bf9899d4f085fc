"""Phase 3 config: the latent planner pi(s) -> z and its advantage-weighted regression through the frozen flow."""

from __future__ import annotations

from dataclasses import dataclass, field

from lawr_ext.configs.awr import AWRWeightConfig


PLANNER_LATENTS = ("ball", "sphere")


@dataclass
class PlannerConfig:
    """Hyperparameters of :class:`lawr_ext.algorithms.planner.LatentAWR`."""

    hidden_dim: int = 512           # width of the planner's ResidualMLP
    num_blocks: int = 3             # residual blocks of the planner
    # Where z may lie (d = H * A; the prior N(0, I) puts its mass on the shell ||z|| ~ sqrt(d) +- 0.7):
    #   "ball":   squashed radially into ||z|| <= sqrt(d) (1 + typical_set_margin): bounded above only, so z can
    #             drift to the origin, where the flow decodes an average chunk (the paper's setting)
    #   "sphere": z = sqrt(d) z_raw / ||z_raw||, on the shell itself (Latent Policy Steering's constraint)
    latent: str = "ball"
    typical_set_margin: float = 0.1
    # beta of an added improvement term beta * (-Q(s, T(pi(s))) / mean|Q|) through the frozen flow and critic
    # (LPS's objective, normalized as FQL's); 0 = the paper's pure latent AWR, which then acts as the regulariser
    q_weight: float = 0.0
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
        if self.latent not in PLANNER_LATENTS:
            raise ValueError(f"PlannerConfig.latent: expected one of {PLANNER_LATENTS}, got {self.latent!r}")
        if not self.q_weight >= 0:  # also refuses NaN
            raise ValueError(f"PlannerConfig.q_weight must be >= 0, got {self.q_weight}")
        if not self.typical_set_margin >= 0:  # also refuses NaN
            raise ValueError(f"PlannerConfig.typical_set_margin must be >= 0, got {self.typical_set_margin}")
        for name in ("learning_rate", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PlannerConfig.{name} must be > 0, got {getattr(self, name)}")
