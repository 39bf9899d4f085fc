"""One visit to a GPU host: train phases 1-3 at the largest size the time allows, measure them, time inference,
and bring the run back in the device tool's result files. Run it through bench/gpu_check.sh (docs/gpu.md "GPU check").

    bash bench/gpu_check.sh OUT_DIR                       # the GPU host: dataset runs/datasets/gpu_check
    bash bench/gpu_check.sh OUT_DIR --budget_s 240 flow.batch_size=2048   # hydra overrides go last
    bash bench/gpu_check.sh OUT_DIR --device cpu          # tiny mode: same code path, synthetic data, ~1 min

Stages, in order (each one's figures are saved before the next starts, so a run cut short still returns
what it measured; a failing stage is recorded under "errors" and the later ones that do not need it run):

    probe     each phase's learner is built at the run's sizes (profile=gpu, transformer flow) and timed for
              --probe_steps steps after 3 warm-up steps; phase 1 also times a plain flow-matching step of
              the same network and batch (no JVP): the Mean Flow step's cost relative to it (goal <= 2x)
    train     lawr_ext.runners.train, phase by phase, each for its share of --budget_s at the probed rate;
              steps/s from the phase's checkpoint (train_seconds), peak memory per phase
    pack      the run's final.pt files into <= 7 parts (bench/gpu_transport.py; joined back here)
    latency   bench/latency.py at the run's network sizes: L-AWR vs K = 50 DDIM diffusion, per runtime

OUT_DIR receives gpu_check.json (every figure) and run.tar.gz.NNN: at most 8 files, as the tool returns.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

import gpu_transport
import latency
from lawr_ext.algorithms import registry
from lawr_ext.algorithms.base import Learner, freeze
from lawr_ext.algorithms.flow import MeanFlow, average_velocity_from_x, interpolate
from lawr_ext.algorithms.stage import StageInputs
from lawr_ext.algorithms.training import masked_sum, optimizer_step
from lawr_ext.configs.train import TrainConfig, load_train_config
from lawr_ext.data import keys
from lawr_ext.data.dataset import ChunkDataset
from lawr_ext.data.plain import write_plain
from lawr_ext.runners import checkpoint_path, open_dataset, read_checkpoint, train
from lawr_ext.runners.pipeline import chunk_basis
from lawr_ext.utils.io import atomic_write_text

PHASES = registry.PHASE_NAMES

#: profile=cpu's objective (the measured CPU run of docs/results.md), so that a GPU run differs from it in size only:
#: returns span [0, 500], hence standardized advantages, and an IQL-style critic.
OBJECTIVE = ["critic.expectile=0.7", "planner.weights.standardize=true", "planner.weights.temperature=0.5"]
#: CPU tiny mode: the transformer flow and the phases of profile=gpu, shrunk until the whole check takes ~1 min.
TINY = ["flow.width=32", "flow.depth=1", "flow.num_heads=2", "flow.time_embed_dim=16", "flow.batch_size=16",
        "critic.hidden_dim=32", "critic.num_layers=1", "critic.batch_size=16",
        "planner.hidden_dim=32", "planner.num_blocks=1", "planner.batch_size=16", "log_interval=5"]
#: Seconds a latency runtime needs at least to be started (torch.compile compiles both policies per batch size).
LATENCY_NEEDS_S = {"compile": 120.0}


class Clock:
    def __init__(self, limit_s: float):
        self.start, self.limit_s = time.perf_counter(), limit_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.limit_s - self.elapsed()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak_memory(device: str) -> float:
    """Start a new peak-memory window; returns the memory allocated now (MiB, CUDA; 0 on the CPU)."""
    if not device.startswith("cuda"):
        return 0.0
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated() / 2**20


def peak_memory_mib(device: str) -> float:
    """CUDA: torch.cuda.max_memory_allocated since the last reset. CPU: the process's peak RSS (no reset)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def host_info(device: str) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "numpy": np.__version__, "cpu_count": os.cpu_count(), "device": device,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda_available": torch.cuda.is_available(),
            # a phase's peak covers its whole train() call: the dataset on the device, networks, optimizers, activations
            "memory_kind": "torch.cuda.max_memory_allocated" if device.startswith("cuda") else "process max RSS"}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        info |= {"device_name": props.name, "capability": f"{props.major}.{props.minor}",
                 "device_memory_gib": props.total_memory / 2**30, "cudnn": torch.backends.cudnn.version()}
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info


