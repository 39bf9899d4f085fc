"""Phase 1: the action manifold. A Mean Flow over action chunks with JiT x-prediction, trained, then frozen.

Time convention (defined here and nowhere else): noise at t = 1, data at t = 0,

    z_t = (1 - t) x + t eps,        v = dz_t/dt = eps - x,

and the average velocity over [r, t] (r <= t) carries z_t to z_r = z_t - (t - r) u(z_t, t, r).
The network predicts the clean chunk x_hat (JiT); the average velocity is derived from it in fp32,
u = (z_t - x_hat) / max(t, time_eps). Mean Flow trains u toward stopgrad(v - (t - r) du/dt), where
du/dt = d/dt u(z_t, t, r) along the path, i.e. the JVP of u with tangent (dz_t, dt, dr) = (v, 1, 0).

The one-step map T(z; s) = x_hat(z, t=1, r=0, s) is a single forward pass from noise to a chunk; the
planner (Phase 3) backpropagates through it into z while the flow's weights stay frozen.
"""

from __future__ import annotations

import copy

import torch
from tensordict import TensorDict
from torch import nn

from lawr_ext.algorithms.base import ChunkPolicy, Learner, freeze, learner_batch
from lawr_ext.algorithms.training import EMA, autocast, cosine_learning_rate, masked_sum, optimizer_step
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.configs.network import ChunkNetConfig
from lawr_ext.data import keys
from lawr_ext.modules.chunk_basis import ChunkBasis
from lawr_ext.modules.chunk_mlp import ChunkMLP
from lawr_ext.modules.chunk_transformer import ChunkTransformer
from lawr_ext.modules.normalizer import ActionNormalizer, unfitted_normalizers


