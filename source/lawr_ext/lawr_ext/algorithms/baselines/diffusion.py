"""Diffusion policy baseline: DDPM training (epsilon prediction, cosine schedule), DDIM sampling in K steps.

The comparison point for latency and quality: an expressive multimodal BC policy that needs K network
evaluations per chunk where the L-AWR policy needs one. The denoiser is the Phase-1 flow's network
(``build_chunk_net`` with the flow's ``ChunkNetConfig``), so both have the same width and depth; here its output
is read as the predicted noise and it sees the single diffusion time as (t, r = t). Reuses no trained
artifact: only the frozen observation normalizer.

Discrete time k = 0 .. T-1 with alpha_bar_k decreasing (k = T-1 is nearly pure noise):

    x_k = sqrt(alpha_bar_k) x_0 + sqrt(1 - alpha_bar_k) eps
    loss = || x0_hat(x_k, k, s) - x_0 ||^2          prediction="sample" (default, x-prediction as Phase 1's JiT)
    loss = || eps_hat(x_k, k, s) - eps ||^2         prediction="epsilon" (DDPM, Diffusion Policy)

DDIM (eta = 0) walks K of those steps down to x_0 deterministically given the initial noise x_{T-1}; either
output gives the other through the line above.

As published (Chi et al. 2023) Diffusion Policy predicts epsilon with a 1-D conv U-Net. Ours uses the flow's
network for equal capacity; through its MLP epsilon is not representable for a 50 x 14 chunk (the output is
a linear map of a 256-wide layer: a floor of about 1 - 256/700 on the loss), so x-prediction is the default and
``prediction=epsilon`` (``recipe=published``) the published parameterization.
"""

from __future__ import annotations

import math

import torch
from tensordict import TensorDict
from torch import nn

from lawr_ext.algorithms.base import ChunkPolicy, Learner
from lawr_ext.algorithms.flow import build_chunk_net
from lawr_ext.algorithms.stage import Stage
from lawr_ext.algorithms.training import EMA, masked_mean, optimizer_step
from lawr_ext.configs.baselines import DiffusionConfig
from lawr_ext.data import keys
from lawr_ext.modules.action_box import ActionBox


