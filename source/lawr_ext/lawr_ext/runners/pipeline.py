"""L-AWR end to end: flow -> critic -> planner, each phase trained from the saved output of the one before;
then, optionally, the baselines (algorithms/baselines) from the same frozen products of phases 1-2.

The phases are strictly decoupled through files in ``run_dir``::

    config.json              the TrainConfig of the run
    <phase>/checkpoint.pt    resumable training state (runners/checkpoint.py), periodic and final
    <phase>/final.pt         the phase's product, written once the phase is complete:
                               flow:    the FROZEN one-step decoder (EMA weights) + observation normalizer
                               critic:  V and Q networks (frozen when the planner loads them)
                               planner: the planner's networks
                               <baseline>: its learner's weights (empty for flow_bc/best_of_n: nothing to train)
    tensorboard/<phase>/     TensorBoard scalars
    summary.json / .md       final metrics of each phase (and evaluation results)

Phase 2 and 3 rebuild the flow from ``flow/final.pt`` alone, frozen (requires_grad False, eval mode), so
nothing they do can reach the weights Phase 1 produced; Phase 3 loads the critic the same way.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from rsl_rl.modules import EmpiricalNormalization
from torch import nn

from lawr_ext.algorithms.base import ChunkPolicy, Learner
from lawr_ext.algorithms.baselines import BASELINES, BaselineContext
from lawr_ext.algorithms.critic import DistributionalCritic
from lawr_ext.algorithms.flow import FlowDecoder, MeanFlow, build_flow_decoder
from lawr_ext.algorithms.planner import LAWRPolicy, LatentAWR
from lawr_ext.configs.train import BASELINE_NAMES, PHASES, TrainConfig, train_config_from_dict
from lawr_ext.data import keys
from lawr_ext.data.dataset import ChunkDataset
from lawr_ext.data.episodes import DatasetError
from lawr_ext.eval.diagnostics import flow_sample_quality
from lawr_ext.modules.normalizer import fit_obs_normalizer
from lawr_ext.runners.checkpoint import CheckpointError, check_compatible, read_checkpoint
from lawr_ext.runners.trainer import dataset_dims, phase_seed, train_phase
from lawr_ext.utils.distributed import World
from lawr_ext.utils.io import FORMAT_VERSION, atomic_torch_save, atomic_write_text, config_hash


def final_path(run_dir: str | Path, phase: str) -> Path:
    return Path(run_dir) / phase / "final.pt"


def open_dataset(cfg: TrainConfig, path: str | Path) -> ChunkDataset:
    dataset = ChunkDataset.from_path(path, cfg.data.horizon, cfg.data.gamma, device=cfg.device, seed=cfg.seed)
    recorded = dataset.episodes.meta.get("task")  # collected datasets know their task; plain files do not
    if recorded is not None and recorded != cfg.task:
        raise DatasetError(path, f"collected on task {recorded!r}, but this run trains {cfg.task!r}")
    return dataset


# --- the frozen products of each phase ----------------------------------------------------------------
def _save_final(run_dir: str | Path, cfg: TrainConfig, phase: str, dims: dict, model: nn.Module) -> None:
    atomic_torch_save({"format_version": FORMAT_VERSION, "phase": phase, "config_hash": config_hash(cfg.phase_config(phase)),
                       "config": asdict(cfg), "dims": dict(dims), "model": model.state_dict()}, final_path(run_dir, phase))


def _load_final(path: Path, phase: str, model: nn.Module, cfg: TrainConfig, dims: dict) -> None:
    """Load a phase's product into ``model`` after checking it belongs to a run with ``cfg`` and ``dims``."""
    if not path.is_file():
        raise CheckpointError(path, f"missing: phase {phase!r} has not finished in this run_dir (run it first)")
    ckpt = read_checkpoint(path, phase)
    check_compatible(path, ckpt, cfg, dims)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(path, f"does not fit the networks of the config: {str(err).splitlines()[0][:300]}") from err


def _frozen(module: nn.Module) -> nn.Module:
    return module.requires_grad_(False).eval()


def _flow_product(decoder: FlowDecoder, normalizer: nn.Module) -> nn.Module:
    return nn.ModuleDict({"decoder": decoder, "obs_normalizer": normalizer})


def load_frozen_flow(path: Path, cfg: TrainConfig, dims: dict) -> tuple[FlowDecoder, nn.Module]:
    """The frozen one-step decoder T(z; s) and the frozen observation normalizer, from ``flow/final.pt``."""
    decoder = build_flow_decoder(cfg.flow, dims["obs_dim"], dims["horizon"], dims["action_dim"])
    normalizer = EmpiricalNormalization(shape=dims["obs_dim"])
    _load_final(path, "flow", _flow_product(decoder, normalizer), cfg, dims)
    return _frozen(decoder), _frozen(normalizer)


