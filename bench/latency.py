"""Per-chunk inference latency on the CPU: exported L-AWR (one network pass) vs K-step DDIM diffusion.

    python bench/latency.py                          # default sizes, batch 1 and 256, 1 thread
    python bench/latency.py --batch_sizes 1 --threads 2

Both policies are built at the project's default sizes with the same network (``FlowConfig``: the
diffusion denoiser IS the flow's architecture), with random weights: latency does not depend on
training. L-AWR runs as exported (ONNX via onnxruntime, TorchScript) and eagerly; diffusion runs eagerly,
as the evaluation harness runs it. Every figure is the median of repeated calls, all measured in this one
run, round-robin; the ratios divide diffusion's latency by L-AWR's. One diffusion call at batch 256 costs
K full network passes over 256 x 50 tokens (minutes on a small CPU), so above batch 1 every policy is timed
``--repeats_large`` times (default once).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lawr_ext.algorithms.baselines.diffusion import DiffusionDenoiser, DiffusionPolicy
from lawr_ext.algorithms.flow import build_flow_decoder
from lawr_ext.algorithms.planner import LatentPlanner, LAWRPolicy
from lawr_ext.configs.baselines import DiffusionConfig
from lawr_ext.configs.network import ChunkNetConfig
from lawr_ext.configs.train import TrainConfig
from lawr_ext.export import build_metadata, export_onnx, export_torchscript, load_onnx, load_torchscript
from lawr_ext.modules.normalizer import fit_obs_normalizer
from lawr_ext.tasks import get_task
from lawr_ext.tasks.bimanual.env_cfg import BimanualChunkEnvCfg


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, called round-robin: background load hits all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def build_policies(obs_dim: int, horizon: int, action_dim: int, diffusion_steps: int):
    """Default-size L-AWR (normalizer -> planner -> frozen one-step flow) and an equal-width diffusion policy."""
    cfg = TrainConfig()
    normalizer = fit_obs_normalizer(torch.randn(1024, obs_dim))
    decoder = build_flow_decoder(cfg.flow, obs_dim, horizon, action_dim).requires_grad_(False).eval()
    lawr = LAWRPolicy(normalizer, LatentPlanner(cfg.planner, obs_dim, horizon, action_dim), decoder).eval()
    diffusion_cfg = DiffusionConfig(network=ChunkNetConfig.of(cfg.flow), sample_steps=diffusion_steps)
    denoiser = DiffusionDenoiser(diffusion_cfg, obs_dim, horizon, action_dim).eval()
    diffusion = DiffusionPolicy(denoiser, normalizer, diffusion_cfg.sample_steps).eval()
    return lawr, diffusion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and onnxruntime")
    parser.add_argument("--diffusion_steps", type=int, default=50, help="K DDIM steps of the diffusion baseline")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per policy at batch 1")
    parser.add_argument("--repeats_large", type=int, default=1,
                        help="timed calls above batch 1 (a K=50 diffusion call at batch 256 takes minutes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    env_cfg = BimanualChunkEnvCfg()
    obs_dim, horizon, action_dim = env_cfg.observation_space, env_cfg.chunk_horizon, env_cfg.action_space
    lawr, diffusion = build_policies(obs_dim, horizon, action_dim, args.diffusion_steps)
    task = get_task("Bimanual-Chunk")
    metadata = build_metadata(lawr, task=task.id, obs_dim=obs_dim, control_rate_hz=task.control_hz,
                              config_hash="latency-bench", **task.load("action_spec")())

    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        session = load_onnx(export_onnx(lawr, Path(tmp) / "lawr.onnx", metadata), num_threads=args.threads)[0]
        lawr_ts = load_torchscript(export_torchscript(lawr, Path(tmp) / "lawr.pt", metadata))[0]
        print(f"obs {obs_dim}, chunk {horizon}x{action_dim}, flow/denoiser {TrainConfig().flow.arch} "
              f"width {TrainConfig().flow.width} depth {TrainConfig().flow.depth}, K={args.diffusion_steps}, "
              f"{args.threads} thread(s); median ms per chunk")
        for batch in args.batch_sizes:
            obs = torch.randn(batch, obs_dim)
            obs_np = obs.numpy()
            fns = {"L-AWR onnxruntime": lambda: session.run(None, {"obs": obs_np}),
                   "L-AWR TorchScript": lambda: lawr_ts(obs),
                   "L-AWR eager": lambda: lawr(obs),
                   "diffusion eager": lambda: diffusion(obs)}
            # warm-up: TorchScript profiles each new shape on its first calls; diffusion only once (it is slow)
            interleaved_medians({k: f for k, f in fns.items() if batch == args.batch_sizes[0] or "L-AWR" in k}, 1)
            ms = interleaved_medians(fns, args.repeats if batch == 1 else args.repeats_large)
            ms = {k: 1e3 * v for k, v in ms.items()}
            print(f"\nbatch {batch}")
            for name, value in ms.items():
                print(f"  {name:<22} {value:10.2f} ms")
            for name in ("L-AWR onnxruntime", "L-AWR TorchScript", "L-AWR eager"):
                print(f"  ratio diffusion eager / {name:<18} {ms['diffusion eager'] / ms[name]:7.1f}x")


if __name__ == "__main__":
    main()
