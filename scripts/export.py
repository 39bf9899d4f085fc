"""Export a trained L-AWR policy (normalizer -> planner -> frozen one-step flow) as ONNX and TorchScript.

    python scripts/export.py --checkpoint runs/Bimanual-Chunk/<run>
    python scripts/export.py --checkpoint runs/<run> --out deploy/ --formats onnx

Writes ``policy.onnx`` / ``policy.pt`` (default into ``<run_dir>/export``), each carrying its metadata
(task, H, action scaling and joint order and control rate as the task registers them, obs dim, the run's
evaluation exec_horizon, format version, config hash; a task without an action spec, such as OGBench's,
exports no joint names and the identity scaling), then
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
from lawr_ext.runners.pipeline import load_policy
from lawr_ext.tasks import get_task

SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="run directory or a <stage>/final.pt inside it")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <run_dir>/export)")
    parser.add_argument("--formats", nargs="+", default=list(ExportConfig.formats), choices=tuple(SUFFIX))
    args = parser.parse_args()
    cfg = ExportConfig(formats=tuple(args.formats))

    run_dir = args.checkpoint.parent.parent if args.checkpoint.is_file() else args.checkpoint
    planner_ckpt = read_checkpoint(final_path(run_dir, "planner"), "planner")
    policy = load_policy(run_dir, method="lawr")
    task = get_task(planner_ckpt["config"]["task"])
    action_spec = task.load("action_spec")() if task.action_spec is not None else {}  # OGBench: none
    metadata = build_metadata(policy, task=task.id, obs_dim=planner_ckpt["dims"]["obs_dim"],
                              control_rate_hz=task.control_hz, config_hash=planner_ckpt["config_hash"],
                              exec_horizon=planner_ckpt["config"]["eval"]["exec_horizon"], **action_spec)

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
    main()
