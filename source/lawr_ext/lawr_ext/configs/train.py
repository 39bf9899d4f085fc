"""The whole L-AWR training run as one typed config, composed by hydra from the task's preset and shared overlays.

Each task registers its preset as an entry point (``TaskSpec.lawr_cfg``, gymnasium's ``lawr_cfg_entry_point``):
a yaml in its family's ``agents/`` folder beside its env, as Isaac Lab keeps a task's agent configs
(``lawr_ext.tasks.bimanual.agents:lawr_bimanual_chunk.yaml`` for ``Bimanual-Chunk``), so a new task family brings
its own. A preset starts from the ``TrainConfig`` schema registered here and sets the task's values (a preset shared
by a family of tasks leaves ``task: ???``, filled with the id asked for).
The overlays are not any task's, so they live here beside the schema they overlay: ``configs/profile/*.yaml``
(``profile=smoke`` for the ~10-min CPU main job, ``profile=tiny`` for a pipeline check, ``profile=gpu`` for a GPU
host) and ``configs/recipe/*.yaml`` (``recipe=published``: the baselines' papers' settings); any field can then be
overridden on the command line (``flow.num_steps=200 critic.expectile=0.7``).
Every dataclass validates itself in ``__post_init__``, so a bad value fails with a one-line ``ValueError``
naming the field. All the yaml files are package data, so an installed lawr_ext composes the same configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lawr_ext.configs.baselines import BaselinesConfig
from lawr_ext.configs.checks import check_device, check_finite
from lawr_ext.configs.critic import CriticConfig, GuardConfig
from lawr_ext.configs.data import DataConfig
from lawr_ext.configs.eval import EvalConfig
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.configs.planner import PlannerConfig
from lawr_ext.tasks import get_task

#: Where hydra finds the overlays every task's preset can take (``profile/``, ``recipe/``): this package.
OVERLAY_SEARCHPATH = f"pkg://{__package__}"
#: Name of the ``TrainConfig`` schema node in hydra's ConfigStore (the first entry of every preset's defaults).
SCHEMA_NAME = "lawr_train"


@dataclass
class TrainConfig:
    task: str = "Bimanual-Chunk"     # registered task id (collection and evaluation env)
    seed: int = 0                    # run seed; each stage starts from a seed derived from it and the stage's name
    device: str = "cpu"              # training device ("cpu", "cuda", "cuda:N")
    run_dir: str | None = None       # output folder; None -> runs/<task>/<UTC timestamp>
    data: DataConfig = field(default_factory=DataConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    evaluate: bool = True            # roll out L-AWR and flow BC in the env after training
    log_interval: int = 50           # gradient steps between TensorBoard scalars
    checkpoint_interval: int = 1000  # gradient steps between resumable checkpoints (one is always written at the end)
    progress: bool = True            # tqdm progress bar per stage
    sim_processes: int = 1           # processes that simulate in collection and evaluation (one core each)

    def __post_init__(self) -> None:
        check_finite(self, "TrainConfig")
        check_device(self.device, "TrainConfig.device")
        if self.seed < 0:
            raise ValueError(f"TrainConfig.seed: must be >= 0, got {self.seed}")
        for name in ("log_interval", "checkpoint_interval", "sim_processes"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name}: must be >= 1, got {getattr(self, name)}")
        if self.planner.state_normalization_samples > 0 and self.critic.advantage != "q_minus_v":
            raise ValueError("TrainConfig.planner.state_normalization_samples needs critic.advantage=q_minus_v: the "
                             f"one-step advantage ({self.critic.advantage}) cannot score the flow's draws")
        if self.eval.task != self.task:  # the policy is evaluated in the task it was trained for
            self.eval.task = self.task


ConfigStore.instance().store(name=SCHEMA_NAME, node=TrainConfig)


def load_train_config(task: str, overrides: Sequence[str] = ()) -> TrainConfig:
    """Compose the preset ``task`` registers with hydra ``overrides`` and return the validated ``TrainConfig``.

    Any problem (unknown task, missing preset, unknown key, wrong type, invalid value) raises a one-line
    ``ValueError``.
    """
    try:
        spec = get_task(task)
        preset = spec.lawr_cfg_file().resolve()
    except ValueError as err:
        raise ValueError(f"TrainConfig.task: {err}") from None
    overrides = list(overrides)
    for override in overrides:  # hydra's own flags and settings: its app is not used, so they would do nothing
        if override.startswith("-"):
            raise ValueError(f"{override}: hydra's command-line flags are not supported; for a sweep over seeds use "
                             "scripts/benchmark.py --seeds 0 1 2, or one command per seed (--seed N --run_dir ...)")
        if override.lstrip("+~").startswith(("hydra.", "hydra/", "hydra=")):
            raise ValueError(f"{override}: hydra's own settings are not used; pass --run_dir for the run directory")
    if OmegaConf.is_missing(OmegaConf.load(preset), "task"):  # a family's preset (task: ???) serves all its ids
        overrides.insert(0, f"task='{task}'")
    try:
        # the preset's own folder first, then the shared overlays (profile/, recipe/)
        with initialize_config_dir(config_dir=str(preset.parent), version_base=None):
            composed = compose(config_name=preset.stem,
                               overrides=[f"hydra.searchpath=['{OVERLAY_SEARCHPATH}']", *overrides])
        unknown = _keys_outside_schema(composed, OmegaConf.structured(TrainConfig))
        if unknown:  # added with "+key=value": hydra appends it, and building the dataclass drops it unread
            raise ValueError(f"{unknown[0]}: not a setting of TrainConfig (a typo?); '+' cannot add settings")
        cfg = OmegaConf.to_object(composed)
    except (HydraException, OmegaConfBaseException) as err:
        raise ValueError(f"config {preset.name} {list(overrides)}: {_one_line(err)}") from err
    if cfg.task != task:
        raise ValueError(f"TrainConfig.task: preset {preset.name} is for {cfg.task!r}, not {task!r}")
    return cfg


def train_config_from_dict(data: dict) -> TrainConfig:
    """Rebuild a ``TrainConfig`` saved as a plain dict (in a checkpoint or run_dir/config.json)."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), data))
    except OmegaConfBaseException as err:
        raise ValueError(f"saved TrainConfig does not match this version of lawr: {_one_line(err)}") from err


def _keys_outside_schema(node: DictConfig, schema: DictConfig, prefix: str = "") -> list[str]:
    unknown = []
    for key in node.keys():
        if key not in schema:
            unknown.append(f"{prefix}{key}")
        elif isinstance(schema[key], DictConfig) and isinstance(node[key], DictConfig):
            unknown += _keys_outside_schema(node[key], schema[key], f"{prefix}{key}.")
    return unknown


def _one_line(err: BaseException) -> str:
    """Hydra/OmegaConf messages span several lines and hide the cause (a ValueError from a __post_init__)."""
    while err.__cause__ is not None:
        err = err.__cause__
    message = str(err).strip().split("\n")[0] or type(err).__name__
    full_key = getattr(err, "full_key", None)
    return f"{full_key}: {message}" if full_key and full_key not in message else message
