"""Roll scripted experts in a vectorized env and write the episodes as a crash-safe, resumable dataset.

Collection runs in *rounds*. Round r resets all N envs with seed ``round_seed(seed, r)``, draws each
env's strategy and quality from a generator with the same seed, and steps until every env has finished
its first episode; envs that finish early are auto-reset by Isaac Lab and keep stepping (their next
episode is discarded). The N episodes of the round (fewer in the last round) are then written as one
atomic shard file, demo ids ``r*N .. r*N+N-1``.

Why rounds: an episode's content then depends only on (seed, r, env index), never on what happened
before, so a rerun after ``kill -9`` skips the complete shards on disk, redoes the round in flight and
yields exactly the dataset an uninterrupted run writes. A kill loses at most the one round in flight
(at most N episodes). The price is idle stepping of envs that finished early in a round.

Scaling out: more envs per process (N), and more processes. Under ``torchrun`` every rank calls
:func:`collect` with the same arguments plus its ``rank`` and ``world_size``; rank k collects rounds
k, k+W, k+2W, ... (seeds ``round_seed(seed, r)`` of those rounds, demo ids ``r*N ..``) into its own shard
files ``shard_<r>.hdf5`` of the SAME directory. Ranks never write the same file and need no communication;
the merged directory *is* the dataset. Guaranteed: every round is collected exactly once, seeds and demo
ids are disjoint across ranks, and the dataset equals a single process's run with the same N, seed and
episode count, whatever the number of processes (bit-identical on the CPU; on GPUs as deterministic as the
simulator is). Resuming works per round, so a killed multi-process run may be finished by any number of
processes. Commands: ``scripts/collect.py``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from lawr_ext.configs.data import DataConfig, check_mix
from lawr_ext.data.hdf5 import list_shards, read_shard_info, shard_path
from lawr_ext.data.hdf5_writer import EpisodeRecord, write_episodes
from lawr_ext.utils.cli import progress
from lawr_ext.utils.io import remove_stale_temp_files
from lawr_ext.utils.lock import directory_lock
from lawr_ext.utils.seeding import derive_seed


class VecEnv(Protocol):
    """What the collector needs from an Isaac Lab DirectRLEnv (auto-resets finished envs inside ``step``)."""

    num_envs: int
    max_episode_length: int

    def reset(self, seed: int | None = None) -> tuple[dict[str, torch.Tensor], dict]: ...

    def step(self, actions: torch.Tensor) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """(obs dict with "policy" [N, O], reward [N], terminated [N], truncated [N], extras with "success" [N])"""


class Expert(Protocol):
    """A batched scripted expert: ``reset`` (re)starts the given envs' plans, ``act`` returns [N, A] in [-1, 1].

    A task registers a factory of them (``TaskSpec.experts``); ``num_strategies`` and ``quality_names`` are
    the labels it draws from per episode.
    """

    num_strategies: int
    quality_names: tuple[str, ...]

    def reset(self, env_ids: torch.Tensor, strategy: torch.Tensor, quality: torch.Tensor) -> None: ...

    def act(self) -> torch.Tensor: ...


@dataclass
class CollectConfig:
    num_episodes: int = 1000  # episodes in the finished dataset
    seed: int = 0  # seeds every round's env reset and label draw
    quality_mix: tuple[float, ...] = (0.5, 0.3, 0.2)  # probability of each quality id (clean, noisy, failing)
    strategy_mix: tuple[float, ...] | None = None  # probability of each strategy id; None = uniform
    progress: bool = True  # progress on stderr: a bar on a terminal, a line every 30 s in a log

    def __post_init__(self) -> None:
        if self.num_episodes < 1:
            raise ValueError(f"CollectConfig.num_episodes: must be >= 1, got {self.num_episodes}")
        for name in ("quality_mix", "strategy_mix"):
            check_mix("CollectConfig", name, getattr(self, name))


def collect_config_of(data: DataConfig, seed: int, progress: bool = True) -> CollectConfig:
    """The collection a training run asks for in its ``data`` section (``data.collect_*``)."""
    return CollectConfig(num_episodes=data.collect_num_episodes, seed=seed,
                         quality_mix=tuple(data.collect_quality_mix), progress=progress)


def round_seed(seed: int, round_index: int) -> int:
    """Independent, reproducible 31-bit seed of one collection round."""
    return derive_seed(seed, round_index)


def collect(env: VecEnv, expert: Expert, out_dir: str | os.PathLike, cfg: CollectConfig, meta: dict, *,
            num_strategies: int, num_qualities: int, rank: int = 0, world_size: int = 1) -> Path:
    """Collect ``cfg.num_episodes`` episodes into the shard directory ``out_dir``, resuming what is there.

    Strategy ids are drawn from ``range(num_strategies)``, quality ids from ``range(num_qualities)``.
    ``meta`` (task, obs/action dims, control rate, ...) is stored in every shard together with the
    collection settings; resuming into a directory collected with other settings is refused.
    With ``world_size`` > 1 this process collects only the rounds ``rank, rank + world_size, ...``
    (see the module docstring); the dataset is complete once every rank has returned.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in range(world_size={world_size})")
    out_dir = Path(out_dir)
    num_envs = env.num_envs
    strategy_mix = cfg.strategy_mix or (1.0,) * num_strategies
    for name, mix, expected in (("strategy_mix", strategy_mix, num_strategies),
                                ("quality_mix", cfg.quality_mix, num_qualities)):
        if len(mix) != expected:
            raise ValueError(f"CollectConfig.{name}: has {len(mix)} entries but the expert has {expected} labels")
    settings = {"seed": cfg.seed, "num_envs": num_envs, "quality_mix": list(cfg.quality_mix),
                "strategy_mix": list(strategy_mix)}
    meta = json.loads(json.dumps({**meta, "collection": settings}))  # as it reads back from disk

    # One collection per directory: a second one is refused (the ranks of one torchrun run share it: the
    # script's rank 0 holds the lock for them, scripts/collect.py)
    with directory_lock(out_dir, "collection") if world_size == 1 else contextlib.nullcontext():
        _check_settings(out_dir, meta)
        my_rounds = range(rank, math.ceil(cfg.num_episodes / num_envs), world_size)
        round_size = {r: min(num_envs, cfg.num_episodes - r * num_envs) for r in my_rounds}
        todo = [r for r in my_rounds if not _round_on_disk(out_dir, r, round_size[r])]
        total = sum(round_size.values())
        bar = progress(total, f"collect {out_dir.name}" + (f" [rank {rank}/{world_size}]" if world_size > 1 else ""),
                       "episode", initial=total - sum(round_size[r] for r in todo), enabled=cfg.progress)
        for r in todo:
            records = _run_round(env, expert, round_seed(cfg.seed, r), round_size[r], cfg.quality_mix, strategy_mix,
                                 bar)
            write_episodes(shard_path(out_dir, r), records, first_id=r * num_envs, meta=meta)
        bar.close()
    return out_dir