def cosine_alpha_bars(num_timesteps: int, offset: float, max_beta: float) -> torch.Tensor:
    """alpha_bar_k for k = 0 .. T-1 of the cosine schedule (Nichol & Dhariwal 2021), betas clipped to max_beta."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1 - betas, dim=0).float()


class DiffusionDenoiser(nn.Module):
    """eps_hat(x_k, k, obs_norm) plus the noise schedule and the DDIM sampler."""

    def __init__(self, cfg: DiffusionConfig, obs_dim: int, horizon: int, action_dim: int,
                 action_box: ActionBox | None = None):
        super().__init__()
        self.cfg = cfg
        self.horizon, self.action_dim = horizon, action_dim
        # what clip_sample clamps each clean-chunk estimate to (modules/action_box.py; None: [-1, 1])
        self.action_box = action_box if action_box is not None else ActionBox()
        self.net = build_chunk_net(cfg.network, obs_dim, horizon, action_dim)
        alpha_bars = cosine_alpha_bars(cfg.num_train_timesteps, cfg.cosine_offset, cfg.max_beta)
        self.register_buffer("alpha_bars", alpha_bars, persistent=False)  # derived from cfg, never learned

    def predict(self, x_k: torch.Tensor, k: torch.Tensor, obs_norm: torch.Tensor) -> torch.Tensor:
        """The network's output: the clean chunk (prediction="sample") or the noise ("epsilon")."""
        t = (k.float() + 1) / self.cfg.num_train_timesteps  # time in (0, 1], the range the embedding expects
        return self.net(x_k, t, t, obs_norm)

    def loss(self, x_0: torch.Tensor, obs_norm: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The DDPM loss on what the network predicts, averaged over the real (unpadded) steps of each chunk."""
        k = torch.randint(0, self.cfg.num_train_timesteps, (x_0.shape[0],), device=x_0.device)
        alpha_bar = self.alpha_bars[k][:, None, None]
        noise = torch.randn_like(x_0)
        x_k = alpha_bar.sqrt() * x_0 + (1 - alpha_bar).sqrt() * noise
        target = x_0 if self.cfg.prediction == "sample" else noise
        return masked_mean((self.predict(x_k, k, obs_norm) - target).square(), mask, dim=(1, 2)).mean()

    def ddim_timesteps(self, num_steps: int) -> list[int]:
        """K descending timesteps from T-1 to 0, evenly spaced."""
        if not 1 <= num_steps <= self.cfg.num_train_timesteps:
            raise ValueError(f"DDIM: num_steps={num_steps} must lie in [1, T={self.cfg.num_train_timesteps}]")
        return torch.linspace(self.cfg.num_train_timesteps - 1, 0, num_steps).round().long().tolist()

    @torch.no_grad()
    def sample(self, obs_norm: torch.Tensor, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from ``noise`` [B, H, A] to a chunk [B, H, A] in ``num_steps`` steps."""
        timesteps = self.ddim_timesteps(num_steps)
        x = noise
        for i, k in enumerate(timesteps):
            alpha_bar = self.alpha_bars[k]
            # The last step lands on the data (alpha_bar = 1): x is then the clean-chunk estimate itself.
            alpha_bar_next = self.alpha_bars[timesteps[i + 1]] if i + 1 < len(timesteps) else alpha_bar.new_ones(())
            out = self.predict(x, torch.full((x.shape[0],), k, device=x.device), obs_norm)
            if self.cfg.prediction == "sample":
                x_0 = out
            else:
                eps = out
                x_0 = (x - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
            if self.cfg.clip_sample:
                x_0 = self.action_box.clamp(x_0)
            if self.cfg.prediction == "sample" or self.cfg.clip_sample:  # the noise consistent with x_0
                eps = (x - alpha_bar.sqrt() * x_0) / (1 - alpha_bar).sqrt()
            x = alpha_bar_next.sqrt() * x_0 + (1 - alpha_bar_next).sqrt() * eps
        return x


class DiffusionBC(Learner):
    """Trains the denoiser on dataset chunks (pure behaviour cloning; no critic). The policy samples with the
    EMA weights: the noise prediction at high noise levels, which decides the mode proportions, jitters from
    step to step otherwise."""

    def __init__(self, cfg: DiffusionConfig, obs_dim: int, horizon: int, action_dim: int, obs_normalizer: nn.Module,
                 action_box: ActionBox | None = None):
        super().__init__()
        self.cfg = cfg
        self.obs_normalizer = obs_normalizer
        self.denoiser = DiffusionDenoiser(cfg, obs_dim, horizon, action_dim, action_box)
        self.ema = EMA(self.denoiser)
        self.optimizers["denoiser"] = torch.optim.AdamW(self.denoiser.parameters(), lr=cfg.learning_rate,
                                                        weight_decay=cfg.weight_decay)

    def update(self, batch: TensorDict) -> dict[str, float]:
        loss = self.denoiser.loss(batch[keys.ACTIONS], self.obs_normalizer(batch[keys.OBS]), batch[keys.MASK])
        grad_norm = optimizer_step(self.optimizers["denoiser"], loss, self.denoiser.parameters(),
                                   self.cfg.max_grad_norm, "DiffusionBC")
        self.ema.update(self.denoiser, 0.0 if self.ema.num_updates == 0 else self.cfg.ema_decay)  # first: a copy
        return {"diffusion/loss": loss.item(), "diffusion/grad_norm": grad_norm.item()}

    def policy(self) -> DiffusionPolicy:
        return DiffusionPolicy(self.ema.module, self.obs_normalizer, self.cfg.sample_steps)


class DiffusionPolicy(ChunkPolicy):
    """raw obs -> normalize -> K-step DDIM from noise drawn from torch's global RNG."""

    def __init__(self, denoiser: DiffusionDenoiser, obs_normalizer: nn.Module, num_steps: int):
        super().__init__()
        self.denoiser = denoiser
        self.obs_normalizer = obs_normalizer
        self.num_steps = num_steps
        self.horizon, self.action_dim = denoiser.horizon, denoiser.action_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(obs.shape[0], self.horizon, self.action_dim, device=obs.device)
        return self.denoiser.sample(self.obs_normalizer(obs), noise, self.num_steps)


STAGE = Stage(
    "diffusion", config="baselines.diffusion", needs=("flow",), method="diffusion",
    learner=lambda cfg, x: DiffusionBC(cfg, *x.dims, x["flow"].obs_normalizer, ActionBox.for_stage(x)),
    product=lambda cfg, x: DiffusionPolicy(DiffusionDenoiser(cfg, *x.dims, ActionBox.for_stage(x)),
                                           x["flow"].obs_normalizer, cfg.sample_steps),
)
