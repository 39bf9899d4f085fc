"""One call from a policy to an evaluation report: create the env, roll out, summarize, close the env."""

from __future__ import annotations

from dataclasses import asdict

import torch

from lawr_ext.algorithms.base import ChunkPolicy
from lawr_ext.algorithms.planner import LAWRPolicy, support_metrics
from lawr_ext.configs.eval import EvalCfg
from lawr_ext.data import keys
from lawr_ext.data.dataset import ChunkDataset
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


@torch.no_grad()
def support_check(policy: LAWRPolicy, dataset: ChunkDataset, num_samples: int, seed: int = 0) -> dict[str, float]:
    """Phase 3's support check on dataset states: do L-AWR's chunks stay on the data manifold?

    ``num_samples`` distinct dataset chunks (distinct: a duplicate would be its twin's zero-distance neighbour).
    """
    generator = torch.Generator().manual_seed(seed)
    batch = dataset.batch(torch.randperm(dataset.num_chunks, generator=generator)[:num_samples])
    device = next(policy.parameters()).device
    obs_norm = policy.obs_normalizer(batch[keys.OBS].to(device))
    return support_metrics(policy.decoder, policy.planner, obs_norm, batch[keys.ACTIONS].to(device))
