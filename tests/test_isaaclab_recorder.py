"""Isaac Lab recorder files (written here by Isaac Lab's own HDF5DatasetFileHandler, as record_demos.py does: one
array per observation term, actions, no rewards, no next_obs) train with the observation and action keys named;
next observations come from the demo itself, or from next_obs where recorded; what cannot be read is one line."""

import warnings

import pytest
import torch
from conftest import ACTION_DIM, OBS_DIM, TINY, assert_read_refused, assert_refused, run_script
from isaaclab.utils.datasets import EpisodeData, HDF5DatasetFileHandler

from lawr_ext.data.dataset import load_episodes
from lawr_ext.data.episodes import DatasetError
from lawr_ext.data.reading import Reading
from lawr_ext.runners import final_path, read_checkpoint

JOINTS = 30  # obs/joint_pos; obs/object holds the other OBS_DIM - JOINTS numbers


def recorder_file(path, num_demos=12, length=8, next_obs=False, failed=()):
    """Demos as Isaac Lab's recorder writes them; demo i acts near +0.5 (even i) or -0.5; ``failed`` demos have
    the success attribute False. Returns (path, [per demo: obs [T, OBS_DIM], actions [T, A]])."""
    handler = HDF5DatasetFileHandler()
    handler.create(str(path), env_name="Isaac-Recorded-v0")
    demos = []
    for i in range(num_demos):
        states = torch.randn(length + 1, OBS_DIM)
        actions = ((0.5 if i % 2 == 0 else -0.5) + 0.1 * torch.randn(length, ACTION_DIM)).clamp(-1, 1)
        episode = EpisodeData()
        for t in range(length):
            episode.add("obs/joint_pos", states[t, :JOINTS])
            episode.add("obs/object", states[t, JOINTS:])
            episode.add("actions", actions[t])
            if next_obs:
                episode.add("next_obs/joint_pos", states[t + 1, :JOINTS])
                episode.add("next_obs/object", states[t + 1, JOINTS:])
        episode.success = i not in failed
        episode.seed = i
        episode.pre_export()  # as Isaac Lab's RecorderManager does before writing
        handler.write_episode(episode)
        demos.append((states, actions))
    handler.close()
    return path, demos


KEYS = {"obs_keys": ("joint_pos", "object")}


def read(path, **reading):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        episodes = load_episodes(path, reading=Reading(**reading))
    return episodes, [str(w.message) for w in caught if "recorder" in str(w.message)]


def test_train_lawr_trains_on_a_recorder_file_with_named_keys(tmp_path):
    path, _ = recorder_file(tmp_path / "demos.hdf5")
    run = tmp_path / "run"
    status, _, err = run_script("train_lawr.py", "--task", "Bimanual-Chunk", "--dataset", str(path), "--run_dir",
                                str(run), "--device", "cpu", "--no_eval", *TINY, "data.obs_keys=[joint_pos,object]",
                                "data.reward_from=last_frame")
    assert status == 0, err[-3000:]
    for phase in ("flow", "critic", "planner"):
        assert read_checkpoint(final_path(run, phase))["stage"] == phase
    notes = [line for line in err.splitlines() if "Isaac Lab recorder file" in line]
    assert len(notes) == 1 and "['obs/joint_pos', 'obs/object']" in notes[0] and "last_frame" in notes[0]


def test_observations_are_the_named_terms_and_next_obs_comes_from_the_demo(tmp_path):
    path, demos = recorder_file(tmp_path / "demos.hdf5", num_demos=3, length=5, failed=(1,))
    episodes, notes = read(path, **KEYS, reward_from="last_frame")
    assert torch.equal(episodes.obs, torch.cat([states[:-1] for states, _ in demos]))
    assert torch.equal(episodes.actions, torch.cat([actions for _, actions in demos]))
    assert episodes.lengths.tolist() == [5, 5, 5] and episodes.final_obs is None  # last steps: never chunk steps
    # a demo the recorder marks as failed earns nothing on its last frame and is cut off, not terminated
    assert episodes.rewards.reshape(3, 5)[:, -1].tolist() == [1.0, 0.0, 1.0] and episodes.rewards.sum() == 2
    assert episodes.terminated.tolist() == episodes.success.tolist() == [True, False, True]
    assert "next observations the next step of each demo" in notes[0]
    # Recorded next_obs: checked against the next step's obs, and the last one is kept (cut-off demos bootstrap).
    path, demos = recorder_file(tmp_path / "with_next.hdf5", num_demos=2, length=4, next_obs=True)
    episodes, notes = read(path, **KEYS, reward_from="last_frame")
    assert torch.equal(episodes.final_obs, torch.stack([states[-1] for states, _ in demos]))
    assert "from next_obs" in notes[0]


def test_next_obs_that_is_not_the_next_observation_is_refused(tmp_path):
    path, _ = recorder_file(tmp_path / "demos.hdf5", num_demos=2, length=4, next_obs=True)
    import h5py

    with h5py.File(path, "r+") as file:
        file["data/demo_1/next_obs/object"][1] += 1.0
    with pytest.raises(DatasetError, match=r"data/demo_1: 'next_obs' is not the next step's 'obs' \(first at step 1\)"):
        load_episodes(path, reading=Reading(**KEYS, reward_from="last_frame"))


@pytest.mark.parametrize("reading, fragments", [
    (KEYS, ["no rewards ('rewards')", "data.reward_from=success"]),
    ({"reward_from": "last_frame"}, ["data/demo_0", "no observation ['obs/policy']",
                                     "recorded: ['obs/joint_pos', 'obs/object']", "data.obs_keys"]),
    (KEYS | {"action_key": "joint_targets", "reward_from": "last_frame"}, ["no action array 'joint_targets'",
                                                                             "'actions'"]),
    (KEYS | {"reward_from": "success"}, ["no per-step success flags ('success')"]),
])
def test_what_cannot_be_read_is_refused_in_one_line(tmp_path, reading, fragments):
    path, _ = recorder_file(tmp_path / "demos.hdf5", num_demos=2, length=3)
    assert_read_refused(path, Reading(**reading), *fragments)


def test_wrong_dims_are_refused_by_train_lawr_in_one_line(tmp_path):
    path, _ = recorder_file(tmp_path / "demos.hdf5", num_demos=2, length=3)
    assert_refused(run_script("train_lawr.py", "--task", "Bimanual-Chunk", "--dataset", str(path), "--run_dir",
                              str(tmp_path / "run"), "--device", "cpu", "--no_eval", *TINY,
                              "data.obs_keys=[joint_pos]", "data.reward_from=last_frame"),
                   str(path), "'observations' have dim 30, task 'Bimanual-Chunk' expects 45")
    assert not (tmp_path / "run").exists()
