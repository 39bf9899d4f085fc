"""Evaluation: Wilson interval, execution horizon / replanning / resets, temporal ensembling, episode bookkeeping."""

import json
import math

import pytest
import torch
from conftest import CountingEnv, StampPolicy

from lawr_ext.algorithms.base import ChunkPolicy
from lawr_ext.configs.eval import EvalConfig
from lawr_ext.eval import ChunkScheduler, rollout, summarize, wilson_interval, write_report
from lawr_ext.eval.metrics import markdown_summary


# ---------------------------------------------------------------- Wilson interval

@pytest.mark.parametrize("k, n, expected", [
    # Reference values of the Wilson score interval (z = 1.95996), e.g. R's binom::binom.confint(method="wilson").
    (0, 10, (0.0, 0.27753)),
    (5, 10, (0.23659, 0.76341)),
    (10, 10, (0.72247, 1.0)),
    (1, 20, (0.00888, 0.23613)),
])
def test_wilson_matches_reference_values(k, n, expected):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(expected[0], abs=1e-5)
    assert hi == pytest.approx(expected[1], abs=1e-5)


@pytest.mark.parametrize("k, n", [(3, 7), (17, 40), (99, 100)])
def test_wilson_endpoints_solve_the_score_equation(k, n):
    # The Wilson bounds are the two p with |k/n - p| = z * sqrt(p (1 - p) / n); find them by bisection.
    z, p_hat = 1.959963984540054, k / n

    def gap(p):
        return abs(p_hat - p) - z * math.sqrt(p * (1 - p) / n)

    def root(a, b):  # gap(a) > 0 >= gap(b) (or reversed): bisection
        for _ in range(100):
            mid = (a + b) / 2
            a, b = (mid, b) if (gap(mid) > 0) == (gap(a) > 0) else (a, mid)
        return (a + b) / 2

    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(root(0.0, p_hat), abs=1e-9)
    assert hi == pytest.approx(root(1.0, p_hat), abs=1e-9)


