"""Phase 3 config: the latent planner pi(s) -> z and its advantage-weighted regression through the frozen flow.

``LatentActorConfig`` is the latent actor alone (its network and where z may lie); Phase 3's ``PlannerConfig``
and the baselines that steer the same frozen flow with another objective (LPS, DSRL-NA) extend it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lawr_ext.configs.awr import AWRWeightConfig
from lawr_ext.configs.checks import check_compute_dtype, check_lr_schedule


LATENT_SETS = ("ball", "sphere", "box")


@dataclass
class LatentActorConfig:
    """A deterministic latent actor pi(s) -> z [H, A] (``algorithms/planner.py: LatentPlanner``)."""

    hidden_dim: int = 512           # width of its ResidualMLP
    num_blocks: int = 3             # residual blocks
    # Where z may lie (d = H * A; the prior N(0, I) puts its mass on the shell ||z|| ~ sqrt(d) +- 0.7):
    #   "ball":   squashed radially into ||z|| <= sqrt(d) (1 + typical_set_margin): bounded above only, so z can
    #             drift to the origin, where the flow decodes an average chunk (the paper's setting)
    #   "sphere": z = sqrt(d) z_raw / ||z_raw||, on the shell itself (Latent Policy Steering's constraint)
    #   "box":    z = box_magnitude * tanh(z_raw) per entry (DSRL's bounded noise-action space)
    latent: str = "ball"
    typical_set_margin: float = 0.1
    box_magnitude: float = 1.5      # DSRL's "action_magnitude" (its README: ~1.5 works well)

    def __post_init__(self) -> None:
        name = type(self).__name__
        for attr in ("hidden_dim", "num_blocks"):
            if getattr(self, attr) < 1:
                raise ValueError(f"{name}.{attr} must be >= 1, got {getattr(self, attr)}")
        if self.latent not in LATENT_SETS:
            raise ValueError(f"{name}.latent: expected one of {LATENT_SETS}, got {self.latent!r}")
        if not self.typical_set_margin >= 0:  # also refuses NaN
            raise ValueError(f"{name}.typical_set_margin must be >= 0, got {self.typical_set_margin}")
        if not self.box_magnitude > 0:
            raise ValueError(f"{name}.box_magnitude must be > 0, got {self.box_magnitude}")


@dataclass
class PlannerConfig(LatentActorConfig):
    """Hyperparameters of :class:`lawr_ext.algorithms.planner.LatentAWR`.

    loss = awr_weight * w(A) ||T(pi(s)) - a||^2  +  q_weight * (-Q(s, T(pi(s))) / mean|Q|)
    The paper's L-AWR is (1, 0); (0, 1) on the sphere is Latent Policy Steering's objective on the Phase-2 critic
    (``LPSConfig`` with ``critic_source=phase2``; published LPS trains a critic of its own).
    """

    awr_weight: float = 1.0         # weight of the advantage-weighted regression through the flow (0: off)
    # beta of an added improvement term beta * (-Q(s, T(pi(s))) / mean|Q|) through the frozen flow and critic
    # (LPS's objective, normalized as FQL's); 0 = the paper's pure latent AWR, which then acts as the regulariser
    q_weight: float = 0.0
    # w = min(exp(A / temperature), max_weight), optionally A / std(A) first (shared with the Gaussian AWR
    # baseline, so that the two differ only in the actor).
    weights: AWRWeightConfig = field(default_factory=AWRWeightConfig)
    # K > 0: divide each chunk's weight by its state's mean weight Z(s) = E_{a ~ flow(s)}[w(A(s, a))], over K one-step
    # draws of the frozen flow (the partition function of AWR's derivation, which AWR and IQL implementations drop; MPO
    # normalizes per state over sampled actions alike). Every state then carries about the same total weight, so a
    # state where one lucky chunk sits at the clip among failures no longer outweighs its neighbours in the planner's
    # smooth fit. Needs critic.advantage = q_minus_v (the draws' Q). 0: the paper's weights
    state_normalization_samples: int = 0
    # mean-flow jumps of the frozen decoder T(z; s) the planner steers and acts through: 1 is the paper's one-step
    # map; more jumps give sharper, more committed chunks at that many flow passes per chunk (docs/results.md)
    decode_steps: int = 1
    learning_rate: float = 3e-4
    # "constant" (the paper's), or "cosine": from learning_rate down to 0 over num_steps, as IQL's AWR actor. The
    # weights of one batch can be concentrated on a few chunks (effective sample fraction down to 0.05), so each
    # constant-rate step moves the planner by one batch's noise, up to the last one.
    lr_schedule: str = "constant"
    max_grad_norm: float = 1.0      # global grad-norm clip of the planner
    batch_size: int = 256           # chunks per gradient step
    num_steps: int = 100_000        # gradient steps of Phase 3
    # "bfloat16": the planner, the frozen flow and the frozen critic run under autocast while training (matrix
    # products in bf16; the loss and the planner's weights stay fp32); the exported policy acts in fp32. "auto": bf16
    # only where the device has it natively
    compute_dtype: str = "float32"

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        for attr in ("batch_size", "num_steps", "decode_steps"):
            if getattr(self, attr) < 1:
                raise ValueError(f"{name}.{attr} must be >= 1, got {getattr(self, attr)}")
        if self.state_normalization_samples < 0:
            raise ValueError(f"{name}.state_normalization_samples must be >= 0, got {self.state_normalization_samples}")
        for attr in ("awr_weight", "q_weight"):
            if not getattr(self, attr) >= 0:  # also refuses NaN
                raise ValueError(f"{name}.{attr} must be >= 0, got {getattr(self, attr)}")
        if self.awr_weight == 0 and self.q_weight == 0:
            raise ValueError(f"{name}: awr_weight and q_weight are both 0, so nothing would train the planner")
        check_lr_schedule(self.lr_schedule, f"{name}.lr_schedule")
        check_compute_dtype(self.compute_dtype, f"{name}.compute_dtype")
        for attr in ("learning_rate", "max_grad_norm"):
            if not getattr(self, attr) > 0:
                raise ValueError(f"{name}.{attr} must be > 0, got {getattr(self, attr)}")
