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
    """At the end of every ``backward``, replace the gradients it accumulated by their mean over ranks.

    One all-reduce per backward and dtype, of the gradients flattened into one buffer (DistributedDataParallel's
    buckets, as one): a blocking call per parameter tensor cost more than the halved batch saved on a 2-core CPU.
    The callback runs before ``backward`` returns, so the clipping that follows sees the global-batch gradient.
    """
    if world.size == 1:
        return
    trained = [param for param in learner.parameters() if param.requires_grad]
    order = {id(param): i for i, param in enumerate(trained)}
    ready: list[torch.Tensor] = []  # the parameters this backward has accumulated into, in any order

    def reduce_ready() -> None:
        params = sorted(ready, key=lambda p: order[id(p)])  # every rank flattens in the same order
        ready.clear()
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for param in params:
            by_dtype.setdefault(param.grad.dtype, []).append(param.grad)
        for grads in by_dtype.values():
            flat = torch.cat([grad.reshape(-1) for grad in grads])
            dist.all_reduce(flat)
            flat.div_(world.size)
            for grad, mean in zip(grads, flat.split([grad.numel() for grad in grads])):
                grad.copy_(mean.view_as(grad))

    def mark_ready(param: torch.Tensor) -> None:
        if not ready:  # the first gradient of this backward: reduce them all once it has finished
            torch.autograd.Variable._execution_engine.queue_callback(reduce_ready)
        ready.append(param)

    for param in trained:
        param.register_post_accumulate_grad_hook(mark_ready)


def sample_shard(dataset: ChunkDataset, batch_size: int, world: World) -> TensorDict:
    """This rank's slice of the global batch; every rank draws the same indices, so the slices partition it.

    With one process this is exactly ``dataset.sample(batch_size)``.
    """
    if batch_size % world.size:
        raise ValueError(f"batch_size {batch_size} is not divisible by the {world.size} processes")
    ids = torch.randint(dataset.num_chunks, (batch_size,), generator=dataset.generator)
    return dataset.batch(ids[world.rank :: world.size])
