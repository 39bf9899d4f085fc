"""OFQL-style baseline: ONE Mean Flow policy trained jointly on its flow loss and on Q (the "terraform" approach).

    loss = MeanFlowLoss(batch)  -  alpha * Q(s, T(z; s)) / mean|Q|,      T(z; s) = the flow's one-step map

The same vector field has to model the data AND climb Q, so the Q-gradient deforms the flow itself; the flow
loss is only a soft constraint keeping it on the data manifold. L-AWR instead freezes the flow (hard
constraint) and moves only the latent. The critic is its own HL-Gauss twin Q trained by TD bootstrapped with
the policy (q_learning.py), as in FQL.

Reuses: the Phase-1 ``MeanFlow`` learner (network, loss, EMA; by default started from the frozen Phase-1
weights, so it fine-tunes the behaviour model) and the Phase-2 critic networks/loss (new weights).
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torch import nn

from lawr_ext.algorithms.base import Learner
from lawr_ext.algorithms.baselines.q_learning import TwinQ, q_maximization_loss, td_update
from lawr_ext.algorithms.flow import FlowBCPolicy, FlowDecoder, MeanFlow, build_flow_decoder
from lawr_ext.algorithms.stage import Stage
from lawr_ext.algorithms.training import optimizer_step
from lawr_ext.configs.baselines import OFQLConfig
from lawr_ext.data import keys
from lawr_ext.modules.action_box import ActionBox


class OFQL(Learner):
    def __init__(self, cfg: OFQLConfig, obs_dim: int, horizon: int, action_dim: int, obs_normalizer: nn.Module,
                 behavior_flow: FlowDecoder | None = None, action_box: ActionBox | None = None):
        super().__init__()
        self.cfg = cfg
        self.obs_normalizer = obs_normalizer
        self.action_box = action_box if action_box is not None else ActionBox()  # what Q's chunks are clamped to
        self.mean_flow = MeanFlow(cfg.flow, obs_dim, horizon, action_dim, obs_normalizer)
        if cfg.init_from_behavior_flow:
            if behavior_flow is None:
                raise ValueError("OFQLConfig.init_from_behavior_flow=True needs the Phase-1 behavior_flow")
            self.mean_flow.decoder.load_state_dict(behavior_flow.state_dict())
            self.mean_flow.ema.module.load_state_dict(behavior_flow.state_dict())
        self.critic = TwinQ(cfg.critic, obs_dim, horizon, action_dim, obs_normalizer, cfg.critic_loss, cfg.q_agg)
        self.optimizers["critic"] = self.critic.optimizer
        self.optimizers["flow"] = self.mean_flow.optimizers["flow"]

    def update(self, batch: TensorDict) -> dict[str, float]:
        decoder = self.mean_flow.decoder
        obs_norm = self.obs_normalizer(batch[keys.OBS])
        with torch.no_grad():
            next_obs_norm = self.obs_normalizer(batch[keys.NEXT_OBS])
            next_actions = self.action_box.clamp(decoder.decode(torch.randn_like(batch[keys.ACTIONS]), next_obs_norm))
        info = td_update(self.critic, batch, obs_norm, next_actions)

        flow_loss, flow_info = self.mean_flow.loss(batch)
        actions = decoder.decode(torch.randn_like(batch[keys.ACTIONS]), obs_norm)
        q_loss, q = q_maximization_loss(self.critic, obs_norm, actions, self.cfg.normalize_q_loss, box=self.action_box)
        loss = flow_loss + self.cfg.alpha * q_loss
        # backward also leaves gradients on the critic; its optimizer clears them before its next step
        grad_norm = optimizer_step(self.optimizers["flow"], loss, decoder.parameters(), self.cfg.flow.max_grad_norm,
                                   "OFQL policy", flow=flow_loss, q=q_loss)
        self.mean_flow.update_ema()
        return info | flow_info | {
            "ofql/policy_loss": loss.item(),
            "ofql/q_loss": q_loss.item(),
            "ofql/q_mean": q.mean().item(),
            "ofql/grad_norm": grad_norm.item(),
        }

    def policy(self) -> FlowBCPolicy:
        """The one-step sampler of the (EMA) fine-tuned flow: same class as Flow BC, different weights."""
        return FlowBCPolicy(self.mean_flow.ema.module, self.obs_normalizer, num_steps=1)


STAGE = Stage(
    "ofql", config="baselines.ofql", needs=("flow",), method="ofql",
    learner=lambda cfg, x: OFQL(cfg, *x.dims, x["flow"].obs_normalizer,
                                x["flow"].decoder if cfg.init_from_behavior_flow else None, ActionBox.for_stage(x)),
    product=lambda cfg, x: FlowBCPolicy(build_flow_decoder(cfg.flow, *x.dims), x["flow"].obs_normalizer),
)
