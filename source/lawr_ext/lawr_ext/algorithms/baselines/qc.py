"""QC: Q-chunking with best-of-N (Li et al. 2025, "Reinforcement Learning with Action Chunking"; ColinQiyangLi/qc,
``agents/acfql.py`` with ``actor_type=best-of-n``, ``actor_num_samples=32``).

Objective as published: a critic over the WHOLE chunk, trained by chunked TD whose backup acts as the policy
does, by best-of-N from the behaviour flow:

    a'_1..a'_N ~ pi_bc(. | s')                       N = 32 behaviour chunks for the next state
    a'* = argmax_i agg_j Q_j(s', a'_i)               picked with the online critic
    Q target = R + gamma^k (1 - terminal) agg_j Q_target_j(s', a'*)      R, gamma^k: the chunk's (H = 5 there)
    loss = sum_j (Q_j(s, a_data) - target)^2          MSE twin critic, 4 x 512, agg = mean

and acting is the same argmax over N fresh behaviour chunks (no actor network). The BC flow is trained alongside
on a flow-matching loss that depends on nothing else.

Ours: the BC flow is the frozen Phase-1 Mean Flow (the same behaviour model as L-AWR's), sampled with its
one-step map (``sample_steps``; QC integrates its flow-matching field in 10 Euler steps); the critic is Phase 2's
Q network shape (``critic`` matched to L-AWR's), with MSE heads by default (``critic_loss=hl_gauss``: Phase 2's
heads). Unlike ``best_of_n.py`` (same acting rule on L-AWR's in-sample critic), this critic values acting by
best-of-N, which is what makes the argmax at test time consistent with the backup.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torch import nn

from lawr_ext.algorithms.base import Learner, freeze
from lawr_ext.algorithms.baselines.best_of_n import BestOfNPolicy, best_of_n_chunks
from lawr_ext.algorithms.baselines.q_learning import TwinQ, td_update
from lawr_ext.algorithms.flow import FlowDecoder
from lawr_ext.algorithms.stage import Stage
from lawr_ext.configs.baselines import QCConfig
from lawr_ext.data import keys
from lawr_ext.modules.action_box import ActionBox


class QC(Learner):
    def __init__(self, cfg: QCConfig, obs_dim: int, horizon: int, action_dim: int, obs_normalizer: nn.Module,
                 behavior_flow: FlowDecoder, action_box: ActionBox | None = None):
        super().__init__()
        self.cfg = cfg
        self.obs_normalizer = obs_normalizer
        self.action_box = action_box if action_box is not None else ActionBox()  # the candidates' box
        self.behavior_flow = freeze(behavior_flow)  # only sampled, never trained
        self.critic = TwinQ(cfg.critic, obs_dim, horizon, action_dim, obs_normalizer, cfg.critic_loss, cfg.q_agg)
        self.optimizers["critic"] = self.critic.optimizer

    def best_chunk(self, obs_norm: torch.Tensor) -> torch.Tensor:
        """Best-of-N from the behaviour flow under the online critic: the backup's next chunk and the action."""
        return best_of_n_chunks(self.behavior_flow, self.critic.q_value, obs_norm, self.cfg.num_samples,
                                self.cfg.sample_steps, self.action_box)

    def update(self, batch: TensorDict) -> dict[str, float]:
        obs_norm = self.obs_normalizer(batch[keys.OBS])
        with torch.no_grad():
            next_actions = self.best_chunk(self.obs_normalizer(batch[keys.NEXT_OBS]))
        info = td_update(self.critic, batch, obs_norm, next_actions)
        with torch.no_grad():
            q_data = self.critic.q_value(obs_norm, batch[keys.ACTIONS])
        return info | {"qc/q_data_mean": q_data.mean().item()}

    def policy(self) -> QCPolicy:
        return QCPolicy(self.behavior_flow, self.critic, self.obs_normalizer, self.cfg.num_samples,
                        self.cfg.sample_steps, self.action_box)


class QCPolicy(BestOfNPolicy):
    """raw obs -> N behaviour chunks -> the one QC's own critic scores highest (``BestOfNPolicy``'s rule)."""


STAGE = Stage(
    "qc", config="baselines.qc", needs=("flow",), method="qc",
    learner=lambda cfg, x: QC(cfg, *x.dims, x["flow"].obs_normalizer, x["flow"].decoder, ActionBox.for_stage(x)),
    product=lambda cfg, x: QCPolicy(x["flow"].decoder, TwinQ(cfg.critic, *x.dims, x["flow"].obs_normalizer,
                                                             cfg.critic_loss, cfg.q_agg),
                                    x["flow"].obs_normalizer, cfg.num_samples, cfg.sample_steps,
                                    ActionBox.for_stage(x)),
)
