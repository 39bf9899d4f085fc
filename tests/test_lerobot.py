"""LeRobotDataset v3 in and out, through the lerobot package itself: a dataset lerobot writes trains in
scripts/train_lawr.py, collected data converts to LeRobot v3 and reads back with the same numbers, and what cannot
be read (a missing key, a camera as observation, no rewards without a choice, wrong dims) is refused in one line."""

import warnings

import numpy as np
import pytest
import torch
from conftest import (ACTION_DIM, BIMANUAL_LINE_META, OBS_DIM, TINY, assert_read_refused, assert_refused, collect_line,
                      run_script)

from lawr_ext.data.dataset import load_episodes
from lawr_ext.data.reading import Reading
from lawr_ext.runners import final_path, read_checkpoint
from lawr_ext.tasks.bimanual.action_spec import action_spec

LeRobotDataset = pytest.importorskip("lerobot.datasets.lerobot_dataset").LeRobotDataset


def lerobot_dataset(root, num_episodes=24, length=10, obs_dim=OBS_DIM, rewards=False, camera=False, extra=False):
    """A LeRobot v3 dataset written by lerobot: demonstrations (next.success on the last frame of the even
    episodes, which act near +0.5; the odd ones near -0.5), optionally with next.reward / next.done, a camera and
    a second observation vector. Returns (root, {feature: per-frame values written})."""
    scalar = {"shape": (1,), "names": None}
    features = {"observation.state": {"dtype": "float32", "shape": (obs_dim,), "names": None},
                "action": {"dtype": "float32", "shape": (ACTION_DIM,), "names": None},
                "next.success": {"dtype": "bool", **scalar}}
    if rewards:
        features |= {"next.reward": {"dtype": "float32", **scalar}, "next.done": {"dtype": "bool", **scalar}}
    if camera:
        features["observation.images.top"] = {"dtype": "image", "shape": (4, 4, 3), "names": ["h", "w", "c"]}
    if extra:
        features["observation.environment_state"] = {"dtype": "float32", "shape": (3,), "names": None}
    dataset = LeRobotDataset.create("local/demos", fps=50, features=features, root=root, use_videos=False,
                                    video_backend="pyav")
    rng = np.random.default_rng(0)
    written = {key: [] for key in features}
    for episode in range(num_episodes):
        good = episode % 2 == 0
        for t in range(length):
            last = t == length - 1
            frame = {"observation.state": rng.normal(size=obs_dim).astype(np.float32),
                     "action": np.clip((0.5 if good else -0.5) + 0.1 * rng.normal(size=ACTION_DIM), -1, 1).astype(np.float32),
                     "next.success": np.array([last and good]),
                     "next.reward": np.array([float(last and good)], np.float32), "next.done": np.array([last]),
                     "observation.images.top": np.zeros((4, 4, 3), np.uint8),
                     "observation.environment_state": rng.normal(size=3).astype(np.float32)}
            frame = {key: value for key, value in frame.items() if key in features}
            for key, value in frame.items():
                written[key].append(value)
            dataset.add_frame(frame | {"task": "move the arms"})
        dataset.save_episode()
    dataset.finalize()
    return root, {key: np.stack(values) for key, values in written.items()}


def read(path, **reading):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        episodes = load_episodes(path, reading=Reading(**reading))
    return episodes, [str(w.message) for w in caught if "LeRobot" in str(w.message)]


def test_train_lawr_trains_on_a_lerobot_dataset_written_by_lerobot(tmp_path):
    dataset, _ = lerobot_dataset(tmp_path / "demos", camera=True)
    run = tmp_path / "run"
    status, _, err = run_script("train_lawr.py", "--task", "Bimanual-Chunk", "--dataset", str(dataset), "--run_dir",
                                str(run), "--device", "cpu", "--no_eval", *TINY, "data.reward_from=success")
    assert status == 0, err[-3000:]
    for phase in ("flow", "critic", "planner"):
        assert read_checkpoint(final_path(run, phase))["stage"] == phase
    notes = [line for line in err.splitlines() if "LeRobot v3 dataset" in line]
    assert len(notes) == 1 and "sparse success reward" in notes[0]
    assert "cameras ['observation.images.top']: image observations are not supported yet" in notes[0]


def test_features_episodes_and_rewards_are_read_as_written(tmp_path):
    path, written = lerobot_dataset(tmp_path / "demos", num_episodes=3, length=4, rewards=True, extra=True)
    episodes, notes = read(path, obs_keys=("observation.state", "observation.environment_state"))
    assert episodes.lengths.tolist() == [4, 4, 4]
    assert torch.equal(episodes.obs, torch.from_numpy(np.concatenate(
        [written["observation.state"], written["observation.environment_state"]], axis=1)))
    assert torch.equal(episodes.actions, torch.from_numpy(written["action"]))
    assert episodes.rewards.tolist() == written["next.reward"][:, 0].tolist()
    assert episodes.terminated.tolist() == [True] * 3 and episodes.success.tolist() == [True, False, True]
    assert episodes.no_bootstrap is None  # next.done only on last frames: terminated says it all
    assert len(notes) == 1 and "rewards from 'next.reward'" in notes[0]
    # The episode's last frame as the sparse reward: every demonstration ends in success there.
    last_frame, notes = read(path, reward_from="last_frame")
    assert last_frame.rewards.reshape(3, 4)[:, -1].tolist() == [1.0] * 3 and last_frame.rewards.sum() == 3
    assert last_frame.success.all() and last_frame.terminated.all() and "last_frame" in notes[0]
    column, notes = read(path, reward_from="column:next.reward")
    assert torch.equal(column.rewards, episodes.rewards) and "column 'next.reward'" in notes[0]


