"""The baselines L-AWR is compared against, in the same harness: same data, same normalizer, same evaluation.

``BASELINES[name]`` says how to build each from a :class:`BaselineContext` (dimensions, the frozen observation
normalizer and, where needed, the frozen Phase-1 flow / Phase-2 critic). ``build`` returns either a
:class:`Learner` (train it with ``update(batch)``, then evaluate ``learner.policy()``) or, for the baselines
with nothing to train, the :class:`ChunkPolicy` itself.

=============  =====================================================  ================================
name           what                                                   reuses (frozen unless noted)
=============  =====================================================  ================================
flow_bc        Phase-1 flow sampled from the prior (behaviour policy)  phase 1 flow
gaussian_awr   unimodal Gaussian actor, exp(A/tau)-weighted MLE        phase 2 critic (advantages)
fql            one-step policy distilled from the BC flow + max Q      phase 1 flow; own critic (phase-2 nets)
ofql           one Mean Flow trained on flow loss - alpha * Q          phase 1 flow (init, then trained); own critic
best_of_n      N behaviour samples, argmax of the Phase-2 Q            phase 1 flow, phase 2 critic
diffusion      DDPM (eps, cosine) + K-step DDIM, flow-sized network    nothing (pure BC)
=============  =====================================================  ================================
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from torch import nn

from lawr_ext.algorithms.base import ChunkPolicy, Learner
from lawr_ext.algorithms.baselines.best_of_n import BestOfNPolicy
from lawr_ext.algorithms.baselines.diffusion import DiffusionBC
from lawr_ext.algorithms.baselines.fql import FQL
from lawr_ext.algorithms.baselines.gaussian_awr import GaussianAWR
from lawr_ext.algorithms.baselines.ofql import OFQL
from lawr_ext.algorithms.critic import DistributionalCritic
from lawr_ext.algorithms.flow import FlowBCPolicy, FlowDecoder
from lawr_ext.configs.baselines import (BestOfNConfig, DiffusionConfig, FlowBCConfig, FQLConfig, GaussianAWRConfig,
                                        OFQLConfig)
from lawr_ext.configs.critic import CriticConfig
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.configs.network import ChunkNetConfig


@dataclass
class BaselineContext:
    """What a baseline may be built from: the run's dimensions and the frozen outputs of Phases 1-2."""

    obs_dim: int
    horizon: int
    action_dim: int
    obs_normalizer: nn.Module                       # frozen, fitted on the dataset in Phase 1
    behavior_flow: FlowDecoder | None = None        # frozen Phase-1 decoder
    critic: DistributionalCritic | None = None      # frozen Phase-2 critic

    def require(self, artifact: str, baseline: str) -> Any:
        value = getattr(self, artifact)
        if value is None:
            raise ValueError(f"baseline {baseline!r} needs BaselineContext.{artifact} (train the earlier phase first)")
        return value

    @property
    def dims(self) -> tuple[int, int, int]:
        return self.obs_dim, self.horizon, self.action_dim


@dataclass(frozen=True)
class Baseline:
    config: type                                             # its config dataclass (configs/baselines.py)
    build: Callable[[Any, BaselineContext], Learner | ChunkPolicy]
    needs: tuple[str, ...]                                   # BaselineContext artifacts it requires


BASELINES: dict[str, Baseline] = {
    "flow_bc": Baseline(
        FlowBCConfig,
        lambda cfg, ctx: FlowBCPolicy(ctx.require("behavior_flow", "flow_bc"), ctx.obs_normalizer, cfg.sample_steps),
        needs=("behavior_flow",)),
    "gaussian_awr": Baseline(
        GaussianAWRConfig,
        lambda cfg, ctx: GaussianAWR(cfg, *ctx.dims, ctx.obs_normalizer, ctx.require("critic", "gaussian_awr").advantage),
        needs=("critic",)),
    "fql": Baseline(
        FQLConfig,
        lambda cfg, ctx: FQL(cfg, *ctx.dims, ctx.obs_normalizer, ctx.require("behavior_flow", "fql")),
        needs=("behavior_flow",)),
    "ofql": Baseline(
        OFQLConfig,
        lambda cfg, ctx: OFQL(cfg, *ctx.dims, ctx.obs_normalizer,
                              ctx.require("behavior_flow", "ofql") if cfg.init_from_behavior_flow else None),
        needs=("behavior_flow",)),
    "best_of_n": Baseline(
        BestOfNConfig,
        lambda cfg, ctx: BestOfNPolicy(ctx.require("behavior_flow", "best_of_n"), ctx.require("critic", "best_of_n"),
                                       ctx.obs_normalizer, cfg.num_samples, cfg.sample_steps),
        needs=("behavior_flow", "critic")),
    "diffusion": Baseline(
        DiffusionConfig,
        lambda cfg, ctx: DiffusionBC(cfg, *ctx.dims, ctx.obs_normalizer),
        needs=()),
}


def matched_config(name: str, flow: FlowConfig, critic: CriticConfig, **overrides: Any) -> Any:
    """The baseline's default config with its networks set to the L-AWR run's: the flow-shaped networks
    (FQL's one-step policy, OFQL's flow, the diffusion denoiser) get ``flow``'s architecture, the own critics
    of FQL/OFQL get ``critic``'s. Equal capacity is what makes the comparison about the algorithm."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    cfg = BASELINES[name].config()
    network = ChunkNetConfig.of(flow)
    matched = {"fql": {"actor": network, "critic": critic}, "ofql": {"flow": flow, "critic": critic},
               "diffusion": {"network": network}}.get(name, {})
    return replace(cfg, **(matched | overrides))
