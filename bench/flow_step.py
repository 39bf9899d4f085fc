"""Seconds per Mean Flow training step, side by side in one run: what the JVP costs, what skipping it saves, and
what bf16 matrix products save.

    OMP_NUM_THREADS=1 python bench/flow_step.py                                   # Insertion's preset at profile=cpu
    python bench/flow_step.py --task Bimanual-Chunk profile=smoke --steps 40      # any preset and overrides

The Mean Flow target u_tgt = v - (t - r) du/dt needs a forward-mode JVP through the flow, about one more forward
and backward pass. Rows drawn with r = t (``flow.ratio_r_equals_t`` of them) have u_tgt = v, and the learner
runs the JVP on the other rows only. Timed, each on the preset's network and batch, in fp32 but the last:

    plain flow matching   ratio_r_equals_t = 1: no row needs the JVP (the floor: one forward and backward)
    JVP on every row      the preset's ratio, the JVP run over the whole batch (the target as computed before)
    JVP on r < t rows     the preset's ratio, as MeanFlow.update runs it
    all rows r < t        ratio_r_equals_t = 0: every row needs the JVP
    bf16 autocast         as the learner runs it, with flow.compute_dtype=bfloat16 (matrix products in bf16): the
                          preset's "auto" takes it only where the CPU has native bf16 (AVX-512 BF16 or AMX)

Each figure is the median of ``--steps`` update steps after warm-up, the variants called round-robin so that
background load hits all alike; ratios are to plain flow matching, from the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch
from tensordict import TensorDict

from lawr_ext.algorithms.flow import MeanFlow
from lawr_ext.algorithms.training import native_bf16
from lawr_ext.configs.train import load_train_config
from lawr_ext.data import keys
from lawr_ext.modules.normalizer import fit_normalizers
from lawr_ext.runners.pipeline import chunk_basis
from lawr_ext.tasks.registry import get_task
from lawr_ext.utils.cli import run_main


class FullBatchJVP(MeanFlow):
    """The target with the JVP over every row, r = t rows included (their (t - r) du/dt is zero)."""

    @staticmethod
    def mean_flow_target(decoder, z_t, t, r, obs_norm, v):
        with torch.no_grad():
            _, du_dt = torch.func.jvp(lambda z, tt, rr: decoder.average_velocity(z, tt, rr, obs_norm),
                                      (z_t, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
            return v - (t - r)[:, None, None] * du_dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="Bimanual-Chunk-Insertion")
    parser.add_argument("--steps", type=int, default=30, help="timed update steps per variant")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("overrides", nargs="*", default=["profile=cpu"], help="hydra overrides of the preset")
    args = parser.parse_args()

    cfg = load_train_config(args.task, args.overrides)
    spec = get_task(args.task)
    obs_dim, action_dim = spec.obs_dim, spec.action_dim
    horizon = chunk_basis(cfg).num_coeffs  # the flow's chunk length in the run's coordinates (DCT: coefficients)
    batch_size = cfg.flow.batch_size
    torch.manual_seed(0)
    obs_normalizer = fit_normalizers(torch.randn(1024, obs_dim), torch.zeros(1024, 1), "none").obs
    ratio = cfg.flow.ratio_r_equals_t
    fp32 = dataclasses.replace(cfg.flow, compute_dtype="float32")
    variants = {
        "plain flow matching": MeanFlow(dataclasses.replace(fp32, ratio_r_equals_t=1.0), obs_dim, horizon,
                                        action_dim, obs_normalizer),
        "JVP on every row": FullBatchJVP(fp32, obs_dim, horizon, action_dim, obs_normalizer),
        "JVP on r < t rows": MeanFlow(fp32, obs_dim, horizon, action_dim, obs_normalizer),
        "all rows r < t": MeanFlow(dataclasses.replace(fp32, ratio_r_equals_t=0.0), obs_dim, horizon,
                                   action_dim, obs_normalizer),
        "bf16 autocast": MeanFlow(dataclasses.replace(fp32, compute_dtype="bfloat16"), obs_dim, horizon,
                                  action_dim, obs_normalizer),
    }
    batch = TensorDict({keys.OBS: torch.randn(batch_size, obs_dim),
                        keys.ACTIONS: torch.randn(batch_size, horizon, action_dim),
                        keys.MASK: torch.ones(batch_size, horizon, dtype=torch.bool)}, batch_size=[batch_size])
    times: dict[str, list[float]] = {name: [] for name in variants}
    for step in range(args.steps + 3):  # 3 warm-up steps each
        for name, learner in variants.items():
            start = time.perf_counter()
            learner.update(batch)
            if step >= 3:
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    floor = medians["plain flow matching"]
    print(f"{args.task} {' '.join(args.overrides)}: {cfg.flow.arch} width {cfg.flow.width} depth {cfg.flow.depth}, "
          f"batch {batch_size}, H {horizon}, A {action_dim}, ratio_r_equals_t {ratio}, "
          f"torch threads {torch.get_num_threads()}, {args.steps} steps each; "
          f"CPU {torch.backends.cpu.get_cpu_capability()}, native bf16: {native_bf16(torch.device('cpu'))}")
    print("| variant | ms per step | × plain flow matching |\n|---|---|---|")
    for name, seconds in medians.items():
        print(f"| {name} | {1000 * seconds:.1f} | {seconds / floor:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"task": args.task, "overrides": args.overrides, "seconds_per_step": medians}, f, indent=1)


if __name__ == "__main__":
    run_main(main, "[flow_step]")
