"""The critic side FQL and OFQL share: Phase 2's HL-Gauss twin-Q networks, trained by chunk-level TD that
bootstraps from the baseline's OWN policy (as FQL does), plus FQL's normalized Q-maximization term.

Unlike L-AWR's in-sample critic, the target queries Q at the policy's chunk for the next state,

    Q target = R + gamma^k (1 - terminal) min_j Q_target_j(s', pi(s'))

so these critics are exposed to out-of-dataset chunks: exactly the coupling the paper argues against.
Only the Q heads of the ``DistributionalCritic`` are used; its V network stays untrained.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict

from lawr_ext.algorithms.critic import DistributionalCritic, td_target
from lawr_ext.algorithms.training import optimizer_step
from lawr_ext.data import keys


def td_update(critic: DistributionalCritic, batch: TensorDict, obs_norm: torch.Tensor,
              next_actions: torch.Tensor) -> dict[str, float]:
    """One HL-Gauss TD step of both Q heads toward the policy-bootstrapped chunk target, then Polyak."""
    with torch.no_grad():
        next_obs_norm = critic.obs_normalizer(batch[keys.NEXT_OBS])
        q_target = td_target(batch, critic.q_value(next_obs_norm, next_actions, target=True))
    loss = critic.q_loss(critic.q_logits(obs_norm, batch[keys.ACTIONS]), q_target)
    grad_norm = optimizer_step(critic.optimizers["critic"], loss, critic.q_nets.parameters(), critic.cfg.max_grad_norm,
                               "baseline critic (TD)")
    critic.update_targets()
    return {"critic/q_loss": loss.item(), "critic/q_target_mean": q_target.mean().item(),
            "critic/grad_norm": grad_norm.item()}


def q_maximization_loss(critic: DistributionalCritic, obs_norm: torch.Tensor, actions: torch.Tensor,
                        normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """-Q(s, a) for policy chunks ``actions`` (gradient flows into them), and Q itself.

    FQL's normalization divides by the batch's mean |Q| (no grad), so the weight on the Q term is
    independent of the reward scale and alpha keeps its meaning across tasks.
    """
    q = critic.q_value(obs_norm, actions.clamp(-1.0, 1.0))
    loss = -q.mean()
    if normalize:
        loss = loss / q.abs().mean().detach().clamp_min(1e-6)
    return loss, q
