"""The phase runner end to end on a small synthetic dataset (no simulator): outputs, frozen flow, stops."""

import math
import os
import subprocess
import sys

import pytest
import torch
from conftest import ACTION_DIM, HORIZON, OBS_DIM, TINY, synthetic_dataset

from lawr_ext import REPO_ROOT
from lawr_ext.algorithms.critic import DistributionalCritic
from lawr_ext.configs.train import load_train_config
from lawr_ext.runners import (CheckpointError, TrainingError, checkpoint_path, final_path, load_policy, load_product,
                              read_checkpoint, train)
from lawr_ext.runners.pipeline import run_config
from lawr_ext.utils.io import parameter_fingerprint


@pytest.fixture
def dataset(tmp_path):
    return synthetic_dataset(tmp_path / "data.npz")


def test_three_phases_write_checkpoints_logs_summary_and_a_policy(tmp_path, dataset):
    cfg = load_train_config("Bimanual-Chunk", TINY)
    run = tmp_path / "run"
    summary = train(cfg, dataset, run)

    for phase in ("flow", "critic", "planner"):
        assert torch.load(checkpoint_path(run, phase), weights_only=True)["step"] == 8
        assert final_path(run, phase).is_file()
        assert list((run / "tensorboard" / phase).glob("events.out.tfevents.*")), phase
        assert summary["phases"][phase], phase  # the last step's metrics
    quality = {k: v for k, v in summary["phases"]["flow"].items() if k.startswith("flow/quality_swd_")}
    assert sorted(quality) == [f"flow/quality_swd_{k}step" for k in (1, 2, 4, 8)]  # the O(1) claim, measured
    assert all(math.isfinite(v) and v > 0 for v in quality.values())
    assert (run / "summary.md").read_text().count("## ") >= 2 and (run / "config.json").is_file()

    obs = torch.randn(7, OBS_DIM)
    for method in ("lawr", "flow_bc"):
        policy = load_policy(run, method)
        chunk = policy(obs)
        assert chunk.shape == (7, HORIZON, ACTION_DIM) and torch.isfinite(chunk).all()
        assert (policy.horizon, policy.action_dim) == (HORIZON, ACTION_DIM)
    lawr = load_policy(final_path(run, "planner"))
    assert torch.equal(lawr(obs), lawr(obs))  # deterministic planner


def test_flow_is_bit_identical_after_phases_2_and_3(tmp_path, dataset):
    cfg = load_train_config("Bimanual-Chunk", TINY)
    run = tmp_path / "run"
    train(cfg, dataset, run, stages=("flow",))
    dims = read_checkpoint(final_path(run, "flow"))["dims"]
    behavior = load_product(run, "flow", cfg, dims)
    before = parameter_fingerprint(behavior.decoder), parameter_fingerprint(behavior.obs_normalizer)

    train(cfg, dataset, run, stages=("critic", "planner"))
    after_file = load_product(run, "flow", cfg, dims)
    # The decoder the planner trained through (saved with the planner) is the same frozen flow, bit for bit.
    policy_decoder = load_policy(run).policy.decoder
    assert (parameter_fingerprint(after_file.decoder), parameter_fingerprint(after_file.obs_normalizer)) == before
    assert parameter_fingerprint(policy_decoder) == before[0]


def test_nan_in_the_critic_stops_with_phase_and_step(tmp_path, dataset, monkeypatch):
    cfg = load_train_config("Bimanual-Chunk", TINY)
    run = tmp_path / "run"
    train(cfg, dataset, run, stages=("flow",))
    original_update, calls = DistributionalCritic.update, []

    def poisoned_update(self, batch):  # step 6 meets a NaN weight, as an overflowing optimizer would leave it
        calls.append(1)
        if len(calls) == 6:
            with torch.no_grad():
                next(self.v_net.parameters()).view(-1)[0] = float("nan")
        return original_update(self, batch)

    monkeypatch.setattr(DistributionalCritic, "update", poisoned_update)
    with pytest.raises(TrainingError, match=r"phase 'critic' stopped at step 6: .*non-finite.*last good checkpoint: step 4"):
        train(cfg, dataset, run, stages=("critic",))
    assert torch.load(checkpoint_path(run, "critic"), weights_only=True)["step"] == 4  # the good one survives
    assert not final_path(run, "critic").exists()


def test_critic_whose_returns_leave_the_support_is_stopped(tmp_path, dataset):
    cfg = load_train_config("Bimanual-Chunk", TINY + ["critic.v_min=-0.1", "critic.v_max=0.1", "guard.max_outside_support=0.1"])
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"phase 'critic' stopped at step \d+: critic diverging: .* outside the value support"):
        train(cfg, dataset, run)


def test_mismatched_checkpoints_are_one_line_errors(tmp_path, dataset):
    cfg = load_train_config("Bimanual-Chunk", TINY)
    run = tmp_path / "run"
    train(cfg, dataset, run, stages=("flow",))

    changed = load_train_config("Bimanual-Chunk", TINY + ["flow.learning_rate=1e-3"])
    with pytest.raises(CheckpointError, match="config hash") as err:
        train(changed, dataset, run, stages=("flow",))
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="config hash"):  # a later phase refuses a flow of another config
        train(changed, dataset, run, stages=("critic",))

    other = synthetic_dataset(tmp_path / "other.npz", num_episodes=20)  # the same shapes, other content
    with pytest.raises(CheckpointError, match="trained on another dataset"):
        train(cfg, other, run, stages=("flow",))

    ckpt = torch.load(checkpoint_path(run, "flow"), weights_only=True)
    ckpt["format_version"] = 999
    torch.save(ckpt, checkpoint_path(run, "flow"))
    with pytest.raises(CheckpointError, match="format version 999"):
        train(cfg, dataset, run, stages=("flow",))

    checkpoint_path(run, "flow").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="not a readable lawr checkpoint"):
        train(cfg, dataset, run, stages=("flow",))

    with pytest.raises(CheckpointError, match="phase 'flow' has not finished"):
        train(cfg, dataset, tmp_path / "fresh", stages=("planner",))


def test_train_lawr_script_with_hydra_overrides(tmp_path, dataset):
    run = tmp_path / "cli_run"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "train_lawr.py"), "--task", "Bimanual-Chunk",
               "--dataset", str(dataset), "--run_dir", str(run), "--device", "cpu", "--no_eval"]
    env = os.environ | {"OMP_NUM_THREADS": str(torch.get_num_threads())}
    done = subprocess.run(command + TINY + ["critic.hidden_dim=24"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "## phases" in done.stdout and final_path(run, "planner").is_file()
    assert run_config(run).critic.hidden_dim == 24  # the override arrived