def interpolate(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """z_t = (1 - t) x + t noise for chunks [B, H, A] and times t [B]."""
    t = t[:, None, None]
    return (1 - t) * x + t * noise


def average_velocity_from_x(z_t: torch.Tensor, x_hat: torch.Tensor, t: torch.Tensor, time_eps: float) -> torch.Tensor:
    """u = (z_t - x_hat) / max(t, eps) in (at least) fp32: the division amplifies x_hat's (bf16?) error by 1/t."""
    dtype = torch.promote_types(x_hat.dtype, torch.float32)
    return (z_t.to(dtype) - x_hat.to(dtype)) / t.to(dtype).clamp_min(time_eps)[:, None, None]


class FlowDecoder(nn.Module):
    """The network of Phase 1: predicts the clean chunk from (z_t, t, r, obs_norm), plus its samplers."""

    def __init__(self, net: nn.Module, obs_dim: int, horizon: int, action_dim: int, time_eps: float):
        super().__init__()
        self.net = net
        self.obs_dim = obs_dim
        self.horizon = horizon
        self.action_dim = action_dim
        self.time_eps = time_eps

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, r: torch.Tensor, obs_norm: torch.Tensor) -> torch.Tensor:
        """x_hat [B, H, A]."""
        return self.net(z_t, t, r, obs_norm)

    def average_velocity(self, z_t: torch.Tensor, t: torch.Tensor, r: torch.Tensor,
                         obs_norm: torch.Tensor) -> torch.Tensor:
        """u(z_t, t, r) [B, H, A] in fp32."""
        return average_velocity_from_x(z_t, self(z_t, t, r, obs_norm), t, self.time_eps)

    def decode(self, z: torch.Tensor, obs_norm: torch.Tensor, num_steps: int = 1) -> torch.Tensor:
        """The deterministic map T(z; s) from noise z to a chunk, differentiable in z: one network pass
        (``one_step``: z_0 = z_1 - u = x_hat exactly) or ``num_steps`` equal mean-flow jumps 1 -> 0."""
        if num_steps == 1:
            return one_step(self.net, z, obs_norm)
        if num_steps < 1:
            raise ValueError(f"FlowDecoder.decode: num_steps must be >= 1, got {num_steps}")
        times = torch.linspace(1.0, 0.0, num_steps + 1, device=obs_norm.device)
        for t, r in zip(times[:-1], times[1:]):
            t_batch, r_batch = t.expand(z.shape[0]), r.expand(z.shape[0])
            x_hat = self(z, t_batch, r_batch, obs_norm).to(z.dtype)
            # z_r = z_t - (t - r) u with u = (z_t - x_hat) / t, written so that the last jump (r = 0) is x_hat exactly.
            z = (r / t) * z + (1 - r / t) * x_hat
        return z

    @torch.no_grad()
    def sample(self, obs_norm: torch.Tensor, num_steps: int = 1,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Chunks [B, H, A] from z ~ N(0, I) by ``num_steps`` equal mean-flow jumps 1 -> 0 (1 = ``decode``).

        ``noise`` gives z instead of drawing it (FQL distils pairs that must share the same z).
        """
        z = noise if noise is not None else torch.randn(
            obs_norm.shape[0], self.horizon, self.action_dim, device=obs_norm.device, dtype=obs_norm.dtype,
            generator=generator)
        return self.decode(z, obs_norm, num_steps)


def build_chunk_net(cfg: ChunkNetConfig, obs_dim: int, horizon: int, action_dim: int) -> nn.Module:
    """The network (z_t [B,H,A], t [B], r [B], obs_norm [B,O]) -> chunk [B,H,A] that ``cfg`` describes."""
    if cfg.arch == "transformer":
        return ChunkTransformer(horizon, action_dim, obs_dim, cfg.width, cfg.depth, cfg.num_heads, cfg.mlp_ratio,
                                cfg.time_embed_dim)
    return ChunkMLP(horizon, action_dim, obs_dim, cfg.width, cfg.depth, cfg.time_embed_dim, cfg.conditioning)


def one_step(net: nn.Module, z: torch.Tensor, obs_norm: torch.Tensor) -> torch.Tensor:
    """A chunk network read at (t=1, r=0): one forward pass from noise z [B,H,A] to a chunk.

    Differentiable w.r.t. z (and w.r.t. the weights unless they are frozen)."""
    ones = torch.ones(z.shape[0], device=z.device, dtype=z.dtype)
    return net(z, ones, torch.zeros_like(ones), obs_norm)


def build_flow_decoder(cfg: FlowConfig, obs_dim: int, horizon: int, action_dim: int) -> FlowDecoder:
    return FlowDecoder(build_chunk_net(cfg, obs_dim, horizon, action_dim), obs_dim, horizon, action_dim, cfg.time_eps)


class BehaviorModel(nn.Module):
    """Phase 1's product: the frozen normalizers, the chunk basis and the frozen one-step decoder T(z; s).

    The action manifold and the coordinates every later stage sees the data in: phases 2 and 3, the
    baselines, evaluation and export all get them from this one bundle (``inputs["flow"]``), and nowhere else.
    The decoder works in the action normalizer's coordinates and the chunk basis's; ``learner_batch`` maps the
    dataset's batches into them, and policies map their chunks back to env actions with both
    (``EnvActionPolicy``).
    """

    def __init__(self, decoder: FlowDecoder, obs_normalizer: nn.Module, action_normalizer: ActionNormalizer,
                 chunk_basis: ChunkBasis | None = None):
        super().__init__()
        self.decoder = decoder
        self.obs_normalizer = obs_normalizer
        self.action_normalizer = action_normalizer
        self.chunk_basis = chunk_basis if chunk_basis is not None else ChunkBasis(decoder.horizon)

    @classmethod
    def untrained(cls, cfg: FlowConfig, obs_dim: int, horizon: int, action_dim: int,
                  chunk_basis: ChunkBasis | None = None) -> BehaviorModel:
        """The same modules with initial weights and empty statistics, to load a saved product into."""
        return cls(build_flow_decoder(cfg, obs_dim, horizon, action_dim), *unfitted_normalizers(obs_dim, action_dim),
                   chunk_basis)

    def learner_batch(self, batch: TensorDict) -> TensorDict:
        """A dataset batch (env actions) in the learners' coordinates."""
        return learner_batch(batch, self.action_normalizer, self.chunk_basis)

    def env_chunks(self, chunks: torch.Tensor) -> torch.Tensor:
        """Chunks in the learners' coordinates [B, K, A] -> env actions [B, H, A] (not clipped)."""
        return self.action_normalizer.unnormalize(self.chunk_basis.decode(chunks))


class MeanFlow(Learner):
    """Trains a FlowDecoder with the Mean Flow identity; its product is the frozen EMA decoder + the normalizers.

    Batches come in the coordinates of ``action_normalizer`` and ``chunk_basis`` (``learner_batch`` maps the
    dataset's into them); they are carried into the product (None: the identity, for a flow trained inside
    another learner on batches already in its coordinates)."""

    def __init__(self, cfg: FlowConfig, obs_dim: int, horizon: int, action_dim: int, obs_normalizer: nn.Module,
                 action_normalizer: ActionNormalizer | None = None, chunk_basis: ChunkBasis | None = None):
        super().__init__()
        self.cfg = cfg
        self.obs_normalizer = obs_normalizer
        self.action_normalizer = action_normalizer if action_normalizer is not None else ActionNormalizer(action_dim)
        self.chunk_basis = chunk_basis if chunk_basis is not None else ChunkBasis(horizon)
        self.decoder = build_flow_decoder(cfg, obs_dim, horizon, action_dim)
        self.ema = EMA(self.decoder)
        # an image task's vision encoder (modules/vision.py) trains with the decoder, and its EMA is what is frozen
        # with it; a state normalizer has no parameters, and nothing changes for it
        encoder_params = [p for p in obs_normalizer.parameters() if p.requires_grad]
        self.encoder_ema = EMA(obs_normalizer) if encoder_params else None
        self.optimizers["flow"] = torch.optim.AdamW(list(self.decoder.parameters()) + encoder_params,
                                                    lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    def learner_batch(self, batch: TensorDict) -> TensorDict:
        """A dataset batch (env actions) in the coordinates this flow trains in (and its product keeps)."""
        return learner_batch(batch, self.action_normalizer, self.chunk_basis)

    def sample_times(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, r) with t >= r from two sorted logit-normal draws; a ``ratio_r_equals_t`` fraction gets r = t."""
        draws = torch.sigmoid(self.cfg.time_mu + self.cfg.time_sigma * torch.randn(2, batch_size, device=device))
        t, r = draws.max(dim=0).values, draws.min(dim=0).values
        r = torch.where(torch.rand(batch_size, device=device) < self.cfg.ratio_r_equals_t, t, r)
        return t, r

    @staticmethod
    def mean_flow_target(decoder: FlowDecoder, z_t: torch.Tensor, t: torch.Tensor, r: torch.Tensor,
                         obs_norm: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """u_tgt = v - (t - r) du/dt, no grad. Runs on the bare (unwrapped) decoder: a forward-mode pass that
        must not touch DDP's gradient hooks. Rows with r = t have u_tgt = v, so only the others pay for the JVP
        (which costs about a forward and backward pass of its own)."""
        with torch.no_grad():
            target = v.clone()
            rows = (t > r).nonzero().squeeze(1)
            if rows.numel():
                obs_rows, t_rows, r_rows, v_rows = obs_norm[rows], t[rows], r[rows], v[rows]
                _, du_dt = torch.func.jvp(lambda z, tt, rr: decoder.average_velocity(z, tt, rr, obs_rows),
                                          (z_t[rows], t_rows, r_rows),
                                          (v_rows, torch.ones_like(t_rows), torch.zeros_like(r_rows)))
                gap = (t_rows - r_rows).to(du_dt.dtype)[:, None, None]
                target[rows] = (v_rows.to(du_dt.dtype) - gap * du_dt).to(target.dtype)
            return target

    def loss(self, batch: TensorDict) -> tuple[torch.Tensor, dict[str, float]]:
        """The Mean Flow loss of one batch (and its metrics)."""
        obs, x, mask = batch[keys.OBS], batch[keys.ACTIONS], batch[keys.MASK]
        expected = (self.decoder.horizon, self.decoder.action_dim)
        obs_dim = getattr(self.obs_normalizer, "input_dim", self.decoder.obs_dim)  # packed frames: modules/vision.py
        if tuple(x.shape[1:]) != expected or obs.shape[1] != obs_dim:
            raise ValueError(f"MeanFlow: batch has obs {tuple(obs.shape)} / actions {tuple(x.shape)}, "
                             f"expected obs [B, {obs_dim}] and actions [B, {expected[0]}, {expected[1]}]")
        with autocast(self.cfg.compute_dtype, x.device):  # the networks' passes; u and the loss below in fp32
            obs_norm = self.obs_normalizer(obs)
            noise = torch.randn_like(x)
            t, r = self.sample_times(x.shape[0], x.device)
            z_t = interpolate(x, noise, t)
            v = noise - x
            u_target = self.mean_flow_target(self.decoder, z_t, t, r, obs_norm, v)
            x_hat = self.decoder(z_t, t, r, obs_norm)
        u = average_velocity_from_x(z_t, x_hat, t, self.cfg.time_eps)
        error = u - u_target
        if self.cfg.loss_space == "x":  # ||x_hat - x_tgt||^2 = t^2 ||u - u_tgt||^2: small t no longer dominates
            error = error * t.clamp_min(self.cfg.time_eps)[:, None, None]
        sq_error = masked_sum(error.square(), mask, dim=(1, 2))  # squared error over the real steps
        # MeanFlow's adaptive weighting w = 1 / (||delta||^2 + c)^p (detached); p = 0 (default) is plain L2,
        # the only choice whose minimizer is the conditional mean the flow needs (see FlowConfig).
        weight = (sq_error.detach() + self.cfg.adaptive_weight_eps).pow(-self.cfg.adaptive_weight_power)
        loss = (weight * sq_error).mean()
        return loss, {"flow/loss": loss.item(), "flow/u_mse": sq_error.mean().item()}

    def update(self, batch: TensorDict) -> dict[str, float]:
        if self.cfg.lr_schedule == "cosine":  # the EMA's update count is the step count, and resumes with it
            cosine_learning_rate(self.optimizers["flow"], self.cfg.learning_rate, int(self.ema.num_updates),
                                 self.cfg.num_steps)
        loss, info = self.loss(batch)
        grad_norm = optimizer_step(self.optimizers["flow"], loss, self.optimizers["flow"].param_groups[0]["params"],
                                   self.cfg.max_grad_norm, "MeanFlow")
        info["flow/grad_norm"] = grad_norm.item()
        self.update_ema()
        return info

    def update_ema(self) -> None:
        # Warm-up (1 + n) / (10 + n): the EMA tracks early weights closely instead of averaging in the random init.
        n = int(self.ema.num_updates)
        decay = min(self.cfg.ema_decay, (1 + n) / (10 + n))
        self.ema.update(self.decoder, decay)
        if self.encoder_ema is not None:  # the vision encoder's EMA on the decoder's schedule
            self.encoder_ema.update(self.obs_normalizer, decay)

    def frozen_decoder(self) -> FlowDecoder:
        """A detached copy of the EMA weights, frozen (the action manifold's hard constraint): nothing later may
        change it."""
        return freeze(copy.deepcopy(self.ema.module))

    def product(self) -> BehaviorModel:
        obs_normalizer = self.obs_normalizer if self.encoder_ema is None else freeze(
            copy.deepcopy(self.encoder_ema.module))  # the vision encoder frozen with the flow, as its EMA
        return BehaviorModel(self.frozen_decoder(), obs_normalizer, copy.deepcopy(self.action_normalizer),
                             copy.deepcopy(self.chunk_basis))


class FlowBCPolicy(ChunkPolicy):
    """The Flow BC baseline (and the behavior policy): raw obs -> normalize -> chunk from z ~ N(0, I)."""

    def __init__(self, decoder: FlowDecoder, obs_normalizer: nn.Module, num_steps: int = 1):
        super().__init__()
        self.decoder = decoder
        self.obs_normalizer = obs_normalizer
        self.num_steps = num_steps
        self.horizon = decoder.horizon
        self.action_dim = decoder.action_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.decoder.sample(self.obs_normalizer(obs), self.num_steps)
