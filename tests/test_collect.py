"""The collection loop against a tiny deterministic vectorized env: auto-resets, resume after kill -9, progress."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch

from lawr_ext.data.collect import CollectConfig, collect
from lawr_ext.data.dataset import load_episodes
from lawr_ext.data.hdf5 import list_shards

STEP = 0.25  # how far one full action moves the point


class LineEnv:
    """N points on a line, pure torch. Reaching x >= 1 terminates (success); ``max_episode_length`` steps truncate.

    Like an Isaac Lab DirectRLEnv it auto-resets finished envs inside ``step`` from the global torch RNG
    (seeded by ``reset(seed)``), returns the reset observation for them, and returns the same buffers
    every step, overwritten in place. obs = (x, steps taken so far).
    """

    def __init__(self, num_envs, max_episode_length=8, step_delay_s=0.0):
        self.num_envs, self.max_episode_length, self.step_delay_s = num_envs, max_episode_length, step_delay_s
        self.x = torch.zeros(num_envs)
        self.episode_length = torch.zeros(num_envs, dtype=torch.long)
        self.obs_buf = torch.zeros(num_envs, 2)
        self.reward_buf = torch.zeros(num_envs)
        self.terminated_buf = torch.zeros(num_envs, dtype=torch.bool)
        self.truncated_buf = torch.zeros(num_envs, dtype=torch.bool)

    def _obs(self):
        self.obs_buf[:] = torch.stack([self.x, self.episode_length.float()], dim=1)
        return {"policy": self.obs_buf}

    def reset(self, seed=None):
        if seed is not None:
            torch.manual_seed(seed)
        self.x = torch.rand(self.num_envs) * 0.5
        self.episode_length.zero_()
        return self._obs(), {}

    def step(self, actions):
        time.sleep(self.step_delay_s)
        self.x = self.x + STEP * actions[:, 0]
        self.episode_length += 1
        self.reward_buf[:] = self.x
        self.terminated_buf[:] = self.x >= 1.0
        self.truncated_buf[:] = ~self.terminated_buf & (self.episode_length >= self.max_episode_length)
        done = self.terminated_buf | self.truncated_buf
        self.x[done] = torch.rand(int(done.sum())) * 0.5
        self.episode_length[done] = 0
        extras = {"success": self.terminated_buf}
        return self._obs(), self.reward_buf, self.terminated_buf, self.truncated_buf, extras


class LineExpert:
    """Strategy 0 walks at full speed, strategy 1 at half speed; quality 1 adds noise, quality 2 walks backwards."""

    def __init__(self, env):
        self.env = env
        self.speed = torch.zeros(env.num_envs)
        self.noise = torch.zeros(env.num_envs)

    def reset(self, env_ids, strategy, quality):
        direction = torch.where(quality == 2, -1.0, 1.0)
        self.speed[env_ids] = direction * torch.where(strategy == 0, 1.0, 0.5)
        self.noise[env_ids] = (quality == 1).float() * 0.3

    def act(self):
        action = self.speed + self.noise * torch.randn(self.env.num_envs)
        return torch.cat([action[:, None], torch.zeros(self.env.num_envs, 1)], dim=1) * 1.5  # > 1: clipped


META = {"task": "Line", "obs_dim": 2, "action_dim": 2, "control_hz": 50.0}


def _collect(out, num_envs=4, num_episodes=10, seed=0, progress=False, step_delay_s=0.0):
    env = LineEnv(num_envs, step_delay_s=step_delay_s)
    cfg = CollectConfig(num_episodes=num_episodes, seed=seed, progress=progress)
    return collect(env, LineExpert(env), out, cfg, META, num_strategies=2, num_qualities=3)


def _demos(directory):
    """Every demo of a dataset directory as {name: (arrays..., attrs)} for exact comparison."""
    demos = {}
    for shard in list_shards(directory):
        with h5py.File(shard) as file:
            for name, demo in file["data"].items():
                keys = ("obs/policy", "actions", "rewards", "dones", "truncated", "success")
                arrays = {key: demo[key][()].tolist() for key in keys}
                demos[name] = (arrays, dict(demo.attrs))
    return demos


def test_episodes_are_recorded_whole_across_auto_resets(tmp_path):
    _collect(tmp_path / "d", num_envs=4, num_episodes=10)
    episodes = load_episodes(tmp_path / "d")
    assert episodes.num_episodes == 10 and sorted(_demos(tmp_path / "d")) == sorted(f"demo_{i}" for i in range(10))
    assert len(list_shards(tmp_path / "d")) == 3  # rounds of 4, 4, 2
    for e, (start, length) in enumerate(zip(episodes.starts.tolist(), episodes.lengths.tolist())):
        obs, actions = episodes.obs[start : start + length], episodes.actions[start : start + length]
        # one episode, no reset inside: the step counter runs 0..T-1 and x follows the dynamics
        assert obs[:, 1].tolist() == list(range(length))
        assert torch.allclose(obs[1:, 0], obs[:-1, 0] + STEP * actions[:-1, 0])
        final_x = obs[-1, 0] + STEP * actions[-1, 0]
        assert bool(episodes.terminated[e]) == bool(final_x >= 1.0) == bool(episodes.success[e])
        assert bool(episodes.terminated[e]) or length == 8
        assert torch.allclose(episodes.rewards[start : start + length], torch.cat([obs[1:, 0], final_x[None]]))
    assert episodes.actions.abs().max() <= 1.0  # actions are stored as executed (clipped)
    assert set(episodes.quality.tolist()) <= {0, 1, 2} and set(episodes.strategy.tolist()) <= {0, 1}
    # failing quality walks backwards and never succeeds
    assert not episodes.success[episodes.quality == 2].any()


def test_labels_follow_the_quality_mix(tmp_path):
    env = LineEnv(16)
    cfg = CollectConfig(num_episodes=160, quality_mix=(0.0, 0.25, 0.75), strategy_mix=(1.0, 0.0), progress=False)
    out = collect(env, LineExpert(env), tmp_path / "mix", cfg, META, num_strategies=2, num_qualities=3)
    episodes = load_episodes(out)
    assert set(episodes.strategy.tolist()) == {0}
    fraction_failing = (episodes.quality == 2).float().mean().item()
    assert 0.6 < fraction_failing < 0.9 and not (episodes.quality == 0).any()


def test_rerun_is_a_no_op_and_a_larger_rerun_appends_like_one_run(tmp_path):
    _collect(tmp_path / "d", num_episodes=6)  # rounds: 4 + a short round of 2
    first = _demos(tmp_path / "d")
    mtimes = [p.stat().st_mtime_ns for p in list_shards(tmp_path / "d")]
    _collect(tmp_path / "d", num_episodes=6)
    assert [p.stat().st_mtime_ns for p in list_shards(tmp_path / "d")] == mtimes  # nothing rewritten
    _collect(tmp_path / "d", num_episodes=11)
    _collect(tmp_path / "ref", num_episodes=11)
    grown = _demos(tmp_path / "d")
    assert grown == _demos(tmp_path / "ref") and all(grown[name] == first[name] for name in first)


def test_resume_refuses_a_directory_collected_with_other_settings(tmp_path):
    _collect(tmp_path / "d", num_episodes=4, seed=0)
    with pytest.raises(ValueError, match="collected with other settings"):
        _collect(tmp_path / "d", num_episodes=8, seed=1)


def test_kill_9_mid_collection_then_rerun_gives_the_uninterrupted_dataset(tmp_path):
    """A collector subprocess is SIGKILLed after its first shard; rerunning completes the identical dataset."""
    script = (
        "import sys; sys.path.insert(0, {tests!r}); from pathlib import Path; import test_collect as t;"
        "t._collect(Path({out!r}), num_episodes=12, step_delay_s=0.02)"
    ).format(tests=str(Path(__file__).parent), out=str(tmp_path / "killed"))
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not list_shards_if_any(tmp_path / "killed") and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    on_disk = list_shards(tmp_path / "killed")
    assert 1 <= len(on_disk) < 3  # killed mid-run, after at least one complete shard
    load_episodes(tmp_path / "killed")  # what survived the kill is readable
    (tmp_path / "killed" / ".shard_000001.hdf5.k9x2.tmp.hdf5").write_bytes(b"half a shard")  # a kill mid-write

    _collect(tmp_path / "killed", num_episodes=12)
    _collect(tmp_path / "ref", num_episodes=12)
    assert _demos(tmp_path / "killed") == _demos(tmp_path / "ref")
    assert not [p for p in (tmp_path / "killed").iterdir() if p.name.startswith(".")]  # temp files cleaned


def list_shards_if_any(directory):
    return list_shards(directory) if directory.exists() else []


def test_progress_bar_reports_episodes(tmp_path, capsys):
    _collect(tmp_path / "d", num_episodes=6, progress=True)
    err = capsys.readouterr().err
    assert "6/6" in err and "episode" in err


@pytest.mark.sim
def test_real_env_collection_resumes_to_the_same_dataset(tmp_path):
    """On Bimanual-Chunk itself (10-step episodes): a run grown from 4 to 8 episodes equals a run of 8 at once."""
    from lawr_ext.data.collect import task_metadata
    from lawr_ext.tasks import make_env
    from lawr_ext.tasks.bimanual.experts import NUM_STRATEGIES, QUALITY, make_expert

    env = make_env("Bimanual-Chunk", 4, device="cpu", seed=0, episode_length_s=0.2)
    try:
        expert, meta = make_expert("Bimanual-Chunk", env), task_metadata("Bimanual-Chunk", env, QUALITY)
        labels = {"num_strategies": NUM_STRATEGIES, "num_qualities": len(QUALITY)}
        for out, sizes in ((tmp_path / "grown", (4, 8)), (tmp_path / "once", (8,))):
            for size in sizes:
                collect(env, expert, out, CollectConfig(num_episodes=size, progress=False), meta, **labels)
    finally:
        env.close()
    assert _demos(tmp_path / "grown") == _demos(tmp_path / "once")
    episodes = load_episodes(tmp_path / "once")
    assert episodes.num_episodes == 8 and episodes.obs.shape[1] == meta["obs_dim"] == 45
    assert (episodes.lengths == 10).all() and not episodes.terminated.any()  # too short to succeed: time-outs
    assert len(torch.unique(episodes.obs[episodes.starts], dim=0)) == 8  # every episode starts from its own reset