def load_frozen_critic(path: Path, cfg: TrainConfig, dims: dict, normalizer: nn.Module) -> DistributionalCritic:
    critic = DistributionalCritic(cfg.critic, dims["obs_dim"], dims["horizon"], dims["action_dim"], normalizer)
    _load_final(path, "critic", critic, cfg, dims)
    return _frozen(critic)


def build_planner(cfg: TrainConfig, dims: dict, decoder: FlowDecoder, critic: DistributionalCritic,
                  normalizer: nn.Module) -> LatentAWR:
    return LatentAWR(cfg.planner, dims["obs_dim"], dims["horizon"], dims["action_dim"], decoder, critic, normalizer)


# --- the three phases ------------------------------------------------------------------------------------
def run_phase(cfg: TrainConfig, phase: str, dataset: ChunkDataset, run_dir: str | Path,
              world: World = World()) -> dict[str, float]:
    """Train one phase (resuming if it was interrupted) and write its frozen product; returns its last metrics."""
    run_dir, dims = Path(run_dir), dataset_dims(dataset)
    phase_cfg = getattr(cfg, phase)
    # Network initialisation is part of the phase's seeded result: seeded after its inputs are loaded (building
    # them draws random initial weights), so nothing but its own seed decides it.
    if phase == "flow":
        normalizer = fit_obs_normalizer(dataset.observations)
        torch.manual_seed(phase_seed(cfg, phase))
        learner = MeanFlow(cfg.flow, dims["obs_dim"], dims["horizon"], dims["action_dim"], normalizer).to(cfg.device)
    else:
        decoder, normalizer = load_frozen_flow(final_path(run_dir, "flow"), cfg, dims)
        decoder, normalizer = decoder.to(cfg.device), normalizer.to(cfg.device)
        if phase == "critic":
            torch.manual_seed(phase_seed(cfg, phase))
            learner = DistributionalCritic(cfg.critic, dims["obs_dim"], dims["horizon"], dims["action_dim"],
                                           normalizer).to(cfg.device)
        else:
            critic = load_frozen_critic(final_path(run_dir, "critic"), cfg, dims, normalizer).to(cfg.device)
            torch.manual_seed(phase_seed(cfg, phase))
            learner = build_planner(cfg, dims, decoder, critic, normalizer).to(cfg.device)

    metrics = train_phase(cfg, phase, learner, dataset, run_dir, phase_cfg.num_steps, phase_cfg.batch_size, world)
    if world.is_writer:
        product = _flow_product(learner.frozen_decoder(), learner.obs_normalizer) if phase == "flow" else learner
        _save_final(run_dir, cfg, phase, dims, product)
        if phase == "flow" and metrics:  # measure the O(1) claim on this data: 1-step vs k-step samples
            metrics |= flow_sample_quality(product.decoder, normalizer, dataset)
    world.barrier()  # the next phase (on every rank) reads this product
    return metrics


# --- the baselines, from the same frozen products -------------------------------------------------------
def baseline_context(run_dir: str | Path, cfg: TrainConfig, dims: dict, name: str,
                     device: str = "cpu") -> BaselineContext:
    """The frozen Phase-1/2 products baseline ``name`` is built from (the registry's ``needs``)."""
    decoder, normalizer = load_frozen_flow(final_path(run_dir, "flow"), cfg, dims)
    critic = None
    if "critic" in BASELINES[name].needs:
        critic = load_frozen_critic(final_path(run_dir, "critic"), cfg, dims, normalizer).to(device)
    return BaselineContext(dims["obs_dim"], dims["horizon"], dims["action_dim"], normalizer.to(device),
                           behavior_flow=decoder.to(device), critic=critic)


def run_baseline(cfg: TrainConfig, name: str, dataset: ChunkDataset, run_dir: str | Path,
                 world: World = World()) -> dict[str, float]:
    """Train baseline ``name`` (resuming if interrupted) from the frozen phases in ``run_dir`` and write its
    product ``<name>/final.pt``; a baseline with nothing to train only records its config there."""
    dims = dataset_dims(dataset)
    context = baseline_context(run_dir, cfg, dims, name, cfg.device)
    torch.manual_seed(phase_seed(cfg, name))  # network initialisation is part of the baseline's seeded result
    built = BASELINES[name].build(cfg.baseline_config(name), context).to(cfg.device)
    metrics: dict[str, float] = {}
    if isinstance(built, Learner):
        budget = cfg.baseline_config(name)
        metrics = train_phase(cfg, name, built, dataset, run_dir, budget.num_steps, budget.batch_size, world)
    if world.is_writer:
        _save_final(run_dir, cfg, name, dims, built if isinstance(built, Learner) else nn.Module())
    world.barrier()
    return metrics


