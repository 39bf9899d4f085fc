"""Configs of the baselines L-AWR is compared against (one dataclass each; see algorithms/baselines/).

Baselines built on the Phase-1 chunk network take a ``ChunkNetConfig`` (the network alone: they hash no
Mean Flow settings they never read; OFQL, which trains a Mean Flow, takes a whole ``FlowConfig``), so that,
by default, they are exactly as wide and deep as the behaviour flow: the comparison then measures the
algorithm, not capacity. Baselines with their own critic take a ``CriticConfig`` for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from lawr_ext.configs.awr import AWRWeightConfig  # noqa: F401  (re-exported: Gaussian AWR shares it)
from lawr_ext.configs.critic import CriticConfig
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.configs.network import ChunkNetConfig


def _check_positive(owner: object, *names: str) -> None:
    for name in names:
        if not getattr(owner, name) > 0:
            raise ValueError(f"{type(owner).__name__}.{name}: must be > 0, got {getattr(owner, name)}")


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
    """FQL on action chunks (QC-FQL): frozen BC flow + one-step policy mu(s, z) + its own TD critic."""

    actor: ChunkNetConfig = field(default_factory=ChunkNetConfig)  # the network of mu(s, z)
    critic: CriticConfig = field(default_factory=CriticConfig)  # its own HL-Gauss twin Q (V is not used)
    bc_flow_steps: int = 10          # mean-flow jumps of the BC flow that mu is distilled from
    alpha: float = 10.0              # distillation weight: large -> stay on the BC flow, small -> chase Q
    normalize_q_loss: bool = True    # FQL: scale the Q term by 1 / mean|Q| so alpha does not depend on reward scale
    learning_rate: float = 3e-4      # the one-step policy's Adam learning rate
    max_grad_norm: float = 10.0
    batch_size: int = 256
    num_steps: int = 100_000

    def __post_init__(self) -> None:
        _check_positive(self, "bc_flow_steps", "alpha", "learning_rate", "max_grad_norm", "batch_size", "num_steps")


@dataclass
class OFQLConfig:
    """OFQL-style: ONE Mean Flow policy trained on (Mean Flow loss - alpha * Q) plus its own TD critic."""

    flow: FlowConfig = field(default_factory=FlowConfig)  # the policy network and its Mean Flow objective
    critic: CriticConfig = field(default_factory=CriticConfig)  # its own HL-Gauss twin Q (V is not used)
    init_from_behavior_flow: bool = True  # start from the Phase-1 weights (fine-tune) rather than from scratch
    alpha: float = 1.0               # weight of the Q term against the flow loss
    normalize_q_loss: bool = True    # as FQL: Q term divided by mean|Q|
    num_steps: int = 100_000
    batch_size: int = 256

    def __post_init__(self) -> None:
        _check_positive(self, "alpha", "batch_size", "num_steps")


@dataclass
class BestOfNConfig:
    """QC-style best-of-N: N chunks from the frozen behaviour flow, keep the one with the highest Phase-2 Q."""

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
    clip_sample: bool = True         # clamp each DDIM estimate of the clean chunk to the action box [-1, 1]
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


@dataclass
class BaselinesConfig:
    """Every baseline's settings (``TrainConfig.baselines``): one field per baseline, named like its stage."""

    match_lawr: bool = True          # True: flow-shaped networks take `flow`'s architecture, own critics take
                                     # `critic`'s, and every trained baseline takes Phase 1's num_steps and
                                     # batch_size (equal capacity, equal budget); False: the configs below as given
    flow_bc: FlowBCConfig = field(default_factory=FlowBCConfig)
    gaussian_awr: GaussianAWRConfig = field(default_factory=GaussianAWRConfig)
    fql: FQLConfig = field(default_factory=FQLConfig)
    ofql: OFQLConfig = field(default_factory=OFQLConfig)
    best_of_n: BestOfNConfig = field(default_factory=BestOfNConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)



def match_lawr(settings: Any, flow: FlowConfig, critic: CriticConfig, budget: bool = True) -> Any:
    """A baseline's ``settings`` at the L-AWR run's capacity (``baselines.match_lawr``), by field type: a
    ``FlowConfig`` becomes ``flow``, a ``ChunkNetConfig`` its network, a ``CriticConfig`` ``critic``; with
    ``budget``, ``num_steps`` and ``batch_size`` become Phase 1's. Equal capacity and budget make the
    comparison about the algorithm."""
    changes = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, FlowConfig):
            changes[f.name] = flow
        elif isinstance(value, ChunkNetConfig):
            changes[f.name] = ChunkNetConfig.of(flow)
        elif isinstance(value, CriticConfig):
            changes[f.name] = critic
        elif budget and f.name in ("num_steps", "batch_size"):
            changes[f.name] = getattr(flow, f.name)
    return replace(settings, **changes)
