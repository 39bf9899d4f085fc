"""Latent Policy Steering (LPS; arXiv 2603.05296, RSS 2026; jellyho/LPS ``agents/lps.py``, ``extract_method=ddpg``).

The closest published method to L-AWR: the same frozen one-step Mean Flow T(z; s), the same deterministic latent
actor, another objective. As published:

    z = pi(s) = sqrt(d) u(s) / ||u(s)||                    on the sphere of radius sqrt(d) (``latent="sphere"``)
    loss = -Q(s, T(pi(s); s)) / mean|Q|                    DDPG through the frozen flow (lambda = 1 / mean|Q|, no grad)

i.e. Phase 3 with the AWR regression off and only its Q term on (``LPSConfig``: awr_weight 0, q_weight 1), so
it is trained by L-AWR's own learner (``planner.LatentAWR``) and acts with L-AWR's policy class: the two share
every line but the loss weights. ``planner.awr_weight=1 planner.q_weight=beta`` sits between them.

Where ours differs from the paper's code:
  * the critic is L-AWR's frozen Phase-2 critic (in-sample chunk TD, HL-Gauss, min of the twin heads); LPS trains
    an MSE twin critic alongside, bootstrapped with its own steered policy, and reads the MEAN of its heads;
  * its BC flow is trained jointly (the latent loss never reaches it), ours is the frozen Phase-1 flow; it clips
    the decoded chunk to [-1, 1] before Q (no gradient past the box), ours feeds the decoded chunk as it is (as
    L-AWR's q_weight term does; the sphere keeps z where the flow decodes chunks near the data);
  * its latent actor is a 2 x 256 MLP; ours is the planner's ResidualMLP (``match_lawr``: equal capacity) with
    the planner's budget.
"""

from __future__ import annotations

from lawr_ext.algorithms.planner import LatentAWR, LatentPlanner, LAWRPolicy
from lawr_ext.algorithms.stage import Stage


class LPSPolicy(LAWRPolicy):
    """raw obs -> frozen normaliser -> latent actor (on the sphere) -> frozen one-step flow -> chunk."""


class LatentPolicySteering(LatentAWR):
    """Phase 3's learner under ``LPSConfig`` (the Q term alone); only the policy's name is its own."""

    def policy(self) -> LPSPolicy:
        return LPSPolicy(self.obs_normalizer, self.planner, self.decoder)


STAGE = Stage(
    "lps", config="baselines.lps", needs=("flow", "critic"), method="lps",
    learner=lambda cfg, x: LatentPolicySteering(cfg, *x.dims, x["flow"].decoder, x["critic"].advantage,
                                                x["flow"].obs_normalizer, x["critic"].q_value),
    product=lambda cfg, x: LPSPolicy(x["flow"].obs_normalizer, LatentPlanner(cfg, *x.dims), x["flow"].decoder),
)
