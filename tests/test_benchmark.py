"""The benchmark's plumbing on a synthetic dataset (no simulator): every baseline trains through the runner
from the same frozen phases, loads as a ChunkPolicy, resumes from its checkpoint; the table has every cell and
a rerun skips finished cells.

Only the rollout is replaced: ``toy_evaluate`` plays the synthetic dataset's game (an episode succeeds when
the policy's chunk leans to the +0.5 behaviour, the one that earned reward) and fails on a non-finite chunk.
"""

import json

import pytest
import torch
from conftest import ACTION_DIM, HORIZON, OBS_DIM, TINY, assert_same_state, synthetic_dataset

from lawr_ext.algorithms.base import ChunkPolicy
from lawr_ext.algorithms.registry import BASELINE_NAMES, PHASE_NAMES
from lawr_ext.configs.train import load_train_config
from lawr_ext.eval.metrics import summarize
from lawr_ext.eval.rollout import Episode
from lawr_ext.runners import benchmark, checkpoint_path, load_policy, read_checkpoint, train, trainer
from lawr_ext.runners.trainer import check_metrics
from lawr_ext.tasks import get_task

TASKS = ["Bimanual-Chunk", "Bimanual-Chunk-Insertion"]
#: Trained baselines take Phase 1's budget (baselines.match_lawr): 8 steps each, as every TINY phase.
OVERRIDES = TINY + ["baselines.diffusion.num_train_timesteps=10", "baselines.diffusion.sample_steps=5",
                    "baselines.best_of_n.num_samples=4", "baselines.qc.num_samples=4"]
EPISODES = 6


class ToyEvaluation:
    """Stands in for ``evaluate_policy``: counts its calls and scores the chunk's sign on random observations."""

    def __init__(self):
        self.calls = []

    def __call__(self, policy: ChunkPolicy, cfg) -> dict:
        self.calls.append(policy.name)
        torch.manual_seed(cfg.seed)
        with torch.no_grad():
            mean_action = policy(torch.randn(EPISODES, get_task(cfg.task).obs_dim)).mean(dim=(1, 2))
        assert torch.isfinite(mean_action).all()
        episodes = [Episode(env_id=i, success=bool(a > 0), ret=float(a), length=10) for i, a in enumerate(mean_action)]
        return {"summary": summarize(episodes)}


@pytest.fixture
def dataset_dir(tmp_path):
    folder = tmp_path / "datasets"
    folder.mkdir()
    for task in TASKS:  # each with its task's observation size
        synthetic_dataset(folder / f"{task}.npz", obs_dim=get_task(task).obs_dim)
    return folder


def test_benchmark_has_every_cell_and_a_rerun_skips_finished_ones(tmp_path, dataset_dir):
    out, evaluate = tmp_path / "bench", ToyEvaluation()
    results = benchmark.run_benchmark(TASKS, [0], list(benchmark.METHODS), out, OVERRIDES, dataset_dir, evaluate)

    assert len(evaluate.calls) == len(TASKS) * len(benchmark.METHODS) and not results["failures"]
    table = (out / "table.md").read_text()
    for task in TASKS:
        for method in benchmark.METHODS:
            agg = results["aggregate"][task][method]
            assert agg["episodes"] == EPISODES and 0.0 <= agg["success_ci95"][0] <= agg["success_rate"]
            assert agg["latency_ms"] > 0
            assert f"| {method} | {agg['success_rate']:.2f} ({agg['successes']}/{EPISODES})" in table
            assert f"| 0: {agg['per_seed_success'][0]:.2f} [" in table  # each seed's rate names its seed
        assert f"## {task}" in table
    on_disk = json.loads((out / "results.json").read_text())
    assert {(c["task"], c["method"]) for c in on_disk["cells"]} == {(t, m) for t in TASKS for m in benchmark.METHODS}
    assert (out / "success.png").stat().st_size > 0 and (out / f"curves_{TASKS[0]}.png").stat().st_size > 0
    # Training time: L-AWR's three phases; flow_bc none of its own, so exactly the flow phase's.
    run = out / TASKS[0] / "seed0"
    flow_seconds = read_checkpoint(checkpoint_path(run, "flow"))["train_seconds"]
    by_method = {c["method"]: c for c in on_disk["cells"] if c["task"] == TASKS[0]}
    assert by_method["flow_bc"]["train_seconds"] == pytest.approx(flow_seconds)
    assert by_method["lawr"]["train_seconds"] > flow_seconds > 0

    cell = benchmark.cell_path(out, TASKS[1], 0, "fql")
    cell.unlink()  # one unfinished cell: only it is redone
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    evaluate.calls.clear()
    so_far = benchmark.run_benchmark(TASKS, [0], list(benchmark.METHODS), out, OVERRIDES, dataset_dir, evaluate,
                                     make_plots=False, table_only=True)  # the table of the cells on disk, no more
    assert evaluate.calls == [] and not cell.exists() and "fql" not in so_far["aggregate"][TASKS[1]]
    assert so_far["aggregate"][TASKS[0]] == results["aggregate"][TASKS[0]]
    assert "| fql | no finished cell |" in (out / "table.md").read_text().split(f"## {TASKS[1]}")[1]
    assert f"on `{TASKS[0]}.npz`: " in (out / "table.md").read_text()
    training = out / TASKS[0] / "seed7"  # a seed still training: its config is written, no cell yet
    training.mkdir()
    (training / "config.json").write_text((run / "config.json").read_text())
    assert benchmark.budget(out, TASKS[0], [7], list(benchmark.METHODS)) is None
    assert benchmark.budget(out, TASKS[0], [7, 0], list(benchmark.METHODS))["dataset"] == f"{TASKS[0]}.npz"
    rerun = benchmark.run_benchmark(TASKS, [0], list(benchmark.METHODS), out, OVERRIDES, dataset_dir, evaluate,
                                    make_plots=False)
    assert evaluate.calls == ["FQLPolicy"] and cell.is_file()
    assert rerun["aggregate"] == results["aggregate"] | {TASKS[1]: rerun["aggregate"][TASKS[1]]}
    rewritten = [p for p, t in before.items() if p.stat().st_mtime_ns != t and "fql" not in p.parts]
    assert all(p.name == "final.pt" for p in rewritten), rewritten  # no phase retrained, no checkpoint touched


