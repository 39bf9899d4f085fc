"""Configs of the baselines L-AWR is compared against (one dataclass each; see algorithms/baselines/).

Baselines built on the Phase-1 chunk network take a ``ChunkNetConfig`` (the network alone: they hash no
Mean Flow settings they never read; OFQL, which trains a Mean Flow, takes a whole ``FlowConfig``), so that,
by default, they are exactly as wide and deep as the behaviour flow: the comparison then measures the
algorithm, not capacity. Baselines with their own critic take a ``CriticConfig`` for the same reason, and the
latent actors that steer the frozen flow (LPS, DSRL-NA) extend the planner's ``LatentActorConfig``.

Each docstring names the published recipe; where our default differs, ``configs/recipe/published.yaml``
(``recipe=published`` on the command line) switches to the published values, networks and budget still
matched to L-AWR's unless ``baselines.match_lawr=false``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from lawr_ext.configs.awr import AWRWeightConfig  # noqa: F401  (re-exported: Gaussian AWR shares it)
from lawr_ext.configs.critic import CriticConfig
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.configs.network import ChunkNetConfig
from lawr_ext.configs.planner import LatentActorConfig, PlannerConfig

Q_LOSSES, Q_AGGREGATES = ("hl_gauss", "mse"), ("min", "mean")


def _check_positive(owner: object, *names: str) -> None:
    for name in names:
        if not getattr(owner, name) > 0:
            raise ValueError(f"{type(owner).__name__}.{name}: must be > 0, got {getattr(owner, name)}")


def _check_critic_choice(owner: object, loss_field: str = "critic_loss", agg_field: str | None = "q_agg") -> None:
    name = type(owner).__name__
    if getattr(owner, loss_field) not in Q_LOSSES:
        raise ValueError(f"{name}.{loss_field}: expected one of {Q_LOSSES}, got {getattr(owner, loss_field)!r}")
    if agg_field is not None and getattr(owner, agg_field) not in Q_AGGREGATES:
        raise ValueError(f"{name}.{agg_field}: expected one of {Q_AGGREGATES}, got {getattr(owner, agg_field)!r}")


@dataclass
class FlowBCConfig:
    """Flow BC: the frozen Phase-1 flow sampled from the prior. Nothing to train."""

    sample_steps: int = 1            # mean-flow jumps per chunk (1 = the one-step map T(z; s))

    def __post_init__(self) -> None:
        _check_positive(self, "sample_steps")


@dataclass
class GaussianAWRConfig:
    """AWR / IQL actor: one Gaussian over the flattened chunk, weighted by the frozen Phase-2 advantage."""

    hidden_dim: int = 512            # width of the actor MLP
    num_layers: int = 3              # hidden layers of the actor MLP
    state_dependent_std: bool = False  # False: one learned log-std per chunk dimension (IQL's choice)
    log_std_init: float = 0.0        # initial log-std
    log_std_min: float = -5.0        # log-std clamp: keeps the likelihood finite on near-deterministic data
    log_std_max: float = 2.0
    weights: AWRWeightConfig = field(default_factory=AWRWeightConfig)
    learning_rate: float = 3e-4
    max_grad_norm: float = 10.0
    batch_size: int = 256
    num_steps: int = 100_000

    def __post_init__(self) -> None:
        _check_positive(self, "hidden_dim", "num_layers", "learning_rate", "max_grad_norm", "batch_size", "num_steps")
        if not self.log_std_min < self.log_std_max:
            raise ValueError(f"GaussianAWRConfig: log_std_min ({self.log_std_min}) must be < log_std_max "
                             f"({self.log_std_max})")


@dataclass
class FQLConfig:
    """FQL on action chunks (QC-FQL): frozen BC flow + one-step policy mu(s, z) + its own TD critic.

    Published (seohongpark/fql ``agents/fql.py``, OGBench cube tasks): alpha = 300 with normalize_q_loss off,
    q_agg mean, an MSE twin critic of 4 x 512, 10 flow steps, single-step actions (``data.horizon=1``; QC-FQL
    is the chunked form). ``recipe=published`` sets alpha/normalize_q_loss/critic_loss/q_agg.
    """

    actor: ChunkNetConfig = field(default_factory=ChunkNetConfig)  # the network of mu(s, z)
    critic: CriticConfig = field(default_factory=CriticConfig)  # its own twin Q (its network; v_min/v_max: HL-Gauss)
    critic_loss: str = "mse"         # "mse": FQL's scalar heads; "hl_gauss": Phase 2's heads (targets clipped to
                                     # [v_min, v_max])
    q_agg: str = "mean"              # how the target combines the heads: FQL's "mean" (cube) or "min" (antmaze)
    bc_flow_steps: int = 10          # mean-flow jumps of the BC flow that mu is distilled from
    alpha: float = 10.0              # distillation weight: large -> stay on the BC flow, small -> chase Q
    normalize_q_loss: bool = True    # FQL: scale the Q term by 1 / mean|Q| so alpha does not depend on reward scale
    learning_rate: float = 3e-4      # the one-step policy's Adam learning rate
    max_grad_norm: float = 10.0
    batch_size: int = 256
    num_steps: int = 100_000

    def __post_init__(self) -> None:
        _check_positive(self, "bc_flow_steps", "alpha", "learning_rate", "max_grad_norm", "batch_size", "num_steps")
        _check_critic_choice(self)


@dataclass
class OFQLConfig:
    """OFQL-style: ONE Mean Flow policy trained on (Mean Flow loss - alpha * Q) plus its own TD critic."""

    flow: FlowConfig = field(default_factory=FlowConfig)  # the policy network and its Mean Flow objective
    critic: CriticConfig = field(default_factory=CriticConfig)  # its own twin Q (network; v_min/v_max: HL-Gauss)
    critic_loss: str = "hl_gauss"    # "hl_gauss" (Phase 2's heads) or "mse" (scalar heads, as FQL)
    q_agg: str = "min"               # how the TD target combines the heads: "min" or "mean"
    init_from_behavior_flow: bool = True  # start from the Phase-1 weights (fine-tune) rather than from scratch
    alpha: float = 1.0               # weight of the Q term against the flow loss
    normalize_q_loss: bool = True    # as FQL: Q term divided by mean|Q|
    num_steps: int = 100_000
    batch_size: int = 256

    def __post_init__(self) -> None:
        _check_positive(self, "alpha", "batch_size", "num_steps")
        _check_critic_choice(self)


@dataclass
class BestOfNConfig:
    """Best-of-N on L-AWR's critic: N chunks from the frozen behaviour flow, keep the one with the highest
    Phase-2 Q. Not QC: that critic is in-sample; QC's own (``QCConfig``) is trained by the best-of-N backup."""

    num_samples: int = 32            # N candidates per observation
    sample_steps: int = 1            # mean-flow jumps per candidate

    def __post_init__(self) -> None:
        _check_positive(self, "num_samples", "sample_steps")


