"""Training a run: every requested stage of ``algorithms/registry.py``, in training order, each from the saved
(frozen) products of the stages it needs; and ``load_policy``, one lookup from a method name to its policy.

The stages are strictly decoupled through files in ``run_dir``::

    config.json              the run's config of record (``run_config``): the TrainConfig every stage was trained
                             with, resolved (each baseline's settings as it trained, the dataset's path)
    <stage>/checkpoint.pt    resumable training state (runners/checkpoint.py; its own networks and optimizers),
                             periodic and final
    <stage>/final.pt         the stage's product, written once the stage is complete: its OWN networks only, and
                             the content hash of each product it was built from (``built_on``):
                               flow:    the normalizers, the chunk basis and the FROZEN one-step decoder (EMA weights)
                               critic:  V and Q networks (frozen when later stages load them)
                               planner and every baseline: what it trained (the planner: the latent planner;
                               the flow and critic it is built on stay in flow/ and critic/ final.pt)
    tensorboard/<stage>/     TensorBoard scalars
    summary.json / .md       final metrics of each stage (and evaluation results)

A stage rebuilds the products it needs from their ``final.pt`` alone, frozen (requires_grad False, eval mode),
so nothing it does can reach the weights an earlier stage produced. Loading assembles a policy from the
products it needs and refuses one that is not the product it was built on (content hash).
"""

from __future__ import annotations

import contextlib
import errno
import json
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from lawr_ext.algorithms import registry
from lawr_ext.algorithms.base import ChunkPolicy, EnvActionPolicy, Learner, freeze
from lawr_ext.algorithms.stage import StageInputs
from lawr_ext.algorithms.training import resolve_compute_dtype
from lawr_ext.configs.train import TrainConfig, train_config_from_dict
from lawr_ext.data.dataset import ChunkDataset, load_episodes
from lawr_ext.data.episodes import DatasetError, Episodes
from lawr_ext.data.reading import Reading
from lawr_ext.modules.chunk_basis import ChunkBasis
from lawr_ext.modules.vision import feature_dim
from lawr_ext.runners.checkpoint import (CheckpointError, check_compatible, checkpoint_path, final_path, load_final,
                                         product_hash, read_checkpoint, read_final, retrain_hint, save_final)
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
    episodes = episodes.keep_labelled(path, tuple(cfg.data.keep_qualities), tuple(cfg.data.keep_strategies))
    return ChunkDataset(episodes, cfg.data.horizon, cfg.data.gamma, source=path, device=cfg.device, seed=cfg.seed)


def chunk_basis(cfg: TrainConfig) -> ChunkBasis:
    """The chunk coordinates the run's learners use (``data.chunk_basis``, ``data.chunk_coeffs``)."""
    return ChunkBasis(cfg.data.horizon, cfg.data.chunk_basis, cfg.data.chunk_coeffs)


