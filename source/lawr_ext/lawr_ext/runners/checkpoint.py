"""A stage's files in ``run_dir/<stage>/``: resumable checkpoints and the final product, written atomically.

Both are plain dicts of tensors and plain Python values, so they load with ``weights_only=True``::

    format_version  utils.io.FORMAT_VERSION of the writer
    stage           which stage (registry name)
    config_hash     hash of registry.hashed_config(cfg, stage): the settings this stage's result depends on (the
                    settings themselves are the run's config.json, its one config of record)
    dims            what the networks were built for and trained on: the dataset's {"obs_dim", "horizon",
                    "action_dim", "chunks"}, and its identity {"episodes", "data_sha256"} (Episodes.fingerprint)

and then, in ``checkpoint.pt`` (periodic and at the end of training)::

    step            how many gradient steps are done
    learner         Learner.training_state(): modules (without the frozen products it is built from) and optimizers
    rng             torch's global RNG state of every rank, in rank order (CPU, and CUDA when present)
    sampler         the batch sampler's generator state
    train_seconds   wall-clock seconds of training up to ``step``, summed over resumes

or, in ``final.pt`` (once the stage is complete)::

    model           the stage's OWN networks: the state_dict of its product (Stage.product: what later stages and
                    load_policy use) without the tensors of the frozen products it is built from
    built_on        {needed stage: content hash (product_hash) of its final.pt}: what it was built on; loading
                    assembles the product from those files and refuses any other
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import torch
from torch import nn

from lawr_ext.algorithms.base import Learner
from lawr_ext.algorithms.registry import describe, hashed_config
from lawr_ext.configs.train import TrainConfig
from lawr_ext.utils.io import FORMAT_VERSION, atomic_torch_save, config_hash, state_fingerprint

if TYPE_CHECKING:
    from lawr_ext.data.dataset import ChunkDataset


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
            "dims": dict(dims)}


def save_checkpoint(path: str | Path, cfg: TrainConfig, stage: str, step: int, dims: dict, learner: Learner,
                    sampler_state: dict, rng_states: list[dict], train_seconds: float = 0.0,
                    frozen: Iterable[nn.Module] = ()) -> None:
    """The learner's training state without the tensors of ``frozen`` (the products it is built from)."""
    state, shared = learner.training_state(), shared_names(learner, frozen)
    state["modules"] = {name: t for name, t in state["modules"].items() if name not in shared}
    atomic_torch_save(_record(cfg, stage, dims) | {
        "step": step,
        "learner": state,
        "rng": rng_states,
        "sampler": sampler_state,
        "train_seconds": float(train_seconds),
    }, path)


def shared_names(product: nn.Module, products: Iterable[nn.Module]) -> set[str]:
    """The names in ``product``'s state dict whose tensors are those of ``products`` (the frozen products it is
    built from, held by reference): not its own, so never saved with it."""
    theirs = {id(t) for other in products for t in other.state_dict(keep_vars=True).values()}
    return {name for name, t in product.state_dict(keep_vars=True).items() if id(t) in theirs}


def product_hash(record: dict) -> str:
    """The content hash of a final.pt's networks (what a stage built on it records in ``built_on``)."""
    return state_fingerprint(record["model"])


def save_final(run_dir: str | Path, cfg: TrainConfig, stage: str, dims: dict, product: nn.Module,
               products: dict[str, nn.Module] | None = None, built_on: dict[str, str] | None = None) -> None:
    """Write ``product``'s own networks, without the tensors of ``products`` (the frozen products it was built from,
    by stage), naming those by content hash (``built_on``)."""
    shared = shared_names(product, (products or {}).values())
    own = {name: t for name, t in product.state_dict().items() if name not in shared}
    atomic_torch_save(_record(cfg, stage, dims) | {"model": own, "built_on": dict(built_on or {})},
                      final_path(run_dir, stage))


