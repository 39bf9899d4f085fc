"""A ChunkPolicy as one self-contained file: raw observation [B, O] -> action chunk [B, H, A].

The graph is the whole policy (for L-AWR: observation normalizer -> planner -> frozen one-step flow),
so a robot needs nothing but the file and a runtime. It follows rsl_rl's export conventions (a frozen
CPU copy in eval mode, input ``obs``, output ``actions``, opset 18) with a dynamic batch axis.

What a robot must know to play the chunk travels inside the file as one JSON object under
``METADATA_KEY``: ONNX ``metadata_props`` (readable with onnxruntime alone) and a TorchScript extra file. The ONNX
file also carries a sha256 digest over its graph and metadata (and an HMAC signature with a lab's key), which the
robot side checks before it loads anything.

Every writer here takes a ``check(tmp)``: it runs on the finished temporary file, and only a file it passes is
renamed over ``path`` (a refused export never replaces an earlier good one).
"""

from __future__ import annotations

import contextlib
import copy
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from lawr_ext.algorithms.base import ChunkPolicy
from lawr_ext.deploy import JOINT_FIELDS, METADATA_KEY, OBS_RANGE_FIELDS, check_metadata, integrity_fields, load_checked
from lawr_ext.utils.io import FORMAT_VERSION, atomic_path

INPUT_NAME, OUTPUT_NAME = "obs", "actions"


def build_metadata(policy: ChunkPolicy, *, task: str, obs_dim: int, control_rate_hz: float, config_hash: str,
                   **action_spec) -> dict:
    """Everything needed to play a chunk on a robot (the layout ``lawr_ext/deploy.py`` documents and checks):
    shapes and rate, the training observations' range where given (``obs_low``, ``obs_high``), and the task's
    action spec where it registers one (``joint_names``, ``action_scale``, ``action_offset``, ``joint_lower``,
    ``joint_upper``, ``max_target_speed``, ``gripper_joints``)."""
    metadata = {"format_version": FORMAT_VERSION, "task": task, "policy": policy.name,
                "horizon": policy.horizon, "action_dim": policy.action_dim, "obs_dim": obs_dim,
                "control_rate_hz": control_rate_hz, "config_hash": config_hash,
                "input": INPUT_NAME, "output": OUTPUT_NAME}
    for name, value in action_spec.items():
        metadata[name] = [float(v) for v in value] if name in JOINT_FIELDS[1:] + OBS_RANGE_FIELDS else value
    return check_metadata(metadata, "export metadata")


def _frozen_cpu_copy(policy: ChunkPolicy) -> ChunkPolicy:
    return copy.deepcopy(policy).cpu().eval().requires_grad_(False)


@contextlib.contextmanager
def _noise_with_a_symbolic_batch() -> Iterator[None]:
    """torch.export cannot trace ``torch.randn(B, ..., generator=None)`` with a symbolic batch B (the generator
    overload asks for concrete sizes): the same draw without the keyword exports, as an ONNX RandomNormal, so a
    policy that samples noise (flow BC, best-of-N, QC, ...) draws it inside the graph."""
    randn = torch.randn

    def randn_without_default_generator(*size, generator=None, **kwargs):
        return randn(*size, **kwargs) if generator is None else randn(*size, generator=generator, **kwargs)

    torch.randn = randn_without_default_generator
    try:
        yield
    finally:
        torch.randn = randn


def export_torchscript(policy: ChunkPolicy, path: str | Path, metadata: dict,
                       check: Callable[[Path], None] | None = None) -> Path:
    """Trace the policy (its Python control flow is fixed per call; shapes stay symbolic) and save it; ``check``
    the temporary file before it replaces ``path``."""
    path = Path(path)
    frozen = _frozen_cpu_copy(policy)
    example = torch.zeros(2, metadata["obs_dim"])
    with torch.no_grad():
        traced = torch.jit.trace(frozen, (example,))
    with atomic_path(path) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files={f"{METADATA_KEY}.json": json.dumps(metadata)})
        if check is not None:
            check(tmp)
    return path


def export_onnx(policy: ChunkPolicy, path: str | Path, metadata: dict, opset: int = 18,
                check: Callable[[Path], None] | None = None, signing_key: bytes | None = None) -> Path:
    """Export with torch.onnx (dynamo exporter, dynamic batch) and attach the metadata with its digest (and
    signature, with ``signing_key``) to the model; ``check`` the temporary file before it replaces ``path``.
    An exporter failure is one line naming the policy."""
    import onnx  # export-time only; deployment reads the file with onnxruntime alone

    path = Path(path)
    frozen = _frozen_cpu_copy(policy)
    example = torch.zeros(2, metadata["obs_dim"])
    try:
        with _noise_with_a_symbolic_batch(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's notes on its own internals: nothing to act on
            program = torch.onnx.export(frozen, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=opset,
                                        dynamo=True, verbose=False)
    except Exception as err:  # noqa: BLE001 - torch.export raises many types, each with pages of trace
        cause = next((line for line in reversed(str(err).splitlines()) if line.strip()), type(err).__name__)
        raise ValueError(f"{path}: torch.onnx.export cannot export the {metadata.get('policy')} policy "
                         f"({type(err).__name__}: {' '.join(cause.split())[:200]})") from None
    model = program.model_proto
    signed = metadata | integrity_fields(model.SerializeToString(), metadata, signing_key)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(signed))
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
        if check is not None:
            check(tmp)
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


def load_onnx(path: str | Path, num_threads: int = 0, signing_key: bytes | None = None):
    """(onnxruntime.InferenceSession, metadata), checked as a robot checks the file (``lawr_ext.deploy.load_checked``:
    metadata against the graph, digest, a finite chunk); ``num_threads`` 0 lets onnxruntime choose."""
    return load_checked(path, num_threads, signing_key)


@torch.no_grad()
def run_exported(path: str | Path, obs: torch.Tensor, fmt: str | None = None) -> torch.Tensor:
    """A file written by this module (``fmt`` "onnx" or "torchscript"; None: by its suffix, .onnx or .pt) applied
    to ``obs`` [B, O] -> chunks [B, H, A] (CPU)."""
    if (fmt or ("onnx" if Path(path).suffix == ".onnx" else "torchscript")) == "onnx":
        session, _ = load_onnx(path)
        return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: obs.cpu().numpy()})[0])
    module, _ = load_torchscript(path)
    return module(obs.cpu())


@torch.no_grad()
def max_abs_diff(policy: ChunkPolicy, path: str | Path, obs: torch.Tensor, fmt: str | None = None) -> float:
    """max |exported(obs) - eager(obs)| for a file written by this module (``fmt``: as ``run_exported``); NaN
    where either is not finite."""
    return (run_exported(path, obs, fmt) - _frozen_cpu_copy(policy)(obs.cpu())).abs().max().item()
