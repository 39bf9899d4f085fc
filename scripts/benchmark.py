"""Benchmark L-AWR against every baseline on the same data and the same frozen phases 1-2, over several seeds.

    python scripts/benchmark.py --tasks Bimanual-Chunk --seeds 0 1 2 profile=tiny             # tiny, CPU
    python scripts/benchmark.py --tasks Bimanual-Chunk Bimanual-Chunk-Insertion --seeds 0 1 2 \
        --methods lawr fql diffusion --dataset_dir runs/datasets --out runs/benchmark profile=gpu
    python scripts/benchmark.py --tasks ogbench:cube-single-play-singletask-v0 ogbench:cube-double-play-singletask-v0 \
        --seeds 0 1 2 --dataset_dir /data/og profile=ogbench_cpu     # OGBench, with the published figures beside

Writes ``<out>/results.json``, ``<out>/table.md`` and plots; a rerun skips the cells already on disk, and
``--table_only`` writes them from those cells alone (the cells run so far of a table still being extended). What it
does and where each file goes: ``lawr_ext/runners/benchmark.py``. Anything not a known argument is a hydra
override of every run's TrainConfig (as in train_lawr.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lawr_ext.runners.benchmark import METHODS, log, run_benchmark
from lawr_ext.utils.cli import run_main, set_verbose, split_overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["Bimanual-Chunk", "Bimanual-Chunk-Insertion"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help=f"some of {METHODS}")
    parser.add_argument("--dataset_dir", default=None, help="folder with one dataset per task, named by the task")
    parser.add_argument("--out", default="runs/benchmark", help="output folder; rerun with the same to resume")
    parser.add_argument("--no_plots", action="store_true")
    parser.add_argument("--table_only", action="store_true",
                        help="train and evaluate nothing: write the table from the cells already in --out")
    parser.add_argument("--verbose", action="store_true", help="show Isaac Lab's [INFO] lines (scene, simulation start)")
    own, overrides = split_overrides(sys.argv[1:])
    args, unknown = parser.parse_known_args(own)
    overrides += unknown
    set_verbose(args.verbose)
    command = "python scripts/benchmark.py " + " ".join(sys.argv[1:])
    started = time.perf_counter()
    results = run_benchmark(args.tasks, args.seeds, args.methods, args.out, overrides, args.dataset_dir,
                            command=command, make_plots=not args.no_plots,
                            table_only=args.table_only)
    print((Path(args.out) / "table.md").read_text())
    log(f"wall time {time.perf_counter() - started:.0f} s; results in {args.out}")
    if results["failures"]:
        sys.exit("[benchmark] " + "; ".join(results["failures"]))


if __name__ == "__main__":
    run_main(main, "[benchmark]")