def synthetic_dataset(path: Path, obs_dim: int = 45, action_dim: int = 14, num_episodes: int = 24,
                      seed: int = 0) -> Path:
    """Bimanual-Chunk-shaped plain data (tiny mode): smooth random actions, some episodes succeed and end."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(60, 120, num_episodes)
    n = int(lengths.sum())
    last = np.zeros(n, dtype=bool)
    last[np.cumsum(lengths) - 1] = True
    succeeded = (np.arange(num_episodes) % 3 == 0).repeat(lengths)
    actions = np.tanh(0.1 * rng.normal(size=(n, action_dim)).cumsum(axis=0))
    write_plain(path, observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
                actions=actions.astype(np.float32), rewards=rng.uniform(0, 1, n).astype(np.float32),
                terminals=last & succeeded, timeouts=last & ~succeeded, success=last & succeeded)
    return path


def run_config(args: argparse.Namespace, dataset: Path, run_dir: Path, steps: dict[str, int] | None = None
               ) -> TrainConfig:
    """profile=gpu sizes (the transformer flow), OBJECTIVE, evaluation off, one checkpoint per phase (at its end)."""
    overrides = ["profile=gpu", f"device={args.device}", f"eval.device={args.device}", f"data.path='{dataset}'",
                 f"run_dir='{run_dir}'", "evaluate=false", "progress=false", "checkpoint_interval=1000000000"]
    overrides += OBJECTIVE + (TINY if args.tiny else [])
    overrides += [f"{phase}.num_steps={n}" for phase, n in (steps or {}).items()]
    return load_train_config(args.task, overrides + args.overrides)


# --- probe: the cost of one step of each phase, on learners built at the run's sizes -----------------------
def phase_learners(cfg: TrainConfig, dataset: ChunkDataset) -> Iterator[tuple[str, Learner, Callable]]:
    """Each phase's learner as runners.pipeline.run_stage builds it (the stage registry, from the frozen products
    of the phases before it), with random (untrained) weights: a step costs the same. With it, the map of a
    dataset batch into its coordinates (Phase 1's), as the trainer applies it."""
    basis = chunk_basis(cfg)
    inputs = StageInputs(dataset.obs_dim, basis.num_coeffs, dataset.action_dim, dataset=dataset, chunk_basis=basis,
                         action_normalization=cfg.data.action_normalization)
    for phase in PHASES:
        torch.manual_seed(cfg.seed)
        learner = registry.PHASES[phase].learner(registry.stage_config(cfg, phase), inputs).to(cfg.device)
        yield phase, learner, (learner if phase == "flow" else inputs.products["flow"]).learner_batch
        inputs.products[phase] = freeze(learner.product())  # what the next phases are built from


def flow_matching_update(learner: MeanFlow, batch) -> float:
    """A plain flow-matching step of the same network, batch and optimizer: target v itself, at r = t, no JVP.
    As MeanFlow.update it clips, steps, updates the EMA and reads its scalars back (the same syncs)."""
    obs_norm, x, mask = learner.obs_normalizer(batch[keys.OBS]), batch[keys.ACTIONS], batch[keys.MASK]
    noise = torch.randn_like(x)
    t, _ = learner.sample_times(x.shape[0], x.device)
    z_t = interpolate(x, noise, t)
    u = average_velocity_from_x(z_t, learner.decoder(z_t, t, t, obs_norm), t, learner.cfg.time_eps)
    sq_error = masked_sum((u - (noise - x)).square(), mask, dim=(1, 2))
    loss = sq_error.mean()
    info = {"loss": loss.item(), "u_mse": sq_error.mean().item()}
    grad_norm = optimizer_step(learner.optimizers["flow"], loss, learner.decoder.parameters(),
                               learner.cfg.max_grad_norm, "flow matching")
    info["grad_norm"] = grad_norm.item()
    learner.update_ema()
    return info["loss"]


def time_steps(step, num_steps: int, device: str) -> dict[str, float]:
    """Seconds per call of ``step`` over ``num_steps`` calls after 3 warm-up calls, and (CUDA) the peak memory
    the calls add on top of what was allocated before them."""
    for _ in range(3):
        step()
    before = reset_peak_memory(device)
    start = time.perf_counter()
    for _ in range(num_steps):
        step()
    sync(device)
    seconds = (time.perf_counter() - start) / num_steps
    result = {"ms_per_step": 1e3 * seconds, "steps_per_s": 1.0 / seconds}
    if device.startswith("cuda"):
        result["step_memory_mib"] = peak_memory_mib(device) - before
    return result


def probe(cfg: TrainConfig, dataset: ChunkDataset, num_steps: int) -> dict:
    """{"rates": {phase: steps/s}, "mean_flow_jvp": {...}} at the run's sizes and batch sizes."""
    rates, jvp = {}, {}
    for phase, learner, coordinates in phase_learners(cfg, dataset):
        batch_size = registry.stage_config(cfg, phase).batch_size
        rates[phase] = time_steps(lambda: learner.update(coordinates(dataset.sample(batch_size))), num_steps,
                                  cfg.device)
        if phase == "flow":
            plain = time_steps(lambda: flow_matching_update(learner, coordinates(dataset.sample(batch_size))),
                               num_steps, cfg.device)
            jvp = {"mean_flow": rates[phase], "flow_matching": plain, "batch_size": batch_size,
                   "ratio": rates[phase]["ms_per_step"] / plain["ms_per_step"], "goal": "ratio <= 2"}
    return {"rates": rates, "mean_flow_jvp": jvp}


def phase_steps(rates: dict, budget_s: float, shares: list[float], min_steps: int) -> dict[str, int]:
    """Gradient steps per phase: its share of the budget at its probed rate."""
    total = sum(shares)
    return {phase: max(min_steps, int(budget_s * share / total * rates[phase]["steps_per_s"]))
            for phase, share in zip(PHASES, shares)}


def train_phases(cfg: TrainConfig, dataset: Path, run_dir: Path, report) -> None:
    """The library's train(), one phase per call, so each phase gets its own wall time and peak memory."""
    for phase in PHASES:
        reset_peak_memory(cfg.device)
        start = time.perf_counter()
        summary = train(cfg, dataset, run_dir, stages=(phase,))
        ckpt = read_checkpoint(checkpoint_path(run_dir, phase), phase)
        report["phases"][phase] = {
            "num_steps": ckpt["step"], "batch_size": registry.stage_config(cfg, phase).batch_size,
            "train_seconds": ckpt["train_seconds"], "steps_per_s": ckpt["step"] / ckpt["train_seconds"],
            "wall_seconds": time.perf_counter() - start, "peak_memory_mib": peak_memory_mib(cfg.device),
            "final_metrics": summary.get("phases", {}).get(phase, {})}
        report["dataset"] = summary.get("dataset", {})
        report.save()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="result folder (the device tool's $OUT)")
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (tiny mode, for CI)")
    parser.add_argument("--task", default="Bimanual-Chunk")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="default: runs/datasets/gpu_check (GPU); a synthetic one (tiny mode)")
    parser.add_argument("--budget_s", type=float, default=None, help="training seconds, all phases (default 240; tiny 10)")
    parser.add_argument("--shares", type=float, nargs=3, default=[0.5, 0.25, 0.25], metavar=("FLOW", "CRITIC", "PLANNER"),
                        help="each phase's share of --budget_s")
    parser.add_argument("--probe_steps", type=int, default=None, help="timed steps per phase in the probe (default 20; tiny 5)")
    parser.add_argument("--time_limit_s", type=float, default=None,
                        help="a latency runtime is skipped when less time than it needs is left of this many seconds "
                             "(default 480; tiny 120)")
    parser.add_argument("--latency_batches", type=int, nargs="+", default=None, help="default 1 4096 (GPU); 1 4 (tiny)")
    parser.add_argument("--latency_runtimes", nargs="+", default=None, choices=tuple(latency.RUNTIME_FNS),
                        help="default eager cuda_graph compile (GPU); eager (tiny)")
    parser.add_argument("--matmul_precision", default="highest", choices=("highest", "high", "medium"),
                        help="torch.set_float32_matmul_precision: 'high' allows TF32 (torch's default is 'highest')")
    parser.add_argument("--work_dir", type=Path, default=None, help="where the run is trained (default: a temp dir)")
    args, args.overrides = parser.parse_known_args()
    unknown = [a for a in args.overrides if a.startswith("-")]
    if unknown:
        parser.error(f"unknown arguments {unknown} (hydra overrides are key=value)")
    args.tiny = not args.device.startswith("cuda")
    defaults = {"budget_s": (240.0, 10.0), "probe_steps": (20, 5), "time_limit_s": (480.0, 120.0),
                "latency_batches": ([1, 4096], [1, 4]), "latency_runtimes": (list(latency.RUNTIMES["cuda"]), ["eager"])}
    for name, (gpu, tiny) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else gpu)
    return args


