"""Phase 3 of L-AWR: a deterministic latent planner trained by advantage-weighted regression through the frozen flow.

    z = pi_phi(s)                      latent chunk [B, H, A], in the prior's typical ball or on its shell
    a_hat = T_theta(z; s)              Phase 1's one-step map (frozen: requires_grad False, eval mode), or
                                       ``decode_steps`` mean-flow jumps of it
    loss = E_data[ w(A(s, a)) * ||a_hat - a||^2 ]     over the real (unpadded) steps of each chunk
    w = min(exp(A / tau), max_weight)  A from the frozen Phase-2 critic, computed without gradients
      (optionally min(w / Z(s), max_weight), Z(s) the mean w of K flow draws at s: each state weighs the same)
  (+ q_weight * -Q(s, a_hat) / mean|Q|  optional: Latent Policy Steering's objective through the same frozen flow;
   with awr_weight = 0 it is the whole loss: the LPS baseline's ablation on the Phase-2 critic, baselines/lps.py)

The gradient reaches phi only through the flow's Jacobian dT/dz ("gradient flow"): no inverse flow is needed
and nothing here can change the flow or the critic. Whether the planner lands ON a mode rather than between
modes is decided by the weights: the minimiser of a weighted squared error is the weighted mean of the
targets, so the weights must concentrate on one mode (small tau) for the planner to pick it.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from tensordict import TensorDict
from torch import nn

from lawr_ext.algorithms.awr import AdvantageFn, awr_weights, effective_sample_fraction
from lawr_ext.algorithms.base import ChunkPolicy, Learner
from lawr_ext.algorithms.flow import FlowDecoder
from lawr_ext.algorithms.training import (adam_steps, autocast, cosine_learning_rate, masked_mean, optimizer_step,
                                         q_ascent_loss)
from lawr_ext.configs.awr import AWRWeightConfig
from lawr_ext.configs.planner import LatentActorConfig, PlannerConfig
from lawr_ext.data import keys
from lawr_ext.modules.mlp import ResidualMLP


#: (obs_norm [B, O], chunk [B, H, A]) -> Q [B], differentiable in the chunk (e.g. ``DistributionalCritic.q_value``).
QFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class LatentPlanner(nn.Module):
    """pi_phi(obs_norm [B, O]) -> z [B, H, A], a deterministic latent where the frozen flow was trained to decode.

    The prior N(0, I_d) (d = H * A) concentrates on the shell ||z|| ~ sqrt(d); latents far off it were never
    decoded during Phase 1, so T(z) is unconstrained there. ``latent="ball"``: the radial squash
        z = max_radius * tanh(||z_raw|| / max_radius) * z_raw / ||z_raw||,   max_radius = sqrt(d) (1 + margin)
    keeps z's direction, is the identity near the origin, and is smooth everywhere (no clipping kink); it bounds
    ||z|| from above only, and the latent norm metrics show whether z drifts toward the origin (where a smooth
    flow decodes an average of the modes). ``latent="sphere"``: z = sqrt(d) z_raw / ||z_raw||, on the shell.
    ``latent="box"``: z = box_magnitude * tanh(z_raw) per entry, DSRL's noise-action box (its corners lie far
    outside the shell: sqrt(d) * box_magnitude).
    """

    def __init__(self, cfg: LatentActorConfig, obs_dim: int, horizon: int, action_dim: int):
        super().__init__()
        self.horizon, self.action_dim = horizon, action_dim
        self.latent = cfg.latent
        self.box_magnitude = cfg.box_magnitude
        self.typical_radius = math.sqrt(horizon * action_dim)
        margin = {"ball": cfg.typical_set_margin, "sphere": 0.0, "box": cfg.box_magnitude - 1.0}[cfg.latent]
        self.max_radius = self.typical_radius * (1.0 + margin)  # the largest ||z|| it can output
        self.net = ResidualMLP(obs_dim, cfg.hidden_dim, horizon * action_dim, cfg.num_blocks)

    def raw_latent(self, obs_norm: torch.Tensor) -> torch.Tensor:
        """The network's output before the squash, [B, d]."""
        return self.net(obs_norm)

    def squash(self, z_raw: torch.Tensor) -> torch.Tensor:
        """[B, d] -> [B, H, A] on the shell, inside the ball or the box (branch-free, so it traces and exports)."""
        if self.latent == "box":
            return (self.box_magnitude * torch.tanh(z_raw)).view(-1, self.horizon, self.action_dim)
        radius = torch.linalg.vector_norm(z_raw, dim=-1, keepdim=True).clamp_min(1e-6)
        if self.latent == "sphere":
            scale = self.max_radius / radius
        else:
            scale = self.max_radius * torch.tanh(radius / self.max_radius) / radius
        return (z_raw * scale).view(-1, self.horizon, self.action_dim)

    def forward(self, obs_norm: torch.Tensor) -> torch.Tensor:
        return self.squash(self.raw_latent(obs_norm))


