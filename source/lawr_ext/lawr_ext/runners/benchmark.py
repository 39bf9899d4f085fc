"""Benchmark L-AWR against every baseline: same data, same frozen phases 1-2, same evaluation, several seeds.

``run_benchmark`` is what ``scripts/benchmark.py`` runs. For each task one dataset
(``<dataset_dir>/<task>[.hdf5|.npz]`` if present, else collected once into ``<out>/<task>/dataset``); for
each seed one run directory ``<out>/<task>/seed<k>`` in which the runner trains the stages the methods
need (L-AWR's phases, the baselines) from the same frozen flow/critic. Every method is evaluated with the
run's ``eval`` config (the same for all of them) by ``evaluate_run``, which keeps its report in the run's
``eval/<method>``. One result file per (task, seed, method) cell,
``<out>/<task>/seed<k>/cells/<method>.json``; a rerun skips the cells already on disk. Then
``<out>/results.json``, ``<out>/table.md`` and the plots ``<out>/success.png``, ``<out>/curves_<task>.png``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import torch

from lawr_ext.algorithms import registry
from lawr_ext.configs.train import TrainConfig, load_train_config, train_config_from_dict
from lawr_ext.eval import seed_stats
from lawr_ext.runners.checkpoint import checkpoint_path, final_path, read_checkpoint
from lawr_ext.runners.evaluation import Evaluate, evaluate_run
from lawr_ext.runners.pipeline import load_policy, read_summary, train
from lawr_ext.tasks import PUBLISHED_OTHERS, get_task
from lawr_ext.utils.io import atomic_write_text

#: Every method the benchmark knows: L-AWR, then the baselines in registry order.
METHODS = tuple(registry.METHODS)
#: Timed calls of a policy at batch 1 (after WARMUP_CALLS untimed ones) for the per-chunk latency.
LATENCY_CALLS, WARMUP_CALLS = 30, 3
DATASET_SUFFIXES = ("", ".hdf5", ".h5", ".npz")


def log(message: str) -> None:
    print(f"[benchmark] {message}", flush=True)


def stages(method: str) -> tuple[str, ...]:
    """What the runner trains for ``method``: its training time is theirs summed (shared phases included)."""
    return registry.with_needs((registry.METHODS[method].name,))


def training_seconds(run_dir: Path, method: str) -> float:
    """Summed from the checkpoints (flow_bc and best_of_n have none of their own: only the phases count)."""
    paths = [checkpoint_path(run_dir, s) for s in stages(method)]
    return sum(read_checkpoint(p).get("train_seconds", 0.0) for p in paths if p.is_file())


@torch.no_grad()
def latency_ms(policy: torch.nn.Module, obs_dim: int) -> float:
    """Median wall time of one chunk at batch 1 on the CPU (what a robot's control loop waits for)."""
    obs = torch.zeros(1, obs_dim)
    for _ in range(WARMUP_CALLS):
        policy(obs)
    times = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        policy(obs)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def find_dataset(task: str, cfg: TrainConfig, out: Path, dataset_dir: Path | None) -> Path:
    """The task's dataset from ``dataset_dir`` if it has one (named by the task id, or by the name after a family
    prefix: ``cube-single-play-singletask-v0.npz`` for ``ogbench:cube-single-play-singletask-v0``), else
    collected (once, resumably) into ``out``."""
    names = dict.fromkeys((task, task.split(":")[-1]))
    if dataset_dir is not None:
        for name in names:
            for suffix in DATASET_SUFFIXES:
                candidate = dataset_dir / f"{name}{suffix}"
                if candidate.exists():
                    return candidate
    looked = " or ".join(f"{name}{{{','.join(DATASET_SUFFIXES)}}}" for name in names)
    if get_task(task).experts is None:
        raise ValueError(f"no dataset for {task} in {dataset_dir} (looked for {looked}) and the task has no "
                         f"scripted experts to collect one: pass --dataset_dir")
    if dataset_dir is not None:
        log(f"no dataset for {task} in {dataset_dir} (looked for {looked}): collecting")
    from lawr_ext.data.collect import collect_config_of, collect_task  # starts the simulator

    log(f"{task}: collecting {cfg.data.collect_num_episodes} episodes with {cfg.data.collect_num_envs} envs")
    collect_cfg = collect_config_of(cfg.data, seed=0, progress=cfg.progress)
    return collect_task(task, out / task / "dataset", cfg.data.collect_num_envs, collect_cfg, device=cfg.device)


def cell_path(out: Path, task: str, seed: int, method: str) -> Path:
    return out / task / f"seed{seed}" / "cells" / f"{method}.json"


def run_seed(task: str, seed: int, methods: list[str], out: Path, overrides: list[str], dataset: Path,
             evaluate: Evaluate | None = None) -> list[str]:
    """Train and evaluate the unfinished cells of one (task, seed); returns the failures (one line each)."""
    todo = [m for m in methods if not cell_path(out, task, seed, m).is_file()]
    if not todo:
        log(f"{task} seed {seed}: all {len(methods)} cells done, skipped")
        return []
    run_dir = out / task / f"seed{seed}"
    cfg = load_train_config(task, overrides + [f"seed={seed}", f"data.path='{dataset.resolve()}'"])
    needed = registry.with_needs(tuple(registry.METHODS[m].name for m in todo))
    log(f"{task} seed {seed}: training {', '.join(needed)}")
    train(cfg, dataset, run_dir, needed)

    failures = []
    for method in todo:  # one at a time: each finished cell is on disk before the next rollout starts
        log(f"{task} seed {seed}: evaluating {method}")
        result = evaluate_run(run_dir, [method], cfg.eval, evaluate=evaluate)[method]
        if result.error is not None:  # e.g. NaN observations from the simulator: the other cells still run
            failures.append(f"{task} seed {seed} {method}: evaluation failed: {result.error}")
            log(failures[-1])
            continue
        summary = result.report["summary"]
        obs_dim = read_checkpoint(final_path(run_dir, "flow"))["dims"]["obs_dim"]
        cell = {"task": task, "seed": seed, "method": method,
                "episodes": summary["episodes"], "successes": summary["successes"],
                "success_rate": summary["success_rate"], "return_mean": summary["return_mean"],
                "train_seconds": training_seconds(run_dir, method),
                "eval_seconds": result.seconds,
                "latency_ms": latency_ms(load_policy(run_dir, method), obs_dim)}
        atomic_write_text(json.dumps(cell, indent=2) + "\n", cell_path(out, task, seed, method))
        log(f"{task} seed {seed} {method}: success {cell['successes']}/{cell['episodes']}, "
            f"return {cell['return_mean']:.2f}, latency {cell['latency_ms']:.2f} ms")
    return failures


def aggregate(cells: list[dict]) -> dict:
    """One (task, method) over its seeds, each seed one training run (``eval/seed_stats.py``): success is the mean
    of the per-seed rates with its stratified-bootstrap 95% CI over seeds (Wilson's when there is one seed), the
    IQM likewise, each seed's rate with its own Wilson interval; the episode counts summed; the other means."""
    stats = seed_stats.over_seeds([c["successes"] for c in cells], [c["episodes"] for c in cells])
    return {"seeds": [c["seed"] for c in cells],
            "successes": sum(c["successes"] for c in cells), "episodes": sum(c["episodes"] for c in cells),
            "success_rate": stats["success_mean"], "success_ci95": stats["success_mean_ci95"],
            "success_iqm": stats["success_iqm"], "success_iqm_ci95": stats["success_iqm_ci95"],
            "ci95_method": stats["ci95_method"], "per_seed_success": stats["per_seed_success"],
            "per_seed_ci95": stats["per_seed_ci95"], "success_seed_std": statistics.pstdev(stats["per_seed_success"]),
            "return_mean": statistics.fmean(c["return_mean"] for c in cells),
            "train_seconds": statistics.fmean(c["train_seconds"] for c in cells),
            "latency_ms": statistics.fmean(c["latency_ms"] for c in cells)}


#: The method every other is compared with: P(REFERENCE > method) over seeds.
REFERENCE = "lawr"


def improvement(reference: dict, other: dict) -> dict:
    """P(a seed of the reference beats a seed of ``other``) on one or more tasks (``{task: aggregate}``, the tasks
    both have), with its stratified-bootstrap 95% CI."""
    tasks = [t for t in reference if t in other]
    return {"tasks": tasks} | seed_stats.probability_of_improvement(
        [reference[t]["per_seed_success"] for t in tasks], [other[t]["per_seed_success"] for t in tasks])


def across_tasks(aggregates: dict, methods: list[str]) -> dict:
    """Each method over every task it has cells on, tasks as the bootstrap's strata: the mean of the per-task
    means and the IQM of all its runs, with their 95% CIs, and P(REFERENCE > method) averaged over the tasks."""
    overall = {}
    for method in methods:
        by_task = {t: per[method] for t, per in aggregates.items() if method in per}
        if not by_task:
            continue
        runs = [agg["per_seed_success"] for agg in by_task.values()]
        overall[method] = {"tasks": list(by_task), "success_mean": seed_stats.point(runs),
                           "success_mean_ci95": seed_stats.bootstrap_ci(runs),
                           "success_iqm": seed_stats.point(runs, "iqm"),
                           "success_iqm_ci95": seed_stats.bootstrap_ci(runs, "iqm")}
        reference = {t: per[REFERENCE] for t, per in aggregates.items() if REFERENCE in per}
        if method != REFERENCE and set(reference) & set(by_task):
            overall[method]["p_reference_better"] = improvement(reference, by_task)
    return overall


def budget(out: Path, task: str, seeds: list[int], methods: list[str]) -> dict | None:
    """What a task's rows were measured at: gradient steps and batch of each stage trained, the dataset's size (from
    a run with a finished cell: one still training has no summary yet)."""
    runs = [out / task / f"seed{s}" for s in seeds if any(cell_path(out, task, s, m).is_file() for m in methods)]
    if not runs:
        return None
    cfg = train_config_from_dict(json.loads((runs[0] / "config.json").read_text()))
    steps = {name: (registry.stage_config(cfg, name).num_steps, registry.stage_config(cfg, name).batch_size)
             for name in registry.with_needs(tuple(registry.METHODS[m].name for m in methods))
             if registry.STAGES[name].learner is not None}
    dataset = read_summary(runs[0]).get("dataset", {})
    return {"stage_steps": {name: n for name, (n, _) in steps.items()},
            "stage_batch": {name: b for name, (_, b) in steps.items()},
            "dataset": Path(dataset.get("path", "?")).name, "episodes": int(dataset.get("episodes", 0)),
            "transitions": int(dataset.get("steps", 0))}


def published_figures(task: str) -> dict:
    """The task's published figures by method (``TaskSpec.published``), {} if it registers none."""
    spec = get_task(task)
    return {} if spec.published is None else spec.load("published")(task)


def collect_results(out: Path, tasks: list[str], seeds: list[int], methods: list[str]) -> dict:
    """Every finished cell on disk, the aggregate of each (task, method) that has at least one (with P(REFERENCE >
    method) where both have cells), each method across the tasks when there are several, what each task's rows
    were measured at, and the published figures beside them."""
    results: dict = {"tasks": tasks, "seeds": seeds, "methods": methods, "cells": [], "aggregate": {},
                     "budget": {task: budget(out, task, seeds, methods) for task in tasks},
                     "published": {task: published_figures(task) for task in tasks}}
    for task in tasks:
        for method in methods:
            cells = [json.loads(p.read_text()) for s in seeds if (p := cell_path(out, task, s, method)).is_file()]
            results["cells"] += cells
            if cells:
                results["aggregate"].setdefault(task, {})[method] = aggregate(cells)
        per = results["aggregate"].get(task, {})
        for method, agg in per.items():
            if REFERENCE in per and method != REFERENCE:
                agg["p_reference_better"] = improvement({task: per[REFERENCE]}, {task: agg})
    if len(tasks) > 1:
        results["overall"] = across_tasks(results["aggregate"], methods)
    return results


def markdown_table(results: dict, command: str) -> str:
    """One section per task, one row per method; across all tasks when there are several; the failed cells of this
    invocation listed at the end."""
    lines = ["# Benchmark", "", f"`{command}`", "",
             "Each training seed is one run (docs/results.md, *Statistics over seeds*). Success: mean over seeds "
             "(successes / episodes summed) with its stratified-bootstrap 95% CI over seeds (one seed: its Wilson "
             "interval); IQM: interquartile mean over seeds, likewise; per seed: `seed: rate [Wilson 95% CI]`. "
             f"P({REFERENCE} >): probability that a seed of {REFERENCE} beats a seed of the method, with "
             "its bootstrap CI. Return: mean over seeds. Train: wall seconds of the method's training, including "
             "the shared phases it is built from (flow_bc and best_of_n train nothing of their own). Latency: "
             "median milliseconds per chunk at batch 1 on the CPU.", ""]
    for task in results["tasks"]:
        published = results.get("published", {}).get(task) or {}
        lines += [f"## {task}", ""] + _budget_lines(results.get("budget", {}).get(task))
        extra = " published (paper's method, source) |" if published else ""
        lines += [f"| method | success | 95% CI | IQM [95% CI] | per seed [Wilson 95% CI] | P({REFERENCE} >) | "
                  "return | train s | latency ms |" + extra, "|---|---|---|---|---|---|---|---|---|" +
                  ("---|" if published else "")]
        for method in results["methods"]:
            agg = results["aggregate"].get(task, {}).get(method)
            paper = " " + ("; ".join(f"{value:.2f} ({name}, {source})" for name, value, source in
                                     published.get(method, [])) or "—") + " |" if published else ""
            if agg is None:
                lines.append(f"| {method} | no finished cell | | | | | | | |{paper}")
                continue
            per_seed = "; ".join(f"{seed}: {r:.2f} {_interval(ci)}" for seed, r, ci in
                                 zip(agg["seeds"], agg["per_seed_success"], agg["per_seed_ci95"]))
            lines.append(f"| {method} | {agg['success_rate']:.2f} ({agg['successes']}/{agg['episodes']}) | "
                         f"{_interval(agg['success_ci95'])} | {agg['success_iqm']:.2f} "
                         f"{_interval(agg['success_iqm_ci95'])} | {per_seed} | {_improvement_cell(agg)} | "
                         f"{agg['return_mean']:.2f} | {agg['train_seconds']:.1f} | {agg['latency_ms']:.2f} |{paper}")
        lines.append("")
        if published.get(PUBLISHED_OTHERS):
            lines += ["Published, methods lawr does not implement: " + "; ".join(
                f"{name} {value:.2f} ({source})" for name, value, source in published[PUBLISHED_OTHERS]) + ".", ""]
    if results.get("overall"):
        lines += ["## All tasks", "", "Tasks are the bootstrap's strata: seeds are resampled within each task. "
                  "Mean: of the per-task means; IQM: of every run on every task; "
                  f"P({REFERENCE} >): averaged over the tasks both have.", "",
                  f"| method | tasks | mean [95% CI] | IQM [95% CI] | P({REFERENCE} >) |", "|---|---|---|---|---|"]
        for method, agg in results["overall"].items():
            lines.append(f"| {method} | {len(agg['tasks'])} | {agg['success_mean']:.2f} "
                         f"{_interval(agg['success_mean_ci95'])} | {agg['success_iqm']:.2f} "
                         f"{_interval(agg['success_iqm_ci95'])} | {_improvement_cell(agg)} |")
        lines.append("")
    if results["failures"]:
        lines += ["## Failures (rerun the command to retry these cells)", ""]
        lines += [f"- {failure}" for failure in results["failures"]] + [""]
    return "\n".join(lines)


def _interval(ci: list[float]) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _improvement_cell(agg: dict) -> str:
    better = agg.get("p_reference_better")
    return "—" if better is None else f"{better['probability']:.2f} {_interval(better['ci95'])}"


def _budget_lines(measured: dict | None) -> list[str]:
    if measured is None:
        return []
    steps = sorted(set(measured["stage_steps"].values()))
    batches = sorted(set(measured["stage_batch"].values()))
    line = (f"Measured at {'/'.join(f'{n:,}' for n in steps)} gradient steps per stage (batch "
            f"{'/'.join(map(str, batches))}) on `{measured['dataset']}`: {measured['episodes']:,} episodes, "
            f"{measured['transitions']:,} transitions.")
    return [line, ""]


def learning_curves(run_dir: Path, method: str) -> tuple[str, list[int], list[float]] | None:
    """The method's own training loss from TensorBoard (L-AWR: the planner's); None if it trains nothing."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    stage = registry.METHODS[method].name
    folder = run_dir / "tensorboard" / stage
    if not folder.is_dir():
        return None
    events = EventAccumulator(str(folder))
    events.Reload()
    losses = sorted(t for t in events.Tags()["scalars"] if t.endswith("loss"))
    if not losses:
        return None
    scalars = events.Scalars(losses[0])
    return losses[0], [s.step for s in scalars], [s.value for s in scalars]


def plot(results: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    tasks, methods = results["tasks"], results["methods"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(1.2 * len(methods) + 2, 3.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        aggs = [results["aggregate"].get(task, {}).get(m) for m in methods]
        rates = [a["success_rate"] if a else 0.0 for a in aggs]
        errors = [[max(0.0, a["success_rate"] - a["success_ci95"][0]) if a else 0.0 for a in aggs],  # float noise
                  [max(0.0, a["success_ci95"][1] - a["success_rate"]) if a else 0.0 for a in aggs]]
        ax.bar(methods, rates, yerr=errors, capsize=3, color="tab:blue")
        ax.set(title=task, ylabel="success rate (mean over seeds, 95% CI)", ylim=(0, 1))
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(out / "success.png", dpi=120)
    plt.close(fig)
    written.append(out / "success.png")

    for task in tasks:
        fig, axes = plt.subplots(1, len(methods), figsize=(3 * len(methods), 2.8), squeeze=False)
        for ax, method in zip(axes[0], methods):
            ax.set_title(method)
            for seed in results["seeds"]:
                curve = learning_curves(out / task / f"seed{seed}", method)
                if curve is not None:
                    tag, steps, values = curve
                    ax.plot(steps, values, label=f"seed {seed}")
                    ax.set(xlabel="gradient step", ylabel=tag)
            if ax.lines:
                ax.legend(fontsize="small")
            else:
                ax.text(0.5, 0.5, "nothing trained\n(frozen phases only)", ha="center", va="center",
                        transform=ax.transAxes)
        fig.tight_layout()
        path = out / f"curves_{task}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def run_benchmark(tasks: list[str], seeds: list[int], methods: list[str], out: str | Path,
                  overrides: list[str] = (), dataset_dir: str | Path | None = None, evaluate: Evaluate | None = None,
                  command: str = "", make_plots: bool = True, table_only: bool = False) -> dict:
    """Every (task, seed, method) cell not yet on disk, then results.json, table.md and the plots. ``table_only``:
    train and evaluate nothing, write them from the cells on disk (a table still being extended: the cells run so
    far, each row naming its seeds)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; expected some of {METHODS}")
    out, overrides = Path(out), list(overrides)
    dataset_dir = Path(dataset_dir) if dataset_dir is not None else None
    failures = []
    for task in [] if table_only else tasks:
        if all(cell_path(out, task, s, m).is_file() for s in seeds for m in methods):
            log(f"{task}: all cells done, skipped")
            continue
        dataset = find_dataset(task, load_train_config(task, overrides), out, dataset_dir)
        for seed in seeds:
            failures += run_seed(task, seed, methods, out, overrides, dataset, evaluate)

    results = collect_results(out, tasks, seeds, methods) | {"command": command, "overrides": overrides,
                                                             "failures": failures}
    atomic_write_text(json.dumps(results, indent=2) + "\n", out / "results.json")
    atomic_write_text(markdown_table(results, command), out / "table.md")
    if make_plots:
        plot(results, out)
    return results
