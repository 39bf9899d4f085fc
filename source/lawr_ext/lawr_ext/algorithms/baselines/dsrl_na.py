"""DSRL-NA: diffusion steering with noise aliasing (Wagenmaker et al. 2025, "Steering Your Diffusion Policy with
Latent Space RL"; ajwagen/dsrl with its Stable-Baselines3 fork, ``DSRL``). The "diffusion policy" is our frozen
flow T(w; s): the policy steers its input noise w and never changes its weights.

Objective as published (offline here, so without its online data collection):

    Q^A(s, a)   action critic, TD on the data's chunks, bootstrapped with the steered policy T(pi(s'); s')
    Q^W(s, w)   latent critic, head j regressed onto head j of Q^A at the flow's output, w ~ N(0, I):
                    loss = sum_j (Q^W_j(s, w) - Q^A_j(s, T(w; s)))^2              ("noise aliasing")
    pi(s) -> w  latent actor maximising min_j Q^W_j(s, pi(s)); a SAC actor in the box [-1.5, 1.5]^d

Q^W never needs the flow's Jacobian (the actor's gradient comes from Q^W alone), and every w the flow maps to
the same chunk gets that chunk's value, which is what makes steering the noise well posed.

DSRL's recipe (ajwagen/dsrl, ``cfg/robomimic``, and its Stable-Baselines3 fork's ``DSRL``): the noise box of
magnitude 1.5 (``action_magnitude``); two heads for Q^A and two for Q^W (``n_critics``); the min of the heads in
Q^A's TD target and in the actor's objective (``critic_backup_combine_type=min``); Q^W head j regressed onto head
j of Q^A at T(w; s) for w ~ N(0, I); 3 x 2048 LayerNorm networks, lr 3e-4, batch 256, tau 0.005.

Ours keeps the box, the two heads, the head-by-head aliasing and the min; it differs in:
  * Q^A: L-AWR's frozen Phase-2 critic (in-sample chunk TD on the data, HL-Gauss heads), not a critic trained
    alongside by TD bootstrapped with the steered policy (and with SAC's entropy term) on online data;
  * the actor: deterministic (DDPG-style, ``planner.LatentPlanner`` with ``latent="box"``), without SAC's
    entropy bonus, and its -Q^W divided by mean|Q^W| (``normalize_q_loss``, as LPS's DSRL-NA; DSRL does not);
  * the schedule: one Q^W step and one actor step per batch (DSRL: 20 critic/actor steps, then 10 Q^W steps, per
    env step);
  * Q^W's input: w itself (DSRL rescales it by 1 / 1.5 into the actor's unit box, a fixed linear map), squared
    errors summed over the heads (DSRL halves them: the same minimiser);
  * networks: the planner's actor and Q^W shaped like Phase 2's Q (``match_lawr``), not 3 x 2048.
``latent=sphere`` is LPS's reimplementation of DSRL-NA (which also reads the mean of the heads, not the min).
"""

from __future__ import annotations

from typing import Callable

import torch
from tensordict import TensorDict
from torch import nn

from lawr_ext.algorithms.base import Learner, freeze
from lawr_ext.algorithms.baselines.q_learning import TwinQ
from lawr_ext.algorithms.flow import FlowDecoder
from lawr_ext.algorithms.planner import LatentPlanner, LAWRPolicy
from lawr_ext.algorithms.stage import Stage
from lawr_ext.algorithms.training import optimizer_step, q_ascent_loss
from lawr_ext.configs.baselines import DSRLNAConfig
from lawr_ext.data import keys
from lawr_ext.modules.action_box import ActionBox


