"""Evaluate a trained policy in N vectorized envs: success rate with a Wilson 95% CI, return, episode length.

    python scripts/evaluate.py --checkpoint runs/Bimanual-Chunk/<run>            # CPU, small
    python scripts/evaluate.py --checkpoint runs/<run> --num_envs 4096 --num_episodes 4096 --device cuda
    python scripts/evaluate.py --checkpoint runs/<run> --exec_horizon 10 --temporal_ensemble
    python scripts/evaluate.py --checkpoint runs/<run> --policy flow_bc           # the behavior policy (or a baseline)
    python scripts/evaluate.py --checkpoint runs/<run> --sim_processes 2     # one simulator per CPU core
    torchrun --nproc_per_node=4 scripts/evaluate.py --checkpoint runs/<run> --num_envs 4096 --device cuda
        # one process per GPU, each with its own envs and seed range; rank 0 writes the merged report

``--checkpoint`` is a run directory or one of its ``<stage>/final.pt`` files. Writes ``eval.json`` and
``eval.md`` to ``--out`` (default ``<run_dir>/eval/<policy>``, and then the run's summary and TensorBoard
record the result too: ``lawr_ext.runners.evaluate_run``). For L-AWR it also runs Phase 3's support
check (typical-set fraction, distance of its chunks to the data) on the run's dataset.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, fields
from pathlib import Path

from lawr_ext.algorithms.registry import METHODS
from lawr_ext.configs.eval import EvalConfig
from lawr_ext.runners import evaluate_run
from lawr_ext.runners.pipeline import run_config, run_dir_of
from lawr_ext.runners.sim_processes import run_sim_job
from lawr_ext.utils.cli import run_main, set_verbose
from lawr_ext.utils.distributed import init_world, rank_device, require_device


def parse_args() -> argparse.Namespace:
    """Evaluation settings left out default to the run's own (its TrainConfig.eval: e.g. OGBench's 50 episodes and
    whole-chunk execution), so a run is re-evaluated under the protocol it was trained for."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="run directory or a <stage>/final.pt inside it")
    parser.add_argument("--policy", default="lawr", choices=tuple(METHODS), help="which method's policy of the run")
    parser.add_argument("--task", default=None, help="task id (default: the task the run was trained on)")
    parser.add_argument("--num_envs", type=int, default=None)
    parser.add_argument("--num_episodes", type=int, default=None)
    parser.add_argument("--exec_horizon", type=int, default=None,
                        help="steps of each chunk executed before replanning (<= H)")
    parser.add_argument("--temporal_ensemble", action=argparse.BooleanOptionalAction, default=None,
                        help="ACT-style averaging of overlapping chunks")
    parser.add_argument("--ensemble_decay", type=float, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--episode_length_s", type=float, default=None, help="override the env's episode length")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="dataset for the Phase-3 support check (default: the run's own dataset)")
    parser.add_argument("--support_samples", type=int, default=1024, help="dataset chunks it uses; 0 skips it")
    parser.add_argument("--sim_processes", type=int, default=None,
                        help="local processes that simulate, one per core, each with its own envs and seed range "
                             "(default: the run's sim_processes; 1 under torchrun)")
    parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="show Isaac Lab's [INFO] lines (scene, simulation start)")
    parser.add_argument("--out", type=Path, default=None, help="output folder for eval.json / eval.md")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    path = Path(args.checkpoint)
    run_dir = run_dir_of(path)
    train_cfg = asdict(run_config(run_dir))  # the run's config of record
    task = args.task or train_cfg["task"]
    world = init_world(args.device)  # torchrun: this process is one rank; otherwise a world of one
    args.device = rank_device(args.device, world)
    require_device(args.device)
    set_verbose(args.verbose)
    cfg_fields = {f.name for f in fields(EvalConfig)}
    given = {k: v for k, v in vars(args).items() if k in cfg_fields and k != "task" and v is not None}
    run_eval = {k: v for k, v in train_cfg["eval"].items() if k in cfg_fields and k not in ("task", "progress")}
    cfg = EvalConfig(**run_eval | given,
                     task=task, progress=not args.no_progress and world.is_writer)
    overrides = {} if args.episode_length_s is None else {"episode_length_s": args.episode_length_s}

    options = dict(out=args.out, env_overrides=overrides, support_samples=args.support_samples, dataset=args.dataset)
    if world.size > 1:  # torchrun's ranks already simulate in parallel
        result = evaluate_run(path, [args.policy], cfg, world=world, **options)[args.policy]
    else:
        processes = train_cfg.get("sim_processes", 1) if args.sim_processes is None else args.sim_processes
        result = run_sim_job(processes, "evaluate", run_dir=path, methods=[args.policy], eval_cfg=cfg,
                             **options)[args.policy]
    if result.error is not None:
        raise ValueError(f"evaluation of {args.policy} failed: {result.error}")
    if not world.is_writer:
        return
    s, support = result.report["summary"], result.report["support"]
    print(f"success {s['success_rate']:.3f}  95% CI [{s['success_ci95'][0]:.3f}, {s['success_ci95'][1]:.3f}]  "
          f"return {s['return_mean']:.2f} ± {s['return_std']:.2f}  ({s['episodes']} episodes)")
    if support:
        print("support check: " + ", ".join(f"{k} = {v:.4g}" for k, v in support.items()))
    print(f"wrote {result.out / 'eval.json'} and {result.out / 'eval.md'}")


if __name__ == "__main__":
    run_main(main)
