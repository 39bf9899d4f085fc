"""Latent Policy Steering (LPS; arXiv 2603.05296, RSS 2026; jellyho/LPS ``agents/lps.py``, ``extract_method=ddpg``).

The closest published method to L-AWR: the same one-step Mean Flow T(z; s), a deterministic latent actor, and
a critic of its own. As published, trained jointly, one step of each per batch:

    z = pi(s) = sqrt(d) u(s) / ||u(s)||                   on the sphere of radius sqrt(d) (``latent="sphere"``)
    a = clip(T(pi(s); s), -1, 1)                          the steered chunk
    Q_j(s, a) <- R + gamma^k (1 - terminal) min_j Q'_j(s', clip(T(pi(s'); s')))   two scalar MSE heads, Polyak Q'
    loss_pi = -alpha * mean_j Q_j(s, a) / stopgrad(mean |Q|)                         DDPG through the frozen flow

So its critic is NOT in-sample: it values the actor's own next chunks, off the data wherever the actor goes,
and the actor climbs that critic. (``q_learning.TwinQ``; ``q_agg`` "min" in the target, the mean of the heads in
the actor's loss, as published; alpha is ``q_weight``.)

Where ours differs from the paper's code:
  * its BC Mean Flow trains jointly with the rest (the latent loss never reaches it) on prior noise drawn on the
    sphere; ours is the frozen Phase-1 flow, trained before on Gaussian noise, so the sphere is the Gaussian
    prior's typical set rather than the flow's own prior;
  * its critic is 4 x 256 with LayerNorm and its latent actor a 2 x 256 MLP; ours take Phase 2's critic network
    and the planner's ResidualMLP, and the planner's budget (``baselines.match_lawr``; false: 4 x 256 critic);
  * its actor's gradient is not clipped; ours is clipped at the planner's ``max_grad_norm``;
  * the stage still lists Phase 2 among its needs: the ablation below reads it, and here its Q of the actor's
    chunks is logged (``lps/phase2_q``) beside the actor's own critic, which shows how far off the data it climbs.

``critic_source="phase2"`` is an ablation (this baseline's earlier form): no critic of its own, the actor climbs
L-AWR's frozen in-sample Phase-2 critic (min of its HL-Gauss heads), i.e. Phase 3's learner with the AWR term off
(``planner.LatentAWR`` with awr_weight 0, q_weight 1), acting with L-AWR's policy class.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torch import nn

from lawr_ext.algorithms.base import Learner, freeze
from lawr_ext.algorithms.baselines.q_learning import TwinQ, q_maximization_loss, td_update
from lawr_ext.algorithms.flow import FlowDecoder
from lawr_ext.algorithms.planner import LatentAWR, LatentPlanner, LAWRPolicy, QFn
from lawr_ext.algorithms.stage import Stage
from lawr_ext.algorithms.training import optimizer_step
from lawr_ext.configs.baselines import LPSConfig
from lawr_ext.data import keys
from lawr_ext.modules.action_box import ActionBox


class LPSPolicy(LAWRPolicy):
    """raw obs -> frozen normaliser -> latent actor (on the sphere) -> frozen one-step flow -> chunk."""


class LatentPolicySteering(Learner):
    """The published LPS: the latent actor and its own TD critic, trained jointly through the frozen flow.

    ``phase2_q`` (the frozen Phase-2 critic's Q, optional) is only logged, never trained on.
    """

    def __init__(self, cfg: LPSConfig, obs_dim: int, horizon: int, action_dim: int, decoder: FlowDecoder,
                 obs_normalizer: nn.Module, phase2_q: QFn | None = None, action_box: ActionBox | None = None):
        super().__init__()
        self.cfg = cfg
        self.decoder = freeze(decoder)
        self.obs_normalizer = obs_normalizer
        self.action_box = action_box if action_box is not None else ActionBox()  # the clip(., -1, 1) above
        self.phase2_q = phase2_q  # a function, not a submodule: no checkpoint carries Phase 2
        self.planner = LatentPlanner(cfg, obs_dim, horizon, action_dim)
        self.critic = TwinQ(cfg.critic, obs_dim, horizon, action_dim, obs_normalizer, cfg.critic_loss, cfg.q_agg)
        self.optimizers["critic"] = self.critic.optimizer
        self.optimizers["planner"] = torch.optim.Adam(self.planner.parameters(), lr=cfg.learning_rate)

    def train(self, mode: bool = True) -> LatentPolicySteering:
        """The frozen flow and normaliser always stay in eval mode."""
        super().train(mode)
        self.decoder.eval()
        self.obs_normalizer.eval()
        return self

    def steered_chunks(self, obs_norm: torch.Tensor) -> torch.Tensor:
        """T(pi(s); s) [B, H, A], not yet clipped (the gradient to the actor flows through it)."""
        return self.decoder.decode(self.planner(obs_norm), obs_norm)

    def update(self, batch: TensorDict) -> dict[str, float]:
        obs_norm = self.obs_normalizer(batch[keys.OBS])
        with torch.no_grad():  # the TD target bootstraps with the actor's own next chunk
            next_chunks = self.action_box.clamp(self.steered_chunks(self.obs_normalizer(batch[keys.NEXT_OBS])))
        info = td_update(self.critic, batch, obs_norm, next_chunks)

        z = self.planner(obs_norm)
        chunks = self.decoder.decode(z, obs_norm)
        q_loss, q = q_maximization_loss(self.critic, obs_norm, chunks, normalize=True, aggregate="mean",
                                        box=self.action_box)
        loss = self.cfg.q_weight * q_loss
        # backward also leaves gradients on the critic; its optimizer clears them before its next step
        grad_norm = optimizer_step(self.optimizers["planner"], loss, self.planner.parameters(),
                                   self.cfg.max_grad_norm, "LPS actor", q=q.mean())
        info |= {"lps/actor_loss": loss.item(), "lps/q_mean": q.mean().item(),
                 "lps/latent_norm": (z.flatten(1).norm(dim=-1) / self.planner.typical_radius).mean().item(),
                 "lps/actor_grad_norm": grad_norm.item()}
        if self.phase2_q is not None:
            with torch.no_grad():
                info["lps/phase2_q"] = self.phase2_q(obs_norm, self.action_box.clamp(chunks)).mean().item()
        return info

    def policy(self) -> LPSPolicy:
        return LPSPolicy(self.obs_normalizer, self.planner, self.decoder)


class LatentPolicySteeringOnPhase2(LatentAWR):
    """The ablation ``critic_source="phase2"``: Phase 3's learner with the Q term alone on the frozen Phase-2
    critic; only the policy's name is its own."""

    def policy(self) -> LPSPolicy:
        return LPSPolicy(self.obs_normalizer, self.planner, self.decoder)


def _learner(cfg: LPSConfig, x) -> Learner:
    flow, critic = x["flow"], x["critic"]
    if cfg.critic_source == "phase2":
        return LatentPolicySteeringOnPhase2(cfg, *x.dims, flow.decoder, critic.advantage, flow.obs_normalizer,
                                            critic.q_value)
    return LatentPolicySteering(cfg, *x.dims, flow.decoder, flow.obs_normalizer, critic.q_value,
                                ActionBox.for_stage(x))


STAGE = Stage(
    "lps", config="baselines.lps", needs=("flow", "critic"), method="lps", learner=_learner,
    product=lambda cfg, x: LPSPolicy(x["flow"].obs_normalizer, LatentPlanner(cfg, *x.dims), x["flow"].decoder),
)