def test_every_baseline_loads_as_a_chunk_policy_and_its_checkpoint_resumes(tmp_path, monkeypatch):
    dataset = synthetic_dataset(tmp_path / "data.npz")
    cfg = load_train_config("Bimanual-Chunk", OVERRIDES)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(cfg, dataset, straight, stages=PHASE_NAMES + BASELINE_NAMES)

    obs = torch.randn(5, OBS_DIM)
    for name in BASELINE_NAMES:
        policy = load_policy(straight, name)
        chunk = policy(obs)
        assert isinstance(policy, ChunkPolicy) and not policy.training
        assert chunk.shape == (5, HORIZON, ACTION_DIM) and torch.isfinite(chunk).all(), name

    # Interrupt every trained baseline after its first checkpoint (step 4 of 8), then rerun: the resumed
    # weights and optimizer states must equal those of the uninterrupted run.
    trained = [n for n in BASELINE_NAMES if checkpoint_path(straight, n).is_file()]
    assert set(trained) == {"gaussian_awr", "fql", "ofql", "diffusion", "qc", "lps", "dsrl_na", "act"}
    train(cfg, dataset, resumed)
    for name in trained:
        steps = 0

        def stop_after_first_checkpoint(cfg_, phase, metrics):
            nonlocal steps
            steps += 1
            if steps > 5:  # the checkpoint of step 4 is on disk, step 5's update is lost
                raise KeyboardInterrupt
            return check_metrics(cfg_, phase, metrics)

        with monkeypatch.context() as patch:
            patch.setattr(trainer, "check_metrics", stop_after_first_checkpoint)
            with pytest.raises(KeyboardInterrupt):
                train(cfg, dataset, resumed, stages=(name,))
        assert read_checkpoint(checkpoint_path(resumed, name))["step"] == 4
        train(cfg, dataset, resumed, stages=(name,))
        want = read_checkpoint(checkpoint_path(straight, name))["learner"]
        got = read_checkpoint(checkpoint_path(resumed, name))["learner"]
        assert_same_state(got, want, name)



def test_the_table_lists_published_methods_lawr_lacks_under_its_rows():
    task = "ogbench:cube-double-play-singletask-v0"
    results = {"tasks": [task], "methods": ["lawr", "qc"], "aggregate": {}, "budget": {}, "failures": [],
               "published": {task: benchmark.published_figures(task)}}
    table = benchmark.markdown_table(results, "cmd")
    rows, below = table.split("Published, methods lawr does not implement: ")
    assert "| qc | no finished cell |" in rows and "0.72 (QC, QC's released plot data" in rows
    assert below.startswith("BFN: best-of-N without chunks, own critic 0.78") and "Value Flows 0.76" in below
