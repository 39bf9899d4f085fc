"""A stage's files in ``run_dir/<stage>/``: resumable checkpoints and the final product, written atomically.

Both are plain dicts of tensors and plain Python values, so they load with ``weights_only=True``::

    format_version  utils.io.FORMAT_VERSION of the writer
    stage           which stage (registry name)
    config_hash     hash of registry.hashed_config(cfg, stage): the settings this stage's result depends on
    config          the full TrainConfig as a dict (load_policy rebuilds the networks from it)
    dims            {"obs_dim", "horizon", "action_dim", "chunks"} of the dataset the networks were built for

and then, in ``checkpoint.pt`` (periodic and at the end of training)::

    step            how many gradient steps are done
    learner         Learner.training_state(): modules and optimizers
    rng             torch's global RNG state of every rank, in rank order (CPU, and CUDA when present)
    sampler         the batch sampler's generator state
    train_seconds   wall-clock seconds of training up to ``step``, summed over resumes

or, in ``final.pt`` (once the stage is complete)::

    model           the state_dict of the stage's product (Stage.product: what later stages and load_policy use)
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from lawr_ext.algorithms.base import Learner
from lawr_ext.algorithms.registry import describe, hashed_config
from lawr_ext.configs.train import TrainConfig
from lawr_ext.utils.io import FORMAT_VERSION, atomic_torch_save, config_hash


class CheckpointError(ValueError):
    """A checkpoint that does not belong to this run (format, config or shapes); one line naming the file."""

    def __init__(self, path: object, problem: str):
        super().__init__(f"{path}: {' '.join(str(problem).split())}")


def checkpoint_path(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / stage / "checkpoint.pt"


def final_path(run_dir: str | Path, stage: str) -> Path:
    return Path(run_dir) / stage / "final.pt"


def rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _record(cfg: TrainConfig, stage: str, dims: dict) -> dict:
    return {"format_version": FORMAT_VERSION, "stage": stage, "config_hash": config_hash(hashed_config(cfg, stage)),
            "config": asdict(cfg), "dims": dict(dims)}


def save_checkpoint(path: str | Path, cfg: TrainConfig, stage: str, step: int, dims: dict, learner: Learner,
                    sampler_state: dict, rng_states: list[dict], train_seconds: float = 0.0) -> None:
    atomic_torch_save(_record(cfg, stage, dims) | {
        "step": step,
        "learner": learner.training_state(),
        "rng": rng_states,
        "sampler": sampler_state,
        "train_seconds": float(train_seconds),
    }, path)


def save_final(run_dir: str | Path, cfg: TrainConfig, stage: str, dims: dict, product: nn.Module) -> None:
    atomic_torch_save(_record(cfg, stage, dims) | {"model": product.state_dict()}, final_path(run_dir, stage))


def read_checkpoint(path: str | Path, stage: str | None = None) -> dict:
    """Load a checkpoint or final product with ``weights_only=True``; check its format version (and stage)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated file, not a torch file, or objects weights_only refuses
        raise CheckpointError(path, f"not a readable lawr checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(path, "not a lawr checkpoint (no format_version)")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(path, f"format version {ckpt['format_version']}, this lawr reads {FORMAT_VERSION}")
    if stage is not None and ckpt["stage"] != stage:
        raise CheckpointError(path, f"is a {ckpt['stage']!r} checkpoint, expected {stage!r}")
    return ckpt


def check_compatible(path: str | Path, ckpt: dict, cfg: TrainConfig, dims: dict) -> None:
    """A checkpoint may only continue (or feed) a run with the same stage settings and dataset shapes."""
    expected = config_hash(hashed_config(cfg, ckpt["stage"]))
    if ckpt["config_hash"] != expected:
        raise CheckpointError(path, f"config hash {ckpt['config_hash']} != {expected} of the current config: the "
                                    f"{ckpt['stage']!r} settings (or those of a stage it is built from) changed; "
                                    "use a new run_dir")
    if ckpt["dims"] != dict(dims):
        raise CheckpointError(path, f"was trained on data with {ckpt['dims']}, the current dataset has {dict(dims)}")


def load_into(path: str | Path, load, what: str) -> None:
    """Call ``load()`` (a ``load_state_dict``) with a one-line error instead of torch's multi-line mismatch."""
    try:
        load()
    except (RuntimeError, KeyError, ValueError) as err:
        raise CheckpointError(path, f"does not fit the {what} built from the config: "
                                    f"{str(err).splitlines()[0][:300]}") from err


def load_final(run_dir: str | Path, stage: str, product: nn.Module, cfg: TrainConfig, dims: dict) -> None:
    """Load stage ``stage``'s saved product into ``product`` after checking it belongs to ``cfg`` and ``dims``."""
    path = final_path(run_dir, stage)
    if not path.is_file():
        raise CheckpointError(path, f"missing: {describe(stage)} has not finished in this run_dir (run it first)")
    ckpt = read_checkpoint(path, stage)
    check_compatible(path, ckpt, cfg, dims)
    load_into(path, lambda: product.load_state_dict(ckpt["model"]), f"{type(product).__name__} networks")