def test_wilson_rejects_impossible_counts():
    with pytest.raises(ValueError, match="trials"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def _cfg(**kw):
    return EvalConfig(progress=False, **kw)


def test_exec_horizon_replans_after_k_steps_and_after_every_reset():
    H, k = 6, 4
    env = CountingEnv(lengths=[7, 10, 3])  # resets mid-chunk at different steps per env
    episodes, _ = rollout(env, StampPolicy(H), _cfg(num_episodes=6, exec_horizon=k))
    assert len(episodes) == 6
    for e in range(env.num_envs):
        executed = [(ep, t, a) for ep, t, a in env.executed[e] if ep < 2]  # the two recorded episodes
        assert executed, f"env {e} never stepped"
        for ep, t, a in executed:
            # planned at the last multiple of k since the episode began, executing entry t mod k
            assert a.tolist() == [t - t % k, t % k], (e, ep, t, a)


def test_rollout_runs_each_env_its_quota_and_records_success_return_length_strategy():
    env = CountingEnv(lengths=[2, 5, 3], succeed={1}, strategy=[0, 1, 1])
    episodes, stats = rollout(env, StampPolicy(4), _cfg(num_episodes=7, exec_horizon=4))
    per_env = [sum(e.env_id == i for e in episodes) for i in range(3)]
    assert per_env == [3, 2, 2]  # 7 split evenly, the short env 0 does not crowd out the others
    for e in episodes:
        assert e.length == e.ret == [2, 5, 3][e.env_id]
        assert e.success == (e.env_id == 1)
        assert e.strategy == [0, 1, 1][e.env_id]
    summary = summarize(episodes)
    assert summary["success_rate"] == pytest.approx(2 / 7)
    assert summary["success_ci95"] == pytest.approx(list(wilson_interval(2, 7)))
    assert summary["per_strategy"]["0"]["episodes"] == 3 and summary["per_strategy"]["0"]["successes"] == 0
    assert summary["per_strategy"]["1"]["success_rate"] == pytest.approx(0.5)
    assert stats["env_steps"] > 0


def test_rollout_counts_episodes_the_env_ended_with_a_physics_failure_or_a_dropped_object():
    env = CountingEnv(lengths=[2, 3, 4], blow_up={1}, drop={2})
    episodes, _ = rollout(env, StampPolicy(4), _cfg(num_episodes=6, exec_horizon=4))
    assert [e.physics_failure for e in episodes if e.env_id == 1] == [True, True]
    assert [e.object_dropped for e in episodes if e.env_id == 2] == [True, True]
    assert not any(e.physics_failure or e.object_dropped for e in episodes if e.env_id == 0)
    summary = summarize(episodes)
    assert summary["physics_failures"] == 2 and summary["objects_dropped"] == 2 and summary["success_rate"] == 0.0
    report = markdown_summary({"summary": summary})
    assert "2 episode(s) ended in a simulator blow-up" in report and "2 episode(s) ended with an object knocked" in report


def test_temporal_ensembling_weights_favor_older_predictions_and_drop_expired_ones():
    m, H = 0.5, 3
    sched = ChunkScheduler(1, H, 1, exec_horizon=1, temporal_ensemble=True, ensemble_decay=m)
    chunk = lambda v: torch.full((1, H, 1), float(v))  # noqa: E731
    sched.push(torch.tensor([0]), chunk(10.0))
    assert sched.act().item() == pytest.approx(10.0)  # one prediction: itself
    sched.push(torch.tensor([0]), chunk(20.0))
    w_old, w_new = 1.0, math.exp(-m)
    assert sched.act().item() == pytest.approx((w_old * 10 + w_new * 20) / (w_old + w_new))
    sched.push(torch.tensor([0]), chunk(30.0))
    w = [1.0, math.exp(-m), math.exp(-2 * m)]
    assert sched.act().item() == pytest.approx((w[0] * 10 + w[1] * 20 + w[2] * 30) / sum(w))
    # The first chunk (age 3 = H) no longer covers the step: the 20-chunk is now the oldest vote, weight 1.
    sched.push(torch.tensor([0]), chunk(40.0))
    assert sched.weights()[0].tolist() == pytest.approx(w[::-1])  # slots are stored newest first
    assert sched.act().item() == pytest.approx((w[0] * 20 + w[1] * 30 + w[2] * 40) / sum(w))


def test_temporal_ensembling_in_rollout_averages_overlapping_chunks_at_their_own_offsets():
    H, k, m = 4, 2, 0.3
    env = CountingEnv(lengths=[9])
    rollout(env, StampPolicy(H), _cfg(num_episodes=1, exec_horizon=k, temporal_ensemble=True, ensemble_decay=m))
    for _, t, a in env.executed[0]:
        plans = [p for p in range(0, t + 1, k) if t - p < H]  # chunks planned this episode still covering t
        w = torch.exp(-m * torch.arange(len(plans), dtype=torch.float))  # oldest first
        expected_plan = float((w * torch.tensor(plans, dtype=torch.float)).sum() / w.sum())
        expected_entry = float((w * torch.tensor([t - p for p in plans], dtype=torch.float)).sum() / w.sum())
        assert a.tolist() == pytest.approx([expected_plan, expected_entry]), t


def test_rollout_rejects_bad_settings_and_nan_policies():
    with pytest.raises(ValueError, match="exec_horizon=5 exceeds"):
        rollout(CountingEnv([3]), StampPolicy(4), _cfg(num_episodes=1, exec_horizon=5))
    with pytest.raises(ValueError, match="EvalConfig.num_envs"):
        _cfg(num_envs=0)

    class NanPolicy(StampPolicy):
        def forward(self, obs):
            return super().forward(obs) * float("nan")

    with pytest.raises(ValueError, match="non-finite"):
        rollout(CountingEnv([3]), NanPolicy(4), _cfg(num_episodes=1, exec_horizon=4))


def test_write_report_writes_json_and_markdown(tmp_path):
    episodes, _ = rollout(CountingEnv([2, 3], succeed={0}), StampPolicy(2), _cfg(num_episodes=4, exec_horizon=2))
    report = {"task": "Fake", "context": {"exec_horizon": 2}, "summary": summarize(episodes)}
    json_path, md_path = write_report(report, tmp_path)
    assert json.loads(json_path.read_text())["summary"]["success_rate"] == pytest.approx(0.5)
    md = md_path.read_text()
    assert "| 4 | 0.500 |" in md and "Fake" in md


# ---------------------------------------------------------------- the real simulator (one small run)

@pytest.mark.sim
def test_evaluate_policy_in_the_real_env_counts_time_limited_episodes():
    from lawr_ext.eval import evaluate_policy

    class HoldStill(ChunkPolicy):  # mid-range joint targets, open grippers: never grasps, never succeeds
        horizon, action_dim = 4, 14

        def forward(self, obs):
            return torch.zeros(obs.shape[0], self.horizon, self.action_dim)

    cfg = EvalConfig(num_envs=2, num_episodes=3, exec_horizon=2, progress=False)
    report = evaluate_policy(HoldStill(), cfg, episode_length_s=0.2)  # 10 control steps at 50 Hz
    s = report["summary"]
    assert s["episodes"] == 3 and s["successes"] == 0
    assert s["length_mean"] == 10 and s["length_std"] == 0  # every episode ran into the time limit
    assert math.isfinite(s["return_mean"]) and s["success_ci95"][1] < 1.0
    assert report["timing"]["env_steps"] == 2 * 20  # env 0 ran 2 episodes, env 1 idled alongside it
