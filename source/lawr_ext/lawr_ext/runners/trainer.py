"""The gradient-step loop every stage shares: progress, TensorBoard, checkpoints, resume, divergence stops.

Resume is bit-identical on the CPU: a checkpoint holds the learner (modules + optimizers), torch's global
RNG and the batch sampler's generator, so step n+1 after a resume sees the same batch, the same noise and
the same weights as step n+1 of an uninterrupted run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from tensordict import TensorDict
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from lawr_ext.algorithms import registry
from lawr_ext.algorithms.base import Learner
from lawr_ext.configs.train import TrainConfig
from lawr_ext.data.dataset import ChunkDataset
from lawr_ext.runners.checkpoint import (CheckpointError, check_compatible, checkpoint_path, load_into,
                                         read_checkpoint, rng_state, save_checkpoint, set_rng_state, shared_names)
from lawr_ext.runners.distributed import average_gradients, sample_shard
from lawr_ext.utils.cli import OneLineError, progress
from lawr_ext.utils.distributed import RANK_SEED_STRIDE, World
from lawr_ext.utils.seeding import derive_seed


class TrainingError(OneLineError):
    """Training had to stop (NaN/inf, a diverging critic, a failing update): names the stage and the step."""

    def __init__(self, stage: str, step: int, problem: str, last_checkpoint: int | None):
        resume = f"last good checkpoint: step {last_checkpoint}" if last_checkpoint else "no checkpoint written yet"
        super().__init__(f"{registry.describe(stage)} stopped at step {step}: {' '.join(problem.split())} ({resume})")
        self.stage, self.step = stage, step


def stage_seed(cfg: TrainConfig, stage: str) -> int:
    """Each stage starts from its own seed, derived from the run's seed and its NAME: training it alone
    reproduces it inside a full run, and adding a stage changes no other stage's seed."""
    return derive_seed(cfg.seed, stage)


def dataset_dims(dataset: ChunkDataset) -> dict:
    """What a checkpoint must agree with about the dataset: network shapes, and which dataset it is (its size and
    content hash, so that a resume on other data is refused)."""
    dims = {"obs_dim": dataset.obs_dim, "horizon": dataset.horizon, "action_dim": dataset.action_dim,
            "chunks": dataset.num_chunks, "episodes": dataset.episodes.num_episodes,
            "data_sha256": dataset.fingerprint}
    if dataset.image_shape is not None:  # image data: (cameras, H, W) of its frames and the cameras' names (in
        dims["images"] = list(dataset.image_shape)  # order, where the data names them); state data records neither
        dims["cameras"] = dataset.episodes.meta.get("cameras")
    return dims


def weight_norm(learner: Learner) -> float:
    """L2 norm over the trainable parameters: a slow drift upward is the first sign of a blow-up."""
    return math.sqrt(sum(p.detach().double().square().sum().item() for p in learner.parameters() if p.requires_grad))


def check_metrics(cfg: TrainConfig, stage: str, metrics: dict[str, float]) -> str | None:
    """The problem with this step's metrics, or None: any non-finite value, then the stage's own check."""
    bad = sorted(name for name, value in metrics.items() if not math.isfinite(value))
    if bad:
        return f"non-finite {', '.join(f'{n}={metrics[n]}' for n in bad)}"
    check = registry.STAGES[stage].check
    return check(cfg, metrics) if check is not None else None


def with_frozen(state: dict, learner: Learner, frozen: Iterable[nn.Module]) -> dict:
    """A checkpoint's training state with the frozen products' tensors, which it leaves out, back in place."""
    shared = shared_names(learner, frozen)
    theirs = {name: t for name, t in learner.state_dict().items() if name in shared}
    return state | {"modules": state["modules"] | theirs}


def train_stage(cfg: TrainConfig, stage: str, learner: Learner, dataset: ChunkDataset, run_dir: str | Path,
                num_steps: int, batch_size: int, world: World = World(),
                coordinates: Callable[[TensorDict], TensorDict] | None = None,
                frozen: Iterable[nn.Module] = ()) -> dict[str, float]:
    """Train ``stage``'s learner up to ``num_steps`` gradient steps of ``batch_size`` chunks (the global batch
    over all ranks), resuming from its checkpoint if one exists. Only rank 0 writes.

    ``coordinates`` maps each batch into the learners' coordinates (``BehaviorModel.learner_batch``); None:
    the learner takes the dataset's batches as they are. ``frozen``: the products the learner is built from;
    its checkpoints leave their tensors out (they are in those products' final.pt).

    Returns the metrics of the last step (empty if the checkpoint was already complete).
    """
    dims = dataset_dims(dataset)
    path = checkpoint_path(run_dir, stage)
    if path.exists():
        ckpt = read_checkpoint(path, stage)
        check_compatible(path, ckpt, cfg, dims, dataset)
        if not isinstance(ckpt["rng"], list):
            raise CheckpointError(path, "has no per-rank RNG states (written by an older lawr); use a new run_dir")
        if len(ckpt["rng"]) != world.size:
            raise CheckpointError(path, f"was written by {len(ckpt['rng'])} process(es); resume it with as many, not {world.size}")
        load_into(path, lambda: learner.load_training_state(with_frozen(ckpt["learner"], learner, frozen)),
                  type(learner).__name__)
        set_rng_state(ckpt["rng"][world.rank])
        dataset.load_state_dict(ckpt["sampler"])
        start, last_saved = ckpt["step"], ckpt["step"]
        seconds_before = ckpt.get("train_seconds", 0.0)
    else:
        torch.manual_seed(stage_seed(cfg, stage) + world.rank * RANK_SEED_STRIDE)  # own noise per rank
        dataset.generator.manual_seed(stage_seed(cfg, stage))  # the same global batches on every rank
        start, last_saved, seconds_before = 0, None, 0.0
    average_gradients(learner, world)

    # purge_step: after a resume, TensorBoard drops the events the killed run logged past the checkpoint
    writer = SummaryWriter(Path(run_dir) / "tensorboard" / stage, purge_step=start) if world.is_writer else None
    bar = progress(num_steps, stage, "step", initial=start, enabled=cfg.progress and world.is_writer)
    metrics: dict[str, float] = {}
    started = time.perf_counter()
    try:
        for step in range(start + 1, num_steps + 1):
            batch = sample_shard(dataset, batch_size, world)
            if coordinates is not None:
                batch = coordinates(batch)
            try:
                metrics = learner.update(batch)
            except (ValueError, FloatingPointError) as err:  # a non-finite loss, a batch that does not fit
                raise TrainingError(stage, step, str(err), last_saved) from err
            problem = check_metrics(cfg, stage, metrics)
            if problem:
                raise TrainingError(stage, step, problem, last_saved)
            if writer is not None and (step % cfg.log_interval == 0 or step == num_steps):
                for name, value in metrics.items():
                    writer.add_scalar(name, value, step)
                writer.add_scalar(f"weights/{stage}_norm", weight_norm(learner), step)
                bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in list(metrics.items())[:3]})
            if step % cfg.checkpoint_interval == 0 or step == num_steps:
                rng_states = world.gather(rng_state())
                if world.is_writer:
                    seconds = seconds_before + time.perf_counter() - started
                    save_checkpoint(path, cfg, stage, step, dims, learner, dataset.state_dict(), rng_states, seconds,
                                    frozen)
                last_saved = step
            bar.update(1)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return metrics
