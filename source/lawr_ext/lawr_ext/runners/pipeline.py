"""Training a run: every requested stage of ``algorithms/registry.py``, in training order, each from the saved
(frozen) products of the stages it needs; and ``load_policy``, one lookup from a method name to its policy.

The stages are strictly decoupled through files in ``run_dir``::

    config.json              the TrainConfig of the run
    <stage>/checkpoint.pt    resumable training state (runners/checkpoint.py), periodic and final
    <stage>/final.pt         the stage's product, written once the stage is complete:
                               flow:    the normalizers, the chunk basis and the FROZEN one-step decoder (EMA weights)
                               critic:  V and Q networks (frozen when later stages load them)
                               planner and every baseline: the ChunkPolicy it trained (or is made of)
    tensorboard/<stage>/     TensorBoard scalars
    summary.json / .md       final metrics of each stage (and evaluation results)

A stage rebuilds the products it needs from their ``final.pt`` alone, frozen (requires_grad False, eval mode),
so nothing it does can reach the weights an earlier stage produced.
"""

from __future__ import annotations

import contextlib
import errno
import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from lawr_ext.algorithms import registry
from lawr_ext.algorithms.base import ChunkPolicy, EnvActionPolicy, Learner, freeze
from lawr_ext.algorithms.stage import StageInputs
from lawr_ext.configs.train import TrainConfig, train_config_from_dict
from lawr_ext.data.dataset import ChunkDataset, load_episodes
from lawr_ext.data.episodes import DatasetError, Episodes
from lawr_ext.data.reading import Reading
from lawr_ext.modules.chunk_basis import ChunkBasis
from lawr_ext.runners.checkpoint import (CheckpointError, check_compatible, checkpoint_path, final_path, load_final,
                                         read_checkpoint, save_final)
from lawr_ext.runners.trainer import dataset_dims, stage_seed, train_stage
from lawr_ext.tasks import get_task
from lawr_ext.utils.distributed import World, require_device
from lawr_ext.utils.io import atomic_write_text, config_hash
from lawr_ext.utils.lock import directory_lock


def open_dataset(cfg: TrainConfig, path: str | Path) -> ChunkDataset:
    """The dataset at ``path``, checked against the task before anything trains on it: its task (collected
    datasets record it) and the observation and action dims the task declares, each in one line naming the file."""
    spec = get_task(cfg.task)

    def expect(episodes: Episodes) -> None:
        recorded = episodes.meta.get("task")  # collected datasets know their task; plain files do not
        if recorded is not None and recorded != cfg.task:
            raise DatasetError(path, f"collected on task {recorded!r}, but this run trains {cfg.task!r}")
        episodes.check_dims(path, spec.obs_dim, spec.action_dim, f"task {cfg.task!r}")

    episodes = load_episodes(path, expect, Reading.of(cfg))
    return ChunkDataset(episodes, cfg.data.horizon, cfg.data.gamma, source=path, device=cfg.device, seed=cfg.seed)


def chunk_basis(cfg: TrainConfig) -> ChunkBasis:
    """The chunk coordinates the run's learners use (``data.chunk_basis``, ``data.chunk_coeffs``)."""
    return ChunkBasis(cfg.data.horizon, cfg.data.chunk_basis, cfg.data.chunk_coeffs)


def run_inputs(run_dir: str | Path, cfg: TrainConfig, dims: dict, device: str | torch.device = "cpu") -> StageInputs:
    """StageInputs whose products are read from ``run_dir`` on first use: checked against ``cfg`` and ``dims``,
    frozen, on ``device``."""
    basis = chunk_basis(cfg)
    inputs = StageInputs(dims["obs_dim"], basis.num_coeffs, dims["action_dim"], chunk_basis=basis,
                         action_normalization=cfg.data.action_normalization)

    def load(stage: str) -> nn.Module:
        product = registry.STAGES[stage].product(registry.stage_config(cfg, stage), inputs)
        load_final(run_dir, stage, product, cfg, dims)
        return freeze(product.to(device))

    inputs.load = load
    return inputs


def load_product(run_dir: str | Path, stage: str, cfg: TrainConfig, dims: dict,
                 device: str | torch.device = "cpu") -> nn.Module:
    """The frozen product of a finished stage (e.g. "flow": the normalizers and the one-step decoder)."""
    return run_inputs(run_dir, cfg, dims, device)[stage]


