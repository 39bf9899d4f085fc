"""Image datasets: the collector records the camera frames with the episodes (compressed uint8 HDF5 chunks), the
reader gives batches the frames of each chunk's first and next observation; a state-only dataset is unchanged."""

import h5py
import pytest
import torch
from conftest import META, LineEnv, LineExpert, collect_line

from lawr_ext.data import keys
from lawr_ext.data.collect import CollectConfig, collect
from lawr_ext.data.dataset import ChunkDataset, load_episodes
from lawr_ext.data.episodes import DatasetError
from lawr_ext.data.hdf5 import list_shards

CAMERAS, HEIGHT, WIDTH = 2, 6, 5
IMAGE_META = META | {"cameras": ["top", "left_wrist"], "image_size": [HEIGHT, WIDTH]}


class CameraLineEnv(LineEnv):
    """The line env with two "cameras" whose frames show the step count (camera 0) and the position (camera 1), so
    a frame can be matched to the observation it was seen with."""

    camera_names = ("top", "left_wrist")

    def _obs(self):
        obs = super()._obs()
        frames = torch.zeros(self.num_envs, CAMERAS, HEIGHT, WIDTH, 3, dtype=torch.uint8)
        frames[:, 0] = self.episode_length.clamp(max=255).to(torch.uint8)[:, None, None, None]
        frames[:, 1] = (self.x * 100).clamp(0, 255).to(torch.uint8)[:, None, None, None]
        return obs | {"images": frames}


def collect_camera_line(out, num_envs=4, num_episodes=10):
    env = CameraLineEnv(num_envs)
    return collect(env, LineExpert(env), out, CollectConfig(num_episodes=num_episodes, progress=False), IMAGE_META,
                   num_strategies=2, num_qualities=3)


def expected_frames(obs: torch.Tensor) -> torch.Tensor:
    """The frames ``CameraLineEnv`` shows with the observations ``obs`` [N, 2]."""
    frames = torch.zeros(len(obs), CAMERAS, HEIGHT, WIDTH, 3, dtype=torch.uint8)
    frames[:, 0] = obs[:, 1].clamp(max=255).to(torch.uint8)[:, None, None, None]
    frames[:, 1] = (obs[:, 0] * 100).clamp(0, 255).to(torch.uint8)[:, None, None, None]
    return frames


def test_collected_frames_are_compressed_uint8_one_chunk_per_frame_and_read_back_with_their_steps(tmp_path):
    out = collect_camera_line(tmp_path / "d")
    with h5py.File(list_shards(out)[0]) as file:
        frames = file["data/demo_0/obs/images"]
        assert frames.dtype == "uint8" and frames.shape[1:] == (CAMERAS, HEIGHT, WIDTH, 3)
        assert frames.compression == "gzip" and frames.chunks == (1, CAMERAS, HEIGHT, WIDTH, 3)
        assert len(frames) == file["data/demo_0"].attrs["num_samples"]
    episodes = load_episodes(out)
    assert episodes.meta["cameras"] == ["top", "left_wrist"] and episodes.meta["image_size"] == [HEIGHT, WIDTH]
    assert episodes.images.shape == (episodes.num_steps, CAMERAS, HEIGHT, WIDTH, 3)
    assert torch.equal(episodes.images, expected_frames(episodes.obs))
    # the frames are part of the content: the same steps with other frames are another dataset
    other = load_episodes(out)
    other.images[0, 0, 0, 0, 0] += 1
    assert other.fingerprint() != episodes.fingerprint()
    kept = episodes.keep_labelled("d", qualities=(0,))
    assert torch.equal(kept.images, expected_frames(kept.obs))


def test_batches_hold_the_frames_of_each_chunks_first_and_next_observation(tmp_path):
    dataset = ChunkDataset(load_episodes(collect_camera_line(tmp_path / "d")), horizon=3, gamma=0.9)
    batch = dataset.batch(torch.arange(dataset.num_chunks))
    assert batch[keys.IMAGES].dtype == torch.uint8
    assert batch[keys.IMAGES].shape == (dataset.num_chunks, CAMERAS, HEIGHT, WIDTH, 3)
    assert torch.equal(batch[keys.IMAGES], expected_frames(batch[keys.OBS]))
    assert torch.equal(batch[keys.NEXT_IMAGES], expected_frames(batch[keys.NEXT_OBS]))
    assert keys.IMAGES in dataset.sample(4).keys()


def test_a_state_only_dataset_has_no_frames_and_its_batches_no_image_keys(tmp_path):
    dataset = ChunkDataset.from_path(collect_line(tmp_path / "d"), horizon=3, gamma=0.9)
    assert dataset.episodes.images is None
    assert set(dataset.sample(4).keys()) == {keys.OBS, keys.ACTIONS, keys.REWARD, keys.NEXT_OBS, keys.TERMINAL,
                                             keys.DISCOUNT, keys.MASK, keys.SUCCESS, keys.STRATEGY, keys.QUALITY}
    with h5py.File(list_shards(tmp_path / "d")[0]) as file:
        assert set(file["data/demo_0/obs"]) == {"policy"}


def test_shards_with_and_without_frames_are_refused_in_one_line(tmp_path):
    out = collect_camera_line(tmp_path / "d")
    with h5py.File(list_shards(out)[0], "a") as file:
        del file["data/demo_1/obs/images"]
    with pytest.raises(DatasetError, match=r"demo_1: some episodes have camera frames \(obs/images\) and some do not"):
        load_episodes(out)


def test_converting_frames_to_lerobot_is_refused_rather_than_dropping_them(tmp_path):
    from lawr_ext.data.lerobot import write_lerobot

    episodes = load_episodes(collect_camera_line(tmp_path / "d"))
    with pytest.raises(DatasetError, match="holds camera frames, which the LeRobot export does not write yet"):
        write_lerobot(episodes, tmp_path / "out", fps=50.0, task="Line")
    assert not (tmp_path / "out").exists()


def test_frames_given_to_a_state_policy_are_refused_in_one_line(tmp_path):
    import numpy as np
    from conftest import EXPORT_DIMS, small_lawr_policy

    from lawr_ext.deploy import OnnxChunkPolicy
    from lawr_ext.export import build_metadata, export_onnx

    policy = small_lawr_policy()
    metadata = build_metadata(policy, task="toy", obs_dim=EXPORT_DIMS[0], control_rate_hz=50.0, config_hash="0" * 16)
    path = export_onnx(policy, tmp_path / "policy.onnx", metadata)
    robot = OnnxChunkPolicy(str(path), log=lambda line: None)
    obs = np.zeros(EXPORT_DIMS[0], np.float32)
    assert robot.act(obs).shape == (EXPORT_DIMS[2],)
    with pytest.raises(ValueError, match=r"^camera frames given, but the policy takes none \(an export of a state "
                                         r"task\): nothing commanded$"):
        robot.act(obs, np.zeros((1, 8, 8, 3), np.uint8))
