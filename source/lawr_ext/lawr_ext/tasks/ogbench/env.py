"""N OGBench envs stepped side by side in worker processes, behind the vectorized interface of an Isaac Lab
DirectRLEnv, so that lawr's rollout, chunk scheduler and report run on them unchanged.

    reset()       -> ({"policy": obs [N, O]}, {})
    step(actions) -> ({"policy": obs [N, O]}, reward [N], terminated [N], truncated [N], {"success": [N]})

Each env is OGBench's own, made with ``ogbench.make_env_and_datasets(name, env_only=True)`` (OGBench's README
warns that ``gymnasium.make`` of the name is not the same env): its episode length (TimeLimit: 200 steps for
cube-single, 500 for cube-double), its reward, its ``info["success"]``, and its termination at the goal.
Actions are clipped to [-1, 1] before they reach it. A finished env is reset inside ``step`` and returns the
new episode's first observation, as Isaac Lab's envs do. Env i is seeded ``seed + i`` at ``reset()``; its
later episodes continue its own random stream, so a rerun with the same seed and N reproduces every episode.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import pickle
import subprocess
import sys

import numpy as np
import torch

from lawr_ext.tasks.ogbench import CONTROL_HZ, ogbench_name
from lawr_ext.tasks.registry import TaskSpec

WORKER = "lawr_ext.tasks.ogbench.worker"  # the module each worker process runs


def headless_gl() -> str:
    """MuJoCo's GL backend without a display: EGL where its library exists (offscreen rendering still works),
    else none at all (state observations need no rendering). A user's own MUJOCO_GL wins."""
    return os.environ.setdefault("MUJOCO_GL", "egl" if ctypes.util.find_library("EGL") else "disable")


def make_env(spec: TaskSpec, num_envs: int, device: str = "cpu", seed: int = 0, episode_length_s: float | None = None,
             num_workers: int | None = None, **env_kwargs) -> OGBenchVecEnv:
    """The vectorized OGBench env of ``spec`` (see ``lawr_ext.tasks.make_env``).

    ``episode_length_s`` overrides the env's time limit (in env steps: seconds x 20 Hz); other keyword
    arguments go to OGBench's env constructor. ``num_workers`` processes share the envs (default: one per CPU).
    """
    if episode_length_s is not None:
        env_kwargs["max_episode_steps"] = round(episode_length_s * CONTROL_HZ)
    return OGBenchVecEnv(ogbench_name(spec.id), num_envs, seed, device, num_workers, env_kwargs)


class OGBenchVecEnv:
    def __init__(self, name: str, num_envs: int, seed: int = 0, device: str | torch.device = "cpu",
                 num_workers: int | None = None, env_kwargs: dict | None = None):
        if importlib.util.find_spec("ogbench") is None:
            raise ValueError(f"OGBench task {name!r} needs the ogbench package (in requirements/lock.txt: "
                             f"ogbench==1.2.2 with dm_control==1.0.45); run scripts/setup.sh")
        self.name, self.num_envs, self.device = name, num_envs, torch.device(device)
        num_workers = max(1, min(num_envs, num_workers or os.cpu_count() or 1))
        self.env_ids = np.array_split(np.arange(num_envs), num_workers)  # worker w steps envs env_ids[w]
        # Plain subprocesses running this module (not multiprocessing): nothing re-imports the caller's __main__,
        # so an unguarded user script works too. Pickled messages over the workers' stdin/stdout.
        environment = os.environ | {"MUJOCO_GL": headless_gl(), "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
        self.workers = [subprocess.Popen([sys.executable, "-m", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         env=environment) for _ in self.env_ids]
        self._send("make", [(name, ids.tolist(), seed, env_kwargs or {}) for ids in self.env_ids])
        self.max_episode_length, self.obs_dim, self.action_dim = self._receive()[0]

    def _send(self, command: str, parts=None) -> None:
        for w, worker in enumerate(self.workers):
            pickle.dump((command, None if parts is None else parts[w]), worker.stdin)
            worker.stdin.flush()

    def _receive(self) -> list:
        replies = []
        for worker in self.workers:
            try:
                status, value = pickle.load(worker.stdout)
            except EOFError:
                raise RuntimeError(f"OGBench worker for {self.name} died (exit code {worker.poll()})") from None
            if status == "error":
                raise RuntimeError(f"OGBench env {self.name} failed in a worker:\n{value}")
            replies.append(value)
        return replies

    def _tensor(self, parts: list[np.ndarray], dtype=torch.float32) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(parts)).to(device=self.device, dtype=dtype)

    def reset(self) -> tuple[dict[str, torch.Tensor], dict]:
        self._send("reset")
        return {"policy": self._tensor(self._receive())}, {}

    def step(self, actions: torch.Tensor):
        actions = actions.detach().clamp(-1.0, 1.0).cpu().numpy().astype(np.float64)
        self._send("step", [actions[ids] for ids in self.env_ids])
        obs, reward, terminated, truncated, success = zip(*self._receive())
        return ({"policy": self._tensor(obs)}, self._tensor(reward), self._tensor(terminated, torch.bool),
                self._tensor(truncated, torch.bool), {"success": self._tensor(success, torch.bool)})

    def close(self) -> None:
        for worker in self.workers:
            try:
                self._send_one(worker, ("close", None))
            except (BrokenPipeError, OSError):
                pass
        for worker in self.workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
        self.workers = []

    @staticmethod
    def _send_one(worker: subprocess.Popen, message) -> None:
        pickle.dump(message, worker.stdin)
        worker.stdin.close()

    def __del__(self):
        if getattr(self, "workers", None):
            self.close()
