"""The critic of the baselines that learn their own (FQL, OFQL, QC; DSRL-NA's latent critic): twin Q(s, chunk)
networks with Polyak targets, trained by chunk-level TD that bootstraps from the baseline's OWN policy,

    Q target = R + gamma^k (1 - terminal) agg_j Q_target_j(s', pi(s'))        agg: "min" (clipped double-Q) or "mean"

so these critics are exposed to out-of-dataset chunks: exactly the coupling the paper argues against (L-AWR's
critic, algorithms/critic.py, only ever queries dataset chunks).

Two kinds of head, one switch (``loss``):
  "hl_gauss"  Phase 2's: logits over [v_min, v_max], cross-entropy toward the HL-Gauss histogram of the target
  "mse"       one scalar per head and the squared error, as FQL, QC, LPS and DSRL publish it; the value is not
              bounded by a support, so nothing clips a target (``CriticConfig.v_min``/``v_max`` are unused)
The network is Phase 2's Q network (``mlp``: LayerNorm + GELU, ``hidden_dim`` x ``num_layers``); FQL's own is
4 x 512 with LayerNorm and GELU, i.e. ``critic.hidden_dim=512 critic.num_layers=4``.
"""

from __future__ import annotations

import copy

import torch
from tensordict import TensorDict
from torch import nn

from lawr_ext.algorithms.critic import td_target
from lawr_ext.algorithms.training import ema_update, optimizer_step, q_ascent_loss
from lawr_ext.configs.critic import CriticConfig
from lawr_ext.data import keys
from lawr_ext.modules.action_box import ActionBox
from lawr_ext.modules.hl_gauss import HLGauss
from lawr_ext.modules.mlp import mlp

Q_LOSSES, Q_AGGREGATES = ("hl_gauss", "mse"), ("min", "mean")


class TwinQ(nn.Module):
    """Two Q(obs_norm, chunk) heads, each its own network, plus their Polyak-averaged targets and an optimizer.

    ``chunk`` is anything shaped [B, H, A]: an action chunk, or DSRL-NA's latent w (its Q^W).
    """

    def __init__(self, cfg: CriticConfig, obs_dim: int, horizon: int, action_dim: int, obs_normalizer: nn.Module,
                 loss: str = "hl_gauss", aggregate: str = "min"):
        super().__init__()
        if loss not in Q_LOSSES or aggregate not in Q_AGGREGATES:
            raise ValueError(f"TwinQ: loss must be one of {Q_LOSSES} and aggregate one of {Q_AGGREGATES}, "
                             f"got {loss!r}, {aggregate!r}")
        self.cfg, self.aggregate = cfg, aggregate
        self.obs_normalizer = obs_normalizer
        self.hl_gauss = HLGauss(cfg.v_min, cfg.v_max, cfg.num_bins, cfg.sigma_ratio) if loss == "hl_gauss" else None
        out_dim = cfg.num_bins if self.hl_gauss is not None else 1
        self.q_nets = nn.ModuleList(
            mlp(obs_dim + horizon * action_dim, cfg.hidden_dim, out_dim, depth=cfg.num_layers) for _ in range(2))
        self.q_targets = copy.deepcopy(self.q_nets).requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.q_nets.parameters(), lr=cfg.learning_rate)

    def _outputs(self, obs_norm: torch.Tensor, chunks: torch.Tensor, target: bool) -> list[torch.Tensor]:
        x = torch.cat([obs_norm, chunks.flatten(1)], dim=-1)
        return [net(x) for net in (self.q_targets if target else self.q_nets)]

    def heads(self, obs_norm: torch.Tensor, chunks: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Both heads' Q values [2, B]; ``target`` reads the Polyak-averaged copies."""
        outputs = self._outputs(obs_norm, chunks, target)
        if self.hl_gauss is None:
            return torch.stack([out.squeeze(-1) for out in outputs])
        return torch.stack([self.hl_gauss.expectation(out) for out in outputs])

    def q_value(self, obs_norm: torch.Tensor, chunks: torch.Tensor, target: bool = False,
                aggregate: str | None = None) -> torch.Tensor:
        """The heads combined [B]: their min or mean (``aggregate``, default the critic's own)."""
        q = self.heads(obs_norm, chunks, target)
        # torch.minimum, not min(dim): on a tie (saturated HL-Gauss heads) it splits the gradient between the heads
        return torch.minimum(q[0], q[1]) if (aggregate or self.aggregate) == "min" else q.mean(dim=0)

    def loss(self, obs_norm: torch.Tensor, chunks: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Both heads toward ``target`` ([B], or one row per head [2, B]), summed over the heads."""
        outputs = self._outputs(obs_norm, chunks, target=False)
        targets = target.expand(len(outputs), -1)
        if self.hl_gauss is None:
            return sum((out.squeeze(-1) - y).square().mean() for out, y in zip(outputs, targets))
        return sum(self.hl_gauss.loss(out, y).mean() for out, y in zip(outputs, targets))

    def step(self, loss: torch.Tensor, what: str) -> torch.Tensor:
        """One gradient step of both heads on ``loss``; returns the gradient norm before clipping."""
        return optimizer_step(self.optimizer, loss, self.q_nets.parameters(), self.cfg.max_grad_norm, what)

    @torch.no_grad()
    def update_targets(self) -> None:
        ema_update(self.q_targets, self.q_nets, self.cfg.target_update_rate)


def td_update(critic: TwinQ, batch: TensorDict, obs_norm: torch.Tensor, next_actions: torch.Tensor) -> dict[str, float]:
    """One TD step of both heads toward the policy-bootstrapped chunk target, then Polyak."""
    with torch.no_grad():
        next_obs_norm = critic.obs_normalizer(batch[keys.NEXT_OBS])
        q_target = td_target(batch, critic.q_value(next_obs_norm, next_actions, target=True))
    loss = critic.loss(obs_norm, batch[keys.ACTIONS], q_target)
    grad_norm = critic.step(loss, "baseline critic (TD)")
    critic.update_targets()
    info = {"critic/q_loss": loss.item(), "critic/q_target_mean": q_target.mean().item(),
            "critic/grad_norm": grad_norm.item()}
    if critic.hl_gauss is not None:
        info["critic/target_outside_support"] = ((q_target < critic.cfg.v_min) | (q_target > critic.cfg.v_max)
                                                 ).float().mean().item()
    return info


def q_maximization_loss(critic: TwinQ, obs_norm: torch.Tensor, actions: torch.Tensor, normalize: bool,
                        aggregate: str | None = None,
                        box: ActionBox | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """-Q(s, a) for policy chunks ``actions`` (clamped to the action box first, as FQL clips; the gradient flows
    into them), and Q itself. ``normalize``: FQL's division by the batch's mean |Q| (``q_ascent_loss``).
    ``box``: the action box in the learners' coordinates (``modules/action_box.py``); None: [-1, 1]."""
    actions = actions.clamp(-1.0, 1.0) if box is None else box.clamp(actions)
    q = critic.q_value(obs_norm, actions, aggregate=aggregate)
    return q_ascent_loss(q, normalize), q
