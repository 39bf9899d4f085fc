"""A trained run's policy as deployable files, each checked against the eager policy before it is written:
:func:`export_policy`, the library form of ``scripts/export.py``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from lawr_ext.algorithms.base import ChunkPolicy
from lawr_ext.algorithms.registry import METHODS
from lawr_ext.configs.export import ExportConfig
from lawr_ext.data.dataset import load_episodes
from lawr_ext.data.episodes import DatasetError
from lawr_ext.data.reading import Reading
from lawr_ext.deploy import image_shape_of
from lawr_ext.export.exporter import (FILE_NAMES, build_metadata, export_aoti, export_onnx, export_pt2,
                                      frozen_cpu_copy, run_exported, trace)
from lawr_ext.modules.vision import pack_observation
from lawr_ext.runners.checkpoint import final_path, read_checkpoint
from lawr_ext.runners.pipeline import load_policy, run_config, run_dir_of
from lawr_ext.tasks import get_task

logger = logging.getLogger("lawr.export")


def observation_range(run_dir: Path, record: dict, dataset: str | Path | None) -> dict[str, list[float]]:
    """{"obs_low", "obs_high"}: the per-dimension range of the observations of the dataset the run trained on
    (``dataset``, default the one its config.json names), refused if it is not that dataset (content hash)."""
    cfg = run_config(run_dir)
    path = dataset or cfg.data.path
    if path is None:
        raise ValueError(f"{run_dir}: no dataset recorded in config.json; pass --dataset (the run's dataset, whose "
                         "observation range the export records)")
    try:
        # read as the run read it (a LeRobot dataset's keys and reward convention, an OGBench file's task)
        episodes = load_episodes(path, reading=Reading.of(cfg))
    except DatasetError as err:
        raise ValueError(f"{err}; pass --dataset (the run's dataset, whose observation range the export records)") from None
    if episodes.fingerprint() != record["dims"]["data_sha256"]:
        raise ValueError(f"{path}: not the dataset this run trained on (sha256 {episodes.fingerprint()[:12]}, the run's "
                         f"{record['dims']['data_sha256'][:12]}); pass --dataset with the run's dataset")
    return {"obs_low": episodes.obs.min(dim=0).values.tolist(), "obs_high": episodes.obs.max(dim=0).values.tolist()}


def run_metadata(run_dir: Path, method: str, policy: ChunkPolicy, dataset: str | Path | None) -> dict:
    """The export metadata of ``method``'s policy of the run: its task's rate and action spec, how the run's
    evaluation executed chunks, the range of its training observations."""
    stage = METHODS[method]
    # a method with nothing to train (flow_bc) has the flow's record
    record_stage = stage.name if final_path(run_dir, stage.name).is_file() else stage.needs[0]
    record = read_checkpoint(final_path(run_dir, record_stage), record_stage)
    cfg = run_config(run_dir)
    task = get_task(cfg.task)
    action_spec = task.load("action_spec")() if task.action_spec is not None else {}  # none: shapes only
    dims = record["dims"]
    sees = {"cameras": dims.get("cameras") or [f"camera_{i}" for i in range(dims["images"][0])],
            "image_shape": dims["images"]} if "images" in dims else {}  # a policy that sees: its cameras, in order
    return build_metadata(policy, task=task.id, obs_dim=record["dims"]["obs_dim"], method=method, **sees,
                          control_rate_hz=task.control_hz, config_hash=record["config_hash"],
                          # the robot executes chunks as the run's evaluation did; past H: whole chunks
                          exec_horizon=min(cfg.eval.exec_horizon, policy.horizon),
                          temporal_ensemble=bool(cfg.eval.temporal_ensemble),
                          ensemble_decay=float(cfg.eval.ensemble_decay),
                          **observation_range(run_dir, record, dataset), **action_spec)


def parity_observations(metadata: dict, batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``batch`` standard-normal observations and ``batch`` drawn uniformly within the training range (where the
    metadata records it), and for a policy that sees as many frames of uniform random pixels (else None): the
    graph must match the eager policy on both."""
    obs = [torch.randn(batch, metadata["obs_dim"])]
    if "obs_low" in metadata:
        low, high = torch.tensor(metadata["obs_low"]), torch.tensor(metadata["obs_high"])
        obs.append(low + (high - low) * torch.rand(batch, metadata["obs_dim"]))
    obs = torch.cat(obs)
    frames = image_shape_of(metadata)
    return obs, None if frames is None else torch.randint(0, 256, (len(obs), *frames), dtype=torch.uint8)