#: (obs_norm [B, O], chunk [B, H, A]) -> each Q head's value [2, B] (``DistributionalCritic.q_heads``).
QHeadsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class DSRLNA(Learner):
    """Q^A is ``action_q_heads``, the frozen Phase-2 critic's heads; only Q^W and the actor are trained."""

    def __init__(self, cfg: DSRLNAConfig, obs_dim: int, horizon: int, action_dim: int, decoder: FlowDecoder,
                 action_q_heads: QHeadsFn, obs_normalizer: nn.Module, action_box: ActionBox | None = None):
        super().__init__()
        self.cfg = cfg
        self.decoder = freeze(decoder)
        self.action_q_heads = action_q_heads  # a function, not a submodule: no checkpoint carries the critic
        self.obs_normalizer = obs_normalizer
        self.action_box = action_box if action_box is not None else ActionBox()  # what Q^A's chunks are clamped to
        self.actor = LatentPlanner(cfg, obs_dim, horizon, action_dim)
        self.noise_critic = TwinQ(cfg.noise_critic, obs_dim, horizon, action_dim, obs_normalizer,
                                  cfg.noise_critic_loss, aggregate="min")
        self.optimizers["noise_critic"] = self.noise_critic.optimizer
        self.optimizers["actor"] = torch.optim.Adam(self.actor.parameters(), lr=cfg.learning_rate)

    def train(self, mode: bool = True) -> DSRLNA:
        """The frozen flow and normaliser always stay in eval mode."""
        super().train(mode)
        self.decoder.eval()
        self.obs_normalizer.eval()
        return self

    def update(self, batch: TensorDict) -> dict[str, float]:
        obs_norm = self.obs_normalizer(batch[keys.OBS])

        # Noise aliasing: Q^W(s, w) <- Q^A(s, T(w; s)) head by head, w from the flow's prior.
        noise = torch.randn_like(batch[keys.ACTIONS])
        with torch.no_grad():
            chunks = self.action_box.clamp(self.decoder.decode(noise, obs_norm))  # the flow's output, in the box
            aliased = self.action_q_heads(obs_norm, chunks)
        alias_loss = self.noise_critic.loss(obs_norm, noise, aliased)
        critic_grad_norm = self.noise_critic.step(alias_loss, "DSRL-NA latent critic")

        # The latent actor climbs Q^W; backward also leaves gradients on Q^W, cleared before its next step.
        z = self.actor(obs_norm)
        q = self.noise_critic.q_value(obs_norm, z)
        actor_loss = q_ascent_loss(q, self.cfg.normalize_q_loss)
        actor_grad_norm = optimizer_step(self.optimizers["actor"], actor_loss, self.actor.parameters(),
                                         self.cfg.max_grad_norm, "DSRL-NA actor", q=q.mean())
        return {
            "dsrl_na/alias_loss": alias_loss.item(),
            "dsrl_na/q_action_mean": aliased.mean().item(),
            "dsrl_na/q_latent_mean": q.mean().item(),
            "dsrl_na/actor_loss": actor_loss.item(),
            "dsrl_na/latent_norm": (z.flatten(1).norm(dim=-1) / self.actor.typical_radius).mean().item(),
            "dsrl_na/critic_grad_norm": critic_grad_norm.item(),
            "dsrl_na/actor_grad_norm": actor_grad_norm.item(),
        }

    def policy(self) -> DSRLPolicy:
        return DSRLPolicy(self.obs_normalizer, self.actor, self.decoder)


class DSRLPolicy(LAWRPolicy):
    """raw obs -> frozen normaliser -> latent actor (in the noise box) -> frozen one-step flow -> chunk."""


STAGE = Stage(
    "dsrl_na", config="baselines.dsrl_na", needs=("flow", "critic"), method="dsrl_na",
    learner=lambda cfg, x: DSRLNA(cfg, *x.dims, x["flow"].decoder, x["critic"].q_heads,
                                  x["flow"].obs_normalizer, ActionBox.for_stage(x)),
    product=lambda cfg, x: DSRLPolicy(x["flow"].obs_normalizer, LatentPlanner(cfg, *x.dims), x["flow"].decoder),
)
