"""lawr's tasks. Each family registers its tasks with lawr's own registry (``registry.py``):

    Bimanual-Chunk            hand a block from one arm to the other          (tasks/bimanual)
    Bimanual-Chunk-Insertion  one arm holds a socket, the other inserts a peg, both in the air
    ogbench:<OGBench name>    OGBench's cube manipulation tasks, e.g. ogbench:cube-single-play-singletask-v0
                              (tasks/ogbench: OGBench's own envs in worker processes)

Everything else in lawr creates environments through :func:`make_env`. Where gymnasium is installed, the
Isaac Lab tasks are also registered with it, which is where Isaac Lab's tools look (``isaaclab list_envs``
discovers this package through the ``isaaclab.tasks`` entry point).
"""

from __future__ import annotations

from lawr_ext.tasks import bimanual, ogbench  # noqa: F401  (register the two families; import no simulator)
from lawr_ext.tasks.registry import (PUBLISHED_OTHERS, TaskSpec, get_task, load_entry_point, register_task,
                                     registered_tasks)

__all__ = ["PUBLISHED_OTHERS", "TaskSpec", "get_task", "load_entry_point", "load_env_cfg", "make_env", "register_task",
           "registered_tasks"]


def make_env(task: str, num_envs: int, device: str = "cpu", seed: int = 0, **env_overrides):
    """Create the vectorized env of a registered task, ready to ``reset()``.

    Args:
        task: a registered id (``registered_tasks()``).
        num_envs: parallel environments (CPU: 16-256 cost about the same per step; more is nearly free).
        device: ``"cpu"`` (Warp CPU, the default) or ``"cuda:N"`` (same class at GPU scale, CUDA graphs on).
        seed: seeds torch/numpy/warp globals and the env's reset randomization (same seed -> same resets).
        **env_overrides: for Isaac Lab tasks env cfg fields, dotted for nested ones, e.g.
            ``episode_length_s=4.0`` or ``**{"spawn.block_y": (-0.05, 0.05)}``.
    """
    if num_envs < 1:
        raise ValueError(f"make_env: num_envs must be >= 1, got {num_envs}")
    spec = get_task(task)
    return spec.load("make_env")(spec, num_envs, device, seed, **env_overrides)


def load_env_cfg(task: str):
    """A fresh default env cfg of a registered Isaac Lab task."""
    return get_task(task).load("env_cfg")()


def _register_with_gymnasium() -> None:
    try:
        import gymnasium as gym
    except ImportError:  # an offline training host: lawr reads its own registry, gymnasium is for Isaac Lab's tools
        return
    for task in registered_tasks():
        spec = get_task(task)
        if spec.env is not None and task not in gym.registry:
            gym.register(id=task, entry_point=spec.env, disable_env_checker=True,
                         kwargs={"env_cfg_entry_point": spec.env_cfg,
                                 "lawr_cfg_entry_point": spec.lawr_cfg})


_register_with_gymnasium()