@dataclass
class DiffusionConfig:
    """Diffusion policy: DDPM training (epsilon prediction, cosine schedule), deterministic DDIM sampling."""

    network: ChunkNetConfig = field(default_factory=ChunkNetConfig)  # the denoiser: the flow's network
    num_train_timesteps: int = 100   # T of the DDPM forward process
    sample_steps: int = 50           # K DDIM steps at inference (K <= T); the latency comparison's K
    cosine_offset: float = 0.008     # s in the cosine schedule (Nichol & Dhariwal): avoids tiny betas near t = 0
    max_beta: float = 0.999          # beta clip at the end of the schedule
    clip_sample: bool = True         # clamp each DDIM estimate of the clean chunk to the action box
                                     # (modules/action_box.py: [-1, 1] under min_max, the env's box under mean_std)
    # What the network outputs: "sample" = the clean chunk x_0 (x-prediction, as the JiT flow of Phase 1),
    # "epsilon" = the noise (DDPM's and Diffusion Policy's choice, with a conv U-Net there). Through the flow's
    # MLP, whose last hidden layer (256) is narrower than a 50 x 14 chunk, epsilon cannot be represented: its loss
    # stalls at 0.60, near the 1 - 256/700 = 0.63 floor, and the policy failed 0/128 (README).
    prediction: str = "sample"
    learning_rate: float = 3e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    ema_decay: float = 0.9995        # EMA of the weights the policy samples with (as the flow's)
    batch_size: int = 256
    num_steps: int = 100_000

    def __post_init__(self) -> None:
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"DiffusionConfig.ema_decay: must lie in [0, 1), got {self.ema_decay}")
        _check_positive(self, "num_train_timesteps", "sample_steps", "cosine_offset", "learning_rate",
                        "max_grad_norm", "batch_size", "num_steps")
        if self.sample_steps > self.num_train_timesteps:
            raise ValueError(f"DiffusionConfig.sample_steps: {self.sample_steps} DDIM steps exceed "
                             f"num_train_timesteps={self.num_train_timesteps}")
        if not 0.0 < self.max_beta < 1.0:
            raise ValueError(f"DiffusionConfig.max_beta: must lie in (0, 1), got {self.max_beta}")
        if self.prediction not in ("sample", "epsilon"):
            raise ValueError(f"DiffusionConfig.prediction: expected 'sample' or 'epsilon', got {self.prediction!r}")