def parity_check(policy: ChunkPolicy, name: str, fmt: str, path: Path, obs: torch.Tensor, atol: float,
                 report: Callable[[str], None], images: torch.Tensor | None = None) -> Callable[[Path], None]:
    """The check a writer runs on its temporary file before it becomes ``path``: finite chunks of the policy's
    shape for ``obs`` (and ``images``, for a policy that sees) and, for a policy that draws no noise, within ``atol``
    of the eager policy; else a one-line ``ValueError`` (nothing written). ``report`` gets one line of what was
    checked, naming the policy ``name``."""
    policy = frozen_cpu_copy(policy)
    eager_obs = obs if images is None else pack_observation(obs, images)
    with torch.no_grad():
        eager = policy(eager_obs)
        stochastic = not torch.equal(eager, policy(eager_obs))

    def check(tmp: Path) -> None:
        try:
            chunks = run_exported(tmp, obs, fmt, images)
        except ValueError as err:  # the loader's own refusal (e.g. the robot side's, for a NaN weight)
            raise ValueError(f"{path}: refused, not written: {str(err).removeprefix(f'{tmp}: ')}") from None
        if chunks.shape != eager.shape or not torch.isfinite(chunks).all():
            raise ValueError(f"{path}: refused, not written: the exported graph returns {tuple(chunks.shape)} "
                             f"chunks with {int((~torch.isfinite(chunks)).sum())} non-finite entries")
        if stochastic:
            report(f"{name} draws noise: checked for shape and finiteness only")
            return
        diff = (chunks - eager).abs().max().item()
        if not diff <= atol:
            raise ValueError(f"{path}: refused, not written: the exported graph differs from the eager policy "
                             f"by {diff:.2e} (> parity_atol {atol:.0e})")
        report(f"max |exported - eager| = {diff:.2e} on {len(obs)} observations")
    return check


def remove_empty_folders(folder: Path, existing: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``existing`` where a refused export left them empty."""
    while folder != existing and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def export_policy(run_dir: str | Path, method: str = "lawr", formats: tuple[str, ...] | None = None,
                  out: str | Path | None = None, dataset: str | Path | None = None,
                  signing_key: bytes | None = None, cfg: ExportConfig | None = None,
                  log: Callable[[str], None] = logger.info) -> dict[str, Path]:
    """Export ``method``'s policy of the run (``run_dir`` or a ``<stage>/final.pt`` in it) as ``formats``
    (``EXPORT_FORMATS``; default ``cfg.formats``) into ``out`` (default ``<run_dir>/export``, and
    ``<run_dir>/export/<method>`` for a baseline): {format: path}.

    The policy is traced once; each file carries the metadata (``run_metadata``; the training observations' range
    from ``dataset``, default the run's), and is checked on its temporary file against the eager policy
    (``parity_check``) before it replaces what ``out`` held; the ONNX file is signed with ``signing_key`` where
    given. A refused export raises a one-line ``ValueError`` and leaves no empty folder behind. ``log`` gets one
    line per file written."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: choose from {tuple(METHODS)}")
    cfg = cfg or ExportConfig()
    formats = tuple(formats or cfg.formats)
    ExportConfig(formats=formats)  # refuses an unknown format before any work
    run_dir = run_dir_of(run_dir)
    policy = load_policy(run_dir, method=method)  # checks every file it reads (and names the one that is wrong)
    metadata = run_metadata(run_dir, method, policy, dataset)
    out = Path(out) if out is not None else run_dir / "export" if method == "lawr" else run_dir / "export" / method
    existing = next(folder for folder in (out, *out.parents) if folder.exists())
    obs, images = parity_observations(metadata, cfg.parity_batch)
    paths: dict[str, Path] = {}
    try:
        program = trace(policy, metadata["obs_dim"], image_shape_of(metadata))
        for fmt in formats:
            path, lines = out / FILE_NAMES[fmt], []
            check = parity_check(policy, method, fmt, path, obs, cfg.parity_atol, lines.append, images)
            if fmt == "onnx":
                export_onnx(program, path, metadata, cfg.onnx_opset, check=check, signing_key=signing_key)
            elif fmt == "pt2":
                export_pt2(program, path, metadata, check=check)
            else:
                export_aoti(program, path, metadata, check=check)
            paths[fmt] = path
            log(f"wrote {path}  ({lines[0]}{', signed' if fmt == 'onnx' and signing_key else ''})")
    finally:
        remove_empty_folders(out, existing)
    return paths
