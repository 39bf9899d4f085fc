"""Export a trained L-AWR policy (normalizer -> planner -> frozen one-step flow) as ONNX and TorchScript.

    python scripts/export.py --checkpoint runs/Bimanual-Chunk/<run>
    python scripts/export.py --checkpoint runs/<run> --out deploy/ --formats onnx

Writes ``policy.onnx`` / ``policy.pt`` (default into ``<run_dir>/export``), each carrying its metadata
(task, H, obs dim, control rate, format version, config hash; and, where the task registers an action
spec, joint order, action scaling, joint limits and servo speeds: lawr_ext/deploy.py), then
checks every file against the eager policy on random observations and fails if they differ by more than
``ExportConfig.parity_atol``. Deploy the .onnx with onnxruntime alone: see scripts/deploy_onnx.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lawr_ext.configs.export import ExportConfig
from lawr_ext.export import build_metadata, export_onnx, export_torchscript, max_abs_diff
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
    args = parser.parse_args()
    cfg = ExportConfig(formats=tuple(args.formats))

    run_dir = run_dir_of(args.checkpoint)
    policy = load_policy(run_dir, method="lawr")  # checks every file it reads (and names the one that is wrong)
    planner_ckpt = read_checkpoint(final_path(run_dir, "planner"), "planner")
    task = get_task(planner_ckpt["config"]["task"])
    action_spec = task.load("action_spec")() if task.action_spec is not None else {}  # none: shapes only
    metadata = build_metadata(policy, task=task.id, obs_dim=planner_ckpt["dims"]["obs_dim"],
                              control_rate_hz=task.control_hz, config_hash=planner_ckpt["config_hash"], **action_spec)

    out_dir = args.out or run_dir / "export"
    obs = torch.randn(cfg.parity_batch, metadata["obs_dim"])
    for fmt in cfg.formats:
        path = out_dir / f"policy{SUFFIX[fmt]}"
        (export_onnx(policy, path, metadata, cfg.onnx_opset) if fmt == "onnx"
         else export_torchscript(policy, path, metadata))
        diff = max_abs_diff(policy, path, obs)
        if diff > cfg.parity_atol:
            raise ValueError(f"{path}: exported graph differs from the eager policy by {diff:.2e} "
                             f"(> parity_atol {cfg.parity_atol:.0e}); do not deploy it")
        print(f"wrote {path}  (max |exported - eager| = {diff:.2e} on {cfg.parity_batch} random observations)")


if __name__ == "__main__":
    run_main(main)
