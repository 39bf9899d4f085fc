"""Isaac Lab DirectRLEnv tasks: create one from the env class and env cfg its TaskSpec names."""

from __future__ import annotations

import contextlib
import io
import sys

from lawr_ext.tasks.registry import TaskSpec
from lawr_ext.utils.cli import verbose


def make_env(spec: TaskSpec, num_envs: int, device: str = "cpu", seed: int = 0, **cfg_overrides):
    """The unwrapped Isaac Lab ``DirectRLEnv`` of ``spec``, ready to ``reset()`` (see ``lawr_ext.tasks.make_env``).

    ``env.close()`` also shuts down the simulation launcher. One env per process at a time.
    """
    from isaaclab.app import launch_simulation

    cfg = spec.load("env_cfg")()
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
    # Isaac Lab prints pages of [INFO] lines while it builds the scene and starts the simulation; they are shown
    # with the scripts' --verbose (utils/cli.py), and printed after all if the env cannot be made.
    startup = io.StringIO()
    try:
        with contextlib.nullcontext() if verbose() else contextlib.redirect_stdout(startup):
            launcher.enter_context(launch_simulation(cfg, {"device": device, "visualizer": "none"}))
            env = spec.load("env")(cfg)
    except BaseException:
        launcher.close()
        sys.stderr.write(startup.getvalue())
        raise
    env.launcher = launcher
    return env
