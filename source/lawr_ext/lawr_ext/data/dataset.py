"""Cut offline episodes into TensorDict batches of action chunks (the contract is ``data/keys.py``).

The chunk rule. A *terminal row* is a transition after which nothing is bootstrapped: the last step of an
episode that terminated, or any step the data marks so (OGBench's ``masks == 0``, also mid-episode). A chunk
starts at any usable step t of an episode of T steps and covers k real steps,

    k = min(H, T_usable - t, j - t + 1),   j = the first terminal row >= t,

* ``reward``    = sum_{i<k} gamma^i r_{t+i};  ``discount`` = gamma^k;  ``mask[i]`` = i < k.
* ``actions``   = a_t .. a_{t+k-1}, then the last real action repeated up to H (masked out).
* ``terminal``  = 1 iff the chunk's last real step t+k-1 is a terminal row; then ``next_obs`` is that step's
  own observation, a placeholder the TD target multiplies by (1 - terminal) = 0.
* ``next_obs``  = o_{t+k} otherwise: the next recorded observation of the same episode, or, where the chunk
  reaches the end of a cut-off episode, the episode's recorded final observation (``Episodes.final_obs``).

So the TD target R + gamma^k (1 - terminal) V(s_{t+k}) stops at a success inside a chunk: its reward is
the last one counted and nothing is bootstrapped after it. QC's chunked backup (Li et al. 2025) also drops
the bootstrap when any mask in the chunk is 0, but keeps summing the rewards recorded after it; lawr does
not, because those steps are the data collector going on past a state where the singletask env ends the
episode (OGBench's envs terminate at the goal), and it bootstraps with gamma^k from s_{t+k}, not gamma^H.

Episodes that were cut off (timed out, or at the end of the data) without a recorded final observation:
Isaac Lab auto-resets inside ``step`` and returns the reset observation, so o_T was never recorded. Instead
of bootstrapping from a wrong (reset) or stale observation, their final step is never a real step of any
chunk: T_usable = T - 1 (T for terminated episodes and for episodes whose final observation is known). A
chunk reaching the end of such an episode has k = T-1-t real steps, ``terminal`` = 0, ``next_obs`` =
o_{T-1} (recorded, exact); the last action a_{T-1} and its reward only appear as masked padding.

All per-chunk scalars (first row, k, reward, next row, terminal, discount) are computed once, vectorized,
in ``__init__``; a batch only gathers rows by index.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from tensordict import TensorDict

from lawr_ext.data import keys
from lawr_ext.data.episodes import DatasetError, DatasetWarning, Episodes
from lawr_ext.data.hdf5 import open_hdf5, read_hdf5
from lawr_ext.data.isaaclab_recorder import read_recorder
from lawr_ext.data.lerobot import is_lerobot_dataset, read_lerobot
from lawr_ext.data.ogbench_files import is_ogbench_download, read_ogbench_download
from lawr_ext.data.plain import read_plain
from lawr_ext.data.reading import Reading


def load_episodes(path: str | os.PathLike, expect: Callable[[Episodes], None] | None = None,
                  reading: Reading = Reading()) -> Episodes:
    """Read any supported dataset: a shard directory, an Isaac Lab HDF5 file (lawr's or a recorder's), a LeRobot v3
    dataset, the plain format (.npz/.hdf5), or an OGBench file as downloaded (under an ``ogbench:`` task).

    ``expect(episodes)`` runs before the general validation: what the caller knows the data must be (its task,
    its dims) is then what a dataset that is not is told first. ``reading``: the keys, task and reward choice for
    data recorded elsewhere (``data/reading.py``); how such data was read is said in one ``DatasetWarning`` line,
    once it is accepted."""
    path = Path(path)
    note = None
    if is_lerobot_dataset(path):
        episodes, note = read_lerobot(path, reading)
    elif path.is_dir():
        reading.refuse_options(path, "a directory of lawr's collected shards")
        episodes = read_hdf5(path)
    elif path.suffix == ".npz" and is_ogbench_download(path):
        episodes, note = read_ogbench_download(path, reading.task)
    elif path.suffix == ".npz":
        reading.refuse_options(path, "a plain-format file")
        episodes = read_plain(path)
    elif path.suffix in (".hdf5", ".h5"):
        with open_hdf5(path) as file:
            isaac_layout, lawr_written = "data" in file, "lawr_meta" in file.attrs
        if isaac_layout and not lawr_written:
            episodes, note = read_recorder(path, reading)
        else:
            reading.refuse_options(path, "a file lawr collected" if isaac_layout else "a plain-format file")
            episodes = read_hdf5(path) if isaac_layout else read_plain(path)
    elif not path.exists():
        raise DatasetError(path, "file not found")
    else:
        raise DatasetError(path, "unknown dataset format (expected a shard directory, a LeRobot v3 dataset directory, "
                                 ".hdf5/.h5 or .npz)")
    if expect is not None and episodes.obs.ndim == 2 and episodes.actions.ndim == 2:  # else validate names the shape
        expect(episodes)
    episodes.validate(path)
    if note is not None:
        warnings.warn(DatasetWarning(path, note), stacklevel=2)
    return episodes


class ChunkDataset:
    """All action chunks of a dataset, sampled as TensorDict batches with the keys of ``data/keys.py``.

    Sampling uses ``generator`` when given, else the dataset's own CPU generator (seeded with ``seed``)
    whose state :meth:`state_dict` / :meth:`load_state_dict` save and restore for bit-identical resume.

    Batches hold the data as recorded: env actions, H steps per chunk, the real-step mask. The learners'
    coordinates (the action normalizer and the chunk basis) belong to Phase 1's behaviour model, which maps a
    batch into them (``BehaviorModel.learner_batch``); the dataset keeps no copy of them.
    """

    def __init__(
        self,
        episodes: Episodes,
        horizon: int,
        gamma: float,
        *,
        source: object = "<in-memory episodes>",
        action_dim: int | None = None,
        obs_dim: int | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ):
        if horizon < 1:
            raise ValueError(f"chunk horizon must be >= 1, got {horizon}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"discount gamma must be in (0, 1], got {gamma}")
        episodes.validate(source)
        episodes.check_dims(source, obs_dim, action_dim, "the config")
        longest = int(episodes.lengths.max())
        if horizon > longest:  # every chunk would be padding past H = longest; the batches' size grows with H
            raise DatasetError(source, f"chunk horizon H={horizon} is longer than the longest episode "
                                       f"({longest} steps); choose data.horizon <= {longest}")
        recorded_horizon = episodes.meta.get("chunk_horizon")
        if recorded_horizon is not None and recorded_horizon != horizon:
            raise DatasetError(source, f"collected for chunk horizon {recorded_horizon} "
                                       f"but the config asks for H={horizon}")

        self.horizon, self.gamma, self.source, self.device = horizon, gamma, source, torch.device(device)
        self.episodes = episodes
        self.generator = torch.Generator().manual_seed(seed)
        self._index_chunks()
        if self.num_chunks == 0:
            raise DatasetError(source, "no chunk can be built (every episode is a single truncated step)")
        self._episodes_to_device()

    @classmethod
    def from_path(cls, path: str | os.PathLike, horizon: int, gamma: float, **kwargs) -> ChunkDataset:
        return cls(load_episodes(path), horizon, gamma, source=path, **kwargs)

    def _index_chunks(self) -> None:
        ep, H, N = self.episodes, self.horizon, self.episodes.num_steps
        known_end = ep.terminated | (ep.final_obs is not None)  # the state after the last step is known (or moot)
        usable = ep.lengths - (~known_end).long()  # steps that may be real steps of a chunk
        episode = torch.repeat_interleave(torch.arange(ep.num_episodes), usable)
        t = torch.arange(len(episode)) - torch.repeat_interleave(torch.cumsum(usable, 0) - usable, usable)
        first_row = ep.starts[episode] + t

        terminal_row = torch.zeros(N, dtype=torch.bool)
        terminal_row[(ep.starts + ep.lengths - 1)[ep.terminated]] = True
        if ep.no_bootstrap is not None:
            terminal_row |= ep.no_bootstrap
        # next_terminal[r]: the first terminal row >= r (N where there is none)
        rows = torch.where(terminal_row, torch.arange(N), torch.tensor(N))
        next_terminal = rows.flip(0).cummin(0).values.flip(0)
        steps = torch.minimum(torch.clamp(usable[episode] - t, max=H), next_terminal[first_row] - first_row + 1)  # k
        last_row = first_row + steps - 1
        terminal = terminal_row[last_row]
        reward = torch.zeros(len(episode))
        for i in range(H):  # H vectorized passes over all chunks; O(#chunks) memory
            row = torch.clamp(first_row + i, max=N - 1)
            reward += self.gamma**i * ep.rewards[row] * (i < steps)
        # The observation to bootstrap from: the next row, the episode's final observation (row N + e of the
        # table built in _episodes_to_device) at its end, or the chunk's own last row as a terminal placeholder.
        at_end = t + steps == ep.lengths[episode]
        next_row = torch.where(terminal, last_row, torch.where(at_end, N + episode, last_row + 1))

        device = self.device
        self.chunk_episode = episode.to(device)
        self.chunk_first_row = first_row.to(device)
        self.chunk_start_step = t.to(device)  # the step of its episode each chunk starts at
        self.chunk_steps = steps.to(device)
        self.chunk_reward = reward.to(device)
        self.chunk_next_row = next_row.to(device)
        self.chunk_terminal = terminal.float().to(device)
        self.chunk_discount = torch.tensor(self.gamma, dtype=torch.float64).pow(steps).float().to(device)

    def _episodes_to_device(self) -> None:
        ep = self.episodes
        final_obs = ep.final_obs if ep.final_obs is not None else ep.obs[:0]
        self._obs = torch.cat([ep.obs, final_obs]).to(self.device)  # rows N.. : final observations of the episodes
        self._num_steps = ep.num_steps
        self._actions = ep.actions.to(self.device)
        self._success = ep.success.float().to(self.device)
        self._strategy, self._quality = ep.strategy.to(self.device), ep.quality.to(self.device)
        self._offsets = torch.arange(self.horizon, device=self.device)
        # camera frames stay uint8 (a float copy would be 4x the memory); next_obs rows past N (final observations)
        # never occur with them: Episodes.validate refuses images together with final observations
        self._images = ep.images.to(self.device) if ep.images is not None else None

    @functools.cached_property
    def fingerprint(self) -> str:
        """The dataset's content hash (``Episodes.fingerprint``), computed once: every checkpoint records it."""
        return self.episodes.fingerprint()

    @property
    def num_chunks(self) -> int:
        return len(self.chunk_first_row)

    def __len__(self) -> int:
        return self.num_chunks

    @property
    def observations(self) -> torch.Tensor:
        """Every recorded observation [N, O] (what the observation normalizer is fitted on)."""
        return self._obs[: self._num_steps]

    @property
    def actions(self) -> torch.Tensor:
        """Every recorded env action [N, A] (what the action normalizer is fitted on)."""
        return self._actions

    @property
    def action_dim(self) -> int:
        return self._actions.shape[1]

    @property
    def obs_dim(self) -> int:
        return self._obs.shape[1]

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """(cameras, H, W) of the frames of image data; None for state-only data."""
        return None if self._images is None else tuple(self._images.shape[1:4])

    def batch(self, chunk_ids: torch.Tensor) -> TensorDict:
        """The chunks ``chunk_ids`` (int64 [B], on any device) as one batch of env actions [B, H, A]."""
        ids = chunk_ids.to(self.device)
        first, num_steps, episode = self.chunk_first_row[ids], self.chunk_steps[ids], self.chunk_episode[ids]
        mask = self._offsets < num_steps[:, None]
        rows = torch.minimum(first[:, None] + self._offsets, (first + num_steps - 1)[:, None])  # pad: repeat last
        return TensorDict(
            {
                keys.OBS: self._obs[first],
                keys.ACTIONS: self._actions[rows],
                keys.REWARD: self.chunk_reward[ids],
                keys.NEXT_OBS: self._obs[self.chunk_next_row[ids]],
                keys.TERMINAL: self.chunk_terminal[ids],
                keys.DISCOUNT: self.chunk_discount[ids],
                keys.MASK: mask,
                keys.SUCCESS: self._success[episode],
                keys.STRATEGY: self._strategy[episode],
                keys.QUALITY: self._quality[episode],
                **self._image_batch(first, self.chunk_next_row[ids]),
            },
            batch_size=[len(ids)],
            device=self.device,
        )

    def _image_batch(self, first: torch.Tensor, next_row: torch.Tensor) -> dict:
        """The camera frames of the chunks' first and next observations (nothing for a state-only dataset)."""
        if self._images is None:
            return {}
        return {keys.IMAGES: self._images[first], keys.NEXT_IMAGES: self._images[next_row]}

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> TensorDict:
        """A batch of chunks drawn uniformly with replacement (indices drawn on the CPU generator)."""
        ids = torch.randint(self.num_chunks, (batch_size,), generator=generator or self.generator)
        return self.batch(ids)

    def iterate(self, batch_size: int) -> Iterator[TensorDict]:
        """Every chunk exactly once, in dataset order (deterministic; for evaluation metrics)."""
        for begin in range(0, self.num_chunks, batch_size):
            yield self.batch(torch.arange(begin, min(begin + batch_size, self.num_chunks)))

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def stats(self) -> dict[str, float]:
        """Dataset size and success rates overall and per quality / strategy label, for logging."""
        ep = self.episodes
        episode_of_step = torch.repeat_interleave(torch.arange(ep.num_episodes), ep.lengths)
        returns = torch.zeros(ep.num_episodes).index_add_(0, episode_of_step, ep.rewards)
        stats = {
            "episodes": float(ep.num_episodes),
            "steps": float(ep.num_steps),
            "chunks": float(self.num_chunks),
            "success_rate": ep.success.float().mean().item(),
            "mean_return": returns.mean().item(),
        }
        for label in ("quality", "strategy"):
            names = ep.meta.get(f"{label}_names") or []
            values = getattr(ep, label)
            for value in values.unique().tolist():
                name = names[value] if 0 <= value < len(names) else str(value)
                selected = values == value
                stats[f"episodes/{label}_{name}"] = float(selected.sum())
                stats[f"success_rate/{label}_{name}"] = ep.success[selected].float().mean().item()
        return stats