@torch.no_grad()
def state_mean_weight(decoder: FlowDecoder, advantage_fn: AdvantageFn, weights: AWRWeightConfig, batch: TensorDict,
                      obs_norm: torch.Tensor, num_draws: int) -> torch.Tensor:
    """Z(s) [B]: the mean AWR weight of ``num_draws`` one-step draws of the frozen flow at each state of ``batch``,
    scored by the same ``advantage_fn`` as the batch's own chunks (AWR's per-state partition function)."""
    draws = batch.repeat_interleave(num_draws, dim=0)
    draws[keys.ACTIONS] = decoder.sample(obs_norm.repeat_interleave(num_draws, dim=0))
    return awr_weights(advantage_fn(draws), weights).view(-1, num_draws).mean(1).clamp_min(1e-12)


class LatentAWR(Learner):
    """Trains the planner through the frozen decoder, weighted by ``advantage_fn`` (as GaussianAWR is).

    The decoder and normaliser are submodules, so a planner checkpoint carries the exact flow it was trained
    through; the critic is not: only its advantages (and, with ``cfg.q_weight`` > 0, the differentiable
    ``q_fn(obs_norm, chunk)`` of its frozen Q) are needed, and only for training. With ``cfg.awr_weight`` = 0
    no advantage is computed: the Q term alone trains the planner (Latent Policy Steering).
    """

    def __init__(self, cfg: PlannerConfig, obs_dim: int, horizon: int, action_dim: int, decoder: FlowDecoder,
                 advantage_fn: AdvantageFn, obs_normalizer: nn.Module, q_fn: QFn | None = None):
        super().__init__()
        if any(p.requires_grad for p in decoder.parameters()):
            raise ValueError("LatentAWR: the flow decoder must be frozen (requires_grad_(False)) before Phase 3; "
                             "the planner may not change it")
        self.cfg = cfg
        self.decoder = decoder.eval()
        self.obs_normalizer = obs_normalizer.eval()
        if cfg.q_weight > 0 and q_fn is None:
            raise ValueError("LatentAWR: PlannerConfig.q_weight > 0 needs the frozen critic's q_fn")
        self.advantage_fn, self.q_fn = advantage_fn, q_fn
        self.planner = LatentPlanner(cfg, obs_dim, horizon, action_dim)
        self.optimizers["planner"] = torch.optim.Adam(self.planner.parameters(), lr=cfg.learning_rate)

    def train(self, mode: bool = True) -> LatentAWR:
        """Only the planner has a training mode; the frozen flow and normaliser always stay in eval mode."""
        super().train(mode)
        self.decoder.eval()
        self.obs_normalizer.eval()
        return self

    def update(self, batch: TensorDict) -> dict[str, float]:
        cfg = self.cfg
        with autocast(cfg.compute_dtype, batch[keys.OBS].device):  # the networks' passes; the losses below in fp32
            obs_norm = self.obs_normalizer(batch[keys.OBS])
            z_raw = self.planner.raw_latent(obs_norm)
            z = self.planner.squash(z_raw)
            chunk = self.decoder.decode(z, obs_norm, cfg.decode_steps)
        chunk, z_raw = chunk.float(), z_raw.float()

        # Squared distance per step, averaged over each chunk's real steps (padding has no target).
        step_error = (chunk - batch[keys.ACTIONS]).square().sum(-1)
        sq_error = masked_mean(step_error, batch[keys.MASK], dim=-1)
        info, awr_loss, q_loss = {}, sq_error.new_zeros(()), sq_error.new_zeros(())
        if cfg.awr_weight > 0:
            with torch.no_grad():
                advantage = self.advantage_fn(batch)
                weight = awr_weights(advantage, cfg.weights)
                if cfg.state_normalization_samples > 0:
                    raw_weight = weight
                    state_weight = state_mean_weight(self.decoder, self.advantage_fn, cfg.weights, batch,
                                                     obs_norm, cfg.state_normalization_samples)
                    weight = (weight / state_weight).clamp(max=cfg.weights.max_weight)
                    info = {"planner/raw_weight_ess": effective_sample_fraction(raw_weight).item()}
            awr_loss = (weight * sq_error).mean()
            info |= {"planner/advantage_mean": advantage.mean().item(),
                    "planner/advantage_std": advantage.std().item(),
                    "planner/weight_mean": weight.mean().item(),
                    "planner/weight_max": weight.max().item(),
                    "planner/weight_ess": effective_sample_fraction(weight).item()}
        if cfg.q_weight > 0:  # through the frozen critic and flow into the planner only
            with autocast(cfg.compute_dtype, batch[keys.OBS].device):
                q = self.q_fn(obs_norm, chunk).float()
            q_loss = q_ascent_loss(q)
            info["planner/q_mean"] = q.mean().item()
        loss = cfg.awr_weight * awr_loss + cfg.q_weight * q_loss
        if cfg.lr_schedule == "cosine":  # Adam's step count resumes with the checkpoint
            cosine_learning_rate(self.optimizers["planner"], cfg.learning_rate,
                                 adam_steps(self.optimizers["planner"]), cfg.num_steps)
        grad_norm = optimizer_step(self.optimizers["planner"], loss, self.planner.parameters(), cfg.max_grad_norm,
                                   "LatentAWR", awr=awr_loss, q=q_loss)

        with torch.no_grad():
            raw_norm = z_raw.norm(dim=-1)
            typical_radius = self.planner.typical_radius
            return {
                "planner/loss": loss.item(),
                "planner/awr_loss": awr_loss.item(),
                "planner/q_loss": q_loss.item(),
                "planner/action_mse": sq_error.mean().item(),
                **info,
                "planner/latent_norm": (z.flatten(1).norm(dim=-1) / typical_radius).mean().item(),  # 1 = prior's
                "planner/raw_latent_norm": (raw_norm / typical_radius).mean().item(),
                "planner/outside_typical_set": (raw_norm > self.planner.max_radius).float().mean().item(),
                "planner/grad_norm": grad_norm.item(),
            }

    def policy(self) -> LAWRPolicy:
        return LAWRPolicy(self.obs_normalizer, self.planner, self.decoder, self.cfg.decode_steps)


class LAWRPolicy(ChunkPolicy):
    """The L-AWR policy: raw obs -> frozen normaliser -> planner -> frozen flow's map T(z; s) -> chunk.
    Deterministic; ``decode_steps`` is the planner's (``PlannerConfig.decode_steps``)."""

    def __init__(self, obs_normalizer: nn.Module, planner: LatentPlanner, decoder: FlowDecoder,
                 decode_steps: int = 1):
        super().__init__()
        self.obs_normalizer = obs_normalizer
        self.planner = planner
        self.decoder = decoder
        self.decode_steps = decode_steps
        self.horizon, self.action_dim = planner.horizon, planner.action_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs_norm = self.obs_normalizer(obs)
        return self.decoder.decode(self.planner(obs_norm), obs_norm, self.decode_steps)
