"""Phase 2 of L-AWR: distributional (HL-Gauss) critics V(s) and Q(s, a_chunk) and the advantage.

Everything is chunk-level: one "action" is a whole chunk a_t..a_{t+H-1} and one TD step jumps H env steps.

    Q target  = R + gamma^k (1 - terminal) V_target(s_{t+k})       R = sum_{i<k} gamma^i r_{t+i}  (from the loader)
    V target  = min_j Q_target_j(s, a_data)                         in-sample: only dataset chunks are queried
    V weight  = |kappa - 1(V target < V(s))|                         expectile; kappa = 0.5 -> behaviour value

Both are cross-entropy losses toward HL-Gauss histograms of the scalar targets; the scalar value is the
expectation of the predicted distribution. Networks see observations normalised by the frozen normaliser
fitted in Phase 1; batches carry raw observations.
"""

from __future__ import annotations

import copy

import torch
from tensordict import TensorDict
from torch import nn

from lawr_ext.algorithms.base import Learner
from lawr_ext.algorithms.training import ema_update, optimizer_step
from lawr_ext.configs.critic import CriticConfig, GuardConfig
from lawr_ext.data import keys
from lawr_ext.modules.hl_gauss import HLGauss
from lawr_ext.modules.mlp import mlp
from lawr_ext.modules.vision import ObservationEncoder


