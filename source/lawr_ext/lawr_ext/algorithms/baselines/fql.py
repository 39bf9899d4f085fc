"""FQL on action chunks (QC-FQL; Park et al. 2025, "Flow Q-Learning"; Li et al. 2025, "Q-chunking").

Three pieces:
  * a BC flow pi_bc(s, z) sampled in ``bc_flow_steps`` steps: here the FROZEN Phase-1 behaviour flow. FQL trains
    its BC flow alongside, but that loss depends on nothing else, so a pre-trained one is the same algorithm,
    and it makes the behaviour model identical to L-AWR's;
  * a one-step policy mu(s, z) (the flow decoder's architecture, own weights, one forward pass) trained with

        loss = alpha * || mu(s, z) - pi_bc(s, z) ||^2  -  Q(s, mu(s, z)) / mean|Q|

    i.e. distillation keeps mu near the behaviour flow's noise->chunk map while the Q term moves it uphill;
  * its own HL-Gauss twin-Q critic trained by chunk-level TD bootstrapped with mu (see q_learning.py).

Reuses: the frozen Phase-1 flow (distillation target), the Phase-2 critic networks/loss (new weights).
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torch import nn

from lawr_ext.algorithms.base import ChunkPolicy, Learner, freeze
from lawr_ext.algorithms.baselines.q_learning import TwinQ, q_maximization_loss, td_update
from lawr_ext.algorithms.flow import FlowDecoder, build_chunk_net, one_step
from lawr_ext.algorithms.stage import Stage
from lawr_ext.algorithms.training import optimizer_step
from lawr_ext.configs.baselines import FQLConfig
from lawr_ext.data import keys
from lawr_ext.modules.action_box import ActionBox


class FQL(Learner):
    def __init__(self, cfg: FQLConfig, obs_dim: int, horizon: int, action_dim: int, obs_normalizer: nn.Module,
                 behavior_flow: FlowDecoder, action_box: ActionBox | None = None):
        super().__init__()
        self.cfg = cfg
        self.obs_normalizer = obs_normalizer
        self.action_box = action_box if action_box is not None else ActionBox()  # what mu's chunks are clamped to
        self.behavior_flow = freeze(behavior_flow)  # only read, never trained
        self.actor = build_chunk_net(cfg.actor, obs_dim, horizon, action_dim)  # mu(s, z) = one_step(actor, z, s)
        self.critic = TwinQ(cfg.critic, obs_dim, horizon, action_dim, obs_normalizer, cfg.critic_loss, cfg.q_agg)
        self.optimizers["critic"] = self.critic.optimizer
        self.optimizers["actor"] = torch.optim.Adam(self.actor.parameters(), lr=cfg.learning_rate)

    def one_step_policy(self, obs_norm: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """mu(s, z) [B, H, A], with z ~ N(0, I) unless given."""
        if noise is None:
            noise = torch.randn(obs_norm.shape[0], self.actor.horizon, self.actor.action_dim, device=obs_norm.device)
        return one_step(self.actor, noise, obs_norm)

    def update(self, batch: TensorDict) -> dict[str, float]:
        obs_norm = self.obs_normalizer(batch[keys.OBS])
        with torch.no_grad():
            next_actions = self.action_box.clamp(self.one_step_policy(self.obs_normalizer(batch[keys.NEXT_OBS])))
        info = td_update(self.critic, batch, obs_norm, next_actions)

        noise = torch.randn_like(batch[keys.ACTIONS])
        with torch.no_grad():  # the behaviour flow's multi-step sample from the SAME z the actor decodes
            bc_target = self.behavior_flow.sample(obs_norm, self.cfg.bc_flow_steps, noise=noise)
        actions = one_step(self.actor, noise, obs_norm)
        distill_loss = (actions - bc_target).square().mean()
        # FQL reads the mean of the heads here whatever q_agg says (q_agg only shapes the TD target)
        q_loss, q = q_maximization_loss(self.critic, obs_norm, actions, self.cfg.normalize_q_loss, aggregate="mean",
                                        box=self.action_box)
        loss = self.cfg.alpha * distill_loss + q_loss
        # backward also leaves gradients on the critic; its optimizer clears them before its next step
        grad_norm = optimizer_step(self.optimizers["actor"], loss, self.actor.parameters(), self.cfg.max_grad_norm,
                                   "FQL actor", distill=distill_loss, q=q_loss)
        return info | {
            "fql/actor_loss": loss.item(),
            "fql/distill_loss": distill_loss.item(),
            "fql/q_loss": q_loss.item(),
            "fql/q_mean": q.mean().item(),
            "fql/actor_grad_norm": grad_norm.item(),
        }

    def policy(self) -> FQLPolicy:
        return FQLPolicy(self.actor, self.obs_normalizer, self.action_box)


class FQLPolicy(ChunkPolicy):
    """raw obs -> normalize -> mu(s, z), z ~ N(0, I) from torch's global RNG, clamped to the action box
    (``modules/action_box.py``; none given: [-1, 1])."""

    def __init__(self, actor: nn.Module, obs_normalizer: nn.Module, action_box: ActionBox | None = None):
        super().__init__()
        self.actor = actor
        self.obs_normalizer = obs_normalizer
        self.action_box = action_box if action_box is not None else ActionBox()
        self.horizon, self.action_dim = actor.horizon, actor.action_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(obs.shape[0], self.horizon, self.action_dim, device=obs.device)
        return self.action_box.clamp(one_step(self.actor, noise, self.obs_normalizer(obs)))


STAGE = Stage(
    "fql", config="baselines.fql", needs=("flow",), method="fql",
    learner=lambda cfg, x: FQL(cfg, *x.dims, x["flow"].obs_normalizer, x["flow"].decoder, ActionBox.for_stage(x)),
    product=lambda cfg, x: FQLPolicy(build_chunk_net(cfg.actor, *x.dims), x["flow"].obs_normalizer,
                                     ActionBox.for_stage(x)),
)