@dataclass
class QCConfig:
    """QC (Q-chunking, Li et al. 2025, ColinQiyangLi/qc ``agents/acfql.py`` with ``actor_type=best-of-n``): a
    chunked twin critic trained by TD with the best-of-N backup, acting by best-of-N from the behaviour flow.

    Published: N = 32, MSE critic of 4 x 512, q_agg mean, the BC flow sampled in 10 Euler steps (our flow is a
    one-step Mean Flow: ``sample_steps`` 1 is its own sampler).
    """

    critic: CriticConfig = field(default_factory=CriticConfig)  # the chunked critic (network; v_min/v_max: HL-Gauss)
    critic_loss: str = "mse"         # QC's scalar MSE heads, or "hl_gauss"
    q_agg: str = "mean"              # how the heads are combined, in the backup and to pick the best chunk
    num_samples: int = 32            # N behaviour chunks per state, in the backup and when acting
    sample_steps: int = 1            # mean-flow jumps per candidate
    batch_size: int = 256
    num_steps: int = 100_000

    def __post_init__(self) -> None:
        _check_positive(self, "num_samples", "sample_steps", "batch_size", "num_steps")
        _check_critic_choice(self)


LPS_CRITICS = ("own", "phase2")


@dataclass
class LPSConfig(PlannerConfig):
    """Latent Policy Steering (arXiv 2603.05296, jellyho/LPS ``agents/lps.py``, ``extract_method=ddpg``): a latent
    actor pi(s) on the sphere of radius sqrt(d), decoded by the frozen flow, trained by -alpha Q(s, T(pi(s))) / mean|Q|
    against its OWN twin critic, which is trained alongside by TD bootstrapped with the actor's next chunk.

    Published: alpha = 1 (``q_weight``), MSE heads with the min in the target and the mean in the actor's loss,
    critic 4 x 256 with LayerNorm, latent actor 2 x 256, lr 3e-4, batch 256, tau 0.005, gamma 0.99.
    ``critic_source="phase2"``: the ablation that climbs L-AWR's frozen in-sample Phase-2 critic instead.
    """

    latent: str = "sphere"
    awr_weight: float = 0.0          # only the "phase2" ablation can add Phase 3's AWR term
    q_weight: float = 1.0            # LPS's alpha
    critic_source: str = "own"       # "own": its TD critic of its own actor (as published); "phase2": L-AWR's
    critic: CriticConfig = field(default_factory=lambda: CriticConfig(hidden_dim=256, num_layers=4))  # its own
    critic_loss: str = "mse"         # LPS's scalar heads, or "hl_gauss" (Phase 2's, targets clipped to its support)
    q_agg: str = "min"               # how the TD target combines the heads (the actor's loss reads their mean)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.critic_source not in LPS_CRITICS:
            raise ValueError(f"LPSConfig.critic_source: expected one of {LPS_CRITICS}, got {self.critic_source!r}")
        if self.critic_source == "own" and self.awr_weight != 0:
            raise ValueError(f"LPSConfig.awr_weight: {self.awr_weight} needs Phase 2's advantages; with "
                             "critic_source=own the Q term alone trains the actor (set 0, or critic_source=phase2)")
        _check_critic_choice(self)


@dataclass
class DSRLNAConfig(LatentActorConfig):
    """DSRL-NA (Wagenmaker et al. 2025, ajwagen/dsrl, noise aliasing): a latent critic Q^W(s, w) distilled from
    the frozen Phase-2 Q^A(s, T(w; s)) with w ~ N(0, I), and a deterministic latent actor maximising Q^W.

    Published: a SAC actor in the box [-1.5, 1.5]^d maximising the min of Q^W's two heads, 3 x 2048 LayerNorm
    networks, an MSE Q^W regressed head by head onto Q^A, Q^A (two heads, min in the target) trained by TD
    bootstrapped with the steered policy. What ours changes: ``algorithms/baselines/dsrl_na.py``.
    """

    latent: str = "box"              # DSRL's noise-action space (box_magnitude 1.5); "sphere" as LPS's DSRL
    noise_critic: CriticConfig = field(default_factory=CriticConfig)  # Q^W's network (and support, if HL-Gauss)
    noise_critic_loss: str = "mse"   # Q^W's heads: DSRL's scalar MSE, or "hl_gauss"
    normalize_q_loss: bool = True    # the actor's -Q^W divided by mean|Q^W| (as LPS's DSRL-NA)
    learning_rate: float = 3e-4      # actor and Q^W
    max_grad_norm: float = 10.0
    batch_size: int = 256
    num_steps: int = 100_000

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(self, "learning_rate", "max_grad_norm", "batch_size", "num_steps")
        _check_critic_choice(self, "noise_critic_loss", None)


