"""Everything the runner trains, in training order: L-AWR's three phases, then the baselines.

Adding a method is one file that ends in ``STAGE = Stage(...)`` (``algorithms/stage.py``) and one entry in
``BASELINES`` below; its settings are a dataclass in ``configs/baselines.py`` (a field of ``BaselinesConfig``).
Each stage's seed derives from its name, so a new entry changes no other stage's seed or result.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from operator import attrgetter
from typing import Any

from lawr_ext.algorithms import lawr
from lawr_ext.algorithms.baselines import act, best_of_n, diffusion, dsrl_na, flow_bc, fql, gaussian_awr, lps, ofql, qc
from lawr_ext.algorithms.stage import Stage
from lawr_ext.configs.baselines import match_lawr
from lawr_ext.configs.critic import CriticConfig
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.configs.planner import PlannerConfig
from lawr_ext.configs.train import TrainConfig
from lawr_ext.configs.vision import EncoderConfig

PHASES: dict[str, Stage] = {stage.name: stage for stage in lawr.STAGES}
BASELINES: dict[str, Stage] = {stage.name: stage for stage in (
    flow_bc.STAGE,
    gaussian_awr.STAGE,
    fql.STAGE,
    ofql.STAGE,
    best_of_n.STAGE,
    diffusion.STAGE,
    qc.STAGE,
    lps.STAGE,
    dsrl_na.STAGE,
    act.STAGE,
)}
STAGES: dict[str, Stage] = PHASES | BASELINES
#: Policies by the name they are evaluated, exported and benchmarked under ("lawr" is the planner's).
METHODS: dict[str, Stage] = {stage.method: stage for stage in STAGES.values() if stage.method}
PHASE_NAMES, BASELINE_NAMES = tuple(PHASES), tuple(BASELINES)


def describe(name: str) -> str:
    """How messages name a stage: "phase 'critic'", "baseline 'fql'"."""
    return f"{'phase' if name in PHASES else 'baseline'} {name!r}"


def stage_config(cfg: TrainConfig, name: str) -> Any:
    """The settings stage ``name`` is built and trained with (``baselines.match_lawr`` applied to baselines)."""
    settings = attrgetter(STAGES[name].config)(cfg)
    if name in BASELINES and cfg.baselines.match_lawr:
        settings = match_lawr(settings, cfg.flow, cfg.critic, cfg.planner)
    return settings


def resolved_config(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with every baseline's settings as ``stage_config`` builds and trains it (the run's config.json:
    what actually trained). Resolving again changes nothing, so stage settings and hashes are the same."""
    baselines = {STAGES[name].config.removeprefix("baselines."): stage_config(cfg, name) for name in BASELINES
                 if STAGES[name].config.startswith("baselines.")}
    return replace(cfg, baselines=replace(cfg.baselines, **baselines))


def with_needs(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` and every stage they are built from, directly or not, in training order."""
    wanted, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}: expected one of {tuple(STAGES)}")
        if name not in wanted:
            wanted.add(name)
            todo += STAGES[name].needs
    return tuple(name for name in STAGES if name in wanted)


def hashed_config(cfg: TrainConfig, name: str) -> dict:
    """The settings stage ``name``'s result depends on: what its checkpoints' config hash covers.

    The task, the seed, the data settings and the configs of the stage and of every stage it is built from.
    Logging, checkpoint cadence, paths (the dataset's too: checkpoints record its shape and size instead),
    device and evaluation are left out, so changing them never invalidates a checkpoint.
    """
    # Where the data came from and how it was read are left out: checkpoints record the dataset's content hash.
    # (collect_num_* stay in, as they were, so that earlier runs' checkpoints keep their hashes.)
    data = {k: v for k, v in asdict(cfg.data).items()
            if k not in ("path", "collect_quality_mix", "obs_keys", "action_key", "reward_from")}
    if cfg.data.chunk_basis == "steps":  # the chunk as it is, as before the basis existed: earlier hashes hold
        del data["chunk_basis"], data["chunk_coeffs"]
    for labels in ("keep_qualities", "keep_strategies"):  # every episode, as before the filter existed
        if not data[labels]:
            del data[labels]
    return {"task": cfg.task, "seed": cfg.seed, "data": data} | {
        stage: _without_later_defaults(asdict(stage_config(cfg, stage))) for stage in with_needs((name,))}


#: Settings added after runs were saved, at the value that trains as before they existed: left out of the hash
#: at that value, so that earlier checkpoints keep loading and resuming.
LATER_DEFAULTS = {"lr_schedule": "constant", "encoder": asdict(EncoderConfig()), "finetune_encoder": False,
                  "state_normalization_samples": 0, "compute_dtype": "float32",
                  "conditioning": "concat"}


def _without_later_defaults(settings: dict) -> dict:
    return {k: _without_later_defaults(v) if isinstance(v, dict) else v for k, v in settings.items()
            if not (k in LATER_DEFAULTS and v == LATER_DEFAULTS[k])}


def matched_config(name: str, flow: FlowConfig, critic: CriticConfig, planner: PlannerConfig | None = None,
                   **overrides: Any) -> Any:
    """Baseline ``name``'s default settings with its networks made L-AWR's (``match_lawr``, without the
    budget), then ``overrides``."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINE_NAMES}")
    default = attrgetter(BASELINES[name].config)(TrainConfig())
    return replace(match_lawr(default, flow, critic, planner, budget=False), **overrides)