def read_checkpoint(path: str | Path, stage: str | None = None) -> dict:
    """Load a checkpoint or final product with ``weights_only=True``; check its format version (and stage)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    if not zipfile.is_zipfile(path):  # what torch.save writes; anything else is not read at all
        raise CheckpointError(path, "not a readable lawr checkpoint: not the zip archive torch.save writes "
                                    "(truncated, corrupt or another kind of file)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, or objects safe loading refuses
        text = " ".join(str(err).split())
        if "weights only" in text.lower():  # torch's advice (weights_only=False) is never ours: lawr never loads unsafely
            problem = "holds Python objects that safe loading refuses (lawr checkpoints are plain tensors and values)"
        else:
            problem = f"truncated or corrupt ({type(err).__name__}: {text[:200]})"
        raise CheckpointError(path, f"not a readable lawr checkpoint: {problem}") from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(path, "not a lawr checkpoint (no format_version)")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise CheckpointError(path, _other_version(ckpt))
    if stage is not None and ckpt["stage"] != stage:
        raise CheckpointError(path, f"is a {ckpt['stage']!r} checkpoint, expected {stage!r}")
    return ckpt


def _other_version(ckpt: dict) -> str:
    version = ckpt["format_version"]
    if isinstance(version, int) and version > FORMAT_VERSION:
        return f"written by a newer lawr (format version {version}, this lawr reads {FORMAT_VERSION}); update lawr"
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}  # older records held the config
    return (f"written by an older lawr (format version {version}, this lawr reads {FORMAT_VERSION}); "
            f"{retrain_hint(config.get('task', 'TASK'), (config.get('data') or {}).get('path'))}")


def retrain_hint(task: str, dataset: str | None = None) -> str:
    """How to retrain a run this lawr cannot read."""
    return (f"retrain it in a new run directory: python scripts/train_lawr.py --task {task}"
            f"{f' --dataset {dataset}' if dataset else ''} --run_dir NEW_RUN_DIR")


SHAPES = ("obs_dim", "horizon", "action_dim")


def check_compatible(path: str | Path, ckpt: dict, cfg: TrainConfig, dims: dict,
                     dataset: ChunkDataset | None = None) -> None:
    """A checkpoint may only continue (or feed) a run with the same stage settings, dataset shapes and dataset
    (content hash); with ``dataset`` given, a dataset that grew since is told apart from another one."""
    expected = config_hash(hashed_config(cfg, ckpt["stage"]))
    if ckpt["config_hash"] != expected:
        raise CheckpointError(path, f"config hash {ckpt['config_hash']} != {expected} of the current config: the "
                                    f"{ckpt['stage']!r} settings (or those of a stage it is built from) changed; "
                                    "use a new run_dir")
    recorded = ckpt["dims"]
    if any(recorded.get(k) != dims[k] for k in SHAPES):
        raise CheckpointError(path, f"was trained on data with {', '.join(f'{k}={recorded.get(k)}' for k in SHAPES)}, "
                                    f"the current dataset has {', '.join(f'{k}={dims[k]}' for k in SHAPES)}")
    if recorded.get("data_sha256") != dims["data_sha256"]:
        raise CheckpointError(path, _other_data(recorded, dims, dataset))


def _other_data(recorded: dict, dims: dict, dataset: ChunkDataset | None) -> str:
    before, now = recorded.get("episodes"), dims["episodes"]
    source = f" {dataset.source}" if dataset is not None else ""
    if (dataset is not None and isinstance(before, int) and before < now
            and dataset.episodes.fingerprint(before) == recorded["data_sha256"]):
        return (f"was trained on the first {before} episodes of the dataset{source}, which now has {now}: appending "
                "episodes makes a new dataset; train on it in a new run_dir")
    return (f"was trained on another dataset (sha256 {str(recorded.get('data_sha256'))[:12]}, {before} episodes) than "
            f"the current one{source} (sha256 {dims['data_sha256'][:12]}, {now} episodes); a run trains on one "
            "dataset: use a new run_dir")


def load_into(path: str | Path, load, what: str) -> None:
    """Call ``load()`` (a ``load_state_dict``) with a one-line error instead of torch's multi-line mismatch."""
    try:
        load()
    except (RuntimeError, KeyError, ValueError) as err:
        raise CheckpointError(path, f"does not fit the {what} built from the config: "
                                    f"{str(err).splitlines()[0][:300]}") from err


def read_final(run_dir: str | Path, stage: str) -> dict:
    """Stage ``stage``'s final.pt record; a missing one says that the stage has not finished."""
    path = final_path(run_dir, stage)
    if not path.is_file():
        raise CheckpointError(path, f"missing: {describe(stage)} has not finished in this run_dir (run it first)")
    return read_checkpoint(path, stage)


def load_final(run_dir: str | Path, stage: str, product: nn.Module, cfg: TrainConfig, dims: dict,
               products: dict[str, nn.Module] | None = None, record: dict | None = None) -> dict:
    """Load stage ``stage``'s own networks into ``product`` (built from ``products``, the frozen products it needs,
    which bring theirs) after checking they belong to ``cfg`` and ``dims``; returns the record."""
    path = final_path(run_dir, stage)
    ckpt = read_final(run_dir, stage) if record is None else record
    check_compatible(path, ckpt, cfg, dims)
    shared = shared_names(product, (products or {}).values())
    copied = sorted(shared & set(ckpt["model"]))
    if copied:  # never loaded: it would overwrite the frozen products in place
        raise CheckpointError(path, f"holds a copy of the networks it was built from ({copied[0]}, ...): written by "
                                    f"an older lawr; {retrain_hint(cfg.task, cfg.data.path)}")
    theirs = {name: t for name, t in product.state_dict().items() if name in shared}
    load_into(path, lambda: product.load_state_dict(ckpt["model"] | theirs), f"{type(product).__name__} networks")
    return ckpt
