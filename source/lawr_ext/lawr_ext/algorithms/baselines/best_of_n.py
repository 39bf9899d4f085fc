"""Best-of-N on L-AWR's critic: draw N chunks from the frozen behaviour flow, execute the one the Phase-2 critic
likes best.

No training beyond Phases 1-2. Like L-AWR it never leaves the behaviour manifold, but it pays N flow
samples plus N critic evaluations per decision and can only pick among what the prior happens to propose.
Reuses: the frozen Phase-1 flow and the frozen Phase-2 critic (min of the twin Q heads).

It is not QC (``qc.py``): QC's critic is trained by the best-of-N backup, so it values acting by best-of-N;
the Phase-2 critic is in-sample (its V an expectile of the data's Q), so it values the behaviour (kappa = 0.5)
or an in-sample improvement of it (kappa > 0.5). ``best_of_n_chunks`` is the selection both use.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from lawr_ext.algorithms.base import ChunkPolicy
from lawr_ext.algorithms.flow import FlowDecoder
from lawr_ext.algorithms.stage import Stage
from lawr_ext.modules.action_box import ActionBox


def best_of_n_chunks(behavior_flow: FlowDecoder, q_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     obs_norm: torch.Tensor, num_samples: int, sample_steps: int = 1,
                     box: ActionBox | None = None) -> torch.Tensor:
    """For each state [B, O]: N behaviour chunks, the one with the highest ``q_fn(obs_norm, chunks)`` [B, H, A].

    The candidates are clamped to the action box (``box``, ``modules/action_box.py``; None: [-1, 1], the data's
    box under min_max) before they are scored, as QC clips its flow samples.
    """
    batch_size = obs_norm.shape[0]
    repeated = obs_norm.repeat_interleave(num_samples, dim=0)  # [B*N, O], N per state in a row
    candidates = behavior_flow.sample(repeated, sample_steps)  # [B*N, H, A]
    candidates = candidates.clamp(-1.0, 1.0) if box is None else box.clamp(candidates)
    best = q_fn(repeated, candidates).view(batch_size, num_samples).argmax(dim=1)
    candidates = candidates.view(batch_size, num_samples, *candidates.shape[1:])
    return candidates[torch.arange(batch_size, device=obs_norm.device), best]


class BestOfNPolicy(ChunkPolicy):
    """raw obs -> N behaviour samples per observation -> argmax_i Q(s, chunk_i)."""

    def __init__(self, behavior_flow: FlowDecoder, critic: nn.Module, obs_normalizer: nn.Module,
                 num_samples: int, sample_steps: int = 1, action_box: ActionBox | None = None):
        """``critic`` is anything with ``q_value(obs_norm [B, O], chunks [B, H, A]) -> [B]`` (the Phase-2 critic,
        QC's own); ``action_box`` what the candidates are clamped to (None: [-1, 1])."""
        super().__init__()
        self.behavior_flow = behavior_flow
        self.critic = critic
        self.obs_normalizer = obs_normalizer
        self.action_box = action_box if action_box is not None else ActionBox()
        self.num_samples, self.sample_steps = num_samples, sample_steps
        self.horizon, self.action_dim = behavior_flow.horizon, behavior_flow.action_dim

    @torch.no_grad()
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return best_of_n_chunks(self.behavior_flow, self.critic.q_value, self.obs_normalizer(obs), self.num_samples,
                                self.sample_steps, self.action_box)


STAGE = Stage(
    "best_of_n", config="baselines.best_of_n", needs=("flow", "critic"), method="best_of_n",
    product=lambda cfg, x: BestOfNPolicy(x["flow"].decoder, x["critic"], x["flow"].obs_normalizer, cfg.num_samples,
                                         cfg.sample_steps, ActionBox.for_stage(x)),
)