def run_config(run_dir: str | Path) -> TrainConfig:
    """The run's config of record: its config.json, as ``train`` wrote it (every stage's settings as trained)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(path, "missing: the run's config of record, written when its training starts; copy "
                                    "whole run directories")
    data = None
    try:
        data = json.loads(path.read_text())
        return train_config_from_dict(data)
    except ValueError as err:  # not JSON, or settings this lawr does not have
        task = data.get("task", "TASK") if isinstance(data, dict) else "TASK"
        raise CheckpointError(path, f"not a config this lawr reads ({err}); {retrain_hint(task)}") from None


def write_run_config(run_dir: str | Path, cfg: TrainConfig, dataset_path: str | Path) -> None:
    """config.json: what actually trains, each baseline's settings as built (``registry.resolved_config``) and
    the dataset read (data.path); every stage in ``run_dir`` is trained with it."""
    record = replace(registry.resolved_config(cfg), data=replace(cfg.data, path=str(Path(dataset_path).resolve())))
    atomic_write_text(json.dumps(asdict(record), indent=2) + "\n", Path(run_dir) / "config.json")


def run_inputs(run_dir: str | Path, cfg: TrainConfig, dims: dict, device: str | torch.device = "cpu",
               records: dict[str, dict] | None = None) -> StageInputs:
    """StageInputs whose products are read from ``run_dir`` on first use (from ``records`` where already read):
    checked against ``cfg`` and ``dims``, assembled with the products they are built from and refused if those are
    not the ones they were built on (``check_built_on``), frozen, on ``device``."""
    records = {} if records is None else records
    basis = chunk_basis(cfg)
    image_shape = tuple(dims["images"]) if "images" in dims else None  # the networks read the encoder's features
    inputs = StageInputs(feature_dim(dims["obs_dim"], image_shape, cfg.flow.encoder.features), basis.num_coeffs,
                         dims["action_dim"], chunk_basis=basis, action_normalization=cfg.data.action_normalization,
                         image_shape=image_shape, state_dim=dims["obs_dim"])

    def load(stage: str) -> nn.Module:
        product = registry.STAGES[stage].product(registry.stage_config(cfg, stage), inputs)
        record = load_final(run_dir, stage, product, cfg, dims, inputs.products, records.get(stage))
        check_built_on(run_dir, stage, record, inputs.hashes)
        inputs.hashes[stage] = product_hash(record)
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
        if getattr(settings, "compute_dtype", None) == "auto" and world.is_writer and cfg.progress:
            print(f"{name}: compute_dtype auto -> {resolve_compute_dtype('auto', torch.device(cfg.device).type)}",
                  flush=True)
        # every stage trains in Phase 1's coordinates: the flow's own (it fits them), later the behaviour model's
        behavior = built if name == "flow" else inputs["flow"]
        metrics = train_stage(cfg, name, built, dataset, run_dir, settings.num_steps, settings.batch_size, world,
                              behavior.learner_batch, inputs.products.values())
        built = built.product()
    if world.is_writer:  # its own networks; those of the products it was built from by content hash
        save_final(run_dir, cfg, name, dims, built, inputs.products, {n: inputs.hashes[n] for n in stage.needs})
        if metrics and stage.report is not None:
            metrics |= stage.report(built, dataset)
    world.barrier()  # the next stage (on every rank) reads this product
    return metrics


def check_run_dir(cfg: TrainConfig, dataset: ChunkDataset, run_dir: Path, stages: tuple[str, ...]) -> None:
    """Refuse, before anything is written, a run_dir whose checkpoints of ``stages`` (or of the stages they are
    built from) belong to other settings, other dataset shapes or another dataset; and one where any other stage
    finished with other settings (config.json, rewritten now, is the config of record of every stage in it)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "the run directory is a file", str(run_dir))
    dims, used, hashes = dataset_dims(dataset), registry.with_needs(stages), {}
    for name in registry.STAGES:  # in training order: a stage's needs are read before it
        if name in used and name not in stages and not final_path(run_dir, name).is_file():  # built from only
            raise CheckpointError(final_path(run_dir, name), f"missing: {registry.describe(name)} has not "
                                                             "finished in this run_dir (train it first)")
        for path in (final_path(run_dir, name),) + ((checkpoint_path(run_dir, name),) if name in used else ()):
            if path.exists():
                record = read_checkpoint(path, name)
                check_compatible(path, record, cfg, dims, dataset)
                if path.name == "final.pt":  # and built on the products in this run_dir
                    check_built_on(run_dir, name, record, hashes)
                    hashes[name] = product_hash(record)


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
            write_run_config(run_dir, cfg, dataset_dir)
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
    """The dataset the run in ``run_dir`` trains on (data.path of its config.json); None for a new run directory."""
    if not (Path(run_dir) / "config.json").is_file():
        return None
    path = run_config(run_dir).data.path
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
    loaded: the L-AWR policy comes without its critic. The settings are the run's config.json; every product is
    checked against them and against the products it was built on (content hash).
    """
    run_dir = run_dir_of(path)
    if method not in registry.METHODS:
        raise ValueError(f"load_policy: unknown method {method!r}; expected one of {tuple(registry.METHODS)}")
    stage = registry.METHODS[method]
    cfg = run_config(run_dir)
    records = same_run_records(run_dir, cfg, stage.name)
    dims = (records.get("flow") or read_final(run_dir, "flow"))["dims"]  # what every product was trained on
    inputs = run_inputs(run_dir, cfg, dims, records=records)
    policy = stage.product(registry.stage_config(cfg, stage.name), inputs)
    if stage.name in records or stage.learner is not None:  # a trained stage that has not finished fails here
        record = load_final(run_dir, stage.name, policy, cfg, dims, inputs.products, records.get(stage.name))
        check_built_on(run_dir, stage.name, record, inputs.hashes)
    behavior = inputs["flow"]
    return EnvActionPolicy(policy, behavior.action_normalizer, behavior.chunk_basis).eval()


def same_run_records(run_dir: Path, cfg: TrainConfig, stage: str) -> dict[str, dict]:
    """The final.pt records of ``stage`` and of the stages it is built from that are in ``run_dir``, each trained
    with the settings of the run's config.json; if not, the error names the first file that differs."""
    records = {}
    for name in registry.with_needs((stage,)):
        path = final_path(run_dir, name)
        if not path.is_file():
            continue  # loading it names it as missing, where it is needed
        record = records[name] = read_checkpoint(path, name)
        if record["config_hash"] != config_hash(registry.hashed_config(cfg, name)):
            raise CheckpointError(path, "comes from another run: it was trained with other settings than this run's "
                                        "config.json; copy whole run directories")
    return records


def check_built_on(run_dir: Path, stage: str, record: dict, hashes: dict[str, str]) -> None:
    """Stage ``stage``'s product (``record``) was built on the products of this run: the content hash of each
    product it needs (in ``hashes`` where already read, else read from its final.pt) is the one it recorded."""
    for needed in registry.STAGES[stage].needs:
        path = final_path(run_dir, needed)
        if needed in hashes:
            found = hashes[needed]
        elif path.is_file():
            found = product_hash(read_checkpoint(path, needed))
        else:
            continue  # not needed to act, and not here (a run carried without it)
        wanted = record.get("built_on", {}).get(needed)
        if wanted != found:
            raise CheckpointError(final_path(run_dir, stage), f"was built on another {needed}/final.pt than the one in "
                                  f"this run_dir (content sha256 {str(wanted)[:12]}, this one's {found[:12]}): files "
                                  f"of different runs are mixed; copy whole run directories, or retrain {stage}")
