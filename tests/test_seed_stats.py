"""Statistics over training seeds (eval/seed_stats.py) on cases small enough to work out by hand, and the benchmark
aggregate and table built from them."""

import pytest

from lawr_ext.eval import seed_stats
from lawr_ext.eval.metrics import wilson_interval
from lawr_ext.runners import benchmark


def test_mean_and_iqm_over_seeds():
    scores = [[1.0, 0.0, 0.6, 0.5]]  # order does not matter
    assert seed_stats.point(scores) == pytest.approx(0.525)
    assert seed_stats.point(scores, "iqm") == pytest.approx(0.55)  # 0 and 1 cut, mean of 0.5 and 0.6
    assert seed_stats.point([[0.0, 0.3, 0.9]], "iqm") == pytest.approx(0.4)  # under 4 runs nothing is cut
    # across tasks: the mean is of the per-task means, the IQM is of every run together
    assert seed_stats.point([[0.0, 1.0], [0.5, 0.5, 0.5, 0.5]]) == pytest.approx(0.5)
    assert seed_stats.point([[0.0, 1.0], [0.2, 0.4, 0.6, 0.8]], "iqm") == pytest.approx(0.5)  # (0.2+...+0.8)/4


def test_bootstrap_interval_resamples_seeds_within_each_task():
    # Two seeds at 0 and 1: a resampled mean is 0, 0.5 or 1 with chances 1/4, 1/2, 1/4, so the 95% interval spans both
    assert seed_stats.bootstrap_ci([[0.0, 1.0]]) == [0.0, 1.0]
    assert seed_stats.bootstrap_ci([[0.3, 0.3, 0.3]]) == pytest.approx([0.3, 0.3])  # no spread, no width
    # Each task's seeds agree: resampling within tasks leaves the mean at 0.5; mixing the tasks would not
    assert seed_stats.bootstrap_ci([[0.2, 0.2], [0.8, 0.8]]) == pytest.approx([0.5, 0.5])
    assert seed_stats.bootstrap_ci([[0.2, 0.2, 0.8, 0.8]]) == pytest.approx([0.2, 0.8])
    assert seed_stats.bootstrap_ci([[0.1, 0.5, 0.9]]) == seed_stats.bootstrap_ci([[0.1, 0.5, 0.9]])  # fixed seed


def test_probability_of_improvement_counts_ties_half():
    # pairs of (x, y): (0.5, 0.5) tie, (0.5, 0.3) win, (0.7, 0.5) win, (0.7, 0.3) win -> 3.5 / 4
    result = seed_stats.probability_of_improvement([[0.5, 0.7]], [[0.5, 0.3]])
    assert result["probability"] == pytest.approx(0.875)
    assert result["ci95"] == pytest.approx([0.5, 1.0])  # worst resample: both 0.5 -> all ties
    assert seed_stats.probability_of_improvement([[0.4, 0.6]], [[0.4, 0.6]])["probability"] == pytest.approx(0.5)
    two_tasks = seed_stats.probability_of_improvement([[1.0], [0.0]], [[0.0], [0.0]])  # a win and a tie, averaged
    assert two_tasks == {"probability": 0.75, "ci95": [0.75, 0.75]}


def test_one_seed_falls_back_to_its_wilson_interval():
    stats = seed_stats.over_seeds([3], [8])
    assert stats["success_mean"] == stats["success_iqm"] == 3 / 8
    assert stats["success_mean_ci95"] == pytest.approx(list(wilson_interval(3, 8)))
    assert stats["ci95_method"].startswith("Wilson")
    several = seed_stats.over_seeds([2, 6], [8, 8])
    assert several["per_seed_success"] == [0.25, 0.75] and several["success_mean_ci95"] == [0.25, 0.75]
    assert several["per_seed_ci95"][1] == pytest.approx(list(wilson_interval(6, 8)))


@pytest.mark.parametrize("call, match", [
    (lambda: seed_stats.point([[]]), "at least one run"),
    (lambda: seed_stats.point([[0.5, float("nan")]]), "finite"),
    (lambda: seed_stats.point([[0.5]], "median"), "statistic"),
    (lambda: seed_stats.probability_of_improvement([[0.5]], [[0.5], [0.2]]), "tasks"),
    (lambda: seed_stats.over_seeds([1], [0]), "at least one episode"),
])
def test_bad_input_is_one_line(call, match):
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


def _cells(task, method, successes, episodes=8):
    return [{"task": task, "seed": seed, "method": method, "episodes": episodes, "successes": s,
             "success_rate": s / episodes, "return_mean": float(s), "train_seconds": 1.0, "latency_ms": 0.5}
            for seed, s in enumerate(successes)]


def test_benchmark_aggregate_and_table_report_seeds_as_runs():
    aggregates = {"A": {"lawr": benchmark.aggregate(_cells("A", "lawr", [6, 8])),
                        "flow_bc": benchmark.aggregate(_cells("A", "flow_bc", [6, 2]))},
                  "B": {"lawr": benchmark.aggregate(_cells("B", "lawr", [4, 4]))}}
    lawr = aggregates["A"]["lawr"]
    assert (lawr["successes"], lawr["episodes"], lawr["success_rate"]) == (14, 16, 0.875)
    assert lawr["success_ci95"] == [0.75, 1.0] and lawr["ci95_method"].startswith("stratified bootstrap")
    # A: pairs (0.75, 0.75) tie, (0.75, 0.25) win, (1, 0.75) win, (1, 0.25) win
    assert benchmark.improvement(aggregates["A"], aggregates["A"])["probability"] == 0.5
    overall = benchmark.across_tasks(aggregates, ["lawr", "flow_bc"])
    assert overall["lawr"]["tasks"] == ["A", "B"] and overall["lawr"]["success_mean"] == pytest.approx(0.6875)
    assert overall["flow_bc"]["p_reference_better"] == {"tasks": ["A"], "probability": 0.875,
                                                        "ci95": pytest.approx([0.5, 1.0])}
    assert "p_reference_better" not in overall["lawr"]

    aggregates["A"]["flow_bc"]["p_reference_better"] = overall["flow_bc"]["p_reference_better"]
    results = {"tasks": ["A", "B"], "methods": ["lawr", "flow_bc"], "aggregate": aggregates, "overall": overall,
               "failures": []}
    table = benchmark.markdown_table(results, "cmd")
    assert "| flow_bc | 0.50 (8/16) | [0.25, 0.75] | 0.50 [0.25, 0.75] | 0: 0.75 [0.41, 0.93]; 1: 0.25 [0.07, 0.59] | " \
           "0.88 [0.50, 1.00] |" in table
    assert "| flow_bc | no finished cell |" in table  # task B
    assert "## All tasks" in table and "| lawr | 2 | 0.69 " in table
