"""Datasets on disk and the chunk loader: round trips, chunk maths at episode ends, sampling, bad files."""

import h5py
import numpy as np
import pytest
import torch

from lawr_ext.data import keys
from lawr_ext.data.dataset import ChunkDataset, load_episodes
from lawr_ext.data.episodes import DatasetError
from lawr_ext.data.hdf5 import read_hdf5, shard_path
from lawr_ext.data.hdf5_writer import EpisodeRecord, write_episodes
from lawr_ext.data.plain import write_plain

GAMMA = 0.5  # exact in binary: hand-computed sums compare exactly
META = {"task": "Toy", "obs_dim": 2, "action_dim": 1, "control_hz": 50.0}


def _record(length, terminated, strategy=0, quality=0, success=False, first_value=0.0):
    """Episode whose obs row t is (value, t), action t is 0.1*t, reward t is t+1 (so sums are easy by hand)."""
    t = torch.arange(length, dtype=torch.float32)
    end = torch.zeros(length, dtype=torch.bool)
    end[-1] = True
    return EpisodeRecord(
        obs=torch.stack([torch.full((length,), first_value), t], dim=1),
        actions=(0.1 * t)[:, None],
        rewards=t + 1,
        terminated=end if terminated else torch.zeros_like(end),
        truncated=torch.zeros_like(end) if terminated else end,
        success=end & success,
        strategy=strategy,
        quality=quality,
        seed=7,
    )


def _toy_records():
    """(length, terminated, strategy, quality, success, first obs value) of the three toy episodes."""
    return [_record(3, True, 0, 0, True, 10.0), _record(4, False, 1, 1, False, 20.0),
            _record(5, True, 1, 2, False, 30.0)]


@pytest.fixture
def toy_dir(tmp_path):
    """Two shards: episode 0 terminates after 3 steps (success), 1 times out after 4, 2 terminates after 5."""
    directory = tmp_path / "toy"
    first, second, third = _toy_records()
    write_episodes(shard_path(directory, 0), [first, second], 0, META)
    write_episodes(shard_path(directory, 1), [third], 2, META)
    return directory


def test_hdf5_round_trip_keeps_steps_flags_labels_and_metadata(toy_dir):
    episodes = read_hdf5(toy_dir)
    assert episodes.lengths.tolist() == [3, 4, 5]
    assert episodes.terminated.tolist() == [True, False, True]
    assert episodes.success.tolist() == [True, False, False]
    assert episodes.strategy.tolist() == [0, 1, 1] and episodes.quality.tolist() == [0, 1, 2]
    assert episodes.meta == META
    expected = _record(4, False, first_value=20.0)
    assert torch.equal(episodes.obs[3:7], expected.obs) and torch.equal(episodes.actions[3:7], expected.actions)
    assert torch.equal(episodes.rewards[3:7], expected.rewards)
    with h5py.File(shard_path(toy_dir, 0)) as file:  # Isaac Lab / robomimic layout
        demo = file["data/demo_1"]
        assert demo.attrs["num_samples"] == 4 and demo.attrs["quality"] == 1 and file["data"].attrs["total"] == 7
        assert demo["dones"][()].tolist() == [False] * 4 and demo["truncated"][()].tolist() == [False] * 3 + [True]
        assert demo["obs/policy"].shape == (4, 2)


