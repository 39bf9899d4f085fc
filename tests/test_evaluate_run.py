"""Evaluating a run (runners.evaluate_run, what train_lawr.py, evaluate.py and the benchmark call): reports, the
run's TensorBoard scalars and summary, a failing rollout recorded while the other methods still run.

The env is a fake (no simulator): conftest's CountingEnv, its observations widened to the task's size; the
rollout, the policies and the files are the real ones."""

import json
import shutil

import pytest
import torch
from conftest import OBS_DIM, CountingEnv, file_hashes

import lawr_ext.tasks
from lawr_ext.configs.eval import EvalConfig
from lawr_ext.runners import evaluate_run, evaluation_failures, final_path

EPISODES = 4


class WideEnv(CountingEnv):
    """CountingEnv whose observations have the task's size (zeros after its two columns), or are NaN."""

    def __init__(self, lengths, nan=False):
        super().__init__(lengths, succeed={0})
        self.nan = nan

    def _obs(self):
        obs = torch.cat([super()._obs()["policy"], torch.zeros(self.num_envs, OBS_DIM - 2)], dim=1)
        return {"policy": obs * float("nan") if self.nan else obs}

    def close(self):
        pass


@pytest.fixture
def run(finished_run, tmp_path):
    return shutil.copytree(finished_run[1], tmp_path / "run")


@pytest.fixture
def envs(monkeypatch):
    """The fake make_env; each call's overrides are recorded. The first env is NaN when ``envs.nan_first``."""
    calls = []

    def make_env(task, num_envs, device, seed, **overrides):
        calls.append(overrides)
        return WideEnv([3] * num_envs, nan=envs.nan_first and len(calls) == 1)

    monkeypatch.setattr(lawr_ext.tasks, "make_env", make_env)
    envs.nan_first, envs.calls = False, calls
    return envs


def _cfg():
    return EvalConfig(num_envs=2, num_episodes=EPISODES, exec_horizon=4, progress=False)


def test_a_failing_rollout_is_recorded_and_the_other_methods_are_still_evaluated(run, envs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    envs.nan_first = True  # flow_bc's env returns NaN observations
    trained = json.loads((run / "summary.json").read_text())
    results = evaluate_run(run, ["flow_bc", "lawr"], _cfg(), env_overrides={"episode_length_s": 0.5},
                           support_samples=16)

    assert envs.calls == [{"episode_length_s": 0.5}] * 2
    assert results["flow_bc"].report is None and "non-finite observations" in results["flow_bc"].error
    assert evaluation_failures(results) == [f"evaluation of flow_bc failed: {results['flow_bc'].error}"]
    report = results["lawr"].report
    assert report["summary"]["episodes"] == EPISODES and report["checkpoint"] == str(run)
    assert "support/nn_ratio" in report["support"]  # L-AWR's support check on the run's own dataset
    assert results["lawr"].out == run / "eval" / "lawr"
    assert json.loads((run / "eval" / "lawr" / "eval.json").read_text())["summary"] == report["summary"]
    assert not (run / "eval" / "flow_bc").exists()

    summary = json.loads((run / "summary.json").read_text())
    assert summary["phases"] == trained["phases"]  # training's record kept
    assert summary["eval_flow_bc"] == {"error": results["flow_bc"].error}
    s = report["summary"]
    assert summary["eval_lawr"] == {"success_rate": s["success_rate"], "success_ci95": s["success_ci95"],
                                    "return_mean": s["return_mean"], "episodes": EPISODES}
    assert "eval_lawr" in (run / "summary.md").read_text()
    events = EventAccumulator(str(run / "tensorboard" / "eval"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == ["eval/lawr/return_mean", "eval/lawr/success_rate"]
    [point] = events.Scalars("eval/lawr/success_rate")
    assert point.step == 8 and point.value == pytest.approx(s["success_rate"])  # at the run's planner steps


def test_a_report_written_elsewhere_leaves_the_runs_records_alone(run, envs, tmp_path):
    before = file_hashes(run)
    result = evaluate_run(final_path(run, "planner"), ["lawr"], _cfg(), out=tmp_path / "again")["lawr"]
    assert result.out == tmp_path / "again" and (tmp_path / "again" / "eval.json").is_file()
    assert result.report["support"] is None  # not asked for
    assert file_hashes(run) == before and not (run / "tensorboard" / "eval").exists()


def test_bad_requests_are_refused_before_any_rollout(run, envs, tmp_path):
    with pytest.raises(ValueError, match="out names the folder of one method's report, got 2"):
        evaluate_run(run, ["lawr", "flow_bc"], _cfg(), out=tmp_path / "x")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        evaluate_run(run, ["lawr", "nope"], _cfg())
    assert envs.calls == [] and not (run / "eval").exists()
