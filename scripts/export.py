"""Export a trained policy (L-AWR: normalizer -> planner -> frozen one-step flow; or a baseline's) as ONNX and
TorchScript.

    python scripts/export.py --checkpoint runs/Bimanual-Chunk/<run>
    python scripts/export.py --checkpoint runs/<run> --out deploy/ --formats onnx
    python scripts/export.py --checkpoint runs/<run> --policy act          # any method of the run

Writes ``policy.onnx`` / ``policy.pt`` (default into ``<run_dir>/export``, ``<run_dir>/export/<policy>`` for a
baseline), each carrying its metadata (task, H, obs dim, control rate, how the run's evaluation executed chunks:
exec_horizon and temporal ensembling, format version, config hash; and, where the task registers an action spec,
joint order, action scaling, joint limits and servo speeds: lawr_ext/deploy.py), then checks every file against
the eager policy on random observations and fails if they differ by more than
``ExportConfig.parity_atol``. A policy that draws noise (flow BC, FQL, QC, diffusion ...) draws it inside the
graph too: its files are checked for shape and finiteness only. Deploy the .onnx with onnxruntime alone: see
scripts/deploy_onnx.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lawr_ext.algorithms.registry import METHODS
from lawr_ext.configs.eval import EvalConfig
from lawr_ext.configs.export import ExportConfig
from lawr_ext.export import build_metadata, export_onnx, export_torchscript, max_abs_diff, run_exported
from lawr_ext.runners.checkpoint import final_path, read_checkpoint
from lawr_ext.runners.pipeline import load_policy, run_dir_of
from lawr_ext.tasks import get_task
from lawr_ext.utils.cli import run_main

SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="run directory or a <stage>/final.pt inside it")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <run_dir>/export)")
    parser.add_argument("--formats", nargs="+", default=list(ExportConfig.formats), choices=tuple(SUFFIX))
    parser.add_argument("--policy", default="lawr", choices=tuple(METHODS), help="which method's policy of the run")
    args = parser.parse_args()
    cfg = ExportConfig(formats=tuple(args.formats))

    run_dir = run_dir_of(args.checkpoint)
    stage = METHODS[args.policy]
    # a method with nothing to train (flow_bc) has the flow's record
    record_stage = stage.name if final_path(run_dir, stage.name).is_file() else stage.needs[0]
    record = read_checkpoint(final_path(run_dir, record_stage), record_stage)
    policy = load_policy(run_dir, method=args.policy)  # checks every file it reads (and names the one that is wrong)
    task = get_task(record["config"]["task"])
    evaluated = record["config"]["eval"]  # the robot executes chunks as the run's evaluation did
    action_spec = task.load("action_spec")() if task.action_spec is not None else {}  # none: shapes only
    metadata = build_metadata(policy, task=task.id, obs_dim=record["dims"]["obs_dim"], method=args.policy,
                              control_rate_hz=task.control_hz, config_hash=record["config_hash"],
                              exec_horizon=min(evaluated["exec_horizon"], policy.horizon),
                              temporal_ensemble=bool(evaluated.get("temporal_ensemble", EvalConfig.temporal_ensemble)),
                              ensemble_decay=float(evaluated.get("ensemble_decay", EvalConfig.ensemble_decay)),
                              **action_spec)  # an exec_horizon past H (never evaluated) plays whole chunks

    out_dir = args.out or (run_dir / "export" if args.policy == "lawr" else run_dir / "export" / args.policy)
    obs = torch.randn(cfg.parity_batch, metadata["obs_dim"])
    with torch.no_grad():
        stochastic = not torch.equal(policy(obs), policy(obs))
    for fmt in cfg.formats:
        path = out_dir / f"policy{SUFFIX[fmt]}"
        (export_onnx(policy, path, metadata, cfg.onnx_opset) if fmt == "onnx"
         else export_torchscript(policy, path, metadata))
        if stochastic:
            chunks = run_exported(path, obs)
            if chunks.shape != (len(obs), policy.horizon, policy.action_dim) or not torch.isfinite(chunks).all():
                raise ValueError(f"{path}: exported graph returns {tuple(chunks.shape)} or non-finite chunks")
            print(f"wrote {path}  ({args.policy} draws noise: checked for shape and finiteness only)")
            continue
        diff = max_abs_diff(policy, path, obs)
        if diff > cfg.parity_atol:
            raise ValueError(f"{path}: exported graph differs from the eager policy by {diff:.2e} "
                             f"(> parity_atol {cfg.parity_atol:.0e}); do not deploy it")
        print(f"wrote {path}  (max |exported - eager| = {diff:.2e} on {cfg.parity_batch} random observations)")


if __name__ == "__main__":
    run_main(main)