def test_chunk_maths_at_episode_ends_matches_hand_computation(toy_dir):
    data = ChunkDataset.from_path(toy_dir, horizon=3, gamma=GAMMA)
    # episode 0 (T=3, terminated): starts 0,1,2; episode 1 (T=4, truncated): starts 0,1,2 (its last step has
    # no recorded next obs); episode 2 (T=5, terminated): starts 0..4  -> 11 chunks
    assert len(data) == 11
    batch = data.batch(torch.arange(11))
    k = [3, 2, 1, 3, 2, 1, 3, 3, 3, 2, 1]
    assert batch[keys.MASK].sum(1).tolist() == k
    assert torch.equal(batch[keys.DISCOUNT], torch.tensor([GAMMA**x for x in k]))
    # rewards are t+1: episode 0 start 1 -> 2 + 0.5*3 = 3.5; episode 1 start 2 (k=1 of a truncated episode) -> 3
    # (its final reward 4 is never counted); episode 2 start 2 -> 3 + 0.5*4 + 0.25*5 = 6.25, start 3 -> 4 + 0.5*5
    expected_reward = [1 + 1 + 0.75, 3.5, 3, 2.75, 3.5, 3, 2.75, 4.5, 6.25, 6.5, 5]
    assert torch.equal(batch[keys.REWARD], torch.tensor(expected_reward))
    assert batch[keys.TERMINAL].tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1]
    # next_obs: (first_value, t+k); for terminal chunks the episode's last obs as a placeholder
    expected_next = [(10, 2), (10, 2), (10, 2), (20, 3), (20, 3), (20, 3), (30, 3), (30, 4), (30, 4), (30, 4), (30, 4)]
    assert batch[keys.NEXT_OBS].tolist() == [list(map(float, x)) for x in expected_next]
    assert batch[keys.OBS][:, 1].tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 4]
    assert data.chunk_start_step.tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 3, 4]  # the step each chunk starts at
    # padding repeats the last real action: episode 0 start 1 -> actions 0.1, 0.2, 0.2
    assert torch.allclose(batch[keys.ACTIONS][1, :, 0], torch.tensor([0.1, 0.2, 0.2]))
    # episode 1 start 2 (truncated, k=1): a_3 never appears, padding repeats a_2
    assert torch.allclose(batch[keys.ACTIONS][5, :, 0], torch.tensor([0.2, 0.2, 0.2]))
    assert batch[keys.SUCCESS].tolist() == [1, 1, 1] + [0] * 8
    assert batch[keys.STRATEGY].tolist() == [0] * 3 + [1] * 8
    assert batch[keys.QUALITY].tolist() == [0] * 3 + [1] * 3 + [2] * 5
    dtypes = {keys.OBS: torch.float32, keys.ACTIONS: torch.float32, keys.MASK: torch.bool, keys.STRATEGY: torch.int64}
    assert all(batch[key].dtype == dtype for key, dtype in dtypes.items())


def test_sampling_is_deterministic_and_resumes_from_saved_state(toy_dir):
    data = ChunkDataset.from_path(toy_dir, horizon=3, gamma=GAMMA, seed=3)
    data.sample(4)
    state = data.state_dict()
    continued = [data.sample(5)[keys.OBS] for _ in range(3)]
    restored = ChunkDataset.from_path(toy_dir, horizon=3, gamma=GAMMA, seed=99)
    restored.load_state_dict(state)
    assert all(torch.equal(a, restored.sample(5)[keys.OBS]) for a in continued)
    own = torch.Generator().manual_seed(5)
    first = data.sample(6, generator=own)[keys.OBS]
    assert torch.equal(first, data.sample(6, generator=torch.Generator().manual_seed(5))[keys.OBS])
    # every chunk gets drawn: the sampler covers the dataset
    drawn = torch.cat([data.sample(64)[keys.OBS] for _ in range(4)])
    assert len(torch.unique(drawn, dim=0)) == 11


def test_iterate_visits_every_chunk_once_in_order(toy_dir):
    data = ChunkDataset.from_path(toy_dir, horizon=3, gamma=GAMMA)
    batches = list(data.iterate(batch_size=4))
    assert [len(b) for b in batches] == [4, 4, 3]
    assert torch.equal(torch.cat([b[keys.REWARD] for b in batches]), data.batch(torch.arange(11))[keys.REWARD])


def test_stats_and_normalizer_observations(toy_dir):
    data = ChunkDataset.from_path(toy_dir, horizon=3, gamma=GAMMA)
    stats = data.stats()
    assert stats["episodes"] == 3 and stats["steps"] == 12 and stats["chunks"] == 11
    assert stats["success_rate"] == pytest.approx(1 / 3)
    assert stats["success_rate/quality_0"] == 1.0 and stats["success_rate/strategy_1"] == 0.0
    assert stats["episodes/strategy_1"] == 2
    assert stats["mean_return"] == pytest.approx((6 + 10 + 15) / 3)
    assert data.observations.shape == (12, 2)


