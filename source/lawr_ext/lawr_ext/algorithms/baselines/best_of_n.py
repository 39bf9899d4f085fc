"""QC-style best-of-N: draw N chunks from the frozen behaviour flow, execute the one the Phase-2 critic likes best.

No training beyond Phases 1-2. Like L-AWR it never leaves the behaviour manifold, but it pays N flow
samples plus N critic evaluations per decision and can only pick among what the prior happens to propose.
Reuses: the frozen Phase-1 flow and the frozen Phase-2 critic (min of the twin Q heads).
"""

from __future__ import annotations

import torch
from torch import nn

from lawr_ext.algorithms.base import ChunkPolicy
from lawr_ext.algorithms.flow import FlowDecoder
from lawr_ext.algorithms.stage import Stage


class BestOfNPolicy(ChunkPolicy):
    """raw obs -> N behaviour samples per observation -> argmax_i Q(s, chunk_i)."""

    def __init__(self, behavior_flow: FlowDecoder, critic: nn.Module, obs_normalizer: nn.Module,
                 num_samples: int, sample_steps: int = 1):
        """``critic`` is anything with ``q_value(obs_norm [B, O], chunks [B, H, A]) -> [B]`` (the Phase-2 critic)."""
        super().__init__()
        self.behavior_flow = behavior_flow
        self.critic = critic
        self.obs_normalizer = obs_normalizer
        self.num_samples, self.sample_steps = num_samples, sample_steps
        self.horizon, self.action_dim = behavior_flow.horizon, behavior_flow.action_dim

    @torch.no_grad()
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        batch_size = obs.shape[0]
        obs_norm = self.obs_normalizer(obs).repeat_interleave(self.num_samples, dim=0)  # [B*N, O], N per obs in a row
        candidates = self.behavior_flow.sample(obs_norm, self.sample_steps)                # [B*N, H, A]
        q = self.critic.q_value(obs_norm, candidates).view(batch_size, self.num_samples)
        best = q.argmax(dim=1)
        return candidates.view(batch_size, self.num_samples, self.horizon, self.action_dim)[
            torch.arange(batch_size, device=obs.device), best]


STAGE = Stage(
    "best_of_n", config="baselines.best_of_n", needs=("flow", "critic"), method="best_of_n",
    product=lambda cfg, x: BestOfNPolicy(x["flow"].decoder, x["critic"], x["flow"].obs_normalizer, cfg.num_samples,
                                         cfg.sample_steps),
)
