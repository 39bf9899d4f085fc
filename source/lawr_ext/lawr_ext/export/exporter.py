"""A ChunkPolicy as one self-contained file: raw observation [B, O] -> action chunk [B, H, A]; a policy that sees
(image tasks) takes its camera frames as a second input, uint8 [B, C, H, W, 3] (``images``), beside the joint state.

The graph is the whole policy (for L-AWR: observation normalizer -> planner -> frozen one-step flow),
so a robot needs nothing but the file and a runtime. The policy is traced once with ``torch.export`` (a frozen
CPU copy in eval mode, a dynamic batch axis) and every format is written from that one program:

    onnx   ``policy.onnx``: opset 18, input ``obs``, output ``actions`` (rsl_rl's conventions), played by
           onnxruntime alone (``lawr_ext/deploy.py``)
    pt2    ``policy.pt2``: the ExportedProgram (``torch.export.load``), for Python stacks with torch
    aoti   ``policy.aoti.pt2``: an AOTInductor package (compiled C++ for this CPU), which a C++ robot stack
           loads with ``torch::inductor::AOTIModelPackageLoader``, no Python

What a robot must know to play the chunk travels inside each file as one JSON object under ``METADATA_KEY``:
ONNX ``metadata_props`` (readable with onnxruntime alone), a ``.pt2`` extra file, the AOTI package's metadata
(C++: ``AOTIModelPackageLoader::get_metadata()``).
The ONNX file also carries a sha256 digest over its graph and metadata (and an HMAC signature with a lab's key),
which the robot side checks before it loads anything.

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
from torch.export import ExportedProgram

from lawr_ext.algorithms.base import ChunkPolicy
from lawr_ext.deploy import (EXPORT_FORMAT_VERSION, JOINT_FIELDS, METADATA_KEY, OBS_RANGE_FIELDS, check_metadata,
                             image_shape_of, integrity_fields, load_checked)
from lawr_ext.modules.vision import pack_observation
from lawr_ext.utils.io import atomic_path

INPUT_NAME, OUTPUT_NAME, IMAGES_NAME = "obs", "actions", "images"
#: Each format's file name in an export folder.
FILE_NAMES = {"onnx": "policy.onnx", "pt2": "policy.pt2", "aoti": "policy.aoti.pt2"}
_EXTRA_FILE = f"{METADATA_KEY}.json"  # the metadata's name inside a .pt2


def format_of(path: str | Path) -> str:
    """The format of a file named as ``FILE_NAMES`` names them; else a one-line ``ValueError``."""
    name = Path(path).name
    for fmt in ("aoti", "pt2", "onnx"):  # aoti first: its name also ends in .pt2
        if name.endswith(FILE_NAMES[fmt].removeprefix("policy")):
            return fmt
    raise ValueError(f"{path}: not an export (.onnx, .pt2 or .aoti.pt2)")


def build_metadata(policy: ChunkPolicy, *, task: str, obs_dim: int, control_rate_hz: float, config_hash: str,
                   cameras: list[str] | None = None, image_shape: list[int] | None = None, **action_spec) -> dict:
    """Everything needed to play a chunk on a robot (the layout ``lawr_ext/deploy.py`` documents and checks):
    shapes and rate, for a policy that sees its cameras (names in order) and their frames' shape [C, H, W], the
    training observations' range where given (``obs_low``, ``obs_high``), and the task's action spec where it
    registers one (``joint_names``, ``action_scale``, ``action_offset``, ``joint_lower``, ``joint_upper``,
    ``max_target_speed``, ``gripper_joints``)."""
    metadata = {"format_version": EXPORT_FORMAT_VERSION, "task": task, "policy": policy.name,
                "horizon": policy.horizon, "action_dim": policy.action_dim, "obs_dim": obs_dim,
                "control_rate_hz": control_rate_hz, "config_hash": config_hash,
                "input": INPUT_NAME, "output": OUTPUT_NAME}
    if image_shape is not None:
        metadata |= {"images_input": IMAGES_NAME, "cameras": list(cameras), "image_shape": [int(d) for d in image_shape]}
    for name, value in action_spec.items():
        metadata[name] = [float(v) for v in value] if name in JOINT_FIELDS[1:] + OBS_RANGE_FIELDS else value
    return check_metadata(metadata, "export metadata")


def frozen_cpu_copy(policy: ChunkPolicy) -> ChunkPolicy:
    return copy.deepcopy(policy).cpu().eval().requires_grad_(False)


class SeeingPolicy(torch.nn.Module):
    """(joint state [B, S], uint8 frames [B, C, H, W, 3]) -> chunks: what a policy that reads packed observations
    (``modules/vision.py``) is exported as, so a robot hands over its camera frames as they come."""

    def __init__(self, policy: ChunkPolicy):
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return self.policy(pack_observation(obs, images))


def example_inputs(metadata: dict, batch: int = 1, fill: float = 0.0) -> tuple[torch.Tensor, ...]:
    """Inputs of the graph ``metadata`` describes: observations (and frames, for a policy that sees)."""
    frames = image_shape_of(metadata)
    obs = torch.full((batch, metadata["obs_dim"]), fill)
    return (obs,) if frames is None else (obs, torch.full((batch, *frames), int(fill), dtype=torch.uint8))


@contextlib.contextmanager
def _noise_with_a_symbolic_batch() -> Iterator[None]:
    """torch.export cannot trace ``torch.randn(B, ..., generator=None)`` with a symbolic batch B (the generator
    overload asks for concrete sizes): the same draw without the keyword exports (as an ONNX RandomNormal), so a
    policy that samples noise (flow BC, best-of-N, QC, ...) draws it inside the graph."""
    randn = torch.randn

    def randn_without_default_generator(*size, generator=None, **kwargs):
        return randn(*size, **kwargs) if generator is None else randn(*size, generator=generator, **kwargs)

    torch.randn = randn_without_default_generator
    try:
        yield
    finally:
        torch.randn = randn


def _one_line(err: BaseException) -> str:
    cause = next((line for line in reversed(str(err).splitlines()) if line.strip()), type(err).__name__)
    return f"{type(err).__name__}: {' '.join(cause.split())[:200]}"


def trace(policy: ChunkPolicy, obs_dim: int, image_shape: tuple[int, ...] | None = None) -> ExportedProgram:
    """The policy as one ``torch.export`` program of a dynamic batch (its Python control flow fixed, noise drawn
    inside); a policy torch.export cannot take is a one-line ``ValueError`` naming it. ``image_shape`` (C, H, W[, 3]):
    a policy that sees, exported with its frames as a second input (``SeeingPolicy``)."""
    module, example = frozen_cpu_copy(policy), (torch.zeros(2, obs_dim),)
    batch = torch.export.Dim("batch")
    if image_shape is not None:
        module = SeeingPolicy(module)
        example += (torch.zeros(2, *image_shape[:3], 3, dtype=torch.uint8),)
    try:
        with _noise_with_a_symbolic_batch(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's notes on its own internals: nothing to act on
            return torch.export.export(module, example, dynamic_shapes=tuple({0: batch} for _ in example))
    except Exception as err:  # noqa: BLE001 - torch.export raises many types, each with pages of trace
        raise ValueError(f"torch.export cannot export the {policy.name} policy ({_one_line(err)})") from None


def _program(policy_or_program: ChunkPolicy | ExportedProgram, metadata: dict) -> ExportedProgram:
    if isinstance(policy_or_program, ExportedProgram):
        return policy_or_program
    return trace(policy_or_program, metadata["obs_dim"], image_shape_of(metadata))


def export_onnx(program: ExportedProgram | ChunkPolicy, path: str | Path, metadata: dict, opset: int = 18,
                check: Callable[[Path], None] | None = None, signing_key: bytes | None = None) -> Path:
    """Convert the program (a policy: traced first) with torch.onnx and attach the metadata with its digest (and
    signature, with ``signing_key``); ``check`` the temporary file before it replaces ``path``. A converter
    failure is one line naming the policy."""
    import onnx  # export-time only; deployment reads the file with onnxruntime alone

    path, program = Path(path), _program(program, metadata)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            inputs = [INPUT_NAME] + ([IMAGES_NAME] if "images_input" in metadata else [])
            converted = torch.onnx.export(program, input_names=inputs, output_names=[OUTPUT_NAME],
                                          opset_version=opset, dynamo=True, verbose=False)
    except Exception as err:  # noqa: BLE001 - as trace
        raise ValueError(f"{path}: torch.onnx.export cannot convert the {metadata.get('policy')} policy "
                         f"({_one_line(err)})") from None
    model = converted.model_proto
    signed = metadata | integrity_fields(model.SerializeToString(), metadata, signing_key)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(signed))
    onnx.checker.check_model(model)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
        if check is not None:
            check(tmp)
    return path


def export_pt2(program: ExportedProgram | ChunkPolicy, path: str | Path, metadata: dict,
               check: Callable[[Path], None] | None = None) -> Path:
    """Save the program (a policy: traced first) with the metadata as an extra file; ``check`` the temporary
    file before it replaces ``path``."""
    path, program = Path(path), _program(program, metadata)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as file:  # a buffer: torch warns of a path not ending in .pt2, as the temporary's
            torch.export.save(program, file, extra_files={_EXTRA_FILE: json.dumps(metadata)})
        if check is not None:
            check(tmp)
    return path


def export_aoti(program: ExportedProgram | ChunkPolicy, path: str | Path, metadata: dict,
                check: Callable[[Path], None] | None = None) -> Path:
    """Compile the program (a policy: traced first) with AOTInductor for this machine's CPU into a package that
    carries the metadata; ``check`` the temporary file before it replaces ``path``. Compiling takes a C++
    compiler and tens of seconds even for a small policy."""
    path, program = Path(path), _program(program, metadata)
    with atomic_path(path) as tmp:
        with open(tmp, "w+b") as package:  # a buffer: a path must end in .pt2, the temporary's does not
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # as in export_onnx
                    torch._inductor.aoti_compile_and_package(
                        program, package_path=package,
                        inductor_configs={"aot_inductor.metadata": {METADATA_KEY: json.dumps(metadata)}})
            except Exception as err:  # noqa: BLE001 - the compiler's errors come with pages of generated code
                raise ValueError(f"{path}: AOTInductor cannot compile the {metadata.get('policy')} policy "
                                 f"({_one_line(err)})") from None
        if check is not None:
            check(tmp)
    return path


def _checked_metadata(text: str | None, path: str | Path, run: Callable[[torch.Tensor], torch.Tensor]) -> dict:
    """The metadata ``text`` of the file at ``path``, checked against the chunk ``run`` returns for one observation."""
    if not text:
        raise ValueError(f"{path}: no {METADATA_KEY} inside; not a lawr export")
    metadata = check_metadata(json.loads(text), path)
    with torch.no_grad():
        chunk = run(*example_inputs(metadata))
    return check_metadata(metadata, path, chunk_shape=tuple(chunk.shape[1:]))


def load_pt2(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """(module, metadata) of a ``.pt2`` program, the metadata checked against the chunk it returns."""
    extra = {_EXTRA_FILE: ""}
    try:
        with open(path, "rb") as file, warnings.catch_warnings():  # a buffer: as export_pt2
            # torch reads the weights from a read-only buffer and says so: nothing to act on
            warnings.filterwarnings("ignore", "The given buffer is not writable", UserWarning)
            module = torch.export.load(file, extra_files=extra).module()
    except Exception as err:  # noqa: BLE001 - a zip or deserialisation error, with internals
        raise ValueError(f"{path}: not a readable .pt2 program ({_one_line(err)})") from None
    return module, _checked_metadata(extra[_EXTRA_FILE], path, module)


def load_aoti(path: str | Path) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict]:
    """(compiled model, metadata) of an AOTInductor package, the metadata checked against the chunk it returns."""
    try:
        model = torch._inductor.aoti_load_package(str(path))
    except Exception as err:  # noqa: BLE001 - as load_pt2
        raise ValueError(f"{path}: not a readable AOTInductor package ({_one_line(err)})") from None
    return model, _checked_metadata(model.get_metadata().get(METADATA_KEY), path, model)


def load_onnx(path: str | Path, num_threads: int = 0, signing_key: bytes | None = None):
    """(onnxruntime.InferenceSession, metadata), checked as a robot checks the file (``lawr_ext.deploy.load_checked``:
    metadata against the graph, digest, a finite chunk); ``num_threads`` 0 lets onnxruntime choose."""
    return load_checked(path, num_threads, signing_key)


def load_exported(path: str | Path, fmt: str | None = None) -> tuple[Callable[..., torch.Tensor], dict]:
    """(obs [B, O] (, frames [B, C, H, W, 3] uint8, for a policy that sees) -> chunks [B, H, A] on the CPU,
    metadata) of a file written by this module; ``fmt`` one of ``FILE_NAMES`` (None: by the file's name)."""
    fmt = fmt or format_of(path)
    if fmt == "onnx":
        session, metadata = load_onnx(path)
        names = [INPUT_NAME] + ([metadata["images_input"]] if "images_input" in metadata else [])

        def run(*inputs: torch.Tensor) -> torch.Tensor:
            feed = {name: value.cpu().numpy() for name, value in zip(names, inputs)}
            return torch.from_numpy(session.run([OUTPUT_NAME], feed)[0])
        return run, metadata
    return (load_pt2 if fmt == "pt2" else load_aoti)(path)


@torch.no_grad()
def run_exported(path: str | Path, obs: torch.Tensor, fmt: str | None = None,
                 images: torch.Tensor | None = None) -> torch.Tensor:
    """A file written by this module (``fmt``: as ``load_exported``) applied to ``obs`` [B, O] (and the frames
    ``images`` [B, C, H, W, 3] of a policy that sees) -> chunks [B, H, A]."""
    return load_exported(path, fmt)[0](obs.cpu(), *(() if images is None else (images.cpu(),)))


@torch.no_grad()
def max_abs_diff(policy: ChunkPolicy, path: str | Path, obs: torch.Tensor, fmt: str | None = None,
                 images: torch.Tensor | None = None) -> float:
    """max |exported(obs) - eager(obs)| for a file written by this module (``fmt``: as ``load_exported``; ``images``:
    the frames of a policy that sees); NaN where either is not finite."""
    eager_obs = obs.cpu() if images is None else pack_observation(obs.cpu(), images.cpu())
    return (run_exported(path, obs, fmt, images) - frozen_cpu_copy(policy)(eager_obs)).abs().max().item()
