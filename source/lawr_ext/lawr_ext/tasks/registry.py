"""lawr's task registry: task id -> how to make its env, its training preset, its experts, its action spec.

Each task family registers its tasks (``tasks/bimanual/__init__.py``). Code is named by "module:attr" entry
points, Isaac Lab's ``*_cfg_entry_point`` convention, and imported only when used: registering a task, or
composing a training config for it, needs no simulator, no Isaac Lab and no gymnasium. The training preset is
named the way Isaac Lab names an agent's yaml, ``"package:file.yaml"``: the family's ``agents/`` folder
(``tasks/bimanual/agents/lawr_bimanual_chunk.yaml``), so a new family brings its own.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The key of ``TaskSpec.published`` for methods lawr does not implement (e.g. the task's strongest published).
PUBLISHED_OTHERS = "others"


@dataclass(frozen=True)
class TaskSpec:
    """What lawr needs to know about a task."""

    id: str                          # the task id (also its gymnasium id for Isaac Lab tasks)
    make_env: str                    # "module:function" (spec, num_envs, device, seed, **env_overrides) -> vec env
    # its training preset, "package:file.yaml" (a yaml beside the package's __init__.py, Isaac Lab's agents/ layout):
    # the TrainConfig values of this task, composed by configs/train.py; gymnasium's lawr_cfg_entry_point
    lawr_cfg: str
    control_hz: float                # env steps per second: the rate an exported chunk is played at
    # what its datasets must have, checked before training (docs/data.md); None: not declared, not checked
    obs_dim: int | None = None
    action_dim: int | None = None
    env: str | None = None           # Isaac Lab tasks: the DirectRLEnv class ("module:Class")
    env_cfg: str | None = None       # Isaac Lab tasks: its env cfg class ("module:Class")
    experts: str | None = None       # "module:function" (task id, env) -> batched scripted expert; None: no collection
    # "module:function" () -> joint names, action scaling, joint limits and target speeds for export (export/
    # metadata.py); None: none, the export carries shapes only and deployment clamps actions to [-1, 1]
    action_spec: str | None = None
    published: str | None = None     # "module:function" (task id) -> {method: [(paper's method, success, source)]}:
                                     # published figures the benchmark table puts beside lawr's, those of methods
                                     # lawr does not implement under PUBLISHED_OTHERS (below it); None: none
    # "module:function" (env actions [..., A]) -> end-effector positions [..., k, 3] in metres, for diagnostics
    end_effectors: str | None = None
    # "module:function" (state observations [N, O], actions [N, A]) -> {"closing" [N, k] bool, "offset" [N, k, 3]}:
    # where each gripper closes in its object's frame, for the grasp diagnostic; None: not declared
    grasp_geometry: str | None = None

    def load(self, field_name: str) -> Any:
        """The object the entry point ``field_name`` names (e.g. ``spec.load("experts")``)."""
        entry_point = getattr(self, field_name)
        if entry_point is None:
            raise ValueError(f"task {self.id!r} registers no {field_name}")
        return load_entry_point(entry_point)

    def lawr_cfg_file(self) -> Path:
        """The yaml file of the task's training preset (``lawr_cfg``)."""
        return config_file(self.lawr_cfg, f"task {self.id!r}")


def load_entry_point(entry_point: str) -> Any:
    """``"package.module:name"`` -> that object."""
    module, _, name = entry_point.partition(":")
    return getattr(importlib.import_module(module), name)


def config_file(entry_point: str, owner: str = "entry point") -> Path:
    """``"package.module:file.yaml"`` -> the file ``file.yaml`` beside that module (Isaac Lab's yaml entry points);
    a missing package or file is a one-line ``ValueError``."""
    module, sep, name = entry_point.partition(":")
    if not sep or not name.endswith(".yaml"):
        raise ValueError(f"{owner}: config entry point {entry_point!r} is not 'package.module:file.yaml'")
    try:
        origin = importlib.util.find_spec(module)
    except ImportError as err:
        raise ValueError(f"{owner}: config entry point {entry_point!r}: {err}") from None
    if origin is None or origin.origin is None:
        raise ValueError(f"{owner}: config entry point {entry_point!r}: no module {module!r}")
    path = Path(origin.origin).parent / name
    if not path.is_file():
        raise ValueError(f"{owner}: its config {entry_point!r} is missing: {path}")
    return path


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> None:
    if _TASKS.get(spec.id, spec) != spec:
        raise ValueError(f"task {spec.id!r} is already registered differently")
    _TASKS[spec.id] = spec


def registered_tasks() -> tuple[str, ...]:
    return tuple(_TASKS)


def get_task(task: str) -> TaskSpec:
    if task not in _TASKS:
        raise ValueError(f"unknown task {task!r}; registered lawr tasks: {registered_tasks()}")
    return _TASKS[task]