def _check_settings(out_dir: Path, meta: dict) -> None:
    """Refuse to add to a directory whose shards were collected with other settings (any rank's shards)."""
    if not out_dir.exists():
        return
    for shard in list_shards(out_dir):
        shard_meta, _ = read_shard_info(shard)
        if shard_meta != meta:
            differ = sorted(key for key in meta.keys() | shard_meta.keys() if meta.get(key) != shard_meta.get(key))
            raise ValueError(f"{shard}: collected with other settings ({', '.join(differ)} differ); "
                             "use another --out or the same arguments")


def _round_on_disk(out_dir: Path, round_index: int, size: int) -> bool:
    """Whether round ``round_index`` is complete on disk. A shorter shard (the last round of a smaller run,
    same seeds) is redone whole. Only this round's temporary files of a killed write are removed, and only
    those of processes that are gone: other ranks may be writing theirs right now."""
    path = shard_path(out_dir, round_index)
    remove_stale_temp_files(path)
    return path.is_file() and read_shard_info(path)[1] >= size


def _run_round(env, expert, seed, keep, quality_mix, strategy_mix, bar) -> list[EpisodeRecord]:
    """Step all envs until the first ``keep`` envs have each finished one episode; return those episodes."""
    num_envs, device = env.num_envs, torch.device(getattr(env, "device", "cpu"))
    labels = torch.Generator().manual_seed(seed)  # drawn on the CPU: the same labels on every device
    quality = torch.multinomial(torch.tensor(quality_mix), num_envs, replacement=True, generator=labels).to(device)
    strategy = torch.multinomial(torch.tensor(strategy_mix), num_envs, replacement=True, generator=labels).to(device)

    reseed = getattr(env, "reseed", None)  # Isaac Lab's reset(seed) seeds only the global RNGs, not an
    if reseed is not None:                  # env-owned reset generator such as BimanualChunkEnv's
        reseed(seed)
    obs_dict, _ = env.reset(seed=seed)
    expert.reset(torch.arange(num_envs, device=device), strategy, quality)
    steps = {"obs": [], "actions": [], "rewards": [], "terminated": [], "truncated": [], "success": []}
    images = [] if "images" in obs_dict else None  # an image task's camera frames, uint8 [N, cameras, H, W, 3]
    last_step = torch.full((num_envs,), -1)  # step index at which each env's first episode ended
    t = 0
    while (last_step[:keep] < 0).any():
        if t > env.max_episode_length:
            stuck = (last_step < 0).nonzero().flatten().tolist()
            raise RuntimeError(f"envs {stuck} ran past max_episode_length without a done")
        # copies: Isaac Lab returns the same buffers every step and overwrites them in place
        steps["obs"].append(obs_dict["policy"].to("cpu", copy=True))
        if images is not None:
            images.append(obs_dict["images"].to("cpu", copy=True))
        actions = expert.act().clamp(-1.0, 1.0)  # record exactly what the env executes
        obs_dict, reward, terminated, truncated, extras = env.step(actions)
        for name, value in zip(list(steps)[1:], (actions, reward, terminated, truncated, extras["success"])):
            steps[name].append(value.to("cpu", copy=True))
        finished = terminated | truncated
        if finished.any():  # the auto-reset episode is discarded, but the expert must plan it from scratch
            ids = finished.nonzero().flatten()
            expert.reset(ids, strategy[ids], quality[ids])
        newly = finished.cpu() & (last_step < 0)
        last_step[newly] = t
        bar.update(int(newly[:keep].sum()))
        t += 1

    stacked = {name: torch.stack(values, dim=1) for name, values in steps.items()}  # [N, T_round, ...]
    frames = torch.stack(images, dim=1) if images is not None else None
    records = []
    for i in range(keep):
        length = int(last_step[i]) + 1
        records.append(EpisodeRecord(
            obs=stacked["obs"][i, :length].float(),
            actions=stacked["actions"][i, :length].float(),
            rewards=stacked["rewards"][i, :length].float(),
            terminated=stacked["terminated"][i, :length].bool(),
            truncated=stacked["truncated"][i, :length].bool(),
            success=stacked["success"][i, :length].bool(),
            strategy=int(strategy[i]),
            quality=int(quality[i]),
            seed=seed,
            images=frames[i, :length] if frames is not None else None,
        ))
    return records