@pytest.mark.parametrize("reading, fragments", [
    ({}, ["no rewards ('next.reward')", "data.reward_from=success"]),
    ({"reward_from": "column:my_reward"}, ["no feature 'my_reward'"]),
    ({"obs_keys": ("observation.joints",), "reward_from": "success"}, ["no feature 'observation.joints'",
                                                                        "'observation.state'"]),
    ({"obs_keys": ("observation.images.top",), "reward_from": "success"}, ["is a camera",
                                                                           "image observations are not supported yet"]),
    ({"action_key": "action.joints", "reward_from": "success"}, ["no feature 'action.joints'"]),
])
def test_what_cannot_be_read_is_refused_in_one_line(tmp_path, reading, fragments):
    path, _ = lerobot_dataset(tmp_path / "demos", num_episodes=2, length=3, camera=True)
    assert_read_refused(path, Reading(**reading), *fragments)


def test_a_reward_choice_that_cannot_be_made_and_wrong_dims_are_refused_by_train_lawr(tmp_path):
    path, _ = lerobot_dataset(tmp_path / "demos", num_episodes=2, length=3, obs_dim=5)
    without_success = tmp_path / "no_success"
    features = {"observation.state": {"dtype": "float32", "shape": (OBS_DIM,), "names": None},
                "action": {"dtype": "float32", "shape": (ACTION_DIM,), "names": None}}
    dataset = LeRobotDataset.create("local/x", fps=50, features=features, root=without_success, use_videos=False,
                                    video_backend="pyav")
    for _ in range(3):
        dataset.add_frame({"observation.state": np.zeros(OBS_DIM, np.float32),
                           "action": np.zeros(ACTION_DIM, np.float32), "task": "t"})
    dataset.save_episode()
    dataset.finalize()
    for dataset_path, override, fragments in (
            (path, "data.reward_from=success", ["'observations' have dim 5, task 'Bimanual-Chunk' expects 45"]),
            (without_success, "data.reward_from=success", ["no per-step success flags ('next.success')"])):
        assert_refused(run_script("train_lawr.py", "--task", "Bimanual-Chunk", "--dataset", str(dataset_path),
                                  "--run_dir", str(tmp_path / "run"), "--device", "cpu", "--no_eval", *TINY, override),
                       str(dataset_path), *fragments)
        assert not (tmp_path / "run").exists()


def test_collected_data_exports_to_lerobot_v3_and_reads_back_identically(tmp_path):
    shards = collect_line(tmp_path / "shards", num_envs=3, num_episodes=6, meta=BIMANUAL_LINE_META)
    out = tmp_path / "lerobot"
    status, stdout, err = run_script("convert_dataset.py", str(shards), "--to", "lerobot", "--out", str(out))
    assert status == 0, err[-3000:]
    assert "LeRobot v3, 6 episodes" in stdout and not err.strip()
    collected = load_episodes(shards)
    back, _ = read(out)
    assert back.fingerprint() == collected.fingerprint()  # every step, flag, label, length
    assert torch.equal(back.obs, collected.obs) and torch.equal(back.rewards, collected.rewards)
    # ... and through lerobot itself: the same numbers, the task's rate and joint names, finalized on disk
    dataset = LeRobotDataset("local/lerobot", root=out, video_backend="pyav")
    assert dataset.fps == 50 and dataset.num_episodes == 6 and dataset.num_frames == collected.num_steps
    assert dataset.features["action"]["names"] == action_spec()["joint_names"]
    columns = dataset.hf_dataset.with_format("numpy")[:]
    assert np.array_equal(columns["observation.state"], collected.obs.numpy())
    assert np.array_equal(columns["action"], collected.actions.numpy())
    assert np.array_equal(columns["next.reward"].reshape(-1), collected.rewards.numpy())
    step_episode = torch.repeat_interleave(torch.arange(6), collected.lengths)
    assert columns["quality"].reshape(-1).tolist() == collected.quality[step_episode].tolist()
    assert columns["strategy"].reshape(-1).tolist() == collected.strategy[step_episode].tolist()
    assert (out / "meta" / "stats.json").is_file() and (out / "meta" / "tasks.parquet").is_file()
    assert not (tmp_path / "lerobot.partial").exists()
    # An existing directory is never written into.
    assert_refused(run_script("convert_dataset.py", str(shards), "--to", "lerobot", "--out", str(out)),
                   str(out), "already exists")
