"""Train L-AWR: collect a dataset (if none is given) -> flow -> critic -> planner -> evaluate L-AWR and flow BC.

    python scripts/train_lawr.py --task Bimanual-Chunk                                  # everything, task defaults
    python scripts/train_lawr.py --task Bimanual-Chunk profile=smoke --device cpu       # the main job, ~8 min on 2 cores
    python scripts/train_lawr.py --task Bimanual-Chunk --dataset runs/datasets/Bimanual-Chunk-seed0 \
        flow.num_steps=2000 critic.expectile=0.7                                        # hydra overrides
    python scripts/train_lawr.py --task Bimanual-Chunk --run_dir runs/x --phase planner planner.weights.temperature=0.5
    python scripts/train_lawr.py --task Bimanual-Chunk --baselines fql diffusion         # + baselines, same phases
    python scripts/train_lawr.py --task ogbench:cube-single-play-singletask-v0 --dataset cube-single.npz  # OGBench
    ./isaaclab.sh -p scripts/train_lawr.py --task Bimanual-Chunk ...                    # via Isaac Lab's launcher
    torchrun --nproc_per_node=2 scripts/train_lawr.py --task Bimanual-Chunk --dataset D  # multi-process (gloo/NCCL)

Known arguments first (Isaac Lab's convention, launcher arguments such as --device included); everything
else is a hydra override of the TrainConfig composed from the task's preset, a yaml in its family's agents/
folder (lawr_ext/tasks/bimanual/agents/lawr_bimanual_chunk.yaml; see lawr_ext/configs/train.py). A killed run
resumes from its last checkpoints when the same command is rerun with the same --run_dir. ``--phase X`` trains
only phase X in --run_dir, from the saved (frozen) products of the earlier phases. With --dataset and --no_eval
nothing here needs a simulator (nor Isaac Lab).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from lawr_ext.utils.cli import split_overrides  # light (no torch): before argument parsing, as Isaac Lab scripts

try:
    from isaaclab.app import add_launcher_args
except ImportError:  # an offline training host without Isaac Lab: of the launcher's arguments, lawr reads --device
    def add_launcher_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--device", default=None, help="device to train on: cpu, cuda or cuda:N")
        parser.add_argument("--verbose", action="store_true", help="more output")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--task", default="Bimanual-Chunk", help="registered task id; selects its training preset")
parser.add_argument("--phase", default="all", help="which L-AWR phase to train alone (flow, critic or planner), or all")
parser.add_argument("--dataset", default=None, help="dataset (shard directory, .hdf5 or .npz); default: collect one")
parser.add_argument("--run_dir", default=None, help="output folder (default runs/<task>/<UTC time>); reuse it to resume")
parser.add_argument("--baselines", nargs="*", default=[], metavar="NAME",
                    help="baselines to train (after the phases, from the same frozen flow/critic) and evaluate "
                         "(names: algorithms/registry.py)")
parser.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
parser.add_argument("--no_eval", action="store_true", help="skip the rollouts after training")
add_launcher_args(parser)
parser.set_defaults(device=None)  # the launcher's default is cuda:0; without --device the config decides
own_args, hydra_args = split_overrides(sys.argv[1:])  # "--baselines fql profile=cpu": the override is hydra's
args_cli, unknown_args = parser.parse_known_args(own_args)
hydra_args += unknown_args

from lawr_ext import REPO_ROOT  # noqa: E402  (after argument parsing, as Isaac Lab scripts do)
from lawr_ext.algorithms.registry import BASELINE_NAMES, PHASE_NAMES  # noqa: E402
from lawr_ext.configs.train import TrainConfig, load_train_config  # noqa: E402
from lawr_ext.runners import evaluation_failures, train  # noqa: E402
from lawr_ext.runners.pipeline import recorded_dataset  # noqa: E402
from lawr_ext.runners.sim_processes import run_sim_job  # noqa: E402
from lawr_ext.tasks import get_task  # noqa: E402
from lawr_ext.utils.cli import run_main, set_verbose  # noqa: E402
from lawr_ext.utils.distributed import init_world  # noqa: E402


def config_from_cli() -> TrainConfig:
    """Known arguments become hydra overrides too, so they are validated like any other field."""
    overrides = []
    if args_cli.device is not None:
        overrides += [f"device={args_cli.device}", f"eval.device={args_cli.device}"]
    if args_cli.seed is not None:
        overrides.append(f"seed={args_cli.seed}")
    if args_cli.dataset is not None:
        overrides.append(f"data.path='{Path(args_cli.dataset).resolve()}'")
    if args_cli.run_dir is not None:
        overrides.append(f"run_dir='{Path(args_cli.run_dir).resolve()}'")
    if args_cli.no_eval:
        overrides.append("evaluate=false")
    return load_train_config(args_cli.task, overrides + hydra_args)


def dataset_path(cfg: TrainConfig, run_dir: Path) -> Path:
    """The configured dataset, else the one collected into the run (collection resumes what is on disk)."""
    if cfg.data.path is not None:
        return Path(cfg.data.path)
    if get_task(cfg.task).experts is None:
        sys.exit(f"[lawr] task {cfg.task} has no scripted experts to collect with: pass --dataset "
                 f"(formats: docs/data.md)")
    from lawr_ext.data.collect import collect_config_of

    print(f"[lawr] no dataset given: collecting {cfg.data.collect_num_episodes} episodes of {cfg.task} "
          f"with {cfg.data.collect_num_envs} envs in {cfg.sim_processes} process(es) into {run_dir / 'dataset'}")
    collect_cfg = collect_config_of(cfg.data, seed=cfg.seed, progress=cfg.progress)
    return run_sim_job(cfg.sim_processes, "collect", task=cfg.task, out_dir=run_dir / "dataset",
                       num_envs=cfg.data.collect_num_envs, collect_cfg=collect_cfg, device=cfg.device)


def main() -> None:
    try:
        cfg = config_from_cli()
    except ValueError as err:
        raise ValueError(f"bad configuration: {err}") from None
    unknown = [b for b in args_cli.baselines if b not in BASELINE_NAMES]
    if args_cli.phase not in PHASE_NAMES + ("all",) or unknown:
        raise ValueError(f"--phase must be one of {PHASE_NAMES + ('all',)} and --baselines some of {BASELINE_NAMES}; "
                         f"got --phase {args_cli.phase} --baselines {' '.join(args_cli.baselines)}")
    if args_cli.phase != "all" and cfg.run_dir is None:
        raise ValueError(f"--phase {args_cli.phase} needs --run_dir: the run whose earlier phases it builds on")
    set_verbose(args_cli.verbose or getattr(args_cli, "info", False))  # Isaac Lab's [INFO] lines: hidden by default
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_dir = Path(cfg.run_dir) if cfg.run_dir else REPO_ROOT / "runs" / cfg.task / stamp
    phases = PHASE_NAMES if args_cli.phase == "all" else (args_cli.phase,)
    world = init_world(cfg.device)  # torchrun: every rank runs this script; rank 0 collects, writes, evaluates
    if world.size > 1 and cfg.run_dir is None:
        raise ValueError("under torchrun pass --run_dir, so that every rank writes and reads the same run")
    if world.is_writer:
        print(f"[lawr] task {cfg.task}, phases {', '.join(phases)}, run_dir {run_dir}, {world.size} process(es)")

    recorded = recorded_dataset(run_dir)
    if cfg.data.path is None and args_cli.phase in ("all", "flow") and recorded is not None \
            and recorded.resolve() != (run_dir / "dataset").resolve():  # before any collection starts
        raise ValueError(f"{run_dir} trains on the dataset {recorded}: pass --dataset {recorded} to resume it "
                         "(without --dataset a new one would be collected into the run)")
    if args_cli.phase in ("all", "flow") or cfg.data.path is not None:
        dataset = world.gather(dataset_path(cfg, run_dir) if world.is_writer else None)[0]
    else:  # a later phase alone: the dataset the earlier phases were trained on
        dataset = recorded or run_dir / "dataset"
    failures = []
    train(cfg, dataset, run_dir, phases + tuple(args_cli.baselines), world)
    if world.is_writer and cfg.evaluate and "planner" in phases:
        # a failing rollout is recorded in the summary; the other methods are still evaluated
        methods = ("lawr", "flow_bc") + tuple(b for b in args_cli.baselines if b != "flow_bc")
        failures = evaluation_failures(run_sim_job(cfg.sim_processes, "evaluate", run_dir=run_dir, methods=methods,
                                                   eval_cfg=cfg.eval, step=cfg.planner.num_steps))
    if world.is_writer:
        print((run_dir / "summary.md").read_text())
    if failures:
        sys.exit("[lawr] " + "; ".join(failures))


if __name__ == "__main__":
    run_main(main)
