"""Replay a collected dataset's recorded actions open-loop from the same resets: is the action path reproducible?

A collection round resets all N envs with ``round_seed(seed, r)`` and episode ``r * N + i`` is env i's first
episode (data/collect.py). Replaying round r resets the same N envs with the same seed and feeds each env its
episode's recorded actions: if the simulator and the action path are deterministic, every episode ends as it
did when it was recorded. This separates "the env cannot reproduce a demonstration" from "the learner is
wrong" before anything is trained.
"""

from __future__ import annotations

import torch

from lawr_ext.data.collect import round_seed
from lawr_ext.data.episodes import DatasetError, Episodes
from lawr_ext.modules.chunk_basis import ChunkBasis


def project_on_basis(actions: torch.Tensor, basis: ChunkBasis) -> torch.Tensor:
    """Each episode's actions [N, T, A] cut into consecutive chunks of H steps (the last one padded by holding its
    last action), each replaced by its projection on ``basis``: what a policy in that basis could at best command."""
    horizon = basis.horizon
    steps = actions.shape[1]
    padded = torch.cat([actions, actions[:, -1:].expand(-1, -steps % horizon, -1)], dim=1)
    chunks = padded.unflatten(1, (-1, horizon))  # [N, T/H, H, A]
    return basis.decode(basis.encode(chunks)).flatten(1, 2)[:, :steps]


@torch.inference_mode()
def replay_rounds(episodes: Episodes, num_rounds: int, device: str = "cpu", source: object = "dataset",
                  chunk_basis: ChunkBasis | None = None) -> dict:
    """Replay the first ``num_rounds`` collection rounds; returns per-episode outcomes and their summary.

    With ``chunk_basis``, each recorded chunk is first projected on it (``project_on_basis``): does the
    representation keep what the task needs?

    ``summary``: episodes, recorded and replayed successes, how many match, the same for the clean expert
    (quality 0), and the mean |recorded - replayed return|.
    """
    from lawr_ext.tasks import make_env  # starts the simulator

    collection = episodes.meta.get("collection")
    task = episodes.meta.get("task")
    if not collection or task is None:
        raise DatasetError(source, "records no collection settings (task, seed, num_envs): only datasets written "
                                   "by lawr's collector can be replayed")
    num_envs, seed = int(collection["num_envs"]), int(collection["seed"])
    starts, lengths = episodes.starts, episodes.lengths
    env = make_env(task, num_envs, device, seed)
    outcomes = []
    try:
        for r in range(num_rounds):
            ids = list(range(r * num_envs, min((r + 1) * num_envs, episodes.num_episodes)))
            if not ids:
                break
            env.reseed(round_seed(seed, r))
            env.reset(seed=round_seed(seed, r))
            actions = torch.zeros(num_envs, int(lengths[ids].max()), episodes.actions.shape[1])
            for j, e in enumerate(ids):
                actions[j, :lengths[e]] = episodes.actions[starts[e]:starts[e] + lengths[e]]
            if chunk_basis is not None:
                actions = project_on_basis(actions, chunk_basis).clamp(-1.0, 1.0)
            done = torch.zeros(num_envs, dtype=torch.bool)
            success = torch.zeros(num_envs, dtype=torch.bool)
            ret = torch.zeros(num_envs, dtype=torch.float64)
            for t in range(actions.shape[1]):
                _, reward, terminated, truncated, extras = env.step(actions[:, t].to(env.device))
                live = ~done
                ret += reward.cpu().double() * live
                success |= extras["success"].cpu() & live
                done |= (terminated | truncated).cpu()
            for j, e in enumerate(ids):
                recorded_return = float(episodes.rewards[starts[e]:starts[e] + lengths[e]].double().sum())
                outcomes.append({"episode": e, "quality": int(episodes.quality[e]),
                                 "recorded_success": bool(episodes.success[e]), "replayed_success": bool(success[j]),
                                 "return_difference": abs(recorded_return - float(ret[j]))})
    finally:
        env.close()
    clean = [o for o in outcomes if o["quality"] == 0]
    summary = {
        "episodes": len(outcomes),
        "recorded_successes": sum(o["recorded_success"] for o in outcomes),
        "replayed_successes": sum(o["replayed_success"] for o in outcomes),
        "outcome_matches": sum(o["recorded_success"] == o["replayed_success"] for o in outcomes),
        "clean_episodes": len(clean),
        "clean_recorded_successes": sum(o["recorded_success"] for o in clean),
        "clean_replayed_successes": sum(o["replayed_success"] for o in clean),
        "mean_return_difference": sum(o["return_difference"] for o in outcomes) / max(len(outcomes), 1),
    }
    return {"summary": summary, "episodes": outcomes}
