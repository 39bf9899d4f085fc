"""Roll a ChunkPolicy out in N vectorized envs and record every finished episode.

Two clocks run per env: the env step, and the age of the chunk(s) it is executing. The policy is asked
for a new chunk only by the envs that need one (their chunk is ``exec_horizon`` steps old, or the env was
just auto-reset), so envs that finished at different times replan at different steps.
Rewards and success come from the env's own (Warp) kernels via ``env.step``; nothing is recomputed here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lawr_ext.algorithms.base import ChunkPolicy
from lawr_ext.configs.eval import EvalConfig
from lawr_ext.modules.vision import pack_observation
from lawr_ext.utils.cli import progress


class ChunkScheduler:
    """The action each env executes now, given the chunks predicted for it.

    Chunks sit in a shift register per env: slot 0 is the newest prediction, slot s is s replans older.
    Without temporal ensembling there is one slot and the env executes ``chunk[age]``. With it, every stored
    chunk that still covers the current step (age < H) votes for its entry at that step, weighted
    ACT-style by exp(-m*i) with i = 0 for the oldest vote (older predictions count more; smooth motion).
    """

    def __init__(self, num_envs: int, horizon: int, action_dim: int, exec_horizon: int,
                 temporal_ensemble: bool, ensemble_decay: float, device: str | torch.device = "cpu"):
        self.horizon = horizon
        self.exec_horizon = exec_horizon
        self.ensemble_decay = ensemble_decay
        # A chunk covers H steps and a new one arrives every exec_horizon steps: at most ceil(H/k) overlap.
        num_slots = math.ceil(horizon / exec_horizon) if temporal_ensemble else 1
        self.chunks = torch.zeros(num_envs, num_slots, horizon, action_dim, device=device)
        self.age = torch.zeros(num_envs, num_slots, dtype=torch.long, device=device)  # steps since predicted
        self.valid = torch.zeros(num_envs, num_slots, dtype=torch.bool, device=device)

    def needs_plan(self) -> torch.Tensor:
        """bool [N]: envs without a current chunk (start, reset) or whose chunk has run exec_horizon steps."""
        return ~self.valid[:, 0] | (self.age[:, 0] >= self.exec_horizon)

    def push(self, env_ids: torch.Tensor, chunks: torch.Tensor) -> None:
        """Store freshly predicted chunks [n, H, A] for ``env_ids`` as their newest prediction."""
        self.chunks[env_ids] = torch.cat([chunks.unsqueeze(1), self.chunks[env_ids, :-1]], dim=1)
        self.age[env_ids] = torch.cat([torch.zeros_like(self.age[env_ids, :1]), self.age[env_ids, :-1]], dim=1)
        self.valid[env_ids] = torch.cat([torch.ones_like(self.valid[env_ids, :1]), self.valid[env_ids, :-1]], dim=1)

    def reset(self, env_ids: torch.Tensor) -> None:
        """Forget the chunks of envs that started a new episode: they replan at their next step."""
        self.valid[env_ids] = False

    def weights(self) -> torch.Tensor:
        """float [N, S]: ensembling weight of each slot for the current step (0 where it does not cover it)."""
        covering = self.valid & (self.age < self.horizon)
        # i = number of covering predictions older than this one (older = higher slot index).
        older = covering.flip(1).long().cumsum(1).flip(1) - covering.long()
        return torch.exp(-self.ensemble_decay * older.float()) * covering

    def act(self) -> torch.Tensor:
        """float [N, A]: this step's actions; then every stored chunk ages by one step.

        Envs with no covering chunk get zeros (only envs the rollout no longer plans for).
        """
        idx = self.age.clamp(max=self.horizon - 1)[..., None, None].expand(-1, -1, 1, self.chunks.shape[-1])
        entries = self.chunks.gather(2, idx).squeeze(2)  # [N, S, A]: each slot's entry for this step
        w = self.weights()
        actions = (w.unsqueeze(-1) * entries).sum(1) / w.sum(1, keepdim=True).clamp_min(1e-12)
        self.age += 1
        return actions


@dataclass
class Episode:
    env_id: int
    success: bool
    ret: float
    length: int
    strategy: int | None = None  # what the episode did, if the env reports it
    physics_failure: bool = False  # the env reset it after a simulator blow-up (counted as a failure)
    object_dropped: bool = False  # it ended because the policy knocked an object off the table


# (observation acted on [N, O], actions [N, A], ended [N] bool, the episodes recorded at this step) -> None
Observer = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, list[Episode]], None]


def policy_observation(obs_dict: dict) -> torch.Tensor:
    """What a policy is given: the env's "policy" observation, packed with the camera frames on an image task
    (``modules/vision.py``)."""
    if "images" in obs_dict:
        return pack_observation(obs_dict["policy"], obs_dict["images"])
    return obs_dict["policy"]


def _plan(policy: ChunkPolicy, obs: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(obs).all():  # blame the simulator, not the checkpoint, when the state itself is broken
        bad = (~torch.isfinite(obs)).any(dim=-1).nonzero().flatten().tolist()
        raise ValueError(f"the simulator returned non-finite observations in env(s) {bad[:8]}: physics blew up")
    chunk = policy(obs)
    if chunk.shape != (obs.shape[0], policy.horizon, policy.action_dim):
        raise ValueError(f"policy returned a chunk of shape {tuple(chunk.shape)}, expected "
                         f"({obs.shape[0]}, H={policy.horizon}, A={policy.action_dim})")
    if not torch.isfinite(chunk).all():
        raise ValueError("policy returned non-finite actions (NaN/inf): check the checkpoint")
    return chunk


@torch.inference_mode()
def rollout(env, policy: ChunkPolicy, cfg: EvalConfig, observer: Observer | None = None
            ) -> tuple[list[Episode], dict[str, float]]:
    """Run ``cfg.num_episodes`` episodes of ``policy`` in the already created vectorized ``env``.

    Every env runs a fixed quota of episodes (num_episodes split evenly): stopping at the first M
    finished episodes instead would over-count short ones (fast successes or early failures).
    Returns the episodes and timing stats (env steps, seconds). An ``observer`` is called after every step with
    the observation the actions were chosen at [N, O], the actions [N, A], the envs that ended [N] and the
    episodes recorded at this step, in the order they were appended (diagnostics measure with it).
    """
    if cfg.exec_horizon > policy.horizon:
        raise ValueError(f"EvalConfig.exec_horizon={cfg.exec_horizon} exceeds the policy's chunk horizon "
                         f"H={policy.horizon}")
    num_envs = env.num_envs
    device = torch.device(cfg.device)
    policy = policy.to(device).eval()
    quota = torch.full((num_envs,), cfg.num_episodes // num_envs, device=device)
    quota[: cfg.num_episodes % num_envs] += 1
    finished = torch.zeros(num_envs, dtype=torch.long, device=device)

    scheduler = ChunkScheduler(num_envs, policy.horizon, policy.action_dim, cfg.exec_horizon,
                               cfg.temporal_ensemble, cfg.ensemble_decay, device)
    ep_return = torch.zeros(num_envs, dtype=torch.float64, device=device)
    ep_length = torch.zeros(num_envs, dtype=torch.long, device=device)
    ep_success = torch.zeros(num_envs, dtype=torch.bool, device=device)

    obs = policy_observation(env.reset()[0])
    episodes: list[Episode] = []
    steps, start = 0, time.perf_counter()
    with progress(cfg.num_episodes, "episodes", "episode", enabled=cfg.progress) as bar:
        while len(episodes) < cfg.num_episodes:
            active = finished < quota
            plan_ids = (scheduler.needs_plan() & active).nonzero().squeeze(-1)
            if plan_ids.numel():
                scheduler.push(plan_ids, _plan(policy, obs[plan_ids]))
            actions = torch.where(active.unsqueeze(-1), scheduler.act(), 0.0)

            acted_on = obs
            obs_dict, reward, terminated, truncated, extras = env.step(actions)
            obs = policy_observation(obs_dict)
            if "success" not in extras:
                raise ValueError("env.step extras lack 'success': the env must report per-step success")
            ep_return += reward.to(torch.float64)
            ep_length += 1
            ep_success |= extras["success"].bool()
            steps += 1

            done = terminated | truncated
            ids = (done & active).nonzero().squeeze(-1)
            recorded: list[Episode] = []
            if ids.numel():  # one device->host copy per column, not per episode (4096 envs end together)
                strategy = extras.get(cfg.strategy_key)
                strategies = strategy[ids].tolist() if strategy is not None else [None] * ids.numel()
                failures, drops = ([False] * ids.numel() if extras.get(key) is None else extras[key][ids].tolist()
                                   for key in ("physics_failure", "object_dropped"))
                recorded = list(map(Episode, ids.tolist(), ep_success[ids].tolist(), ep_return[ids].tolist(),
                                    ep_length[ids].tolist(), strategies, failures, drops))
                episodes += recorded
                bar.update(ids.numel())
            if observer is not None:
                observer(acted_on, actions, done, recorded)
            finished += (done & active).long()
            # The env auto-reset the finished envs: their obs is the new episode's first observation.
            scheduler.reset(done)
            ep_return[done], ep_length[done], ep_success[done] = 0.0, 0, False
    return episodes, {"env_steps": steps * num_envs, "seconds": time.perf_counter() - start}