def train(cfg: TrainConfig, dataset_path: str | Path, run_dir: str | Path, phases: tuple[str, ...] = PHASES,
          world: World = World(), baselines: tuple[str, ...] = ()) -> dict:
    """Train ``phases`` in order, then ``baselines`` (from the frozen phases 1-2 in ``run_dir``), on the dataset
    at ``dataset_path``; writes config.json and summary.json/.md.

    Under torchrun pass ``world=init_world(cfg.device)``: every rank calls this, rank 0 writes.
    """
    run_dir = Path(run_dir)
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise ValueError(f"unknown phase(s) {unknown}: expected some of {PHASES}")
    unknown = [b for b in baselines if b not in BASELINE_NAMES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}: expected some of {BASELINE_NAMES}")
    dataset = open_dataset(cfg, dataset_path)  # first: a bad dataset must not touch an existing run's files
    if world.is_writer:
        atomic_write_text(json.dumps(asdict(cfg), indent=2) + "\n", run_dir / "config.json")
    summary = read_summary(run_dir)
    summary["dataset"] = {"path": str(dataset_path)} | dataset.stats()
    for phase in PHASES:  # always in training order, whatever order they were given in
        if phase in phases:
            metrics = run_phase(cfg, phase, dataset, run_dir, world)
            if metrics:  # empty when the phase was already complete: keep the metrics it finished with
                summary.setdefault("phases", {})[phase] = metrics
            if world.is_writer:
                write_summary(run_dir, summary)
    for name in baselines:
        metrics = run_baseline(cfg, name, dataset, run_dir, world)
        if metrics:
            summary.setdefault("baselines", {})[name] = metrics
        if world.is_writer:
            write_summary(run_dir, summary)
    return summary


def read_summary(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def write_summary(run_dir: str | Path, summary: dict) -> None:
    """summary.json (machine-readable) and summary.md (the final metrics of each phase, evaluation results)."""
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


# --- policies for evaluation and export ------------------------------------------------------------------
def load_policy(path: str | Path, kind: str = "lawr") -> ChunkPolicy:
    """A ChunkPolicy from a run directory or one of its ``final.pt`` files, on the CPU, in eval mode.

    ``kind="lawr"``: the L-AWR planner decoded through the frozen flow (needs planner/final.pt);
    any baseline name (``BASELINE_NAMES``: ``"flow_bc"``, ``"fql"``, ``"diffusion"``, ...): that baseline,
    built around the run's frozen phases; the ones with nothing to train need only the phases (flow_bc:
    the frozen flow sampled from the prior), the others ``<kind>/final.pt``.
    A ``final.pt`` path selects its run directory (the file's grandparent).
    """
    path = Path(path)
    run_dir = path.parent.parent if path.is_file() else path
    if kind != "lawr" and kind not in BASELINE_NAMES:
        raise ValueError(f"load_policy: kind must be 'lawr' or one of {BASELINE_NAMES}, got {kind!r}")
    product = final_path(run_dir, "planner" if kind == "lawr" else kind)
    if kind != "lawr" and not product.is_file():
        product = final_path(run_dir, "flow")  # not run here: built around the phases (a trained one fails below)
    meta = read_checkpoint(product)
    cfg, dims = train_config_from_dict(meta["config"]), meta["dims"]
    if kind != "lawr":
        built = BASELINES[kind].build(cfg.baseline_config(kind), baseline_context(run_dir, cfg, dims, kind))
        if isinstance(built, Learner):
            _load_final(final_path(run_dir, kind), kind, built, cfg, dims)
            built = built.policy()
        return built.eval()
    # Checked against the product's config: the flow must be the one the planner was trained through.
    decoder, normalizer = load_frozen_flow(final_path(run_dir, "flow"), cfg, dims)
    critic = DistributionalCritic(cfg.critic, dims["obs_dim"], dims["horizon"], dims["action_dim"], normalizer)
    planner = build_planner(cfg, dims, decoder, _frozen(critic), normalizer)
    _load_final(product, "planner", planner, cfg, dims)
    return LAWRPolicy(planner).eval()
