"""The process group torchrun describes (rank, world size, one writer), for training, collection and evaluation."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

#: Rank r's RNG (the noise of stochastic losses) starts from seed + r * RANK_SEED_STRIDE; rank 0 matches one process.
RANK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()

    def gather(self, obj) -> list:
        """``obj`` of every rank, in rank order (a one-element list in a single process)."""
        if self.size == 1:
            return [obj]
        objects = [None] * self.size
        dist.all_gather_object(objects, obj)
        return objects


def init_world(device: str) -> World:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1), else a single process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if device.startswith("cuda"):  # one GPU per rank: "cuda" then means this rank's GPU
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
        # Left to interpreter finalization, gloo's worker threads can abort the process (SIGABRT, "terminate called
        # without an active exception") after a run that succeeded: tear the group down while Python is alive.
        atexit.register(_destroy_process_group)
    return World(dist.get_rank(), dist.get_world_size())


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: str, world: World) -> str:
    """Under torchrun with several processes, ``cuda`` means this rank's GPU ``cuda:<LOCAL_RANK>``."""
    if world.size > 1 and device.startswith("cuda"):
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return device


def require_device(device: str) -> None:
    """Refuse, in one line, a device this host does not have (before anything is written, not at the first step)."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device {device!r}: not a device (expected cpu, cuda or cuda:N)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: this host has no CUDA device (torch {torch.__version__})")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this host has {torch.cuda.device_count()} CUDA device(s)")
