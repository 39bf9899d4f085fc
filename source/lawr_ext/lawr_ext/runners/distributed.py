"""Multi-process training under ``torchrun``: gradient all-reduce and sharded batches (the process group
itself, ``World``, is ``utils/distributed.py``).

    torchrun --nproc_per_node=2 scripts/train_lawr.py --task Bimanual-Chunk --dataset D --run_dir R   # gloo on CPU
    torchrun --nproc_per_node=8 scripts/train_lawr.py ... --device cuda                                # NCCL, 1 GPU per rank

Every rank builds the same networks (same seed) and draws the same global batch indices from the same
sampler generator, then trains on its own slice ``ids[rank::world_size]``; the gradients are averaged
over ranks inside ``backward`` (the all-reduce DistributedDataParallel performs), so the clipping and the
optimizer step every Learner does in ``update`` see the global-batch gradient and the ranks stay in
lockstep. The learners call their sub-networks directly, so a DDP wrapper around them would never see a
forward call; the gradient hooks here are the same synchronisation without the wrapper. Forward-mode
JVPs (the Mean Flow target) run under ``no_grad`` and never touch the hooks.

Rank 0 alone writes checkpoints, final products, TensorBoard and summaries; checkpoints hold every rank's
RNG state, so a resumed multi-process run needs the same number of processes.

Several hosts: the same command on each, ``torchrun --nnodes=N --node_rank=i --nproc_per_node=G
--rdzv_backend=c10d --rdzv_endpoint=HOST0:29500 scripts/train_lawr.py ... --run_dir <shared filesystem>``.
(Isaac Lab's own ``isaaclab train_multigpu`` is a supervisor that builds such a torchrun command for its RL
libraries; lawr's training needs no simulator, so plain torchrun is all it takes.)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from tensordict import TensorDict

from lawr_ext.algorithms.base import Learner
from lawr_ext.data.dataset import ChunkDataset
from lawr_ext.utils.distributed import World


def average_gradients(learner: Learner, world: World) -> None:
    """After each parameter's gradient is accumulated in ``backward``, replace it by its mean over ranks."""
    if world.size == 1:
        return

    def all_reduce_mean(param: torch.Tensor) -> None:
        dist.all_reduce(param.grad)
        param.grad.div_(world.size)

    for param in learner.parameters():
        if param.requires_grad:
            param.register_post_accumulate_grad_hook(all_reduce_mean)


def sample_shard(dataset: ChunkDataset, batch_size: int, world: World) -> TensorDict:
    """This rank's slice of the global batch; every rank draws the same indices, so the slices partition it.

    With one process this is exactly ``dataset.sample(batch_size)``.
    """
    if batch_size % world.size:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {world.size} processes")
    ids = torch.randint(dataset.num_chunks, (batch_size,), generator=dataset.generator)
    return dataset.batch(ids[world.rank :: world.size])
