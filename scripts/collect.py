"""Collect an offline dataset of scripted-expert episodes (resumable: rerun the same command after a crash).

    python scripts/collect.py --task Bimanual-Chunk --num_envs 16 --num_episodes 200
    python scripts/collect.py --task Bimanual-Chunk --num_envs 16 --num_episodes 200 --quality_mix 1 0 0
    python scripts/collect.py --task Bimanual-Chunk-Insertion --num_envs 256 --num_episodes 4096 --device cuda:0
    python scripts/collect.py --task Bimanual-Chunk-Vision --num_envs 8 --num_episodes 64 --image_size 64 64
    python scripts/collect.py --task Bimanual-Chunk-Vision --num_envs 8 --num_episodes 64 --randomize 0.2 0.1 0.03

Writes a directory of HDF5 shards in Isaac Lab's layout (see docs/data.md), by
default runs/datasets/<task>-seed<S>. Rerunning the same command skips what is on disk; a larger
--num_episodes appends, and the result equals one uninterrupted run.

Scaling out: more envs per process (--num_envs), then one process per GPU (or per CPU core group) with
torchrun. Every rank collects its own rounds (seeds and demo ids) into the same --out directory, each round
one atomic shard file; rank 0 prints the report of the merged dataset. The dataset is the one a single
process with the same --num_envs/--seed/--num_episodes writes (data/collect.py says what is guaranteed), and
a killed run can be finished with any number of processes:

    # one host, 4 GPUs: rank r simulates on cuda:<LOCAL_RANK>
    torchrun --nproc_per_node=4 scripts/collect.py --task Bimanual-Chunk --num_envs 1024 --num_episodes 100000 \
        --device cuda --out /data/bimanual
    # CPU only: 2 processes (gloo)
    torchrun --nproc_per_node=2 scripts/collect.py --task Bimanual-Chunk --num_envs 16 --num_episodes 200 --out D
    # several hosts, --out on a filesystem they share; the same command on each host, node_rank 0..N-1
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST0:29500 \
        scripts/collect.py --task Bimanual-Chunk --num_envs 1024 --num_episodes 1000000 --device cuda --out /shared/d

The ranks meet at the start (rank 0 locks the directory: a second collection on it is refused in one line) and
at the end (a barrier before the report); if one rank fails, torchrun stops the others.
Isaac Lab's own multi-GPU scripts are launched the same way (torchrun + ``--distributed``, which makes each
rank simulate on cuda:<LOCAL_RANK>); here ``--device cuda`` under torchrun does that.
"""

import argparse
import time
from pathlib import Path

from lawr_ext import REPO_ROOT
from lawr_ext.data.collect import CollectConfig
from lawr_ext.data.dataset import load_episodes
from lawr_ext.runners.sim_processes import collect_job
from lawr_ext.utils.cli import run_main, set_verbose
from lawr_ext.utils.distributed import init_world, rank_device, require_device


def parse_args() -> argparse.Namespace:
    defaults = CollectConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="Bimanual-Chunk")
    parser.add_argument("--num_envs", type=int, default=16)
    parser.add_argument("--num_episodes", type=int, default=defaults.num_episodes)
    parser.add_argument("--out", default=None, help="dataset directory (default runs/datasets/<task>-seed<S>)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default="cpu", help="physics device: cpu or cuda:N (under torchrun: cuda)")
    parser.add_argument("--quality_mix", type=float, nargs="+", default=list(defaults.quality_mix),
                        help="probability of each quality id (clean noisy suboptimal)")
    parser.add_argument("--strategy_mix", type=float, nargs="+", default=None,
                        help="probability of each strategy id (default: uniform)")
    parser.add_argument("--episode_length_s", type=float, default=None, help="override the env's episode length")
    parser.add_argument("--cameras", nargs="+", default=None,
                        help="image tasks: the cameras to record, in this order (default: the task's, top left_wrist "
                             "right_wrist)")
    parser.add_argument("--image_size", type=int, nargs=2, default=None, metavar=("HEIGHT", "WIDTH"),
                        help="image tasks: the cameras' resolution in pixels (default: the task's, 64 64)")
    parser.add_argument("--randomize", type=float, nargs=3, default=None,
                        metavar=("COLOR_GAIN", "BRIGHTNESS", "TOP_POSITION_NOISE"),
                        help="image tasks: domain randomization per episode (env cfg cameras.randomization): colour "
                             "gain U(1 +- g), brightness U(+-b) x 255, overhead camera position U(+-n) m; default off")
    parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="show Isaac Lab's [INFO] lines (scene, simulation start)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    set_verbose(args.verbose)
    out = Path(args.out or REPO_ROOT / "runs" / "datasets" / f"{args.task}-seed{args.seed}")
    env_overrides = {} if args.episode_length_s is None else {"episode_length_s": args.episode_length_s}
    if args.cameras is not None:
        env_overrides["cameras.names"] = tuple(args.cameras)
    if args.image_size is not None:
        env_overrides["cameras.height"], env_overrides["cameras.width"] = args.image_size
    if args.randomize is not None:
        for name, value in zip(("color_gain", "brightness", "top_position_noise"), args.randomize):
            env_overrides[f"cameras.randomization.{name}"] = value
    world = init_world(args.device)  # torchrun: this process is one rank; otherwise a world of one
    device = rank_device(args.device, world)  # one GPU per rank
    require_device(device)
    start = time.perf_counter()
    cfg = CollectConfig(num_episodes=args.num_episodes, seed=args.seed, quality_mix=tuple(args.quality_mix),
                        strategy_mix=tuple(args.strategy_mix) if args.strategy_mix else None,
                        progress=not args.no_progress and world.is_writer)
    out = collect_job(world, args.task, out, args.num_envs, cfg, device, **env_overrides)
    if not world.is_writer:
        return
    episodes = load_episodes(out)
    print(f"{out}: {episodes.num_episodes} episodes, {episodes.num_steps} steps, "
          f"success {episodes.success.float().mean():.1%} ({time.perf_counter() - start:.1f} s, "
          f"{world.size} process(es))")


if __name__ == "__main__":
    run_main(main)