class Report(dict):
    """gpu_check.json as it grows: saved after every stage, so a run cut short returns what it measured."""

    def __init__(self, path: Path, clock: Clock, **fields):
        super().__init__(errors={}, stage_seconds={}, **fields)
        self.path, self.clock = path, clock

    def save(self) -> None:
        self["elapsed_s"] = self.clock.elapsed()
        atomic_write_text(json.dumps(self, indent=2) + "\n", self.path)

    def stage(self, name: str, fn) -> bool:
        """Run ``fn``; a failure is recorded under "errors" (one line) and the check goes on."""
        start = time.perf_counter()
        try:
            fn()
        except Exception as err:  # noqa: BLE001 - the stages that do not need this one still run
            self["errors"][name] = latency.one_line(err)
            print(f"[gpu_check] {name} failed: {self['errors'][name]}", file=sys.stderr)
        self["stage_seconds"][name] = time.perf_counter() - start
        self.save()
        print(f"[gpu_check] {name}: {self['stage_seconds'][name]:.1f} s ({self.clock.elapsed():.0f} s in all)", flush=True)
        return name not in self["errors"]


def main() -> None:
    args = parse_args()
    clock = Clock(args.time_limit_s)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_float32_matmul_precision(args.matmul_precision)
    if args.tiny:
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.dataset is None:
            args.dataset = synthetic_dataset(work / "synthetic.npz") if args.tiny else Path("runs/datasets/gpu_check")
        if not args.dataset.exists():
            sys.exit(f"[gpu_check] no dataset at {args.dataset} (docs/gpu.md: collect it, copy it to the host)")
        report = Report(args.out / "gpu_check.json", clock, mode="tiny (cpu)" if args.tiny else "gpu",
                        host=host_info(args.device), phases={},
                        args={k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()})
        report.save()
        run_dir = work / "run"
        cfg = run_config(args, args.dataset, run_dir)
        dims = latency.BIMANUAL_DIMS  # replaced by the dataset's once it is open

        def sized_run() -> None:  # probe each phase's step, then size the run to the budget
            nonlocal cfg, dims
            dataset = open_dataset(cfg, args.dataset)
            dims = (dataset.obs_dim, dataset.horizon, dataset.action_dim)
            found = probe(cfg, dataset, args.probe_steps)
            report.update(dataset_chunks=dataset.num_chunks, probe=found["rates"], mean_flow_jvp=found["mean_flow_jvp"])
            report["planned_steps"] = phase_steps(found["rates"], args.budget_s, args.shares, args.probe_steps)
            cfg = run_config(args, args.dataset, run_dir, report["planned_steps"])
            report["sizes"] = {"flow": f"{cfg.flow.arch} width {cfg.flow.width} depth {cfg.flow.depth} "
                                       f"heads {cfg.flow.num_heads}",
                               "critic": f"hidden {cfg.critic.hidden_dim} x {cfg.critic.num_layers} layers",
                               "planner": f"hidden {cfg.planner.hidden_dim} x {cfg.planner.num_blocks} blocks"}

        if report.stage("probe", sized_run):
            report.stage("train", lambda: train_phases(cfg, args.dataset, run_dir, report))
        if (run_dir / "flow" / "final.pt").is_file():  # whatever phases finished travel back
            report.stage("pack", lambda: report.__setitem__("transport", gpu_transport.pack(run_dir, args.out)))

        report["latency"] = {"runtimes": {}}
        for runtime in args.latency_runtimes:
            if clock.left() < LATENCY_NEEDS_S.get(runtime, 30.0):
                report["latency"]["runtimes"][runtime] = {"skipped": f"{clock.left():.0f} s left of --time_limit_s"}
                continue

            def timed(runtime=runtime) -> None:
                result = latency.measure(args.device, tuple(args.latency_batches), (runtime,), dims,
                                         flow_cfg=cfg.flow, planner_cfg=cfg.planner, threads=torch.get_num_threads())
                report["latency"]["config"] = result["config"]
                report["latency"]["runtimes"] |= result["runtimes"]

            report.stage(f"latency_{runtime}", timed)
    if "config" in report["latency"]:
        latency.print_table(report["latency"] | {"runtimes": {k: v for k, v in report["latency"]["runtimes"].items()
                                                              if "batches" in v}})
    parts = len(report.get("transport", {}).get("parts", []))
    print(f"[gpu_check] wrote {args.out / 'gpu_check.json'} and {parts} run part(s) in {clock.elapsed():.0f} s")
    if report["errors"]:
        sys.exit(f"[gpu_check] stages failed: {', '.join(report['errors'])}")


if __name__ == "__main__":
    main()
