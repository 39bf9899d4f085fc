"""Training a run: every requested stage of ``algorithms/registry.py``, in training order, each from the saved
(frozen) products of the stages it needs; and ``load_policy``, one lookup from a method name to its policy.

The stages are strictly decoupled through files in ``run_dir``::

    config.json              the TrainConfig of the run
    <stage>/checkpoint.pt    resumable training state (runners/checkpoint.py), periodic and final
    <stage>/final.pt         the stage's product, written once the stage is complete:
                               flow:    the normalizer and the FROZEN one-step decoder (EMA weights)
                               critic:  V and Q networks (frozen when later stages load them)
                               planner and every baseline: the ChunkPolicy it trained (or is made of)
    tensorboard/<stage>/     TensorBoard scalars
    summary.json / .md       final metrics of each stage (and evaluation results)

A stage rebuilds the products it needs from their ``final.pt`` alone, frozen (requires_grad False, eval mode),
so nothing it does can reach the weights an earlier stage produced.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from lawr_ext.algorithms import registry
from lawr_ext.algorithms.base import ChunkPolicy, EnvActionPolicy, Learner, freeze
from lawr_ext.algorithms.stage import StageInputs
from lawr_ext.configs.train import TrainConfig, train_config_from_dict
from lawr_ext.data.dataset import ChunkDataset
from lawr_ext.data.episodes import DatasetError
from lawr_ext.runners.checkpoint import final_path, load_final, read_checkpoint, save_final
from lawr_ext.runners.trainer import dataset_dims, stage_seed, train_stage
from lawr_ext.utils.distributed import World
from lawr_ext.utils.io import atomic_write_text


def open_dataset(cfg: TrainConfig, path: str | Path) -> ChunkDataset:
    dataset = ChunkDataset.from_path(path, cfg.data.horizon, cfg.data.gamma, device=cfg.device, seed=cfg.seed,
                                     action_normalization=cfg.data.action_normalization)
    recorded = dataset.episodes.meta.get("task")  # collected datasets know their task; plain files do not
    if recorded is not None and recorded != cfg.task:
        raise DatasetError(path, f"collected on task {recorded!r}, but this run trains {cfg.task!r}")
    return dataset


def run_inputs(run_dir: str | Path, cfg: TrainConfig, dims: dict, device: str | torch.device = "cpu") -> StageInputs:
    """StageInputs whose products are read from ``run_dir`` on first use: checked against ``cfg`` and ``dims``,
    frozen, on ``device``."""
    inputs = StageInputs(dims["obs_dim"], dims["horizon"], dims["action_dim"])

    def load(stage: str) -> nn.Module:
        product = registry.STAGES[stage].product(registry.stage_config(cfg, stage), inputs)
        load_final(run_dir, stage, product, cfg, dims)
        return freeze(product.to(device))

    inputs.load = load
    return inputs


def load_product(run_dir: str | Path, stage: str, cfg: TrainConfig, dims: dict,
                 device: str | torch.device = "cpu") -> nn.Module:
    """The frozen product of a finished stage (e.g. "flow": the normalizer and the one-step decoder)."""
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
        metrics = train_stage(cfg, name, built, dataset, run_dir, settings.num_steps, settings.batch_size, world)
        built = built.product()
    if world.is_writer:
        save_final(run_dir, cfg, name, dims, built)
        if metrics and stage.report is not None:
            metrics |= stage.report(built, dataset)
    world.barrier()  # the next stage (on every rank) reads this product
    return metrics


def train(cfg: TrainConfig, dataset_path: str | Path, run_dir: str | Path,
          stages: tuple[str, ...] = registry.PHASE_NAMES, world: World = World()) -> dict:
    """Train ``stages`` (default: L-AWR's three phases) on the dataset at ``dataset_path``, each from the products
    of the stages it needs in ``run_dir`` (trained now or before); writes config.json and summary.json/.md.

    Under torchrun pass ``world=init_world(cfg.device)``: every rank calls this, rank 0 writes.
    """
    run_dir = Path(run_dir)
    unknown = [s for s in stages if s not in registry.STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}: expected some of {tuple(registry.STAGES)}")
    dataset = open_dataset(cfg, dataset_path)  # first: a bad dataset must not touch an existing run's files
    if world.is_writer:
        atomic_write_text(json.dumps(asdict(cfg), indent=2) + "\n", run_dir / "config.json")
    summary = read_summary(run_dir)
    summary["dataset"] = {"path": str(dataset_path)} | dataset.stats()
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


def load_policy(path: str | Path, method: str = "lawr") -> ChunkPolicy:
    """The ChunkPolicy of ``method`` (``registry.METHODS``: "lawr", "flow_bc", "fql", ...) from a run directory
    or one of its ``final.pt`` files (which selects its run directory), on the CPU, in eval mode.

    It is the method's saved product, its chunks mapped back to env actions (``EnvActionPolicy``, with Phase 1's
    action normalizer); a method with nothing to train is also built, from the run's products,
    when it was not run here (flow_bc: the frozen flow sampled from the prior). Only what acting needs is
    loaded: the L-AWR policy comes without its critic.
    """
    path = Path(path)
    run_dir = path.parent.parent if path.is_file() else path
    if method not in registry.METHODS:
        raise ValueError(f"load_policy: unknown method {method!r}; expected one of {tuple(registry.METHODS)}")
    stage = registry.METHODS[method]
    own = final_path(run_dir, stage.name)
    # The config to rebuild it with: its own record, or that of the products it is built from.
    meta = read_checkpoint(own if own.is_file() else final_path(run_dir, stage.needs[0]))
    cfg, dims = train_config_from_dict(meta["config"]), meta["dims"]
    inputs = run_inputs(run_dir, cfg, dims)
    policy = stage.product(registry.stage_config(cfg, stage.name), inputs)
    if own.is_file() or stage.learner is not None:  # a trained stage that has not finished fails here
        load_final(run_dir, stage.name, policy, cfg, dims)
    return EnvActionPolicy(policy, inputs["flow"].action_normalizer).eval()
