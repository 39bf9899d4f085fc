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
from lawr_ext.deploy import JOINT_FIELDS, METADATA_KEY, check_metadata
from lawr_ext.utils.io import FORMAT_VERSION, atomic_path

INPUT_NAME, OUTPUT_NAME = "obs", "actions"


def build_metadata(policy: ChunkPolicy, *, task: str, obs_dim: int, control_rate_hz: float, config_hash: str,
                   **action_spec) -> dict:
    """Everything needed to play a chunk on a robot (the layout ``lawr_ext/deploy.py`` documents and checks):
    shapes and rate, and the task's action spec where it registers one (``joint_names``, ``action_scale``,
    ``action_offset``, ``joint_lower``, ``joint_upper``, ``max_target_speed``, ``gripper_joints``)."""
    metadata = {"format_version": FORMAT_VERSION, "task": task, "policy": policy.name,
                "horizon": policy.horizon, "action_dim": policy.action_dim, "obs_dim": obs_dim,
                "control_rate_hz": control_rate_hz, "config_hash": config_hash,
                "input": INPUT_NAME, "output": OUTPUT_NAME}
    for name, value in action_spec.items():
        metadata[name] = [float(v) for v in value] if name in JOINT_FIELDS[1:] else value
    return check_metadata(metadata, "export metadata")


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
    """(module, metadata), the metadata checked against the chunk the module returns for one observation."""
    extra = {f"{METADATA_KEY}.json": ""}
    module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    if not extra[f"{METADATA_KEY}.json"]:
        raise ValueError(f"{path}: no {METADATA_KEY}.json inside; not a lawr export")
    metadata = check_metadata(json.loads(extra[f"{METADATA_KEY}.json"]), path)
    with torch.no_grad():
        chunk = module(torch.zeros(1, metadata["obs_dim"]))
    return module, check_metadata(metadata, path, chunk_shape=tuple(chunk.shape[1:]))


def load_onnx(path: str | Path, num_threads: int = 0):
    """(onnxruntime.InferenceSession, metadata), checked against the graph as a robot checks it
    (``lawr_ext.deploy.OnnxChunkPolicy``); ``num_threads`` 0 lets onnxruntime choose."""
    from lawr_ext.deploy import OnnxChunkPolicy

    player = OnnxChunkPolicy(str(path), exec_horizon=1, num_threads=num_threads)
    return player.session, player.meta


@torch.no_grad()
def run_exported(path: str | Path, obs: torch.Tensor) -> torch.Tensor:
    """A .onnx or .pt file written by this module applied to ``obs`` [B, O] -> chunks [B, H, A] (CPU)."""
    if Path(path).suffix == ".onnx":
        session, _ = load_onnx(path)
        return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: obs.cpu().numpy()})[0])
    module, _ = load_torchscript(path)
    return module(obs.cpu())


@torch.no_grad()
def max_abs_diff(policy: ChunkPolicy, path: str | Path, obs: torch.Tensor) -> float:
    """max |exported(obs) - eager(obs)| for a .onnx or .pt file written by this module."""
    return (run_exported(path, obs) - _frozen_cpu_copy(policy)(obs.cpu())).abs().max().item()
