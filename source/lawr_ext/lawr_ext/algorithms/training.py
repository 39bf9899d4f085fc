"""What every learner's ``update`` shares: one gradient step, masked reductions over chunks, weight averaging.

Padded steps after an episode end carry no target (``data/keys.py``: ``mask``), so every loss over action
chunks reduces through ``masked_sum`` / ``masked_mean``. Which reduction each loss uses, and why:

    Mean Flow (flow.py)        masked_sum over a chunk's real elements: MeanFlow's per-sample ||u - u_tgt||^2,
                               the quantity its adaptive weight is defined on; then the mean over chunks
    diffusion                  masked_mean over a chunk's real elements: a chunk cut short by an episode end
                               weighs as much as a full one; then the mean over chunks
    latent AWR (planner.py)    ||T(pi(s)) - a||^2 per step (summed over the action dims: the paper's squared
                               distance), masked_mean over the chunk's real steps; then the weighted mean
    Gaussian AWR               masked_mean of the log-likelihood over a chunk's real elements; then weighted
    FQL distillation           a plain mean: both sides are generated chunks, nothing is padded
    ACT chunk regressor        masked_mean of |a_hat - a| over a chunk's real elements; then the mean over chunks
    critics                    nothing to mask: one scalar target per chunk

``q_ascent_loss`` is the one "move the policy's chunks uphill on Q" term (FQL, OFQL, DSRL-NA, LPS and L-AWR's
``q_weight``).
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterable

import torch
from torch import nn


def _broadcast_mask(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mask`` over the leading dims of ``values`` (e.g. [B, H] for [B, H, A]), as values' dtype and shape."""
    trailing = (1,) * (values.ndim - mask.ndim)
    return mask.reshape(*mask.shape, *trailing).to(values.dtype).expand_as(values)


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | tuple[int, ...]) -> torch.Tensor:
    """Sum of ``values`` over ``dim``, counting only the entries where ``mask`` (its leading dims) is True."""
    return (values * _broadcast_mask(values, mask)).sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | tuple[int, ...]) -> torch.Tensor:
    """Mean of ``values`` over ``dim`` over the entries where ``mask`` is True (0 where there is none)."""
    valid = _broadcast_mask(values, mask)
    return (values * valid).sum(dim=dim) / valid.sum(dim=dim).clamp_min(1)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matrix products in hardware: a CUDA GPU with bf16, or a CPU with AVX-512 BF16 or
    AMX. Elsewhere autocast emulates them: 15x the seconds of fp32 on an AVX2 CPU (docs/results.md)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return any(getattr(torch.cpu, probe, lambda: False)()
                   for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False


@functools.cache
def resolve_compute_dtype(compute_dtype: str, device_type: str) -> str:
    """"float32" or "bfloat16": what a learner's ``compute_dtype`` (``configs/checks.py: COMPUTE_DTYPES``) means on
    this machine; "auto" is bf16 only where the device has it natively."""
    if compute_dtype != "auto":
        return compute_dtype
    return "bfloat16" if native_bf16(torch.device(device_type)) else "float32"


def autocast(compute_dtype: str, device: torch.device) -> torch.autocast:
    """The forward passes' context for a learner's ``compute_dtype``: bf16 matrix products under autocast, or
    nothing changed for "float32" (and for "auto" where the device lacks native bf16)."""
    enabled = resolve_compute_dtype(compute_dtype, device.type) == "bfloat16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, parameters: Iterable[nn.Parameter],
                   max_grad_norm: float, what: str, **terms: torch.Tensor) -> torch.Tensor:
    """One gradient step on ``loss``: finite check, zero_grad, backward, global-norm clip, step.

    A non-finite loss raises ``FloatingPointError`` naming ``what``, the loss and the ``terms`` it was made
    of (the runner turns it into a ``TrainingError`` with the stage and step) before anything is changed.
    Returns the gradient norm before clipping.
    """
    if not torch.isfinite(loss):
        detail = "".join(f", {name}={value.item():.4g}" for name, value in terms.items())
        raise FloatingPointError(f"{what}: non-finite loss ({loss.item():.4g}{detail}); check the batch "
                                 "(observations, rewards) and the frozen inputs it went through for NaN/inf")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
    return grad_norm


def cosine_learning_rate(optimizer: torch.optim.Optimizer, base_rate: float, step: int, num_steps: int) -> None:
    """Set every group's learning rate to ``base_rate`` decayed along a half cosine to 0 at ``num_steps``.

    A fixed budget that ends on small steps settles the weights instead of leaving the last noisy step's.
    """
    progress = min(step / num_steps, 1.0)
    for group in optimizer.param_groups:
        group["lr"] = base_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


def adam_steps(optimizer: torch.optim.Optimizer) -> int:
    """Steps an Adam(W) optimizer has taken (its per-parameter "step" state, which checkpoints carry)."""
    state = next(iter(optimizer.state.values()), None)
    return 0 if state is None else int(state["step"])


def q_ascent_loss(q: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """-mean Q of a policy's chunks (the gradient flows through Q into them).

    ``normalize``: divided by the batch's mean |Q| without gradient (FQL's ``normalize_q_loss``), so that the
    term's weight does not depend on the reward scale and one coefficient keeps its meaning across tasks.
    """
    loss = -q.mean()
    return loss / q.abs().mean().detach().clamp_min(1e-6) if normalize else loss


@torch.no_grad()
def ema_update(averaged: nn.Module, online: nn.Module, rate: float) -> None:
    """Move every parameter of ``averaged`` the fraction ``rate`` of the way to ``online``'s.

    The one weight average of the code base: EMA copies (rate = 1 - decay, ``EMA``) and Polyak target
    networks (rate = tau). Buffers are not averaged.
    """
    torch._foreach_lerp_(list(averaged.parameters()), list(online.parameters()), rate)


class EMA(nn.Module):
    """An exponential moving average of a network's weights (the copy a policy acts with) and its update count.

    ``num_updates`` is a buffer, so a resumed run continues the same decay schedule.
    """

    def __init__(self, online: nn.Module):
        super().__init__()
        self.module = copy.deepcopy(online).requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def update(self, online: nn.Module, decay: float) -> None:
        """module <- decay * module + (1 - decay) * online (decay 0: a copy)."""
        ema_update(self.module, online, 1 - decay)
        self.num_updates += 1
