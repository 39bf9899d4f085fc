"""Per-chunk inference latency: L-AWR (planner + one flow pass) vs K-step DDIM diffusion, pair by pair in one runtime.

    python bench/latency.py                                        # CPU: eager, .pt2, onnxruntime; batch 1
    python bench/latency.py --device cuda --batch_sizes 1 4096     # GPU: eager, CUDA graph, torch.compile
    python bench/latency.py --runtimes eager pt2 aoti --batch_sizes 1 256 --json latency.json
    python bench/latency.py --image_size 64                        # Bimanual-Chunk-Vision: 3 cameras, encoder included

Both policies are built at the project's default sizes with the same network (``FlowConfig``: the
diffusion denoiser IS the flow's architecture), with random weights: latency does not depend on
training. Each ratio divides diffusion's latency by L-AWR's in the SAME runtime, so it measures the K
denoising steps, not one runtime's overhead against another's; where a runtime times only one of the two,
there is no ratio:

    eager         the policies' own forward (as the evaluation harness runs them)
    pt2           the torch.export program lawr's exporter saves (policy.pt2), loaded back (CPU)
    aoti          the AOTInductor package lawr's exporter compiles (policy.aoti.pt2), loaded back (CPU); not a
                  default runtime (~30 s to compile L-AWR at toy size)
    onnxruntime   exported to ONNX with lawr's exporter, run by onnxruntime (CPU)

torch.export unrolls diffusion's K DDIM steps into one graph: tracing K = 50 took minutes on a 2-core CPU, and
the ONNX export of it > 12 min. The three exported runtimes time L-AWR only, unless ``--export_diffusion`` names
them.
    cuda_graph    the whole call captured once per batch size and replayed (CUDA): no launch overhead
    compile       torch.compile of each policy's networks (planner and flow / denoiser), the glue eager

With ``--image_size N`` (``--cameras C``, default 3) both policies are the image tasks': joint state (32) plus C
N x N camera frames through the vision encoder (``modules/vision.py``, default features), timed on the packed
observation (state and frames as one flat input, the form the policies take; the exported two-input graph packs
them first, a copy of the frames).

Each figure is the median of repeated calls after one warm-up call, all measured in this one run,
round-robin (background load hits both policies alike). One K = 50 diffusion call at batch 256 takes
minutes on a small CPU: above batch 1 each policy is timed ``--repeats_large`` times (default 2).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from lawr_ext.algorithms.base import ChunkPolicy, EnvActionPolicy
from lawr_ext.algorithms.baselines.diffusion import DiffusionDenoiser, DiffusionPolicy
from lawr_ext.algorithms.flow import FlowDecoder, build_flow_decoder
from lawr_ext.algorithms.planner import LAWRPolicy, LatentPlanner
from lawr_ext.configs.baselines import DiffusionConfig
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.configs.network import ChunkNetConfig
from lawr_ext.configs.planner import PlannerConfig
from lawr_ext.modules.normalizer import fit_normalizers
from lawr_ext.modules.vision import ObservationEncoder

#: Bimanual-Chunk's observation size, chunk horizon and action size (tests/test_gpu_check.py checks them
#: against the env cfg; the bench does not import the simulator, so it runs on a host without it).
BIMANUAL_DIMS = (45, 50, 14)
VISION_STATE_DIM = 32  # the image tasks' joint positions and velocities
RUNTIMES = {"cpu": ("eager", "pt2", "onnxruntime"), "cuda": ("eager", "cuda_graph", "compile")}
POLICIES = ("L-AWR", "diffusion")


def build_policies(obs_dim: int, horizon: int, action_dim: int, diffusion_steps: int,
                   flow_cfg: FlowConfig | None = None, planner_cfg: PlannerConfig | None = None,
                   image_shape: tuple[int, int, int] | None = None) -> dict[str, ChunkPolicy]:
    """L-AWR (normalizer -> planner -> frozen one-step flow) and a diffusion policy of the same network, each
    mapped back to env actions as load_policy hands them to evaluation and export (``EnvActionPolicy``); with
    ``image_shape`` (cameras, H, W) both read state + frames through the vision encoder."""
    flow_cfg, planner_cfg = flow_cfg or FlowConfig(), planner_cfg or PlannerConfig()
    normalizer, action_normalizer = fit_normalizers(torch.randn(1024, obs_dim), torch.rand(1024, action_dim) * 2 - 1,
                                                    "min_max")
    if image_shape is not None:
        normalizer = ObservationEncoder(normalizer, obs_dim, image_shape, flow_cfg.encoder.features).eval()
        obs_dim = normalizer.output_dim  # what the networks read
    decoder = build_flow_decoder(flow_cfg, obs_dim, horizon, action_dim).requires_grad_(False).eval()
    lawr = LAWRPolicy(normalizer, LatentPlanner(planner_cfg, obs_dim, horizon, action_dim), decoder)
    diffusion_cfg = DiffusionConfig(network=ChunkNetConfig.of(flow_cfg), sample_steps=diffusion_steps)
    denoiser = DiffusionDenoiser(diffusion_cfg, obs_dim, horizon, action_dim).eval()
    diffusion = DiffusionPolicy(denoiser, normalizer, diffusion_cfg.sample_steps)
    return {"L-AWR": EnvActionPolicy(lawr, action_normalizer).eval(),
            "diffusion": EnvActionPolicy(diffusion, action_normalizer).eval()}


# --- runtimes: runtime(policy, name, setup) -> at(obs) -> a call that computes one batch of chunks ---------
class Setup(NamedTuple):
    workdir: Path         # exported files
    threads: int          # CPU threads of onnxruntime
    obs_dim: int
    export_diffusion: tuple[str, ...]  # runtimes that export the K-step diffusion graph too (minutes)


def bench_metadata(policy: ChunkPolicy, obs_dim: int) -> dict:
    """Export metadata of shapes only (no joint fields): the exporter needs it, the timing does not read it."""
    from lawr_ext.export import build_metadata

    return build_metadata(policy, task="latency-bench", obs_dim=obs_dim, control_rate_hz=50.0,
                          config_hash="latency-bench")


def eager(policy: ChunkPolicy, name: str, setup: Setup):
    return lambda obs: lambda: policy(obs)


def pt2(policy: ChunkPolicy, name: str, setup: Setup):
    from lawr_ext.export import export_pt2, load_pt2

    _refuse_diffusion_unless_asked(policy, setup, "pt2")
    path = export_pt2(policy, setup.workdir / f"{name}.pt2", bench_metadata(policy, setup.obs_dim))
    module = load_pt2(path)[0]
    return lambda obs: lambda: module(obs)


def _refuse_diffusion_unless_asked(policy: ChunkPolicy, setup: Setup, runtime: str) -> None:
    if any(isinstance(m, DiffusionPolicy) for m in policy.modules()) and runtime not in setup.export_diffusion:
        raise RuntimeError("not exported: torch.export unrolls the K DDIM steps into one graph, which takes minutes "
                           f"on a small CPU; pass --export_diffusion {runtime} to wait for it")


def aoti(policy: ChunkPolicy, name: str, setup: Setup):
    from lawr_ext.export import export_aoti, load_aoti

    _refuse_diffusion_unless_asked(policy, setup, "aoti")
    path = export_aoti(policy, setup.workdir / f"{name}.aoti.pt2", bench_metadata(policy, setup.obs_dim))
    model = load_aoti(path)[0]
    return lambda obs: lambda: model(obs)


def onnxruntime(policy: ChunkPolicy, name: str, setup: Setup):
    from lawr_ext.export import export_onnx, load_onnx

    _refuse_diffusion_unless_asked(policy, setup, "onnxruntime")
    path = export_onnx(policy, setup.workdir / f"{name}.onnx", bench_metadata(policy, setup.obs_dim))
    session = load_onnx(path, num_threads=setup.threads)[0]

    def at(obs: torch.Tensor):
        feeds = {"obs": obs.cpu().numpy()}
        return lambda: session.run(None, feeds)
    return at


def cuda_graph(policy: ChunkPolicy, name: str, setup: Setup):
    def at(obs: torch.Tensor):
        static_obs = obs.clone()
        side = torch.cuda.Stream()  # warm-up runs off the default stream, as graph capture requires
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                policy(static_obs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_chunks = policy(static_obs)  # lives in the graph's memory pool; each replay rewrites it

        def replay(graph=graph, buffers=(static_obs, static_chunks)):  # keeps the memory the graph reads alive
            graph.replay()
        return replay
    return at


def compiled(policy: ChunkPolicy, name: str, setup: Setup):
    policy = copy.deepcopy(policy)
    for module in policy.modules():  # L-AWR: planner and flow; diffusion: the denoiser's network
        if isinstance(module, (FlowDecoder, LatentPlanner)):
            module.compile(dynamic=False)
    return lambda obs: lambda: policy(obs)


EXPORTED_RUNTIMES = ("pt2", "aoti", "onnxruntime")  # run a file lawr's exporter wrote
RUNTIME_FNS = {"eager": eager, "pt2": pt2, "aoti": aoti, "onnxruntime": onnxruntime,
               "cuda_graph": cuda_graph, "compile": compiled}


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, device: str) -> dict[str, float]:
    """Median seconds per call of each function, called round-robin: background load hits all of them alike."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def measure(device: str = "cpu", batch_sizes: tuple[int, ...] = (1,), runtimes: tuple[str, ...] | None = None,
            dims: tuple[int, int, int] = BIMANUAL_DIMS, diffusion_steps: int = 50, repeats: int = 7,
            repeats_large: int = 2, threads: int = 1, flow_cfg: FlowConfig | None = None,
            planner_cfg: PlannerConfig | None = None, export_diffusion: tuple[str, ...] = (),
            on_result: Callable[[dict], None] | None = None, image_shape: tuple[int, int, int] | None = None) -> dict:
    """{"config": ..., "runtimes": {runtime: {"seconds", "batches": {batch: {"L-AWR_ms", "diffusion_ms", "ratio"}},
    "errors": {...}}}}; ratio = diffusion / L-AWR, both in that runtime, and only where both were timed.

    A policy a runtime cannot take (an exporter or a compiler that fails on its graph) is recorded under
    "errors" and the rest still runs. ``on_result`` sees the result after every runtime (to save it as it grows).
    """
    kind = "cuda" if device.startswith("cuda") else "cpu"
    runtimes = tuple(runtimes or RUNTIMES[kind])
    torch.manual_seed(0)
    policies = {k: p.to(device) for k, p in build_policies(*dims, diffusion_steps, flow_cfg, planner_cfg,
                                                           image_shape).items()}
    flow_cfg = flow_cfg or FlowConfig()
    # the flat input the policies take: the observation, or state and frames packed (modules/vision.py)
    input_dim = dims[0] if image_shape is None else policies["L-AWR"].policy.obs_normalizer.input_dim
    result = {"config": {"device": device, "obs_dim": dims[0], "horizon": dims[1], "action_dim": dims[2],
                         "images": list(image_shape) if image_shape is not None else None,
                         "network": f"{flow_cfg.arch} width {flow_cfg.width} depth {flow_cfg.depth}",
                         "diffusion_steps": diffusion_steps, "threads": threads, "repeats": repeats,
                         "repeats_large": repeats_large, "statistic": "median ms per chunk batch"},
              "runtimes": {}}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for runtime in runtimes:
            started = time.perf_counter()
            setup = Setup(Path(tmp), threads, input_dim, tuple(export_diffusion))
            outcome: dict = {"batches": {}, "errors": {}}
            makers = {}
            for name, policy in policies.items():
                try:
                    makers[name] = RUNTIME_FNS[runtime](policy, name, setup)
                except Exception as err:  # noqa: BLE001 - one failure must not lose the other figures
                    outcome["errors"][name] = one_line(err)
            try:
                for batch in batch_sizes:
                    obs = torch.randn(batch, input_dim, device=device)
                    fns = {k: make(obs) for k, make in makers.items()}
                    interleaved_medians(fns, 1, device)  # warm-up: compilation, first kernels, allocations
                    seconds = interleaved_medians(fns, repeats if batch == 1 else repeats_large, device)
                    row = {f"{k}_ms": 1e3 * s for k, s in seconds.items()}
                    if len(seconds) == len(POLICIES):
                        row["ratio"] = seconds["diffusion"] / seconds["L-AWR"]
                    outcome["batches"][str(batch)] = row
            except Exception as err:  # noqa: BLE001 - e.g. a compiler failing at the first call
                outcome["errors"]["timing"] = one_line(err)
            result["runtimes"][runtime] = {"seconds": time.perf_counter() - started} | outcome
            if on_result is not None:
                on_result(result)
    return result


