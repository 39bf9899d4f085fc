"""The collection loop against a tiny deterministic vectorized env: auto-resets, resume after kill -9, progress."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import META, STEP, LineEnv, LineExpert, collect_line, read_demos

from lawr_ext.data.collect import CollectConfig, collect
from lawr_ext.data.dataset import load_episodes
from lawr_ext.data.hdf5 import list_shards
from lawr_ext.utils.lock import LOCK_NAME

def test_episodes_are_recorded_whole_across_auto_resets(tmp_path):
    collect_line(tmp_path / "d", num_envs=4, num_episodes=10)
    episodes = load_episodes(tmp_path / "d")
    assert episodes.num_episodes == 10 and sorted(read_demos(tmp_path / "d")) == sorted(f"demo_{i}" for i in range(10))
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
    collect_line(tmp_path / "d", num_episodes=6)  # rounds: 4 + a short round of 2
    first = read_demos(tmp_path / "d")
    mtimes = [p.stat().st_mtime_ns for p in list_shards(tmp_path / "d")]
    collect_line(tmp_path / "d", num_episodes=6)
    assert [p.stat().st_mtime_ns for p in list_shards(tmp_path / "d")] == mtimes  # nothing rewritten
    collect_line(tmp_path / "d", num_episodes=11)
    collect_line(tmp_path / "ref", num_episodes=11)
    grown = read_demos(tmp_path / "d")
    assert grown == read_demos(tmp_path / "ref") and all(grown[name] == first[name] for name in first)


def test_resume_refuses_a_directory_collected_with_other_settings(tmp_path):
    collect_line(tmp_path / "d", num_episodes=4, seed=0)
    with pytest.raises(ValueError, match="collected with other settings"):
        collect_line(tmp_path / "d", num_episodes=8, seed=1)


def test_kill_9_mid_collection_then_rerun_gives_the_uninterrupted_dataset(tmp_path):
    """A collector subprocess is SIGKILLed after its first shard; rerunning completes the identical dataset."""
    script = (
        "import sys; sys.path.insert(0, {tests!r}); from pathlib import Path; from conftest import collect_line;"
        "collect_line(Path({out!r}), num_episodes=12, step_delay_s=0.02)"
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

    collect_line(tmp_path / "killed", num_episodes=12)
    collect_line(tmp_path / "ref", num_episodes=12)
    assert read_demos(tmp_path / "killed") == read_demos(tmp_path / "ref")
    assert not [p for p in (tmp_path / "killed").iterdir() if p.name.startswith(".") and p.name != LOCK_NAME]  # temp files cleaned


def list_shards_if_any(directory):
    return list_shards(directory) if directory.exists() else []


def test_progress_bar_reports_episodes(tmp_path, capsys):
    collect_line(tmp_path / "d", num_episodes=6, progress=True)
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
    assert read_demos(tmp_path / "grown") == read_demos(tmp_path / "once")
    episodes = load_episodes(tmp_path / "once")
    assert episodes.num_episodes == 8 and episodes.obs.shape[1] == meta["obs_dim"] == 45
    assert (episodes.lengths == 10).all() and not episodes.terminated.any()  # too short to succeed: time-outs
    assert len(torch.unique(episodes.obs[episodes.starts], dim=0)) == 8  # every episode starts from its own reset
