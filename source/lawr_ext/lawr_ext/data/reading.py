"""How to read a dataset recorded elsewhere (LeRobot v3, Isaac Lab's recorder, OGBench's files as downloaded): the
keys the user names, the task it is trained under, and where rewards come from when the data has none.

Most recorded robot data are demonstrations without rewards. lawr never invents them: the user chooses one of
the conventions offline-RL users apply (``data.reward_from``), and a one-line note says which was used.

* ``success``:     reward 1 on every step whose success flag is set (LeRobot ``next.success``, recorder
  ``success``), 0 elsewhere; nothing is bootstrapped after such a step (the task is done there).
* ``last_frame``:  reward 1 on each episode's last frame, 0 elsewhere, the episode terminated there: every
  episode is taken as a successful demonstration (a recorder demo whose ``success`` attribute is False gets 0 and
  counts as cut off).
* ``column:NAME``: the dataset's column (LeRobot feature, recorder dataset) NAME holds the rewards.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lawr_ext.data.episodes import DatasetError, as_flags, as_float32


@dataclass(frozen=True)
class Reading:
    """The reading options of ``DataConfig`` (``obs_keys``, ``action_key``, ``reward_from``) and the run's task."""

    task: str | None = None
    obs_keys: tuple[str, ...] = ()
    action_key: str | None = None
    reward_from: str | None = None

    @staticmethod
    def of(cfg) -> Reading:
        """The reading options of a TrainConfig."""
        return Reading(cfg.task, tuple(cfg.data.obs_keys), cfg.data.action_key, cfg.data.reward_from)

    def refuse_options(self, source: object, what: str) -> None:
        """A format with its own keys and rewards (``what``) refuses options it would ignore."""
        given = [f"data.{name}" for name in ("obs_keys", "action_key", "reward_from") if getattr(self, name)]
        if given:
            raise DatasetError(source, f"{', '.join(given)} apply to LeRobot datasets and Isaac Lab recorder files; "
                                       f"this is {what}, read by its own keys and rewards: leave them out")


@dataclass
class Rewards:
    """Per step: rewards [N] and the steps nothing is bootstrapped after (None: none inside an episode); per
    episode: terminated and success; ``note`` says where the rewards came from."""

    rewards: torch.Tensor
    no_bootstrap: torch.Tensor | None
    terminated: torch.Tensor
    success: torch.Tensor
    note: str


def resolve_rewards(source: object, reading: Reading, lengths: torch.Tensor, *, rewards, success, done,
                    columns: dict, reward_key: str, success_key: str, done_key: str,
                    episode_success: torch.Tensor | None = None) -> Rewards:
    """The rewards of a dataset by ``reading.reward_from`` (module docstring), refused in one line when the choice
    cannot be made. ``rewards``, ``success``, ``done``: the dataset's own per-step arrays under ``reward_key``,
    ``success_key``, ``done_key`` (None: absent); ``columns``: name -> per-step array, for ``column:NAME``;
    ``episode_success``: bool [E] success the data records per episode (None: not recorded)."""
    num_steps = int(lengths.sum())
    last = torch.cumsum(lengths, 0) - 1
    step_episode = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    success = None if success is None else _per_step(source, success_key, as_flags, success, num_steps)
    done = None if done is None else _per_step(source, done_key, as_flags, done, num_steps)
    choice = reading.reward_from
    no_bootstrap = None
    if choice is None:
        if rewards is None:
            raise DatasetError(source, f"no rewards ('{reward_key}'): choose data.reward_from=success (1 where "
                                       f"'{success_key}' is set), last_frame (1 on each episode's last frame) or "
                                       "column:<name> (docs/data.md)")
        values = _per_step(source, reward_key, as_float32, rewards, num_steps)
        note = f"rewards from '{reward_key}'"
    elif choice.startswith("column:"):
        name = choice[len("column:"):]
        if name not in columns:
            raise DatasetError(source, f"data.reward_from={choice}: no column '{name}' (columns: {sorted(columns)})")
        values = _per_step(source, name, as_float32, columns[name], num_steps)
        note = f"rewards from column '{name}' (data.reward_from={choice})"
    elif choice == "success":
        if success is None:
            raise DatasetError(source, f"data.reward_from=success: no per-step success flags ('{success_key}'); "
                                       "choose last_frame or column:<name>")
        values, no_bootstrap = success.float(), success
        note = f"sparse success reward: 1 where '{success_key}' is set (data.reward_from=success)"
    else:  # last_frame
        ended = torch.ones(len(lengths), dtype=torch.bool) if episode_success is None else episode_success
        values = torch.zeros(num_steps)
        values[last] = ended.float()
        note = "sparse reward 1 on each episode's last frame (data.reward_from=last_frame)"
    inside = torch.ones(num_steps, dtype=torch.bool)
    inside[last] = False
    if done is not None and (done & inside).any():  # a terminal step inside an episode: no bootstrap after it
        no_bootstrap = done if no_bootstrap is None else no_bootstrap | done
    terminated = done[last] if done is not None else torch.zeros(len(lengths), dtype=torch.bool)
    if no_bootstrap is not None:
        terminated = terminated | no_bootstrap[last]
    if choice == "last_frame":
        terminated = terminated | ended
    if choice == "last_frame":  # the convention decides, whatever per-step flags say
        episode_success = ended
    elif episode_success is None and success is not None:
        episode_success = torch.zeros(len(lengths)).index_add_(0, step_episode, success.float()) > 0
    elif episode_success is None:
        episode_success = torch.zeros(len(lengths), dtype=torch.bool)
    return Rewards(values, no_bootstrap, terminated, episode_success, note)


def _per_step(source: object, name: str, convert, values, num_steps: int) -> torch.Tensor:
    """A per-step column as 1-D (a [N, 1] column, as LeRobot stores scalars, is flattened)."""
    values = torch.as_tensor(values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    values = convert(source, name, values)
    if values.shape != (num_steps,):
        raise DatasetError(source, f"'{name}' must hold one value per step ({num_steps}), got shape "
                                   f"{list(values.shape)}")
    return values
