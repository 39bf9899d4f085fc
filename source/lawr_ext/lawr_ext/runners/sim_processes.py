"""Simulation on every core: collection and evaluation in several local processes, one simulator each.

Isaac Lab keeps one simulation per process, and Warp's CPU kernels run on one thread, so a single process
leaves every other core idle while it simulates. ``run_sim_job(n, job, ...)`` runs a job in this process
(rank 0) and in n - 1 child processes (``python -m lawr_ext.runners.sim_processes``), joined by a gloo group
on localhost. They are the ranks torchrun would start, so the jobs are the multi-process collection
(``data/collect.py``: the dataset is bit-identical to one process's) and evaluation (``eval/evaluate.py``:
each rank rolls out its share of the episodes) that torchrun runs.

Training stays in one process: on a 2-core CPU, a gloo gradient all-reduce per step costs more than the
halved batch saves (flow steps took 2.8 times as long with two ranks).
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from lawr_ext.utils.distributed import World


def one_progress_bar(cfg, world: World):
    """``cfg`` (a dataclass with ``progress``) as this rank runs it: only rank 0 shows progress."""
    return cfg if world.is_writer else replace(cfg, progress=False)


def collect_job(world: World, task: str, out_dir: str | Path, num_envs: int, collect_cfg, device: str,
                **env_overrides) -> Path:
    """This rank's rounds of a collection into ``out_dir`` (``scripts/collect.py``'s, also under torchrun); rank 0
    holds the directory for all of them (one process locks it itself, in ``collect``)."""
    import contextlib

    from lawr_ext.data.collect import collect_task
    from lawr_ext.utils.lock import directory_lock

    collect_cfg = one_progress_bar(collect_cfg, world)
    shared = world.size > 1 and world.is_writer
    with directory_lock(Path(out_dir), "collection") if shared else contextlib.nullcontext():
        world.barrier()  # nobody writes before rank 0 holds the lock (a second collection on it is refused)
        path = collect_task(task, out_dir, num_envs, collect_cfg, device=device, rank=world.rank,
                            world_size=world.size, **env_overrides)
        world.barrier()  # the dataset is complete once every rank has written its rounds
    return path


def evaluate_job(world: World, run_dir: str | Path, methods: tuple[str, ...], eval_cfg, **options):
    """This rank's share of every method's episodes; rank 0 writes the merged reports (``options``: those of
    ``evaluate_run``)."""
    from lawr_ext.runners.evaluation import evaluate_run

    return evaluate_run(run_dir, methods, one_progress_bar(eval_cfg, world), world=world, **options)


def evaluate_policy_job(world: World, policy, eval_cfg, **env_overrides) -> dict:
    """``eval.evaluate_policy`` of a policy module given whole (pickled to every rank; e.g. a diagnostic policy
    that no run directory holds): this rank's share of the episodes, the merged report on every rank."""
    from lawr_ext.eval import evaluate_policy

    return evaluate_policy(policy, one_progress_bar(eval_cfg, world), world=world, **env_overrides)


JOBS = {"collect": collect_job, "evaluate": evaluate_job, "evaluate_policy": evaluate_policy_job}


def run_sim_job(num_processes: int, job: str | Callable, **kwargs):
    """Run ``job(world, **kwargs)`` (a name in ``JOBS``, or any module-level function) in ``num_processes`` local
    processes; returns rank 0's result. One process runs it here, without a process group.

    A child that fails stops the job in one line naming its rank (its own error is printed above it, on the
    same terminal); if this process fails, the children are killed.
    """
    if num_processes < 1:
        raise ValueError(f"sim_processes must be >= 1, got {num_processes}")
    job = JOBS[job] if isinstance(job, str) else job
    if num_processes == 1:
        return job(World(), **kwargs)
    if dist.is_initialized():
        raise ValueError("sim_processes > 1 starts its own processes: under torchrun leave it at 1 "
                         "(torchrun's ranks already simulate in parallel)")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="lawr_sim_") as tmp:
        spec = Path(tmp) / "job.pkl"
        spec.write_bytes(pickle.dumps((job, kwargs)))
        env = os.environ | {"MASTER_PORT": str(port), "WORLD_SIZE": str(num_processes), "OMP_NUM_THREADS": "1"}
        children = {rank: subprocess.Popen([sys.executable, "-m", "lawr_ext.runners.sim_processes", str(spec)],
                                           env=env | {"RANK": str(rank)})
                    for rank in range(1, num_processes)}
        threads = torch.get_num_threads()
        try:
            dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0,
                                    world_size=num_processes, timeout=TIMEOUT)
            torch.set_num_threads(1)  # each core simulates for one process: more threads would fight over them
            try:
                result = job(World(0, num_processes), **kwargs)
            finally:
                dist.destroy_process_group()
        except BaseException as err:
            _raise_if_a_child_failed(children, grace_s=5.0, cause=err)
            for child in children.values():
                child.kill()
            raise
        finally:
            torch.set_num_threads(threads)
        for child in children.values():
            child.wait()
        _raise_if_a_child_failed(children)
    return result


#: How long a rank waits for the others at a collective before it gives up.
TIMEOUT = timedelta(minutes=30)


def _raise_if_a_child_failed(children: dict[int, subprocess.Popen], grace_s: float = 0.0,
                             cause: BaseException | None = None) -> None:
    """One line naming the ranks that exited with an error (waiting up to ``grace_s`` for them to exit)."""
    deadline = time.monotonic() + grace_s
    while grace_s and time.monotonic() < deadline and any(c.poll() is None for c in children.values()):
        time.sleep(0.1)
    failed = {rank: child.poll() for rank, child in children.items() if child.poll() not in (None, 0)}
    if failed:
        for child in children.values():
            child.kill()
        raise RuntimeError(f"simulation process(es) of rank {', '.join(map(str, failed))} failed (exit code "
                           f"{next(iter(failed.values()))}): their error is printed above") from cause


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(spec: str) -> None:
    job, kwargs = pickle.loads(Path(spec).read_bytes())
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{os.environ['MASTER_PORT']}",
                            rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]), timeout=TIMEOUT)
    try:
        job(World(dist.get_rank(), dist.get_world_size()), **kwargs)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    import lawr_ext  # noqa: F401  (sets the Warp kernel cache before warp loads)

    _child(sys.argv[1])
