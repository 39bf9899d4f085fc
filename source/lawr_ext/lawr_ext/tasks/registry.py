"""lawr's task registry: task id -> how to make its env, its training preset, its experts, its action spec.

Each task family registers its tasks (``tasks/bimanual/__init__.py``). Code is named by "module:attr" entry
points, Isaac Lab's ``*_cfg_entry_point`` convention, and imported only when used: registering a task, or
composing a training config for it, needs no simulator, no Isaac Lab and no gymnasium.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TaskSpec:
    """What lawr needs to know about a task."""

    id: str                          # the task id (also its gymnasium id for Isaac Lab tasks)
    make_env: str                    # "module:function" (spec, num_envs, device, seed, **env_overrides) -> vec env
    preset: str                      # its training preset tasks/<preset>.yaml: the TrainConfig values of this task
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
                                     # published figures the benchmark table puts beside lawr's; None: none
    # "module:function" (env actions [..., A]) -> end-effector positions [..., k, 3] in metres, for diagnostics
    end_effectors: str | None = None

    def load(self, field_name: str) -> Any:
        """The object the entry point ``field_name`` names (e.g. ``spec.load("experts")``)."""
        entry_point = getattr(self, field_name)
        if entry_point is None:
            raise ValueError(f"task {self.id!r} registers no {field_name}")
        return load_entry_point(entry_point)


def load_entry_point(entry_point: str) -> Any:
    """``"package.module:name"`` -> that object."""
    module, _, name = entry_point.partition(":")
    return getattr(importlib.import_module(module), name)


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