def _plain_arrays():
    """The same three episodes as ``toy_dir`` in the flat plain format."""
    records = _toy_records()
    return {
        "observations": torch.cat([r.obs for r in records]).numpy(),
        "actions": torch.cat([r.actions for r in records]).numpy(),
        "rewards": torch.cat([r.rewards for r in records]).numpy(),
        "terminals": torch.cat([r.terminated for r in records]).numpy(),
        "timeouts": torch.cat([r.truncated for r in records]).numpy().astype(np.int64),  # 0/1 ints are accepted
        "success": torch.cat([r.success for r in records]).numpy(),
        "strategy": np.repeat([0, 1, 1], [3, 4, 5]),
        "quality": np.repeat([0, 1, 2], [3, 4, 5]),
    }


@pytest.mark.parametrize("suffix", [".npz", ".hdf5"])
def test_plain_format_gives_the_same_batches(toy_dir, tmp_path, suffix):
    path = tmp_path / f"plain{suffix}"
    if suffix == ".npz":
        write_plain(path, **_plain_arrays())
    else:
        with h5py.File(path, "w") as file:
            for key, value in _plain_arrays().items():
                file[key] = value
    plain = ChunkDataset.from_path(path, horizon=3, gamma=GAMMA).batch(torch.arange(11))
    reference = ChunkDataset.from_path(toy_dir, horizon=3, gamma=GAMMA).batch(torch.arange(11))
    assert (plain == reference).all()


def test_plain_format_last_episode_without_flag_counts_as_cut_off(tmp_path):
    arrays = _plain_arrays()
    for key in arrays:
        arrays[key] = arrays[key][:-1]  # drop the final (terminal) step of episode 2
    write_plain(tmp_path / "cut.npz", **arrays)
    episodes = load_episodes(tmp_path / "cut.npz")
    assert episodes.lengths.tolist() == [3, 4, 4] and episodes.terminated.tolist() == [True, False, False]


