"""Env throughput of the Bimanual-Chunk tasks on the CPU default: env-steps/s and agent-steps/s per env count.

    python bench/env_throughput.py                      # 16, 64, 256 envs, warm Warp kernel cache
    python bench/env_throughput.py --cold --sizes 16    # also measure the first-run (cold cache) start-up cost
    python bench/env_throughput.py --task Bimanual-Chunk-Vision --sizes 8 --image_size 64   # physics + 3 cameras

Each size runs in its own process (Isaac Lab keeps one simulation per process). Actions are random joint targets
near the home pose with the grippers opening and closing, so the arms really move every step. An image task renders
its cameras every step (its observation holds their frames); ``--image_size`` and ``--cameras`` set them.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

RUN = """
import json, sys, time
t0 = time.perf_counter()
import lawr_ext, torch
from lawr_ext.tasks import make_env
from lawr_ext.tasks.bimanual.env_cfg import HOME_ARM_POSE
task, n, steps, device = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
env = make_env(task, n, device=device, **json.loads(sys.argv[5]))
t1 = time.perf_counter()
env.reset()
home = env.action_from_targets(torch.tensor(list(HOME_ARM_POSE.values()), device=env.device).expand(n, 2, 6),
                               torch.ones(n, 2, device=env.device))
def action():
    return (home + 0.1 * torch.randn(n, 14, device=env.device)).clamp(-1, 1)
for _ in range(10):  # warm-up: lazy allocations, first contacts
    env.step(action())
t2 = time.perf_counter()
for _ in range(steps):
    env.step(action())
elapsed = time.perf_counter() - t2
print("RESULT " + json.dumps({"envs": n, "startup_s": t1 - t0, "env_steps_per_s": steps / elapsed,
                              "agent_steps_per_s": steps * n / elapsed}))
env.close()
"""


def run(task: str, num_envs: int, steps: int, device: str, cache: str | None, overrides: dict | None = None) -> dict:
    env = dict(os.environ)
    if cache is not None:
        env["WARP_CACHE_PATH"] = cache
    proc = subprocess.run([sys.executable, "-c", RUN, task, str(num_envs), str(steps), device,
                           json.dumps(overrides or {})], capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark run with {num_envs} envs failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="Bimanual-Chunk")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--steps", type=int, default=100, help="timed env steps per size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cold", action="store_true", help="first run each size with an empty Warp kernel cache")
    parser.add_argument("--image_size", type=int, default=None, help="image tasks: square camera frames of this size")
    parser.add_argument("--cameras", nargs="+", default=None, help="image tasks: the cameras to render")
    args = parser.parse_args()
    overrides = {} if args.image_size is None else {"cameras.height": args.image_size, "cameras.width": args.image_size}
    if args.cameras:
        overrides["cameras.names"] = args.cameras

    print(f"{args.task} on {args.device}, {args.steps} timed steps" + (f", {overrides}" if overrides else ""))
    print(f"{'envs':>6} {'env-steps/s':>12} {'agent-steps/s':>14} {'start-up s':>11}")
    for n in args.sizes:
        if args.cold:
            with tempfile.TemporaryDirectory() as cache:
                cold = run(args.task, n, 5, args.device, cache, overrides)
            print(f"{n:>6} {'':>12} {'':>14} {cold['startup_s']:>11.1f}  (cold Warp cache: first-run compile)")
        r = run(args.task, n, args.steps, args.device, None, overrides)
        print(f"{n:>6} {r['env_steps_per_s']:>12.1f} {r['agent_steps_per_s']:>14.0f} {r['startup_s']:>11.1f}",
              flush=True)


if __name__ == "__main__":
    main()
