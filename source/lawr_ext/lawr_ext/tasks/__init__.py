"""The lawr task family, registered with gymnasium (Isaac Lab discovers it via the ``isaaclab.tasks`` entry point).

    Bimanual-Chunk            hand a block from one arm to the other
    Bimanual-Chunk-Insertion  one arm holds a socket, the other inserts a peg, both in the air

Everything else in lawr creates environments through :func:`make_env`.
"""

from __future__ import annotations

import contextlib
import importlib

import gymnasium as gym

TASKS = ("Bimanual-Chunk", "Bimanual-Chunk-Insertion")
_CFG_MODULE = f"{__name__}.bimanual.env_cfg"

for _task, _cfg in zip(TASKS, ("BimanualChunkEnvCfg", "BimanualInsertionEnvCfg")):
    gym.register(
        id=_task,
        entry_point=f"{__name__}.bimanual.env:BimanualChunkEnv",
        disable_env_checker=True,
        kwargs={"env_cfg_entry_point": f"{_CFG_MODULE}:{_cfg}",
                "lawr_cfg_entry_point": "lawr_ext.configs.train:TrainConfig"},
    )


def _load(entry_point: str):
    module, name = entry_point.split(":")
    return getattr(importlib.import_module(module), name)


def load_env_cfg(task: str):
    """A fresh default env cfg of a registered lawr task."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; registered lawr tasks are {TASKS}")
    return _load(gym.spec(task).kwargs["env_cfg_entry_point"])()


def make_env(task: str, num_envs: int, device: str = "cpu", seed: int = 0, **cfg_overrides):
    """Create a Bimanual-Chunk environment (the unwrapped Isaac Lab ``DirectRLEnv``), ready to ``reset()``.

    Args:
        task: a registered id from ``TASKS``.
        num_envs: parallel environments (CPU: 16-256 cost about the same per step; more is nearly free).
        device: ``"cpu"`` (Warp CPU, the default) or ``"cuda:N"`` (same class at GPU scale, CUDA graphs on).
        seed: seeds torch/numpy/warp globals and the env's reset randomization (same seed -> same resets).
        **cfg_overrides: env cfg fields, dotted for nested ones, e.g. ``episode_length_s=4.0`` or
            ``**{"spawn.block_y": (-0.05, 0.05)}``.

    Returns the env; ``env.close()`` also shuts down the simulation launcher. One env per process at a time.
    """
    if num_envs < 1:
        raise ValueError(f"make_env: num_envs must be >= 1, got {num_envs}")
    from isaaclab.app import launch_simulation

    cfg = load_env_cfg(task)
    cfg.scene.num_envs = num_envs
    cfg.seed = seed
    cfg.sim.device = device
    cfg.sim.physics.use_cuda_graph = device.startswith("cuda")
    for key, value in cfg_overrides.items():
        *parents, leaf = key.split(".")
        target = cfg
        for part in parents:
            target = getattr(target, part)
        if not hasattr(target, leaf):
            raise ValueError(f"make_env: {type(target).__name__} has no field {leaf!r} (override {key!r})")
        setattr(target, leaf, value)
    launcher = contextlib.ExitStack()
    launcher.enter_context(launch_simulation(cfg, {"device": device, "visualizer": "none"}))
    try:
        env = _load(gym.spec(task).entry_point)(cfg)
    except BaseException:
        launcher.close()
        raise
    env.launcher = launcher
    return env