def task_metadata(task: str, env, quality_names: tuple[str, ...]) -> dict:
    """Env/task facts stored with a dataset so that training can check its config against them."""
    return {
        "task": task,
        "obs_dim": int(env.cfg.observation_space),
        "action_dim": int(env.cfg.action_space),
        "control_hz": 1.0 / env.step_dt,
        "max_episode_length": int(env.max_episode_length),
        "chunk_horizon": getattr(env.cfg, "chunk_horizon", None),
        "action_names": getattr(env, "action_names", None),  # action order, where the env names it
        "quality_names": list(quality_names),
        # the reward weights the rewards were recorded with: resuming a collection after they change is refused
        "reward": env.cfg.reward.to_dict() if hasattr(env.cfg, "reward") else None,
    } | _camera_metadata(env)


def _camera_metadata(env) -> dict:
    """An image task's cameras, in the order of the recorded frames, and their resolution; nothing for a state
    task (its metadata, and so its shards, stay as they were)."""
    names = tuple(getattr(env, "camera_names", ()))
    if not names:
        return {}
    return {"cameras": list(names), "image_size": [int(env.cfg.cameras.height), int(env.cfg.cameras.width)],
            "camera_randomization": env.cfg.cameras.randomization.to_dict()}


def collect_task(task: str, out_dir: str | os.PathLike, num_envs: int, cfg: CollectConfig, device: str = "cpu", *,
                 rank: int = 0, world_size: int = 1, **env_overrides) -> Path:
    """Create the task's env (``env_overrides``: env cfg fields, as for ``make_env``) and the scripted expert
    the task registers, and :func:`collect` into ``out_dir`` (this rank's rounds), resuming what is there."""
    from lawr_ext.tasks import get_task, make_env

    spec = get_task(task)
    if spec.experts is None:
        raise ValueError(f"task {task!r} has no scripted experts to collect with; give a dataset (--dataset)")
    env = make_env(task, num_envs, device=device, seed=cfg.seed, **env_overrides)
    try:
        expert = spec.load("experts")(task, env)
        return collect(env, expert, out_dir, cfg, task_metadata(task, env, expert.quality_names),
                       num_strategies=expert.num_strategies, num_qualities=len(expert.quality_names), rank=rank,
                       world_size=world_size)
    finally:
        env.close()