def _write_plain_with(path, **changes):
    arrays = _plain_arrays()
    arrays.update(changes)
    write_plain(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


BAD_PLAIN = {
    "missing key": ({"rewards": None}, "missing required array"),
    "integer observations": ({"observations": np.zeros((12, 2), dtype=np.int64)}, "must be a float array"),
    "NaN reward": ({"rewards": np.where(np.arange(12) == 5, np.nan, 1).astype(np.float32)},
                   "NaN or inf (first at step 5)"),
    "inf observation": ({"observations": np.full((12, 2), np.inf, dtype=np.float32)}, "NaN or inf"),
    "short actions": ({"actions": np.zeros((11, 1), dtype=np.float32)}, "has 11 rows"),
    "flat observations": ({"observations": np.zeros(12, dtype=np.float32)}, "2 dims"),
    "half terminals": ({"terminals": np.full(12, 0.5, dtype=np.float32)}, "'terminals' must hold 0/1 flags"),
    "NaN masks": ({"masks": np.where(np.arange(12) == 4, np.nan, 1).astype(np.float32)},
                  "'masks' must hold 0/1 flags (bool, integer or float), found nan at row 4"),
    "no timeouts nor masks": ({"timeouts": None}, "'timeouts' (D4RL) or 'masks' (OGBench)"),
    "unnormalized actions": ({"actions": np.full((12, 1), 3.0, dtype=np.float32)}, "normalized to [-1, 1]"),
    "empty": ({k: v[:0] for k, v in _plain_arrays().items()}, "empty"),
}


@pytest.mark.parametrize("case", BAD_PLAIN)
def test_bad_plain_file_gives_one_line_error_naming_file(tmp_path, case):
    changes, problem = BAD_PLAIN[case]
    path = _write_plain_with(tmp_path / "bad.npz", **changes)
    with pytest.raises(DatasetError) as error:
        ChunkDataset.from_path(path, horizon=3, gamma=GAMMA)
    assert str(path) in str(error.value) and problem in str(error.value) and "\n" not in str(error.value)


def test_truncated_and_corrupt_files_give_one_line_errors_and_stay_untouched(toy_dir, tmp_path):
    shard = shard_path(toy_dir, 1)
    broken = tmp_path / "broken.hdf5"
    broken.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # what a kill mid-write leaves
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    unknown = tmp_path / "data.csv"
    unknown.write_text("1,2,3\n")
    for path in (broken, garbage, tmp_path / "missing.hdf5", unknown):
        before = path.read_bytes() if path.exists() else None
        with pytest.raises(DatasetError) as error:
            load_episodes(path)
        assert str(path) in str(error.value) and "\n" not in str(error.value)
        assert (path.read_bytes() if path.exists() else None) == before


def test_bad_hdf5_demo_names_the_group(toy_dir):
    with h5py.File(shard_path(toy_dir, 1), "a") as file:
        del file["data/demo_2/rewards"]
    with pytest.raises(DatasetError, match=r"shard_000001\.hdf5:data/demo_2: missing 'rewards'"):
        load_episodes(toy_dir)


def test_done_flag_inside_an_episode_is_rejected(toy_dir):
    with h5py.File(shard_path(toy_dir, 1), "a") as file:
        file["data/demo_2/dones"][1] = True
    with pytest.raises(DatasetError, match="done/truncated flag before its last step"):
        load_episodes(toy_dir)


def test_empty_directory_and_config_mismatches(toy_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty"):
        load_episodes(tmp_path / "empty")
    with pytest.raises(DatasetError, match="'actions' have dim 1, the config expects 14"):
        ChunkDataset.from_path(toy_dir, horizon=3, gamma=GAMMA, action_dim=14)
    write_episodes(shard_path(tmp_path / "h50", 0), [_record(3, True)], 0, {**META, "chunk_horizon": 50})
    with pytest.raises(DatasetError, match="collected for chunk horizon 50 but the config asks for H=3"):
        ChunkDataset.from_path(tmp_path / "h50", horizon=3, gamma=GAMMA)
    with pytest.raises(ValueError, match="gamma"):
        ChunkDataset.from_path(toy_dir, horizon=3, gamma=1.5)


def test_mixed_collections_in_one_directory_are_rejected(toy_dir):
    write_episodes(shard_path(toy_dir, 2), [_record(3, True)], 3, {**META, "task": "Other"})
    with pytest.raises(DatasetError, match="metadata differs"):
        load_episodes(toy_dir)


def test_a_failed_write_leaves_the_existing_shard_and_no_temp_files(toy_dir):
    shard = shard_path(toy_dir, 0)
    before = shard.read_bytes()
    broken = _record(3, True)
    broken.rewards = "not a tensor"
    with pytest.raises(AttributeError):
        write_episodes(shard, [_record(3, True), broken], 0, META)
    assert shard.read_bytes() == before
    assert sorted(p.name for p in toy_dir.iterdir()) == ["shard_000000.hdf5", "shard_000001.hdf5"]


# ---------------------------------------------------------------- shipped layouts: OGBench .npz, D4RL HDF5

def _ogbench_arrays():
    """OGBench's layout, float32 flags: trajectory A (6 steps) reaches the goal at steps 2-3 (masks 0, reward 0)
    and the collector goes on; trajectory B (3 steps) never does. obs row = (trajectory, t); next_observations
    also give each trajectory's final state (t = 6 and 3), which no later row holds."""
    obs = np.array([[0, t] for t in range(6)] + [[1, t] for t in range(3)], np.float32)
    next_obs = np.array([[0, t] for t in range(1, 7)] + [[1, t] for t in range(1, 4)], np.float32)
    return {"observations": obs, "next_observations": next_obs,
            "actions": np.linspace(-1, 1, 9 * 2, dtype=np.float32).reshape(9, 2),
            "rewards": np.array([-1, -1, 0, 0, -1, -1, -1, -1, -1], np.float32),
            "masks": np.array([1, 1, 0, 0, 1, 1, 1, 1, 1], np.float32),
            "terminals": np.array([0, 0, 0, 0, 0, 1, 0, 0, 1], np.float32),
            "qpos": np.zeros((9, 3), np.float32), "qvel": np.zeros((9, 3), np.float32)}


def test_ogbench_layout_loads_as_shipped_and_a_mid_chunk_mask_ends_the_td_target(tmp_path):
    """The rule of data/dataset.py on a dataset where the right targets are known by hand (H = 3, gamma = 0.5,
    V(s') = 10 everywhere): a chunk stops at the first masks == 0 step (its reward counted, no bootstrap); chunks
    reaching a trajectory end bootstrap from the recorded next_observations with gamma^k."""
    from lawr_ext.algorithms.critic import td_target

    path = tmp_path / "cube-single-play-singletask-v0.npz"
    np.savez(path, **_ogbench_arrays())
    data = ChunkDataset.from_path(path, horizon=3, gamma=GAMMA)
    episodes = data.episodes
    assert episodes.lengths.tolist() == [6, 3] and episodes.terminated.tolist() == [False, False]
    assert episodes.success.tolist() == [True, False]  # masks == 0 somewhere: OGBench's singletask success
    assert data.num_chunks == 9  # every step is usable: the final states are recorded

    batch = data.batch(torch.arange(9))
    target = td_target(batch, torch.full((9,), 10.0))
    #            A: t=0     t=1   t=2  t=3  t=4               t=5          B: t=0              t=1          t=2
    expected = [-1.5, -1.0, 0.0, 0.0, -1.5 + 0.25 * 10, -1 + 0.5 * 10, -1.75 + 0.125 * 10, -1.5 + 0.25 * 10,
                -1 + 0.5 * 10]
    assert target.tolist() == expected
    assert batch[keys.TERMINAL].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert batch[keys.MASK].sum(1).tolist() == [3, 2, 1, 1, 2, 1, 3, 2, 1]
    assert batch[keys.NEXT_OBS][4:6].tolist() == [[0, 6], [0, 6]]  # A's final state, from next_observations
    assert batch[keys.NEXT_OBS][6:].tolist() == [[1, 3]] * 3


def test_a_mask_only_ends_the_bootstrap_not_the_trajectory(tmp_path):
    """Chunks starting after the success see the rest of the trajectory (they are not cut off from it), and a
    file whose flags are bool or 0/1 integers gives the same batches as float32 flags."""
    arrays = _ogbench_arrays()
    np.savez(tmp_path / "float.npz", **arrays)
    np.savez(tmp_path / "int.npz", **arrays | {k: arrays[k].astype(np.int8) for k in ("masks", "terminals")})
    float_batch, int_batch = (ChunkDataset.from_path(tmp_path / f"{name}.npz", horizon=3, gamma=GAMMA)
                              .batch(torch.arange(9)) for name in ("float", "int"))
    for key in float_batch.keys():
        assert torch.equal(float_batch[key], int_batch[key]), key
    assert float_batch[keys.OBS][4].tolist() == [0, 4] and float_batch[keys.SUCCESS][4] == 1


def _d4rl_hdf5(path, flag_dtype=np.float32, **changes):
    """D4RL's HDF5 layout: episode 0 terminates after 3 steps, episode 1 times out after 4; an infos/ group."""
    obs = np.array([[0, t] for t in range(3)] + [[1, t] for t in range(4)], np.float32)
    next_obs = np.concatenate([obs[1:], [[1, 4]]]).astype(np.float32)
    next_obs[2] = [0, 3]  # after the terminal state; never bootstrapped
    arrays = {"observations": obs, "next_observations": next_obs, "actions": np.zeros((7, 1), np.float32),
              "rewards": np.arange(7, dtype=np.float32),
              "terminals": np.array([0, 0, 1, 0, 0, 0, 0], flag_dtype),
              "timeouts": np.array([0, 0, 0, 0, 0, 0, 1], flag_dtype)} | changes
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            file[key] = value
        file["infos/qpos"] = np.zeros((7, 2), np.float32)
    return path


def test_d4rl_hdf5_layout_loads_without_conversion(tmp_path):
    data = ChunkDataset.from_path(_d4rl_hdf5(tmp_path / "hopper-medium-v2.hdf5"), horizon=2, gamma=GAMMA)
    assert data.episodes.lengths.tolist() == [3, 4] and data.episodes.terminated.tolist() == [True, False]
    batch = data.batch(torch.arange(data.num_chunks))
    assert data.num_chunks == 7  # the timed-out episode's last step bootstraps from its next_observations
    assert batch[keys.TERMINAL].tolist() == [0, 1, 1, 0, 0, 0, 0]
    assert batch[keys.NEXT_OBS][-2:].tolist() == [[1, 4], [1, 4]]


def test_a_reset_without_a_flag_is_found_from_next_observations(tmp_path):
    """A D4RL file whose flags miss a reset: next_observations[t] != observations[t+1] ends the episode there."""
    path = _d4rl_hdf5(tmp_path / "d.hdf5", timeouts=np.zeros(7, np.float32))
    episodes = load_episodes(path)
    assert episodes.lengths.tolist() == [3, 4] and episodes.final_obs[1].tolist() == [1, 4]


@pytest.mark.parametrize("bad", [0.5, np.nan])
@pytest.mark.parametrize("layout", ["ogbench_npz", "d4rl_hdf5"])
def test_a_flag_that_is_not_0_or_1_fails_with_one_line_naming_file_and_key(tmp_path, layout, bad):
    if layout == "ogbench_npz":
        path, key = tmp_path / "og.npz", "masks"
        arrays = _ogbench_arrays()
        arrays[key][3] = bad
        np.savez(path, **arrays)
    else:
        key = "timeouts"
        path = _d4rl_hdf5(tmp_path / "d4rl.hdf5", timeouts=np.array([0, 0, 0, bad, 0, 0, 1], np.float32))
    with pytest.raises(DatasetError) as error:
        load_episodes(path)
    message = str(error.value)
    assert message.startswith(str(path)) and f"'{key}'" in message and "at row 3" in message and "\n" not in message


def test_ogbench_file_as_downloaded_is_named_as_such(tmp_path):
    """OGBench's raw download has no rewards (ogbench relabels them at load time): say so, in one line."""
    arrays = {k: v for k, v in _ogbench_arrays().items() if k not in ("rewards", "masks", "next_observations")}
    np.savez(tmp_path / "raw.npz", **arrays)
    with pytest.raises(DatasetError, match="OGBench file as downloaded"):
        load_episodes(tmp_path / "raw.npz")


def test_keep_labelled_keeps_the_episodes_with_those_labels_and_their_bootstrap_state(toy_dir):
    """data.keep_qualities / keep_strategies: episodes 1 and 2 follow strategy 1 (qualities 1 and 2)."""
    episodes = read_hdf5(toy_dir)
    episodes.final_obs = torch.tensor([[1.0, 3.0], [2.0, 4.0], [3.0, 5.0]])
    strategy_1 = episodes.keep_labelled(toy_dir, strategies=(1,))
    assert strategy_1.lengths.tolist() == [4, 5] and strategy_1.quality.tolist() == [1, 2]
    assert torch.equal(strategy_1.obs[:, 0], torch.tensor([20.0] * 4 + [30.0] * 5))  # their steps, in order
    assert torch.equal(strategy_1.final_obs, episodes.final_obs[1:])  # a cut-off episode still bootstraps
    only = episodes.keep_labelled(toy_dir, qualities=(2, 0), strategies=(1,))
    assert only.lengths.tolist() == [5] and only.rewards.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert episodes.keep_labelled(toy_dir) is episodes  # nothing asked: every episode
    with pytest.raises(DatasetError, match=r"toy: no episode has quality in \[0\] and strategy in \[1\]"):
        episodes.keep_labelled(toy_dir, qualities=(0,), strategies=(1,))


def test_keep_labels_are_checked_and_leave_earlier_config_hashes_alone():
    from lawr_ext.algorithms.registry import hashed_config
    from lawr_ext.configs.data import DataConfig
    from lawr_ext.configs.train import TrainConfig

    with pytest.raises(ValueError, match="DataConfig.keep_qualities: labels are >= 0"):
        DataConfig(keep_qualities=(-1,))
    assert "keep_qualities" not in hashed_config(TrainConfig(), "flow")["data"]  # all episodes: hashed as before
    filtered = TrainConfig(data=DataConfig(keep_strategies=(0,)))
    assert hashed_config(filtered, "flow")["data"]["keep_strategies"] == (0,)
