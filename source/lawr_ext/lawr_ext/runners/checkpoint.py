"""Checkpoints of a phase: everything a killed run needs to continue bit-identically, written atomically.

A checkpoint is a plain dict of tensors and plain Python values, so it loads with ``weights_only=True``::

    format_version  utils.io.FORMAT_VERSION of the writer
    phase, step     which phase, and how many gradient steps are done
    config_hash     hash of TrainConfig.phase_config(phase): the settings this phase's result depends on
    config          the full TrainConfig as a dict (load_policy rebuilds the networks from it)
    dims            {"obs_dim", "horizon", "action_dim"} of the dataset the networks were built for
    learner         Learner.training_state(): modules and optimizers
    rng             torch's global RNG state of every rank, in rank order (CPU, and CUDA when present)
    sampler         the batch sampler's generator state
    train_seconds   wall-clock seconds of training up to ``step``, summed over resumes
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from lawr_ext.algorithms.base import Learner
from lawr_ext.configs.train import TrainConfig
from lawr_ext.utils.io import FORMAT_VERSION, atomic_torch_save, config_hash


class CheckpointError(ValueError):
    """A checkpoint that does not belong to this run (format, config or shapes); one line naming the file."""

    def __init__(self, path: object, problem: str):
        super().__init__(f"{path}: {' '.join(str(problem).split())}")


def checkpoint_path(run_dir: str | Path, phase: str) -> Path:
    return Path(run_dir) / phase / "checkpoint.pt"


def rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, cfg: TrainConfig, phase: str, step: int, dims: dict, learner: Learner,
                    sampler_state: dict, rng_states: list[dict], train_seconds: float = 0.0) -> None:
    atomic_torch_save({
        "format_version": FORMAT_VERSION,
        "phase": phase,
        "step": step,
        "config_hash": config_hash(cfg.phase_config(phase)),
        "config": asdict(cfg),
        "dims": dict(dims),
        "learner": learner.training_state(),
        "rng": rng_states,
        "sampler": sampler_state,
        "train_seconds": float(train_seconds),
    }, path)


def read_checkpoint(path: str | Path, phase: str | None = None) -> dict:
    """Load a checkpoint with ``weights_only=True`` and check its format version (and phase, if given)."""
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
    if phase is not None and ckpt["phase"] != phase:
        raise CheckpointError(path, f"is a {ckpt['phase']!r} checkpoint, expected {phase!r}")
    return ckpt


def check_compatible(path: str | Path, ckpt: dict, cfg: TrainConfig, dims: dict) -> None:
    """A checkpoint may only continue (or feed) a run with the same phase (or baseline) settings and dataset
    shapes."""
    expected = config_hash(cfg.phase_config(ckpt["phase"]))
    if ckpt["config_hash"] != expected:
        raise CheckpointError(path, f"config hash {ckpt['config_hash']} != {expected} of the current config: "
                                    f"the {ckpt['phase']!r} settings (or an earlier phase's) changed; use a new run_dir")
    if ckpt["dims"] != dict(dims):
        raise CheckpointError(path, f"was trained on data with {ckpt['dims']}, the current dataset has {dict(dims)}")


def load_into(path: str | Path, learner: Learner, state: dict) -> None:
    """``learner.load_training_state`` with a one-line error instead of torch's multi-line size mismatch."""
    try:
        learner.load_training_state(state)
    except (RuntimeError, KeyError, ValueError) as err:
        raise CheckpointError(path, f"does not fit the {type(learner).__name__} built from the config: "
                                    f"{str(err).splitlines()[0][:300]}") from err