def one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())[:500]}"


def print_table(result: dict) -> None:
    cfg = result["config"]
    frames = f" + frames {cfg['images']}" if cfg.get("images") else ""
    print(f"obs {cfg['obs_dim']}{frames}, chunk {cfg['horizon']}x{cfg['action_dim']}, {cfg['network']}, "
          f"K={cfg['diffusion_steps']}, {cfg['device']}, {cfg['threads']} thread(s); {cfg['statistic']}")
    print(f"{'runtime':<12} {'batch':>6} {'L-AWR ms':>11} {'diffusion ms':>13} {'diffusion / L-AWR':>18}")
    for runtime, outcome in result["runtimes"].items():
        for batch, row in outcome["batches"].items():
            cells = [f"{row[k]:.3f}" if k in row else "-" for k in ("L-AWR_ms", "diffusion_ms")]
            ratio = f"{row['ratio']:.1f}x" if "ratio" in row else "-"
            print(f"{runtime:<12} {batch:>6} {cells[0]:>11} {cells[1]:>13} {ratio:>18}")
        for what, error in outcome["errors"].items():
            print(f"{runtime:<12} {what}: {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=None, help="default: 1 (CPU), 1 4096 (CUDA)")
    parser.add_argument("--runtimes", nargs="+", choices=tuple(RUNTIME_FNS), default=None,
                        help=f"default: {' '.join(RUNTIMES['cpu'])} (CPU), {' '.join(RUNTIMES['cuda'])} (CUDA)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch and onnxruntime")
    parser.add_argument("--diffusion_steps", type=int, default=50, help="K DDIM steps of the diffusion baseline")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per policy at batch 1")
    parser.add_argument("--repeats_large", type=int, default=2, help="timed calls per policy above batch 1")
    parser.add_argument("--export_diffusion", nargs="+", default=[], choices=EXPORTED_RUNTIMES,
                        help="export the diffusion policy for these runtimes too (K unrolled steps: minutes each, "
                             "> 12 min for onnxruntime on a small CPU)")
    parser.add_argument("--image_size", type=int, default=None,
                        help="the image tasks' policies: state + camera frames of this size through the encoder")
    parser.add_argument("--cameras", type=int, default=3, help="with --image_size: how many cameras")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    image_shape = None if args.image_size is None else (args.cameras, args.image_size, args.image_size)
    torch.set_num_threads(args.threads)
    batch_sizes = args.batch_sizes or ([1, 4096] if args.device.startswith("cuda") else [1])
    result = measure(args.device, tuple(batch_sizes), args.runtimes, diffusion_steps=args.diffusion_steps,
                     repeats=args.repeats, repeats_large=args.repeats_large, threads=args.threads,
                     export_diffusion=tuple(args.export_diffusion), image_shape=image_shape,
                     dims=BIMANUAL_DIMS if image_shape is None else (VISION_STATE_DIM, *BIMANUAL_DIMS[1:]))
    print_table(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