def run_stage(cfg: TrainConfig, name: str, dataset: ChunkDataset, run_dir: str | Path,
              world: World = World()) -> dict[str, float]:
    """Train stage ``name`` (resuming if it was interrupted) and write its product; returns its last metrics
    (empty if it was already complete, or has nothing to train)."""
    stage, dims = registry.STAGES[name], dataset_dims(dataset)
    inputs = run_inputs(run_dir, cfg, dims, cfg.device)
    inputs.dataset = dataset
    for needed in stage.needs:  # loaded first: rebuilding them draws random initial weights
        inputs[needed]
    settings = registry.stage_config(cfg, name)
    torch.manual_seed(stage_seed(cfg, name))  # network initialisation is part of the stage's seeded result
    built = stage.build(settings, inputs).to(cfg.device)
    metrics: dict[str, float] = {}
    if isinstance(built, Learner):
        # every stage trains in Phase 1's coordinates: the flow's own (it fits them), later the behaviour model's
        behavior = built if name == "flow" else inputs["flow"]
        metrics = train_stage(cfg, name, built, dataset, run_dir, settings.num_steps, settings.batch_size, world,
                              behavior.learner_batch)
        built = built.product()
    if world.is_writer:
        save_final(run_dir, cfg, name, dims, built)
        if metrics and stage.report is not None:
            metrics |= stage.report(built, dataset)
    world.barrier()  # the next stage (on every rank) reads this product
    return metrics


def check_run_dir(cfg: TrainConfig, dataset: ChunkDataset, run_dir: Path, stages: tuple[str, ...]) -> None:
    """Refuse, before anything is written, a run_dir whose checkpoints of ``stages`` (or of the stages they are
    built from) belong to other settings, other dataset shapes or another dataset."""
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "the run directory is a file", str(run_dir))
    dims = dataset_dims(dataset)
    for name in registry.with_needs(stages):
        if name not in stages and not final_path(run_dir, name).is_file():  # built from, not trained now
            raise CheckpointError(final_path(run_dir, name), f"missing: {registry.describe(name)} has not "
                                                             "finished in this run_dir (train it first)")
        for path in (final_path(run_dir, name), checkpoint_path(run_dir, name)):
            if path.exists():
                check_compatible(path, read_checkpoint(path, name), cfg, dims, dataset)


def train(cfg: TrainConfig, dataset_path: str | Path, run_dir: str | Path,
          stages: tuple[str, ...] = registry.PHASE_NAMES, world: World = World()) -> dict:
    """Train ``stages`` (default: L-AWR's three phases) on the dataset at ``dataset_path``, each from the products
    of the stages it needs in ``run_dir`` (trained now or before); writes config.json and summary.json/.md.

    Nothing is written before the dataset, the device and every checkpoint already in ``run_dir`` are checked
    against the config; then the run directory is locked (``utils/lock.py``): a second training on it is refused.
    Under torchrun pass ``world=init_world(cfg.device)``: every rank calls this, rank 0 writes.
    """
    run_dir = Path(run_dir)
    unknown = [s for s in stages if s not in registry.STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}: expected some of {tuple(registry.STAGES)}")
    dataset_dir = Path(dataset_path).resolve()
    if dataset_dir.is_dir() and (run_dir.resolve() == dataset_dir or dataset_dir in run_dir.resolve().parents):
        raise ValueError(f"--run_dir {run_dir} is (inside) the dataset directory {dataset_path}: the run's files would "
                         "mix with the shards; choose a run_dir outside it")
    require_device(cfg.device)
    dataset = open_dataset(cfg, dataset_path)  # first: a bad dataset must not touch an existing run's files
    check_run_dir(cfg, dataset, run_dir, stages)
    with directory_lock(run_dir, "training") if world.is_writer else contextlib.nullcontext():
        check_run_dir(cfg, dataset, run_dir, stages)  # again under the lock: another process may have written
        if world.is_writer:
            atomic_write_text(json.dumps(asdict(cfg), indent=2) + "\n", run_dir / "config.json")
        summary = read_summary(run_dir)
        summary["dataset"] = {"path": str(dataset_path), "sha256": dataset.fingerprint} | dataset.stats()
        for name in registry.STAGES:  # always in training order, whatever order they were given in
            if name not in stages:
                continue
            metrics = run_stage(cfg, name, dataset, run_dir, world)
            if metrics:  # empty when the stage was already complete: keep the metrics it finished with
                summary.setdefault("phases" if name in registry.PHASES else "baselines", {})[name] = metrics
            if world.is_writer:
                write_summary(run_dir, summary)
    return summary