ACT_ARCHS = ("mlp", "transformer")


@dataclass
class ACTConfig:
    """ACT-style chunk regressor (Zhao et al. 2023; LeRobot ``policies/act``): normalized obs -> the whole chunk,
    deterministic, trained with L1 on the chunk; optionally ACT's CVAE latent (z = 0 when acting).

    Published: a ResNet + transformer encoder-decoder, CVAE on (latent 32, KL weight 10), AdamW lr 1e-5 and
    weight decay 1e-4, temporal ensembling with m = 0.01 when enabled. ``recipe=published`` turns the CVAE on.
    """

    network: ChunkNetConfig = field(default_factory=ChunkNetConfig)  # "mlp": a ResidualMLP of that width/depth;
                                     # "transformer": the flow's chunk transformer read at a zero input
    use_vae: bool = False            # ACT's CVAE: an encoder q(z | s, chunk), KL to N(0, I); acting uses z = 0
    latent_dim: int = 32
    kl_weight: float = 10.0
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    max_grad_norm: float = 10.0
    batch_size: int = 256
    num_steps: int = 100_000

    def __post_init__(self) -> None:
        _check_positive(self, "latent_dim", "learning_rate", "max_grad_norm", "batch_size", "num_steps")
        if self.kl_weight < 0 or self.weight_decay < 0:
            raise ValueError(f"ACTConfig: kl_weight and weight_decay must be >= 0, got {self.kl_weight}, "
                             f"{self.weight_decay}")


@dataclass
class BaselinesConfig:
    """Every baseline's settings (``TrainConfig.baselines``): one field per baseline, named like its stage."""

    match_lawr: bool = True          # True: flow-shaped networks take `flow`'s architecture, own critics take
                                     # `critic`'s, latent actors the planner's, and every trained baseline the
                                     # budget of the phase it stands in for (equal capacity, equal budget; see
                                     # match_lawr); False: the configs below as given
    flow_bc: FlowBCConfig = field(default_factory=FlowBCConfig)
    gaussian_awr: GaussianAWRConfig = field(default_factory=GaussianAWRConfig)
    fql: FQLConfig = field(default_factory=FQLConfig)
    ofql: OFQLConfig = field(default_factory=OFQLConfig)
    best_of_n: BestOfNConfig = field(default_factory=BestOfNConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    qc: QCConfig = field(default_factory=QCConfig)
    lps: LPSConfig = field(default_factory=LPSConfig)
    dsrl_na: DSRLNAConfig = field(default_factory=DSRLNAConfig)
    act: ACTConfig = field(default_factory=ACTConfig)



#: The L-AWR phase whose budget (num_steps, batch_size) a baseline's own training is matched to: the one it stands
#: in for. Actors on the frozen phases 1-2 replace the planner, QC's critic replaces Phase 2's; the rest train a
#: whole policy (and FQL/OFQL a critic with it) next to the frozen flow, matched to Phase 1.
BUDGET_OF = {GaussianAWRConfig: "planner", LPSConfig: "planner", DSRLNAConfig: "planner", QCConfig: "critic"}


def match_lawr(settings: Any, flow: FlowConfig, critic: CriticConfig, planner: PlannerConfig | None = None,
               budget: bool = True) -> Any:
    """A baseline's ``settings`` at the L-AWR run's capacity (``baselines.match_lawr``), by field type: a
    ``FlowConfig`` becomes ``flow``, a ``ChunkNetConfig`` its network, a ``CriticConfig`` ``critic``; a latent
    actor (``LatentActorConfig``) takes the planner's width and depth but keeps where its z lives. With
    ``budget``, ``num_steps`` and ``batch_size`` become those of the phase it stands in for (``BUDGET_OF``,
    default Phase 1). Equal capacity and budget make the comparison about the algorithm."""
    phases = {"flow": flow, "critic": critic, "planner": planner}
    changes = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, FlowConfig):
            changes[f.name] = flow
        elif isinstance(value, ChunkNetConfig):
            changes[f.name] = ChunkNetConfig.of(flow)
        elif isinstance(value, CriticConfig):
            changes[f.name] = critic
    if isinstance(settings, LatentActorConfig) and planner is not None:
        changes |= {"hidden_dim": planner.hidden_dim, "num_blocks": planner.num_blocks}
    budget_phase = phases[BUDGET_OF.get(type(settings), "flow")]
    if budget and budget_phase is not None:
        changes |= {name: getattr(budget_phase, name) for name in ("num_steps", "batch_size")
                    if name in {f.name for f in fields(settings)}}
    return replace(settings, **changes)
