"""Export a trained policy (L-AWR: normalizer -> planner -> frozen one-step flow; or a baseline's) as ONNX and
TorchScript.

    python scripts/export.py --checkpoint runs/Bimanual-Chunk/<run>
    python scripts/export.py --checkpoint runs/<run> --out deploy/ --formats onnx
    python scripts/export.py --checkpoint runs/<run> --policy act          # any method of the run

Writes ``policy.onnx`` / ``policy.pt`` (default into ``<run_dir>/export``, ``<run_dir>/export/<policy>`` for a
baseline), each carrying its metadata (task, H, obs dim, control rate, how the run's evaluation executed chunks:
exec_horizon and temporal ensembling, format version, config hash; and, where the task registers an action spec,
joint order, action scaling, joint limits and servo speeds: lawr_ext/deploy.py; the per-dimension range of the
observations the run trained on, read from its dataset), then checks every file against the eager policy on random
observations and refuses it if they differ by more than ``ExportConfig.parity_atol`` or a chunk is not finite. A
policy that draws noise (flow BC, FQL, QC, diffusion ...) draws it inside the graph too: its files are checked for
shape and finiteness only. The checks run on the temporary file: only a file that passed replaces what ``--out``
held, so a refused export never overwrites a good one, and leaves no empty folder behind.

The ONNX file carries a sha256 digest over graph and metadata; ``--signing_key FILE`` (default: the file named by
$LAWR_SIGNING_KEY_FILE) adds an HMAC signature that only holders of the key can produce. Deploy the .onnx with
onnxruntime alone: see scripts/deploy_onnx.py.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from lawr_ext.algorithms.registry import METHODS
from lawr_ext.configs.eval import EvalConfig
from lawr_ext.configs.export import ExportConfig
from lawr_ext.data.dataset import load_episodes
from lawr_ext.data.episodes import DatasetError
from lawr_ext.deploy import read_signing_key
from lawr_ext.export import build_metadata, export_onnx, export_torchscript, max_abs_diff, run_exported
from lawr_ext.runners.checkpoint import final_path, read_checkpoint
from lawr_ext.runners.pipeline import load_policy, read_summary, run_dir_of
from lawr_ext.tasks import get_task
from lawr_ext.utils.cli import run_main

SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
SIGNING_KEY_ENV = "LAWR_SIGNING_KEY_FILE"


def observation_range(run_dir: Path, record: dict, dataset: Path | None) -> dict[str, list[float]]:
    """{"obs_low", "obs_high"}: the per-dimension range of the observations of the dataset the run trained on
    (``dataset``, default the one its summary.json names), refused if it is not that dataset (content hash)."""
    path = dataset or read_summary(run_dir).get("dataset", {}).get("path")
    if path is None:
        raise ValueError(f"{run_dir}: no dataset recorded in summary.json; pass --dataset (the run's dataset, whose "
                         "observation range the export records)")
    try:
        episodes = load_episodes(path)
    except DatasetError as err:
        raise ValueError(f"{err}; pass --dataset (the run's dataset, whose observation range the export records)") from None
    if episodes.fingerprint() != record["dims"]["data_sha256"]:
        raise ValueError(f"{path}: not the dataset this run trained on (sha256 {episodes.fingerprint()[:12]}, the run's "
                         f"{record['dims']['data_sha256'][:12]}); pass --dataset with the run's dataset")
    return {"obs_low": episodes.obs.min(dim=0).values.tolist(), "obs_high": episodes.obs.max(dim=0).values.tolist()}


def remove_empty_folders(folder: Path, existing: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``existing`` where a refused export left them empty."""
    while folder != existing and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="run directory or a <stage>/final.pt inside it")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <run_dir>/export)")
    parser.add_argument("--formats", nargs="+", default=list(ExportConfig.formats), choices=tuple(SUFFIX))
    parser.add_argument("--policy", default="lawr", choices=tuple(METHODS), help="which method's policy of the run")
    parser.add_argument("--dataset", type=Path, default=None,
                        help="the run's dataset, for the observation range (default: the one summary.json names)")
    parser.add_argument("--signing_key", type=Path, default=os.environ.get(SIGNING_KEY_ENV),
                        help=f"sign the ONNX file with the key in this file (default: ${SIGNING_KEY_ENV})")
    args = parser.parse_args()
    cfg = ExportConfig(formats=tuple(args.formats))
    signing_key = read_signing_key(args.signing_key) if args.signing_key else None

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
                              **observation_range(run_dir, record, args.dataset),
                              **action_spec)  # an exec_horizon past H (never evaluated) plays whole chunks

    out_dir = args.out or (run_dir / "export" if args.policy == "lawr" else run_dir / "export" / args.policy)
    existing = next(folder for folder in (out_dir, *out_dir.parents) if folder.exists())
    obs = torch.randn(cfg.parity_batch, metadata["obs_dim"])
    with torch.no_grad():
        stochastic = not torch.equal(policy(obs), policy(obs))

    def check(fmt: str, path: Path, report: list[str]):
        def check_temporary(tmp: Path) -> None:  # only what passes is renamed into out_dir
            try:
                chunks = run_exported(tmp, obs, fmt)
            except ValueError as err:  # the robot side's own refusal (e.g. a NaN weight)
                raise ValueError(f"{path}: refused, not written: {str(err).removeprefix(f'{tmp}: ')}") from None
            if chunks.shape != (len(obs), policy.horizon, policy.action_dim) or not torch.isfinite(chunks).all():
                raise ValueError(f"{path}: refused, not written: the exported graph returns {tuple(chunks.shape)} "
                                 f"chunks with {int((~torch.isfinite(chunks)).sum())} non-finite entries")
            if stochastic:
                report.append(f"{args.policy} draws noise: checked for shape and finiteness only")
                return
            diff = max_abs_diff(policy, tmp, obs, fmt)
            if not diff <= cfg.parity_atol:
                raise ValueError(f"{path}: refused, not written: the exported graph differs from the eager policy "
                                 f"by {diff:.2e} (> parity_atol {cfg.parity_atol:.0e})")
            report.append(f"max |exported - eager| = {diff:.2e} on {cfg.parity_batch} random observations")
        return check_temporary

    try:
        for fmt in cfg.formats:
            path, report = out_dir / f"policy{SUFFIX[fmt]}", []
            if fmt == "onnx":
                export_onnx(policy, path, metadata, cfg.onnx_opset, check=check(fmt, path, report),
                            signing_key=signing_key)
            else:
                export_torchscript(policy, path, metadata, check=check(fmt, path, report))
            print(f"wrote {path}  ({report[0]}{', signed' if fmt == 'onnx' and signing_key else ''})")
    finally:
        remove_empty_folders(out_dir, existing)


if __name__ == "__main__":
    run_main(main)
