"""One call from a policy to an evaluation report: create the env, roll out, summarize, close the env."""

from __future__ import annotations

from dataclasses import asdict, replace

import torch

from lawr_ext.algorithms.base import ChunkPolicy
from lawr_ext.configs.eval import EvalConfig
from lawr_ext.eval.metrics import summarize
from lawr_ext.eval.rollout import Observer, rollout
from lawr_ext.utils.distributed import RANK_SEED_STRIDE, World


def evaluate_policy(policy: ChunkPolicy, cfg: EvalConfig, world: World = World(), observer: Observer | None = None,
                    **env_overrides) -> dict:
    """Roll ``policy`` out in ``cfg.task`` and return the report (``metrics.write_report`` writes it).

    Seeds torch (stochastic policies) and the env's resets with ``cfg.seed``, so a rerun reproduces it.
    ``env_overrides`` are env cfg fields for ``make_env`` (e.g. ``episode_length_s=2.0``).
    Under torchrun (``world`` from ``init_world``) every rank runs its share of ``cfg.num_episodes`` in its
    own envs with seed ``cfg.seed + rank * RANK_SEED_STRIDE``; all ranks return the merged report.
    ``observer`` is ``rollout``'s: it sees the steps and episodes of this process only.
    """
    from lawr_ext.tasks import make_env  # starts the simulator: imported only when an env is needed

    if cfg.num_episodes < world.size:
        raise ValueError(f"EvalConfig.num_episodes={cfg.num_episodes} is fewer than the {world.size} processes")
    seed = cfg.seed + world.rank * RANK_SEED_STRIDE
    share = cfg.num_episodes // world.size + (world.rank < cfg.num_episodes % world.size)
    torch.manual_seed(seed)
    num_envs = min(cfg.num_envs, share)  # more envs than episodes would only idle
    env = make_env(cfg.task, num_envs, cfg.device, seed, **env_overrides)
    try:
        episodes, timing = rollout(env, policy, replace(cfg, num_episodes=share, seed=seed), observer)
    finally:
        env.close()
    per_rank = world.gather((episodes, timing))
    episodes = [e for rank_episodes, _ in per_rank for e in rank_episodes]
    timing = {"env_steps": sum(t["env_steps"] for _, t in per_rank), "seconds": max(t["seconds"] for _, t in per_rank)}
    return {"task": cfg.task,
            "context": {"policy": policy.name, "horizon": policy.horizon, "exec_horizon": cfg.exec_horizon,
                        "temporal_ensemble": cfg.temporal_ensemble, "num_envs": num_envs * world.size,
                        "processes": world.size, "seed": cfg.seed},
            "config": asdict(cfg), "summary": summarize(episodes), "timing": timing}
