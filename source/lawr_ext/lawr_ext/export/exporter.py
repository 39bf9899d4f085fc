"""A ChunkPolicy as one self-contained file: raw observation [B, O] -> action chunk [B, H, A].

The graph is the whole policy (for L-AWR: observation normalizer -> planner -> frozen one-step flow),
so a robot needs nothing but the file and a runtime. It follows rsl_rl's export conventions (a frozen
CPU copy in eval mode, input ``obs``, output ``actions``, opset 18) with a dynamic batch axis.

What a robot must know to play the chunk travels inside the file as one JSON object under
``METADATA_KEY``: ONNX ``metadata_props`` (readable with onnxruntime alone) and a TorchScript extra file.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from lawr_ext.algorithms.base import ChunkPolicy
from lawr_ext.utils.io import FORMAT_VERSION, atomic_path

METADATA_KEY = "lawr_metadata"            # ONNX metadata_props key; TorchScript extra file "<key>.json"
INPUT_NAME, OUTPUT_NAME = "obs", "actions"
REQUIRED_METADATA = ("format_version", "task", "horizon", "action_dim", "obs_dim", "control_rate_hz",
                     "joint_names", "action_scale", "action_offset", "config_hash")


def build_metadata(policy: ChunkPolicy, *, task: str, obs_dim: int, control_rate_hz: float, config_hash: str,
                   joint_names: list[str] | None = None, action_scale: list[float] | None = None,
                   action_offset: list[float] | None = None, **extra) -> dict:
    """Everything needed to play a chunk on a robot: joint target = action_offset + action_scale * action.

    A task without a joint-level action spec (OGBench: end-effector commands) exports ``joint_names: null``
    and the identity scaling (scale 1, offset 0): its actions go to the env as they are.
    """
    action_scale = [1.0] * policy.action_dim if action_scale is None else action_scale
    action_offset = [0.0] * policy.action_dim if action_offset is None else action_offset
    for name, values in (("joint_names", joint_names), ("action_scale", action_scale),
                         ("action_offset", action_offset)):
        if values is not None and len(values) != policy.action_dim:
            raise ValueError(f"export metadata: {name} has {len(values)} entries, the policy has "
                             f"action_dim={policy.action_dim}")
    return {"format_version": FORMAT_VERSION, "task": task, "policy": policy.name,
            "horizon": policy.horizon, "action_dim": policy.action_dim, "obs_dim": obs_dim,
            "control_rate_hz": control_rate_hz, "joint_names": None if joint_names is None else list(joint_names),
            "action_scale": [float(v) for v in action_scale], "action_offset": [float(v) for v in action_offset],
            "config_hash": config_hash, "input": INPUT_NAME, "output": OUTPUT_NAME, **extra}


def check_metadata(metadata: dict, path: str | Path) -> dict:
    """Reject files from another format version or without the fields a robot needs (one-line errors)."""
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: exported with format version {version}, this lawr reads version "
                         f"{FORMAT_VERSION}; re-export the policy with this version of lawr")
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ValueError(f"{path}: export metadata lacks {missing}")
    return metadata


def _frozen_cpu_copy(policy: ChunkPolicy) -> ChunkPolicy:
    return copy.deepcopy(policy).cpu().eval().requires_grad_(False)


def export_torchscript(policy: ChunkPolicy, path: str | Path, metadata: dict) -> Path:
    """Trace the policy (its Python control flow is fixed per call; shapes stay symbolic) and save it."""
    path = Path(path)
    frozen = _frozen_cpu_copy(policy)
    example = torch.zeros(2, metadata["obs_dim"])
    with torch.no_grad():
        traced = torch.jit.trace(frozen, (example,))
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={f"{METADATA_KEY}.json": json.dumps(metadata)})
    return path


def export_onnx(policy: ChunkPolicy, path: str | Path, metadata: dict, opset: int = 18) -> Path:
    """Export with torch.onnx (dynamo exporter, dynamic batch) and attach the metadata to the model."""
    import onnx  # export-time only; deployment reads the file with onnxruntime alone

    path = Path(path)
    frozen = _frozen_cpu_copy(policy)
    example = torch.zeros(2, metadata["obs_dim"])
    with atomic_path(path) as tmp:
        program = torch.onnx.export(frozen, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=opset,
                                    dynamo=True, verbose=False)
        model = program.model_proto
        model.metadata_props.add(key=METADATA_KEY, value=json.dumps(metadata))
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
    return path


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, dict]:
    extra = {f"{METADATA_KEY}.json": ""}
    module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    if not extra[f"{METADATA_KEY}.json"]:
        raise ValueError(f"{path}: no {METADATA_KEY}.json inside; not a lawr export")
    return module, check_metadata(json.loads(extra[f"{METADATA_KEY}.json"]), path)


def load_onnx(path: str | Path, num_threads: int = 0):
    """(onnxruntime.InferenceSession, metadata); ``num_threads`` 0 lets onnxruntime choose."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise ValueError(f"{path}: no '{METADATA_KEY}' in the ONNX metadata_props; not a lawr export")
    return session, check_metadata(json.loads(props[METADATA_KEY]), path)


@torch.no_grad()
def max_abs_diff(policy: ChunkPolicy, path: str | Path, obs: torch.Tensor) -> float:
    """max |exported(obs) - eager(obs)| for a .onnx or .pt file written by this module."""
    eager = _frozen_cpu_copy(policy)(obs.cpu())
    if Path(path).suffix == ".onnx":
        session, _ = load_onnx(path)
        exported = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: obs.cpu().numpy()})[0])
    else:
        module, _ = load_torchscript(path)
        exported = module(obs.cpu())
    return (exported - eager).abs().max().item()
