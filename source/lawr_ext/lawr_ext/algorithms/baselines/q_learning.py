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
from torch import nn

from lawr_ext.algorithms.critic import DistributionalCritic
from lawr_ext.data import keys


def td_update(critic: DistributionalCritic, batch: TensorDict, obs_norm: torch.Tensor,
              next_actions: torch.Tensor) -> dict[str, float]:
    """One HL-Gauss TD step of both Q heads toward the policy-bootstrapped chunk target, then Polyak."""
    with torch.no_grad():
        next_obs_norm = critic.obs_normalizer(batch[keys.NEXT_OBS])
        next_q = critic.q_value(next_obs_norm, next_actions, target=True)
        q_target = critic._td_target(batch, next_q)
    q_logits = critic._q_logits(critic.q_nets, obs_norm, batch[keys.ACTIONS])
    loss = sum(critic.hl_gauss.loss(logits, q_target).mean() for logits in q_logits)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"baseline critic: non-finite TD loss ({loss.item()}); check rewards and observations")
    optimizer = critic.optimizers["critic"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(critic.q_nets.parameters(), critic.cfg.max_grad_norm)
    optimizer.step()
    critic._polyak_update()
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
