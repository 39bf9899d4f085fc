"""Checks more than one config needs: finite numbers, device strings and learning-rate schedules."""

from __future__ import annotations

import math
from dataclasses import fields, is_dataclass

import torch


def check_finite(cfg: object, where: str) -> None:
    """Every float setting of ``cfg`` and of the configs inside it is a finite number: a NaN slips through every
    ``x < 0`` check, and an inf support or margin only fails at the first gradient step, naming no field."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if is_dataclass(value):
            check_finite(value, f"{where}.{f.name}")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where}.{f.name}: must be a finite number, got {value}")


def check_device(device: str, where: str) -> None:
    """A device string torch understands ("cpu", "cuda", "cuda:1"); whether it exists here is checked where it
    is used (a run trained on a GPU is read back on a CPU host)."""
    try:
        torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{where}: {device!r} is not a device (expected cpu, cuda or cuda:N)") from None


LR_SCHEDULES = ("constant", "cosine")


#: What a learner's ``compute_dtype`` may name: "bfloat16" runs its forward passes under autocast (matrix products
#: in bf16; weights, optimizer state and losses stay fp32); "auto" does so only where the device has native bf16
#: (``algorithms/training.py: native_bf16``), and runs fp32 elsewhere.
COMPUTE_DTYPES = ("float32", "bfloat16", "auto")


def check_compute_dtype(dtype: str, where: str) -> None:
    """One of ``COMPUTE_DTYPES`` (``algorithms/training.py: autocast``)."""
    if dtype not in COMPUTE_DTYPES:
        raise ValueError(f"{where}: expected {' or '.join(map(repr, COMPUTE_DTYPES))}, got {dtype!r}")


def check_lr_schedule(schedule: str, where: str) -> None:
    """One of ``LR_SCHEDULES`` (the flow's and the planner's; ``algorithms/training.py: cosine_learning_rate``)."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"{where}: expected {' or '.join(map(repr, LR_SCHEDULES))}, got {schedule!r}")
