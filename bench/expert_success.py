"""Success of the scripted experts per quality (clean / noisy / suboptimal) and strategy: what a dataset will hold.

    python bench/expert_success.py --task Bimanual-Chunk-Insertion              # 16 episodes per quality
    python bench/expert_success.py --task Bimanual-Chunk --episodes_per_quality 64 --qualities clean

One batched episode per env (strategy = env index mod 4), first episode only; seeded, so reruns repeat.
"""

import argparse
import time

import lawr_ext  # noqa: F401  (sets the Warp kernel cache before warp loads)
import torch

from lawr_ext.tasks import make_env
from lawr_ext.tasks.bimanual.experts import NUM_STRATEGIES, QUALITY, make_expert, run_first_episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="Bimanual-Chunk")
    parser.add_argument("--episodes_per_quality", type=int, default=16)
    parser.add_argument("--qualities", nargs="+", choices=QUALITY, default=list(QUALITY))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--episode_length_s", type=float, default=6.0, help="the experts' schedules end within 5.5 s")
    args = parser.parse_args()

    per, qualities = args.episodes_per_quality, [QUALITY.index(q) for q in args.qualities]
    n = per * len(qualities)
    start = time.perf_counter()
    env = make_env(args.task, n, seed=args.seed, episode_length_s=args.episode_length_s)
    ids = torch.arange(n)
    quality = torch.tensor(qualities).repeat_interleave(per)
    strategy = ids % NUM_STRATEGIES
    out = run_first_episodes(env, make_expert(args.task, env), strategy, quality)
    success, dropped = out["success"], out["object_dropped"]
    env.close()

    print(f"\n{args.task}, seed {args.seed}, {time.perf_counter() - start:.0f} s\n")
    print("| quality | success | " + " | ".join(f"strategy {s}" for s in range(NUM_STRATEGIES)) + " | object dropped |")
    print("|---" * (NUM_STRATEGIES + 3) + "|")
    for q in qualities:
        rows = quality == q
        cells = [f"{int(success[rows & (strategy == s)].sum())}/{int((rows & (strategy == s)).sum())}"
                 for s in range(NUM_STRATEGIES)]
        print(f"| {QUALITY[q]} | {int(success[rows].sum())}/{int(rows.sum())} | " + " | ".join(cells)
              + f" | {int(dropped[rows].sum())} |")


if __name__ == "__main__":
    main()
