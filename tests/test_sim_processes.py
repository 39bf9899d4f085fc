"""Collection and evaluation in several local processes (runners/sim_processes.py): the ranks meet in one gloo
group, rank 0 gets the merged result, and a failing rank stops the job in one line instead of hanging it."""

import os
from pathlib import Path

import pytest
from conftest import TWO_PROCESSES

from lawr_ext.configs.train import TrainConfig
from lawr_ext.runners.sim_processes import run_sim_job
from lawr_ext.utils.distributed import World

TESTS = str(Path(__file__).resolve().parent)


def ranks_and_pids(world: World, tag: str) -> list:
    return world.gather((world.rank, world.size, os.getpid(), tag))


def fail_on_rank_1(world: World) -> None:
    if world.rank == 1:
        raise SystemExit(3)
    world.barrier()  # rank 0 waits here for a rank that is gone


@pytest.fixture
def tests_importable(monkeypatch):
    """The child processes unpickle the jobs of this file by its module name."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")])))


@TWO_PROCESSES
def test_two_processes_form_one_world_and_rank_0_gets_every_ranks_result(tests_importable):
    result = run_sim_job(2, ranks_and_pids, tag="x")
    assert [(rank, size, tag) for rank, size, _, tag in result] == [(0, 2, "x"), (1, 2, "x")]
    assert result[0][2] == os.getpid() and result[1][2] != os.getpid()  # rank 1 is another process
    # one process: no group, no child, the same call
    assert run_sim_job(1, ranks_and_pids, tag="y") == [(0, 1, os.getpid(), "y")]


@TWO_PROCESSES
def test_a_failing_rank_stops_the_job_in_one_line(tests_importable):
    with pytest.raises(RuntimeError, match=r"^simulation process\(es\) of rank 1 failed \(exit code 3\)"):
        run_sim_job(2, fail_on_rank_1)


def test_sim_processes_below_one_is_refused():
    with pytest.raises(ValueError, match="sim_processes"):
        TrainConfig(sim_processes=0)
    with pytest.raises(ValueError, match="sim_processes"):
        run_sim_job(0, ranks_and_pids, tag="z")


def test_under_torchrun_more_processes_are_refused_in_one_line(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)  # as inside a torchrun rank
    with pytest.raises(ValueError, match="under torchrun leave it at 1"):
        run_sim_job(2, ranks_and_pids, tag="t")
    assert run_sim_job(1, ranks_and_pids, tag="t") == [(0, 1, os.getpid(), "t")]  # one process: the rank itself


def test_a_policy_module_given_whole_is_evaluated_with_one_progress_bar(monkeypatch):
    """"evaluate_policy" rolls out the module it is handed (one no run directory holds) on this rank's world, with
    the env overrides; only rank 0 shows progress."""
    import torch

    import lawr_ext.eval
    from lawr_ext.configs.eval import EvalConfig
    from lawr_ext.runners.sim_processes import evaluate_policy_job

    seen = []
    monkeypatch.setattr(lawr_ext.eval, "evaluate_policy", lambda policy, cfg, world, **overrides: seen.append(
        (policy, cfg.progress, world.rank, overrides)) or {"summary": {"successes": world.rank}})
    policy, cfg = torch.nn.Identity(), EvalConfig(progress=True)
    report = run_sim_job(1, "evaluate_policy", policy=policy, eval_cfg=cfg, episode_length_s=2.0)
    assert report == {"summary": {"successes": 0}}
    evaluate_policy_job(World(1, 2), policy, cfg)
    assert seen == [(policy, True, 0, {"episode_length_s": 2.0}), (policy, False, 1, {})]
