"""One call from a policy to an evaluation report: create the env, roll out, summarize, close the env."""

from __future__ import annotations

from dataclasses import asdict

import torch

from lawr_ext.algorithms.base import ChunkPolicy
from lawr_ext.configs.eval import EvalCfg
from lawr_ext.eval.metrics import summarize
from lawr_ext.eval.rollout import rollout


def evaluate_policy(policy: ChunkPolicy, cfg: EvalCfg, **env_overrides) -> dict:
    """Roll ``policy`` out in ``cfg.task`` and return the report (``metrics.write_report`` writes it).

    Seeds torch (stochastic policies) and the env's resets with ``cfg.seed``, so a rerun reproduces it.
    ``env_overrides`` are env cfg fields for ``make_env`` (e.g. ``episode_length_s=2.0``).
    """
    from lawr_ext.tasks import make_env  # starts the simulator: imported only when an env is needed

    torch.manual_seed(cfg.seed)
    num_envs = min(cfg.num_envs, cfg.num_episodes)  # more envs than episodes would only idle
    env = make_env(cfg.task, num_envs, cfg.device, cfg.seed, **env_overrides)
    try:
        episodes, timing = rollout(env, policy, cfg)
    finally:
        env.close()
    return {"task": cfg.task,
            "context": {"policy": type(policy).__name__, "horizon": policy.horizon, "exec_horizon": cfg.exec_horizon,
                        "temporal_ensemble": cfg.temporal_ensemble, "num_envs": num_envs, "seed": cfg.seed},
            "config": asdict(cfg), "summary": summarize(episodes), "timing": timing}
