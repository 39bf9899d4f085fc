"""ACT-style chunk regressor: the LeRobot / ALOHA default (Zhao et al. 2023, "Learning Fine-Grained Bimanual
Manipulation with Low-Cost Hardware"; LeRobot ``policies/act/modeling_act.py``).

Objective as published: a deterministic decoder predicts the whole chunk from the observation and a CVAE latent,

    mu, log sigma^2 = encoder(s, a_{t:t+H})                  training only
    z = mu + sigma * eps                                    (z = 0, the prior's mean, when acting)
    loss = mean |a_hat(s, z) - a| over the real (unpadded) chunk entries + kl_weight * KL(N(mu, sigma^2) || N(0, I))

with latent 32 and KL weight 10, trained with AdamW (lr 1e-5, weight decay 1e-4); acting optionally with
temporal ensembling (query every step, average the still-valid predictions with weights exp(-m i), m = 0.01).

Ours: observations through the frozen Phase-1 normalizer and chunks in the action normalizer's coordinates
(ACT standardizes both), so it sees exactly the data L-AWR sees; the network is the flow's (``match_lawr``):
``network.arch=mlp`` a ResidualMLP of the flow's width and depth from [obs, z] to the flat chunk,
``transformer`` the flow's chunk transformer read at a zero input (its position embeddings act as ACT's learned
queries; ACT's is a ResNet + transformer encoder-decoder with 4 + 1 layers); the CVAE encoder is a ResidualMLP over
[obs, chunk] (ACT's: a 4-layer transformer over [CLS, joints, actions]) and is off by default (``use_vae``):
the plain L1 regressor is the strong peer measured on Bimanual-Chunk; lr 3e-4 (ACT's 1e-5 is tuned for a ResNet
backbone and 100k+ steps). The L1 mean is per chunk over its real entries (``masked_mean``), then over chunks;
LeRobot's averages every entry, padding included as zeros.

What it learns, by construction: the L1 minimiser is the per-entry conditional MEDIAN of the data's chunks, so
on a unimodal target it recovers the mode, on a bimodal one it lands on the majority mode when one mode holds
more than half the data and anywhere between the modes when they are equally likely (``tests/test_baselines.py``).
Temporal ensembling lives in the evaluation (``EvalConfig``): ``scripts/evaluate.py --policy act --exec_horizon 1
--temporal_ensemble --ensemble_decay 0.01``.
"""

from __future__ import annotations

import torch
from tensordict import TensorDict
from torch import nn

from lawr_ext.algorithms.base import ChunkPolicy, Learner
from lawr_ext.algorithms.flow import build_chunk_net, one_step
from lawr_ext.algorithms.stage import Stage
from lawr_ext.algorithms.training import masked_mean, optimizer_step
from lawr_ext.configs.baselines import ACTConfig
from lawr_ext.data import keys
from lawr_ext.modules.mlp import ResidualMLP


class ChunkRegressor(nn.Module):
    """(obs_norm [B, O], latent [B, L] or None) -> chunk [B, H, A], deterministic; no latent means z = 0."""

    def __init__(self, cfg: ACTConfig, obs_dim: int, horizon: int, action_dim: int):
        super().__init__()
        self.horizon, self.action_dim = horizon, action_dim
        self.latent_dim = cfg.latent_dim if cfg.use_vae else 0
        self.transformer = cfg.network.arch == "transformer"
        in_dim = obs_dim + self.latent_dim
        self.net = (build_chunk_net(cfg.network, in_dim, horizon, action_dim) if self.transformer
                    else ResidualMLP(in_dim, cfg.network.width, horizon * action_dim, cfg.network.depth))

    def forward(self, obs_norm: torch.Tensor, latent: torch.Tensor | None = None) -> torch.Tensor:
        x = obs_norm
        if self.latent_dim:
            x = torch.cat([obs_norm, latent if latent is not None else obs_norm.new_zeros(len(x), self.latent_dim)], -1)
        if self.transformer:  # the chunk network's queries are its position embeddings; its input chunk is 0
            return one_step(self.net, x.new_zeros(len(x), self.horizon, self.action_dim), x)
        return self.net(x).view(-1, self.horizon, self.action_dim)


class ACTRegressor(Learner):
    def __init__(self, cfg: ACTConfig, obs_dim: int, horizon: int, action_dim: int, obs_normalizer: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.obs_normalizer = obs_normalizer
        self.regressor = ChunkRegressor(cfg, obs_dim, horizon, action_dim)
        # q(z | s, chunk): mean and log-variance of the CVAE latent (training only)
        self.encoder = (ResidualMLP(obs_dim + horizon * action_dim, cfg.network.width, 2 * cfg.latent_dim,
                                    cfg.network.depth) if cfg.use_vae else None)
        self.trained = list(self.regressor.parameters()) + ([] if self.encoder is None else list(self.encoder.parameters()))
        self.optimizers["act"] = torch.optim.AdamW(self.trained, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    def update(self, batch: TensorDict) -> dict[str, float]:
        obs_norm, actions = self.obs_normalizer(batch[keys.OBS]), batch[keys.ACTIONS]
        latent, kl = None, actions.new_zeros(())
        if self.encoder is not None:
            mu, log_var = self.encoder(torch.cat([obs_norm, actions.flatten(1)], dim=-1)).chunk(2, dim=-1)
            latent = mu + (0.5 * log_var).exp() * torch.randn_like(mu)
            kl = (-0.5 * (1 + log_var - mu.square() - log_var.exp())).sum(-1).mean()  # summed over the latent
        l1 = masked_mean((self.regressor(obs_norm, latent) - actions).abs(), batch[keys.MASK], dim=(1, 2)).mean()
        loss = l1 + self.cfg.kl_weight * kl
        grad_norm = optimizer_step(self.optimizers["act"], loss, self.trained, self.cfg.max_grad_norm, "ACT",
                                   l1=l1, kl=kl)
        return {"act/loss": loss.item(), "act/l1": l1.item(), "act/kl": kl.item(), "act/grad_norm": grad_norm.item()}

    def policy(self) -> ACTPolicy:
        return ACTPolicy(self.regressor, self.obs_normalizer)


class ACTPolicy(ChunkPolicy):
    """raw obs -> normalize -> the regressed chunk (with the CVAE: at z = 0). Deterministic."""

    def __init__(self, regressor: ChunkRegressor, obs_normalizer: nn.Module):
        super().__init__()
        self.regressor = regressor
        self.obs_normalizer = obs_normalizer
        self.horizon, self.action_dim = regressor.horizon, regressor.action_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.regressor(self.obs_normalizer(obs))


STAGE = Stage(
    "act", config="baselines.act", needs=("flow",), method="act",
    learner=lambda cfg, x: ACTRegressor(cfg, *x.dims, x["flow"].obs_normalizer),
    product=lambda cfg, x: ACTPolicy(ChunkRegressor(cfg, *x.dims), x["flow"].obs_normalizer),
)
