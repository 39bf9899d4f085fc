"""Phase 1: the Mean Flow (JiT x-prediction) behavior model over action chunks."""

from __future__ import annotations

from dataclasses import dataclass, field

from lawr_ext.configs.checks import check_compute_dtype, check_lr_schedule
from lawr_ext.configs.network import ChunkNetConfig
from lawr_ext.configs.vision import EncoderConfig


@dataclass
class FlowConfig(ChunkNetConfig):
    """The chunk network (``ChunkNetConfig``'s fields: arch, width, depth, ...) and how Mean Flow trains it."""

    # --- optimization --------------------------------------------------------------------------------------
    learning_rate: float = 3e-4     # AdamW learning rate
    # "constant", or "cosine": from learning_rate down to 0 over num_steps (a fixed budget ends on small steps,
    # which settle the weights the EMA then averages)
    lr_schedule: str = "constant"
    weight_decay: float = 0.0       # AdamW weight decay
    max_grad_norm: float = 1.0      # global gradient-norm clip (the u-space loss has heavy tails at small t)
    batch_size: int = 256           # chunks per gradient step
    num_steps: int = 100_000        # gradient steps of Phase 1
    ema_decay: float = 0.9995       # EMA of the weights; the EMA copy is what gets frozen
    # "bfloat16": the forward passes and the JVP under autocast, matrix products in bf16 (weights, AdamW, EMA and
    # the loss stay fp32); a cheaper step where the CPU or GPU multiplies bf16 natively (bench/flow_step.py), many
    # times dearer where it does not. "auto": bf16 only where the device has it natively
    compute_dtype: str = "float32"
    # --- Mean Flow objective -------------------------------------------------------------------------------
    # Logit-normal time sampler t = sigmoid(mu + sigma * n), n ~ N(0, 1); wider than MeanFlow's ImageNet
    # (-0.4, 1.0) because the one-step map lives at the corner (t=1, r=0): on the bimodal toy this cut the
    # one-step samples between the modes from 13% to 4% at the same budget.
    time_mu: float = 0.0
    time_sigma: float = 1.6
    ratio_r_equals_t: float = 0.5   # fraction of samples with r = t (plain flow matching, no JVP term)
    # p in MeanFlow's adaptive weight w = 1 / (||u - u_tgt||^2 + c)^p (detached). 0 (off) by default: a
    # per-sample weight turns the L2 loss into a robust one (p = 1 is log(err + c)) that fits the majority
    # mode and ignores the rest; on the bimodal toy p = 1 collapsed to one mode, p = 0.5 skewed 30/70 to 40/54.
    adaptive_weight_power: float = 0.0
    adaptive_weight_eps: float = 1e-3   # c in the adaptive weight
    # Where the regression error is measured: "u" (the average velocity, MeanFlow's loss; an error in the predicted
    # chunk counts 1/t-fold, so nearly clean inputs dominate) or "x" (the predicted clean chunk, JiT's output:
    # every t counts alike, which is where the one-step map T(z) = x_hat(z, t=1, r=0) is read)
    loss_space: str = "u"
    time_eps: float = 0.05          # u = (z_t - x_hat) / max(t, time_eps): bounds the x -> u conversion near data
    # --- sampling ------------------------------------------------------------------------------------------
    sample_steps: int = 1           # mean-flow steps of the Flow BC policy (1 = the one-step map T(z; s))
    # --- image tasks ---------------------------------------------------------------------------------------
    # the vision encoder Phase 1 trains with the flow and freezes with it (used only on data with camera frames)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_lr_schedule(self.lr_schedule, "FlowConfig.lr_schedule")
        check_compute_dtype(self.compute_dtype, "FlowConfig.compute_dtype")
        if self.loss_space not in ("u", "x"):
            raise ValueError(f"FlowConfig.loss_space: expected 'u' or 'x', got {self.loss_space!r}")
        if not 0.0 <= self.ratio_r_equals_t <= 1.0:
            raise ValueError(f"FlowConfig.ratio_r_equals_t: must lie in [0, 1], got {self.ratio_r_equals_t}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"FlowConfig.ema_decay: must lie in [0, 1), got {self.ema_decay}")
        for name in ("batch_size", "num_steps", "sample_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"FlowConfig.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("learning_rate", "time_sigma", "time_eps", "adaptive_weight_eps", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FlowConfig.{name}: must be > 0, got {getattr(self, name)}")
