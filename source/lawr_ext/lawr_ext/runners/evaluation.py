"""Evaluating a run's trained methods: one call from a run directory to a report per method, kept in the run.

``evaluate_run`` is what ``scripts/train_lawr.py`` (after training), ``scripts/evaluate.py`` and the benchmark's
evaluation cells call. Each method's policy comes from ``load_policy``; every one is loaded before any rollout
starts, so a checkpoint that does not belong is refused before any work. In the run directory it writes::

    eval/<method>/eval.json, eval.md    the report (eval/metrics.py), unless the caller names another folder
    tensorboard/eval/                   eval/<method>/success_rate and return_mean
    summary.json / .md                  eval_<method>: success rate, its 95% CI, mean return, episodes

A rollout that fails (the simulator returns non-finite observations, the policy non-finite actions) is recorded
as that method's error, in its result and in the summary, and the other methods are still evaluated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from lawr_ext.algorithms.base import ChunkPolicy
from lawr_ext.configs.eval import EvalConfig
from lawr_ext.eval import evaluate_policy, support_check, write_report
from lawr_ext.runners.checkpoint import final_path, read_checkpoint
from lawr_ext.runners.pipeline import (load_policy, open_dataset, read_summary, recorded_dataset, run_config,
                                       run_dir_of, write_summary)
from lawr_ext.utils.distributed import World

#: (policy, EvalConfig) -> report with at least a "summary" (``eval.evaluate_policy``; tests pass a stand-in)
Evaluate = Callable[[torch.nn.Module, EvalConfig], dict]


@dataclass
class MethodEvaluation:
    """One method's evaluation: its report, or the one-line reason its rollout failed."""

    method: str
    report: dict | None = None  # None when the rollout failed
    error: str | None = None
    seconds: float = 0.0  # wall time of the evaluation (env creation and rollouts)
    out: Path | None = None  # the folder its eval.json and eval.md were written to (None: not written)


def evaluate_run(path: str | Path, methods: Sequence[str], eval_cfg: EvalConfig, *, out: str | Path | None = None,
                 step: int | None = None, world: World = World(), env_overrides: dict | None = None,
                 support_samples: int = 0, dataset: str | Path | None = None,
                 evaluate: Evaluate | None = None) -> dict[str, MethodEvaluation]:
    """Evaluate ``methods`` ("lawr", "flow_bc", baselines) of the run at ``path`` (its directory, or one of its
    ``<stage>/final.pt``, as ``load_policy`` takes it) under ``eval_cfg``; returns their evaluations by method.

    Reports go to ``run_dir/eval/<method>``, with the TensorBoard scalars (at ``step``; default the run's
    ``planner.num_steps``) and the summary's ``eval_<method>``; with ``out`` (one method only) the report goes
    there and the run's TensorBoard and summary are left as they are. ``support_samples`` > 0: L-AWR's report
    also holds Phase 3's support check on that many chunks of ``dataset`` (default: the run's own, skipped when
    it is not on disk).
    ``env_overrides`` are env cfg fields for the env (e.g. ``episode_length_s``). Under torchrun every rank
    calls this with its ``world`` and rolls out its share; rank 0 writes.
    """
    run_dir = run_dir_of(path)
    if out is not None and len(methods) != 1:
        raise ValueError(f"evaluate_run: out names the folder of one method's report, got {len(methods)} methods")
    policies = {method: load_policy(path, method) for method in methods}  # a foreign checkpoint: refused here
    evaluate = evaluate or partial(evaluate_policy, world=world, **(camera_overrides(run_dir) | (env_overrides or {})))
    results = {}
    for method, policy in policies.items():
        started = time.perf_counter()
        try:
            report = evaluate(policy.to(eval_cfg.device), eval_cfg)
        except ValueError as err:  # e.g. NaN observations from the simulator: the other methods still run
            results[method] = MethodEvaluation(method, error=str(err), seconds=time.perf_counter() - started)
            continue
        results[method] = MethodEvaluation(method, report, seconds=time.perf_counter() - started)
        if not world.is_writer:
            continue
        report["checkpoint"] = str(path)
        report["support"] = _support(run_dir, policy, dataset, support_samples, eval_cfg.seed) \
            if method == "lawr" and support_samples > 0 else None
        results[method].out = Path(out) if out is not None else run_dir / "eval" / method
        write_report(report, results[method].out)
    if world.is_writer and out is None:
        _record(run_dir, results, run_config(run_dir).planner.num_steps if step is None else step)
    return results


def camera_overrides(run_dir: Path) -> dict:
    """The env settings that render what an image run's policies were trained on: the same cameras, in the same
    order, at the same resolution (from its flow's recorded dims); nothing for a state run."""
    dims = read_checkpoint(final_path(run_dir, "flow"), "flow")["dims"]
    if "images" not in dims:
        return {}
    _, height, width = dims["images"]
    cameras = {"cameras.names": tuple(dims["cameras"])} if dims.get("cameras") else {}
    return cameras | {"cameras.height": height, "cameras.width": width}


def evaluation_failures(results: dict[str, MethodEvaluation]) -> list[str]:
    """One line per failed evaluation: "evaluation of <method> failed: <reason>"."""
    return [f"evaluation of {r.method} failed: {r.error}" for r in results.values() if r.error is not None]


def _support(run_dir: Path, policy: ChunkPolicy, dataset: str | Path | None, samples: int, seed: int) -> dict | None:
    """Phase 3's support check on the dataset, read as the run read it; None when there is no dataset on disk."""
    dataset = dataset or recorded_dataset(run_dir)
    if dataset is None or not Path(dataset).exists():
        return None
    return support_check(policy, open_dataset(run_config(run_dir), dataset), samples, seed)


def _record(run_dir: Path, results: dict[str, MethodEvaluation], step: int) -> None:
    """The run's TensorBoard scalars and the summary's eval_<method> entries (an error for a failed one)."""
    from torch.utils.tensorboard import SummaryWriter  # only where something is evaluated

    summary = read_summary(run_dir)
    with SummaryWriter(run_dir / "tensorboard" / "eval") as writer:
        for method, result in results.items():
            if result.report is None:
                summary[f"eval_{method}"] = {"error": result.error}
                continue
            s = result.report["summary"]
            writer.add_scalar(f"eval/{method}/success_rate", s["success_rate"], step)
            writer.add_scalar(f"eval/{method}/return_mean", s["return_mean"], step)
            summary[f"eval_{method}"] = {"success_rate": s["success_rate"], "success_ci95": s["success_ci95"],
                                         "return_mean": s["return_mean"], "episodes": s["episodes"]}
    write_summary(run_dir, summary)