def read_summary(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def recorded_dataset(run_dir: str | Path) -> Path | None:
    """The dataset the run in ``run_dir`` trains on, as its records name it (summary.json, else the data.path of
    config.json); None for a new run directory."""
    path = read_summary(run_dir).get("dataset", {}).get("path")
    config = Path(run_dir) / "config.json"
    if path is None and config.is_file():
        path = json.loads(config.read_text()).get("data", {}).get("path")
    return None if path is None else Path(path)


def write_summary(run_dir: str | Path, summary: dict) -> None:
    """summary.json (machine-readable) and summary.md (the final metrics of each stage, evaluation results)."""
    run_dir = Path(run_dir)
    atomic_write_text(json.dumps(summary, indent=2) + "\n", run_dir / "summary.json")
    lines = [f"# L-AWR run `{run_dir}`", ""]
    for section, values in summary.items():
        lines += [f"## {section}", ""] + _bullets(values) + [""]
    atomic_write_text("\n".join(lines), run_dir / "summary.md")


def _bullets(values: dict, indent: str = "") -> list[str]:
    lines = []
    for key, value in values.items():
        if isinstance(value, dict):
            lines += [f"{indent}- {key}"] + _bullets(value, indent + "  ")
        else:
            lines.append(f"{indent}- {key}: `{f'{value:.4g}' if isinstance(value, float) else value}`")
    return lines


def run_dir_of(path: str | Path) -> Path:
    """The run directory ``path`` names: the directory itself, or the one a ``<stage>/final.pt`` inside it is in."""
    path = Path(path)
    if path.is_dir():
        return path
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such run directory or checkpoint", str(path))
    if path.name in ("final.pt", "checkpoint.pt") and path.parent.name in registry.STAGES:
        return path.parent.parent
    raise CheckpointError(path, "is neither a run directory nor a <stage>/final.pt inside one")


def load_policy(path: str | Path, method: str = "lawr") -> ChunkPolicy:
    """The ChunkPolicy of ``method`` (``registry.METHODS``: "lawr", "flow_bc", "fql", ...) from a run directory
    or one of its ``final.pt`` files (which selects its run directory), on the CPU, in eval mode.

    It is the method's saved product, its chunks mapped back to env actions (``EnvActionPolicy``, with Phase 1's
    action normalizer); a method with nothing to train is also built, from the run's products,
    when it was not run here (flow_bc: the frozen flow sampled from the prior). Only what acting needs is
    loaded: the L-AWR policy comes without its critic.
    """
    run_dir = run_dir_of(path)
    if method not in registry.METHODS:
        raise ValueError(f"load_policy: unknown method {method!r}; expected one of {tuple(registry.METHODS)}")
    stage = registry.METHODS[method]
    own = final_path(run_dir, stage.name)
    # The config to rebuild it with: its own record, or that of the products it is built from.
    meta = read_checkpoint(own, stage.name) if own.is_file() else read_checkpoint(final_path(run_dir, stage.needs[0]))
    if own.is_file():
        for needed in stage.needs:
            check_built_on(run_dir, stage.name, meta, needed)
    cfg, dims = train_config_from_dict(meta["config"]), meta["dims"]
    inputs = run_inputs(run_dir, cfg, dims)
    policy = stage.product(registry.stage_config(cfg, stage.name), inputs)
    if own.is_file() or stage.learner is not None:  # a trained stage that has not finished fails here
        load_final(run_dir, stage.name, policy, cfg, dims)
    behavior = inputs["flow"]
    return EnvActionPolicy(policy, behavior.action_normalizer, behavior.chunk_basis).eval()


def check_built_on(run_dir: Path, stage: str, record: dict, needed: str) -> None:
    """Stage ``stage``'s product (``record``) was built from this run's ``needed``/final.pt; if not, the error names
    the file that does not belong: the one that disagrees with the run's config.json (``stage``'s by default)."""
    needed_path = final_path(run_dir, needed)
    if not needed_path.is_file():
        return  # loading it names it as missing
    theirs = read_checkpoint(needed_path, needed)
    cfg = train_config_from_dict(record["config"])
    expected = config_hash(registry.hashed_config(cfg, needed))
    if theirs["config_hash"] == expected and theirs["dims"] == record["dims"]:
        return
    own_path = final_path(run_dir, stage)
    config = run_dir / "config.json"
    if config.is_file():  # the run's record decides which of the two files is the stranger
        try:
            run_cfg = train_config_from_dict(json.loads(config.read_text()))
        except ValueError:
            run_cfg = None
        if (run_cfg is not None and config_hash(registry.hashed_config(run_cfg, needed)) != theirs["config_hash"]
                and config_hash(registry.hashed_config(run_cfg, stage)) == record["config_hash"]):
            raise CheckpointError(needed_path, f"comes from another run: {own_path.relative_to(run_dir)} and "
                                               "config.json were built on another one; copy whole run directories")
    raise CheckpointError(own_path, f"comes from another run: it was not built on this run's "
                                    f"{needed_path.relative_to(run_dir)} (other settings or another dataset); "
                                    "copy whole run directories")