class DistributionalCritic(Learner):
    def __init__(self, cfg: CriticConfig, obs_dim: int, horizon: int, action_dim: int, obs_normalizer: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.horizon, self.action_dim = horizon, action_dim
        encoder_params = []
        if cfg.finetune_encoder and isinstance(obs_normalizer, ObservationEncoder):
            # its own copy of Phase 1's frozen vision encoder, trained with the critics (random shifts on) and
            # saved in its product; Phase 1's stays as it is
            obs_normalizer = copy.deepcopy(obs_normalizer).train()
            encoder_params = list(obs_normalizer.cnn.requires_grad_(True).parameters())
        self.obs_normalizer = obs_normalizer
        self.hl_gauss = HLGauss(cfg.v_min, cfg.v_max, cfg.num_bins, cfg.sigma_ratio)

        chunk_dim = horizon * action_dim
        self.v_net = mlp(obs_dim, cfg.hidden_dim, cfg.num_bins, depth=cfg.num_layers)
        # Two Q heads, each its own network; the min of the two curbs overestimation (clipped double-Q).
        self.q_nets = nn.ModuleList(
            mlp(obs_dim + chunk_dim, cfg.hidden_dim, cfg.num_bins, depth=cfg.num_layers) for _ in range(2)
        )
        self.v_target = copy.deepcopy(self.v_net).requires_grad_(False)
        self.q_targets = copy.deepcopy(self.q_nets).requires_grad_(False)

        params = list(self.v_net.parameters()) + list(self.q_nets.parameters()) + encoder_params
        self.optimizers["critic"] = torch.optim.Adam(params, lr=cfg.learning_rate, foreach=True)

    # --- the pieces: twin Q, value head, TD target (FQL's and OFQL's own critics reuse them) ----------------
    def q_logits(self, obs_norm: torch.Tensor, actions: torch.Tensor, target: bool = False) -> list[torch.Tensor]:
        """Both Q heads' logits [B, num_bins] for chunks [B, H, A]; ``target`` reads the Polyak-averaged copies."""
        x = torch.cat([obs_norm, actions.flatten(1)], dim=-1)
        return [net(x) for net in (self.q_targets if target else self.q_nets)]

    def q_heads(self, obs_norm: torch.Tensor, actions: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Both Q heads' values [2, B] (the expectations of their distributions)."""
        return torch.stack([self.hl_gauss.expectation(l) for l in self.q_logits(obs_norm, actions, target)])

    def q_value(self, obs_norm: torch.Tensor, actions: torch.Tensor, target: bool = False) -> torch.Tensor:
        """min over the two Q heads of Q(s, chunk) [B] (clipped double-Q)."""
        return torch.minimum(*(self.hl_gauss.expectation(l) for l in self.q_logits(obs_norm, actions, target)))

    def q_loss(self, q_logits: list[torch.Tensor], q_target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of both heads toward the HL-Gauss histogram of the scalar target, summed over heads."""
        return sum(self.hl_gauss.loss(logits, q_target).mean() for logits in q_logits)

    def value(self, obs_norm: torch.Tensor, target: bool = False) -> torch.Tensor:
        """V(s) [B] from normalised observations [B, O]; ``target`` reads the Polyak-averaged copy."""
        return self.hl_gauss.expectation((self.v_target if target else self.v_net)(obs_norm))

    @torch.no_grad()
    def update_targets(self) -> None:
        """Polyak step of the target networks toward the online ones (rate ``target_update_rate``)."""
        for online, target in ((self.v_net, self.v_target), (self.q_nets, self.q_targets)):
            ema_update(target, online, self.cfg.target_update_rate)

    @torch.no_grad()
    def advantage(self, batch: TensorDict) -> torch.Tensor:
        """A(s, a_chunk) [B] of the batch's dataset chunks (raw observations in the batch).

        "q_minus_v": target min-Q(s, a) - V(s), the quantity V was regressed toward, so that E_data[A] ~ 0
        under kappa = 0.5. "one_step": the paper's R + gamma^k (1 - terminal) V(s') - V(s), which needs no Q.
        """
        obs_norm = self.obs_normalizer(batch[keys.OBS])
        v = self.value(obs_norm)
        if self.cfg.advantage == "one_step":
            next_v = self.value(self.obs_normalizer(batch[keys.NEXT_OBS]))
            return td_target(batch, next_v) - v
        return self.q_value(obs_norm, batch[keys.ACTIONS], target=True) - v

    def product(self) -> DistributionalCritic:
        return self

    # --- one gradient step -----------------------------------------------------------------------------
    def update(self, batch: TensorDict) -> dict[str, float]:
        obs_norm = self.obs_normalizer(batch[keys.OBS])
        actions = batch[keys.ACTIONS]
        with torch.no_grad():
            q_target = td_target(batch, self.value(self.obs_normalizer(batch[keys.NEXT_OBS]), target=True))
            v_target = self.q_value(obs_norm, actions, target=True)

        # Q: both heads toward the chunk-level TD target.
        q_logits = self.q_logits(obs_norm, actions)
        q_loss = self.q_loss(q_logits, q_target)

        # V: in-sample expectile regression, done as an expectile-weighted cross-entropy.
        v_logits = self.v_net(obs_norm)
        v = self.hl_gauss.expectation(v_logits)
        expectile_weight = (self.cfg.expectile - (v_target < v.detach()).float()).abs()
        v_loss = (expectile_weight * self.hl_gauss.loss(v_logits, v_target)).mean()

        optimizer = self.optimizers["critic"]
        grad_norm = optimizer_step(optimizer, q_loss + v_loss, optimizer.param_groups[0]["params"],
                                   self.cfg.max_grad_norm, "critic", q_loss=q_loss, v_loss=v_loss)
        self.update_targets()

        with torch.no_grad():
            q = torch.minimum(*(self.hl_gauss.expectation(l) for l in q_logits))
            outside = (q_target < self.cfg.v_min) | (q_target > self.cfg.v_max)
            return {
                "critic/q_loss": q_loss.item(),
                "critic/v_loss": v_loss.item(),
                "critic/v_mean": v.mean().item(),
                "critic/q_mean": q.mean().item(),
                "critic/q_target_mean": q_target.mean().item(),
                "critic/td_error": (q - q_target).abs().mean().item(),
                "critic/advantage_mean": (v_target - v).mean().item(),
                "critic/v_entropy": self.hl_gauss.entropy(v_logits).mean().item(),
                "critic/q_entropy": self.hl_gauss.entropy(q_logits[0]).mean().item(),
                "critic/target_outside_support": outside.float().mean().item(),
                "critic/grad_norm": grad_norm.item(),
            }


def divergence(metrics: dict[str, float], cfg: CriticConfig, guard: GuardConfig) -> str | None:
    """Why a critic step's metrics mean the critic is diverging, or None; judged against its value support."""
    width = cfg.v_max - cfg.v_min
    outside = metrics.get("critic/target_outside_support", 0.0)
    if outside > guard.max_outside_support:
        return (f"critic diverging: {outside:.0%} of the TD targets lie outside the value support "
                f"[{cfg.v_min}, {cfg.v_max}] (limit {guard.max_outside_support:.0%}); "
                f"widen critic.v_min/critic.v_max or check the rewards")
    td_error = metrics.get("critic/td_error", 0.0)
    if td_error > guard.max_td_error * width:
        return (f"critic diverging: mean |Q - TD target| = {td_error:.3g} exceeds "
                f"{guard.max_td_error} x the support width {width:.3g}")
    return None


def td_target(batch: TensorDict, next_value: torch.Tensor) -> torch.Tensor:
    """The chunk-level TD target R + gamma^k (1 - terminal) * next_value [B] (R and gamma^k from the loader)."""
    return batch[keys.REWARD] + batch[keys.DISCOUNT] * (1.0 - batch[keys.TERMINAL]) * next_value
