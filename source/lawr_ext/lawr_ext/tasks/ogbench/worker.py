"""One worker process of ``OGBenchVecEnv`` (env.py): owns some of the envs, steps them on request.

Run as ``python -m lawr_ext.tasks.ogbench.worker``; reads pickled requests from stdin and writes pickled replies
to stdout. Imports numpy and ogbench only (no torch): a worker costs one MuJoCo model per env, little else.
"""

from __future__ import annotations

import pickle
import sys
import traceback

import numpy as np


def _serve(requests, replies) -> None:
    """("make", (name, env ids, seed, kwargs)), then ("reset" | "step", data) ... ("close", None);
    answers each with ("ok" | "error", value)."""
    envs, env_ids, seed = [], [], 0
    while True:
        try:
            command, data = pickle.load(requests)
        except EOFError:  # the parent is gone
            return
        if command == "close":
            return
        try:
            if command == "make":
                import warnings

                warnings.filterwarnings("ignore", message=".*precision lowered by casting.*")  # OGBench's Box bounds
                import ogbench

                name, env_ids, seed, env_kwargs = data
                envs = [ogbench.make_env_and_datasets(name, env_only=True, **env_kwargs) for _ in env_ids]
                reply = (envs[0].spec.max_episode_steps, envs[0].observation_space.shape[0],
                         envs[0].action_space.shape[0])
            elif command == "reset":
                reply = np.stack([e.reset(seed=seed + i)[0] for e, i in zip(envs, env_ids)]).astype(np.float32)
            else:
                rows = []
                for e, action in zip(envs, data):
                    obs, reward, terminated, truncated, info = e.step(action)
                    if terminated or truncated:
                        obs, _ = e.reset()
                    rows.append((obs, reward, terminated, truncated, bool(info["success"])))
                obs, reward, terminated, truncated, success = zip(*rows)
                reply = (np.stack(obs).astype(np.float32), np.asarray(reward, np.float32), np.asarray(terminated),
                         np.asarray(truncated), np.asarray(success))
            pickle.dump(("ok", reply), replies)
        except Exception:  # noqa: BLE001  (the parent raises it, with this traceback)
            pickle.dump(("error", traceback.format_exc()), replies)
        replies.flush()


if __name__ == "__main__":
    protocol = sys.stdout.buffer
    sys.stdout = sys.stderr  # anything the envs print must not corrupt the pickled replies
    _serve(sys.stdin.buffer, protocol)
