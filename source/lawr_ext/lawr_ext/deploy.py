"""The robot side of an exported policy: check a ``policy.onnx`` and play its chunks, with numpy and onnxruntime only.

This module imports nothing of lawr and no torch, so it can be copied onto a robot next to the file. Everything
it needs travels in the file's metadata (``scripts/export.py`` writes it, ``lawr_ext/export`` builds it with
:func:`check_metadata`, the same check this side runs before the first command)::

    format_version     EXPORT_FORMAT_VERSION of the exporter
    task, policy, config_hash
    horizon, action_dim, obs_dim   must match the graph: input [B, obs_dim], output [B, horizon, action_dim]
    control_rate_hz    actions per second, within CONTROL_RATE_RANGE_HZ
    input, output      the graph's input and output names
    sha256             digest over the graph (the model without its metadata_props) and this metadata
    hmac_sha256        optional: the same content signed with a lab's key (``--signing_key``)

optionally, how the run was evaluated (so the robot executes chunks as the reported figures did)::

    exec_horizon       chunk steps executed before replanning, in [1, H]
    temporal_ensemble  ACT-style: each step averages every stored chunk that covers it (bool)
    ensemble_decay     m in the weight exp(-m*i), i = 0 for the oldest covering chunk (>= 0)

for a policy that sees (image tasks; all three or none)::

    images_input       the graph's second input: uint8 camera frames [B, C, H, W, 3] beside obs [B, obs_dim]
    cameras            the C cameras' names, in the order the frames are stacked
    image_shape        [C, H, W]: how many cameras, and their height and width in pixels

the per-dimension range of the observations the policy was trained on (both or neither)::

    obs_low, obs_high  an observation further than OBS_RANGE_MARGIN range widths outside is refused

and, for a task with an action spec (all of them or none), one entry per action dimension::

    joint_names        the joint (or gripper) each action entry commands
    action_scale, action_offset   target = offset + scale * action, action in [-1, 1]
    joint_lower, joint_upper      the target is kept within these limits
    max_target_speed   the target moves at most this fast (units per second): the servos' profile velocity

Without them (e.g. a task family with no robot description) the commands are the actions, clamped to [-1, 1].
A file that breaks any of this, or whose digest (or signature) does not match, is refused in one line
(``ValueError``) before anything is commanded.

The safety limits are never taken from the file alone: a joint-level export is played only against the robot's
own limits (:func:`read_robot_limits`: joint names, limits, servo speeds and control rate, given on the robot
side), and refused where its limits, speeds or rate lie outside them. Nothing non-finite is ever commanded: a
non-finite or out-of-range observation, a non-finite chunk or action is refused for that step (``act`` and
``command`` raise, the last command stands).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

METADATA_KEY = "lawr_metadata"  # ONNX metadata_props key (.pt2: extra file "<key>.json"; AOTI: package metadata)
#: The layout above, versioned on its own: a change of the checkpoint format (lawr_ext.utils.io.FORMAT_VERSION)
#: leaves deployed exports readable. It starts at 4, the number exports were first written with, so they still are.
EXPORT_FORMAT_VERSION = 4
JOINT_FIELDS = ("joint_names", "action_scale", "action_offset", "joint_lower", "joint_upper", "max_target_speed")
OBS_RANGE_FIELDS = ("obs_low", "obs_high")
IMAGE_FIELDS = ("images_input", "cameras", "image_shape")
DIGEST_FIELD, SIGNATURE_FIELD = "sha256", "hmac_sha256"
INTEGRITY_FIELDS = (DIGEST_FIELD, SIGNATURE_FIELD)
#: What the robot side knows of its robot, independent of any exported file (read_robot_limits).
ROBOT_FIELDS = ("joint_names", "joint_lower", "joint_upper", "max_target_speed", "control_rate_hz")
CONTROL_RATE_RANGE_HZ = (1.0, 1000.0)  # outside it no robot's control loop runs: an edited or broken file
OBS_RANGE_MARGIN = 1.0  # an observation may lie this many range widths beyond the training range, no further
LIMIT_TOLERANCE = 1e-6  # float round-off between the exported limits and the robot's own
_MODEL_METADATA_PROPS = 14  # field number of ModelProto.metadata_props, which holds the metadata itself
_POSITIVE_INTS = ("horizon", "action_dim", "obs_dim")
_STRINGS = ("task", "config_hash", "input", "output")

logger = logging.getLogger("lawr.deploy")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_metadata(meta: dict, source: object, obs_dim: int | None = None,
                   chunk_shape: tuple[int, int] | None = None) -> dict:
    """``meta`` if it is complete and consistent, checked against the graph's observation size ``obs_dim`` and
    chunk shape ``(horizon, action_dim)`` where given; else a one-line ``ValueError`` naming ``source`` and the field."""
    def refuse(problem: str) -> ValueError:
        return ValueError(f"{source}: {problem}")

    if not isinstance(meta, dict):
        raise refuse("export metadata is not a JSON object")
    version = meta.get("format_version")
    if version != EXPORT_FORMAT_VERSION:
        raise refuse(f"exported with format version {version}, this reads version {EXPORT_FORMAT_VERSION}; re-export the "
                     "policy with this version of lawr")
    missing = [k for k in _POSITIVE_INTS + _STRINGS + ("control_rate_hz",) if k not in meta]
    if missing:
        raise refuse(f"export metadata lacks {missing}")
    for name in _POSITIVE_INTS:
        if not _is_int(meta[name]) or meta[name] < 1:
            raise refuse(f"metadata {name}={meta[name]!r} must be an integer >= 1")
    for name in _STRINGS:
        if not isinstance(meta[name], str) or not meta[name]:
            raise refuse(f"metadata {name}={meta[name]!r} must be a non-empty string")
    rate, (slowest, fastest) = meta["control_rate_hz"], CONTROL_RATE_RANGE_HZ
    if not _is_number(rate) or rate <= 0:
        raise refuse(f"metadata control_rate_hz={rate!r} must be a finite number > 0")
    if not slowest <= rate <= fastest:
        raise refuse(f"metadata control_rate_hz={rate!r} lies outside [{slowest:g}, {fastest:g}] Hz, the rates a robot's "
                     "control loop runs at")
    if obs_dim is not None and meta["obs_dim"] != obs_dim:
        raise refuse(f"metadata obs_dim={meta['obs_dim']}, but the graph's input takes {obs_dim} observations")
    if chunk_shape is not None and (meta["horizon"], meta["action_dim"]) != tuple(chunk_shape):
        raise refuse(f"metadata horizon={meta['horizon']}, action_dim={meta['action_dim']}, but the graph's output "
                     f"chunk is {chunk_shape[0]} x {chunk_shape[1]}")
    if "exec_horizon" in meta and (not _is_int(meta["exec_horizon"]) or not 1 <= meta["exec_horizon"] <= meta["horizon"]):
        raise refuse(f"metadata exec_horizon={meta['exec_horizon']!r} must be an integer in [1, H={meta['horizon']}]")
    if "temporal_ensemble" in meta and not isinstance(meta["temporal_ensemble"], bool):
        raise refuse(f"metadata temporal_ensemble={meta['temporal_ensemble']!r} must be true or false")
    if "ensemble_decay" in meta and (not _is_number(meta["ensemble_decay"]) or meta["ensemble_decay"] < 0):
        raise refuse(f"metadata ensemble_decay={meta['ensemble_decay']!r} must be a finite number >= 0")
    for name in INTEGRITY_FIELDS:
        value = meta.get(name, "0" * 64)
        if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise refuse(f"metadata {name}={value!r} must be 64 hex digits")
    _check_image_fields(meta, refuse)
    _check_lists(meta, OBS_RANGE_FIELDS, meta["obs_dim"], "obs_dim", refuse)
    if OBS_RANGE_FIELDS[0] in meta:
        below = [i for i, (low, high) in enumerate(zip(meta["obs_low"], meta["obs_high"])) if not low <= high]
        if below:
            raise refuse(f"metadata obs_low[{below[0]}]={meta['obs_low'][below[0]]} is above "
                         f"obs_high[{below[0]}]={meta['obs_high'][below[0]]}")
    if _check_lists(meta, JOINT_FIELDS, meta["action_dim"], "action_dim", refuse):
        _check_joint_fields(meta, refuse)
    return meta


def _check_image_fields(meta: dict, refuse) -> None:
    present = [k for k in IMAGE_FIELDS if k in meta]
    if not present:
        return
    if len(present) < len(IMAGE_FIELDS):
        raise refuse(f"metadata has {present} but lacks {[k for k in IMAGE_FIELDS if k not in meta]}: the fields "
                     f"{list(IMAGE_FIELDS)} come all together or not at all")
    shape, cameras = meta["image_shape"], meta["cameras"]
    if not isinstance(shape, list) or len(shape) != 3 or not all(_is_int(d) and d >= 1 for d in shape):
        raise refuse(f"metadata image_shape={shape!r} must be [cameras, height, width], integers >= 1")
    if not isinstance(cameras, list) or len(cameras) != shape[0] or len(set(cameras)) != len(cameras) \
            or not all(isinstance(c, str) and c for c in cameras):
        raise refuse(f"metadata cameras={cameras!r} must be {shape[0]} distinct names (image_shape[0])")
    if not isinstance(meta["images_input"], str) or not meta["images_input"] or meta["images_input"] == meta["input"]:
        raise refuse(f"metadata images_input={meta['images_input']!r} must name the graph's second input")


def image_shape_of(meta: dict) -> tuple[int, int, int, int] | None:
    """The shape one observation's frames must have, (C, H, W, 3), for a policy that sees; None otherwise."""
    return None if "image_shape" not in meta else (*meta["image_shape"], 3)


def _check_lists(meta: dict, fields: tuple[str, ...], size: int, size_name: str, refuse) -> bool:
    """Whether ``fields`` are present: all of them, each a list of ``size`` entries (finite numbers, but for
    ``joint_names``); refused if only some are, or one is not."""
    present = [k for k in fields if k in meta]
    if not present:
        return False
    if len(present) < len(fields):
        raise refuse(f"metadata has {present} but lacks {[k for k in fields if k not in meta]}: the fields "
                     f"{list(fields)} come all together or not at all")
    for name in fields:
        values = meta[name]
        if not isinstance(values, list) or len(values) != size:
            count = len(values) if isinstance(values, list) else type(values).__name__
            raise refuse(f"metadata {name} has {count} entries, the policy has {size_name}={size}")
        bad = [] if name == "joint_names" else [i for i, v in enumerate(values) if not _is_number(v)]
        if bad:
            raise refuse(f"metadata {name}[{bad[0]}]={values[bad[0]]!r} is not a finite number")
    return True


def _check_joint_fields(meta: dict, refuse) -> None:
    names = meta["joint_names"]
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise refuse(f"metadata joint_names must be {meta['action_dim']} distinct names, got {names}")
    for i, (scale, low, high, speed) in enumerate(zip(meta["action_scale"], meta["joint_lower"], meta["joint_upper"],
                                                      meta["max_target_speed"])):
        if scale == 0:
            raise refuse(f"metadata action_scale[{i}] is 0 ({names[i]} could not move)")
        if not low < high:
            raise refuse(f"metadata joint_lower[{i}]={low} is not below joint_upper[{i}]={high} ({names[i]})")
        if not speed > 0:
            raise refuse(f"metadata max_target_speed[{i}]={speed} must be > 0 ({names[i]})")
    gripper_joints = meta.get("gripper_joints", {})
    if not isinstance(gripper_joints, dict) or not set(gripper_joints) <= set(names):
        raise refuse(f"metadata gripper_joints names commands that are not in joint_names: {gripper_joints}")


# ---------------------------------------------------------------- integrity: a digest over graph and metadata

def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated protobuf varint")


def model_without_metadata(model: bytes) -> bytes:
    """A serialized ONNX ModelProto without its ``metadata_props`` records: everything the graph computes with.
    A minimal reader of the top-level protobuf records, so that the robot side needs no onnx package."""
    kept, pos = [], 0
    while pos < len(model):
        start = pos
        key, pos = _varint(model, pos)
        wire_type = key & 7
        if wire_type == 0:
            pos = _varint(model, pos)[1]
        elif wire_type == 1:
            pos += 8
        elif wire_type == 2:
            length, pos = _varint(model, pos)
            pos += length
        elif wire_type == 5:
            pos += 4
        else:
            raise ValueError(f"protobuf wire type {wire_type} at byte {start}: not an ONNX model")
        if pos > len(model):
            raise ValueError("truncated protobuf record")
        if key >> 3 != _MODEL_METADATA_PROPS:
            kept.append(model[start:pos])
    return b"".join(kept)


def integrity_fields(model: bytes, meta: dict, signing_key: bytes | None = None) -> dict[str, str]:
    """{"sha256": ...} (and {"hmac_sha256": ...} with a key) over the model without its metadata_props and the
    canonical JSON of ``meta`` without these two fields: what ``export_onnx`` writes and the robot side checks."""
    canonical = json.dumps({k: v for k, v in meta.items() if k not in INTEGRITY_FIELDS}, sort_keys=True,
                           separators=(",", ":"), allow_nan=False)
    content = model_without_metadata(model) + b"\0" + canonical.encode()
    fields = {DIGEST_FIELD: hashlib.sha256(content).hexdigest()}
    if signing_key is not None:
        fields[SIGNATURE_FIELD] = hmac.new(signing_key, content, hashlib.sha256).hexdigest()
    return fields


def read_signing_key(path: str | Path) -> bytes:
    """The key in file ``path`` (surrounding whitespace stripped); a one-line ``ValueError`` if unreadable or empty."""
    try:
        key = Path(path).read_bytes().strip()
    except OSError as err:
        raise ValueError(f"{path}: cannot read the signing key ({err.strerror})") from None
    if not key:
        raise ValueError(f"{path}: the signing key file is empty")
    return key


def _check_integrity(model: bytes, meta: dict, source: object, signing_key: bytes | None) -> None:
    if DIGEST_FIELD not in meta:
        raise ValueError(f"{source}: no sha256 digest in the metadata (exported by an older lawr, or written by hand); "
                         "re-export the policy")
    try:
        expected = integrity_fields(model, meta, signing_key)
    except ValueError as err:
        raise ValueError(f"{source}: cannot compute the digest ({err})") from None
    if not hmac.compare_digest(meta[DIGEST_FIELD], expected[DIGEST_FIELD]):
        raise ValueError(f"{source}: the sha256 digest over the graph and its metadata does not match: the file was "
                         "changed after export; nothing loaded (re-export it)")
    if signing_key is None:
        return
    if SIGNATURE_FIELD not in meta:
        raise ValueError(f"{source}: not signed, but a signing key was given: export it with --signing_key")
    if not hmac.compare_digest(meta[SIGNATURE_FIELD], expected[SIGNATURE_FIELD]):
        raise ValueError(f"{source}: the hmac_sha256 signature does not match the signing key: the file was changed "
                         "after export (its digest recomputed) or signed with another key; nothing loaded")


# ---------------------------------------------------------------- plausibility: the robot's own limits

def check_robot_limits(robot: dict, source: object) -> dict:
    """``robot`` (the ``ROBOT_FIELDS``) if complete and consistent, else a one-line ``ValueError`` naming ``source``."""
    def refuse(problem: str) -> ValueError:
        return ValueError(f"{source}: robot limits {problem}")

    if not isinstance(robot, dict):
        raise refuse("are not a JSON object")
    missing = [k for k in ROBOT_FIELDS if k not in robot]
    if missing:
        raise refuse(f"lack {missing}")
    rate = robot["control_rate_hz"]
    if not _is_number(rate) or not CONTROL_RATE_RANGE_HZ[0] <= rate <= CONTROL_RATE_RANGE_HZ[1]:
        raise refuse(f"control_rate_hz={rate!r} must lie in [{CONTROL_RATE_RANGE_HZ[0]:g}, "
                     f"{CONTROL_RATE_RANGE_HZ[1]:g}] Hz")
    names = robot["joint_names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names) \
            or len(set(names)) != len(names):
        raise refuse(f"joint_names must be distinct names, got {names!r}")
    for name in ROBOT_FIELDS[1:4]:
        values = robot[name]
        if not isinstance(values, list) or len(values) != len(names) or not all(_is_number(v) for v in values):
            raise refuse(f"{name} must be {len(names)} finite numbers, one per joint, got {values!r}")
    for i, (low, high, speed) in enumerate(zip(robot["joint_lower"], robot["joint_upper"], robot["max_target_speed"])):
        if not low < high or not speed > 0:
            raise refuse(f"of {names[i]}: [{low}, {high}] at {speed}/s is not a joint range and a speed > 0")
    return robot


def read_robot_limits(path: str | Path) -> dict:
    """The robot's own limits from a JSON file on the robot side (``ROBOT_FIELDS``; lawr ships the bimanual
    robot's as ``lawr_ext/tasks/bimanual/robot_limits.json``), checked; ``source`` names the file."""
    try:
        robot = json.loads(Path(path).read_text())
    except OSError as err:
        raise ValueError(f"{path}: cannot read the robot limits ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: the robot limits are not JSON ({err})") from None
    return check_robot_limits(robot, path) | {"source": str(path)}


def _check_within_robot(meta: dict, robot: dict, source: object) -> None:
    """Refuse an export whose joints, limits, servo speeds or control rate are not the robot's own (or within them)."""
    where = f"the robot's own limits ({robot.get('source', 'given')})"

    def refuse(problem: str) -> ValueError:
        return ValueError(f"{source}: {problem}; to allow it, pass other robot limits explicitly")

    if meta["joint_names"] != robot["joint_names"]:
        raise refuse(f"the export commands joints {meta['joint_names']}, {where} name {robot['joint_names']}")
    rate = robot["control_rate_hz"]
    if abs(meta["control_rate_hz"] - rate) > LIMIT_TOLERANCE * rate:
        raise refuse(f"metadata control_rate_hz={meta['control_rate_hz']!r}, the robot runs at {rate:g} Hz ({where})")
    for i, name in enumerate(robot["joint_names"]):
        low, high, speed = robot["joint_lower"][i], robot["joint_upper"][i], robot["max_target_speed"][i]
        if not low - LIMIT_TOLERANCE <= meta["joint_lower"][i] < meta["joint_upper"][i] <= high + LIMIT_TOLERANCE:
            raise refuse(f"metadata joint limits [{meta['joint_lower'][i]!r}, {meta['joint_upper'][i]!r}] of {name} "
                         f"(joint_lower[{i}], joint_upper[{i}]) reach outside [{low}, {high}], {where}")
        if meta["max_target_speed"][i] > speed * (1 + LIMIT_TOLERANCE):
            raise refuse(f"metadata max_target_speed[{i}]={meta['max_target_speed'][i]!r} of {name} exceeds the "
                         f"servo speed {speed}, {where}")


# ---------------------------------------------------------------- reading a file, playing its chunks

def _static(dims) -> list[int | None]:
    return [d if _is_int(d) else None for d in dims]


def load_checked(path: str | Path, num_threads: int = 0, signing_key: bytes | None = None):
    """(onnxruntime.InferenceSession, metadata) of an exported file, refused in one line unless its metadata
    matches the graph, its digest (and, with ``signing_key``, its signature) matches, and the graph returns a
    finite chunk of the declared shape for a typical observation (the middle of the training range, else zeros).
    The session is built from the bytes that were checked, so the file cannot change in between."""
    import onnxruntime as ort

    try:
        model = Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: cannot read the file ({err.strerror})") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for unreadable files
        raise ValueError(f"{path}: not a readable ONNX file ({' '.join(str(err).split())[:200]})") from None
    props = session.get_modelmeta().custom_metadata_map
    if METADATA_KEY not in props:
        raise ValueError(f"{path}: no '{METADATA_KEY}' in the ONNX metadata_props; not a lawr export")
    try:
        meta = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: the export metadata is not JSON ({err})") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    sees = isinstance(meta, dict) and "images_input" in meta
    if len(inputs) != 1 + sees or len(outputs) != 1 or len(inputs[0].shape) != 2 or len(outputs[0].shape) != 3:
        raise ValueError(f"{path}: the graph must map obs [B, O]{' and images [B, C, H, W, 3]' if sees else ''} to "
                         "one chunk [B, H, A]")
    obs_dim = _static(inputs[0].shape)[1]
    horizon, action_dim = _static(outputs[0].shape)[1:]
    meta = check_metadata(meta, path, obs_dim, (horizon, action_dim) if None not in (horizon, action_dim) else None)
    _check_integrity(model, meta, path, signing_key)
    if (meta["input"], meta["output"]) != (inputs[0].name, outputs[0].name):
        raise ValueError(f"{path}: metadata names input {meta['input']!r} and output {meta['output']!r}, "
                         f"the graph has {inputs[0].name!r} and {outputs[0].name!r}")
    typical = ((np.asarray(meta["obs_low"]) + np.asarray(meta["obs_high"])) / 2 if "obs_low" in meta
               else np.zeros(meta["obs_dim"]))
    feed = {inputs[0].name: typical[None].astype(np.float32)}
    if sees:
        frames = image_shape_of(meta)
        graph_frames = _static(inputs[1].shape)[1:]
        if inputs[1].name != meta["images_input"] or graph_frames != list(frames):
            raise ValueError(f"{path}: metadata says frames {meta['images_input']!r} of shape {list(frames)}, the graph "
                             f"takes {inputs[1].name!r} of shape {graph_frames}")
        feed[inputs[1].name] = np.full((1, *frames), 128, np.uint8)
    probe = session.run(None, feed)[0]
    if probe.shape != (1, meta["horizon"], meta["action_dim"]):
        raise ValueError(f"{path}: metadata says chunks of {meta['horizon']} x {meta['action_dim']}, the "
                         f"graph returns {probe.shape[1:]}")
    if not np.isfinite(probe).all():
        raise ValueError(f"{path}: the graph returns a non-finite chunk ({int((~np.isfinite(probe)).sum())} NaN/inf "
                         "entries) for a typical observation: a NaN or inf weight; nothing loaded")
    return session, meta


class OnnxChunkPolicy:
    """Plays exported chunks: one ONNX call per ``exec_horizon`` control steps, each action turned into a command
    within the exported joint limits and servo profile, which must lie within ``robot_limits``: the robot's own
    (:func:`read_robot_limits`), given on the robot side and required for a joint-level export.

    With ``temporal_ensemble`` every stored chunk that still covers the current step votes for its entry there,
    weighted exp(-m*i) with i = 0 for the oldest vote: the rule of ``lawr_ext.eval.rollout.ChunkScheduler``, so
    a robot executes what the evaluation measured. ``None`` for any of the three: the file's recorded setting.

    ``signing_key``: the file must carry a matching HMAC signature. ``expect_task``, ``expect_config_hash``: the
    file must be of this task and config. ``obs_range_margin``: how many range widths an observation may lie
    beyond the training range. What was checked, and against what, goes to ``log`` (one line each).
    """

    def __init__(self, path: str, exec_horizon: int | None = None, num_threads: int = 0,
                 temporal_ensemble: bool | None = None, ensemble_decay: float | None = None, *,
                 robot_limits: dict | None = None, signing_key: bytes | None = None, expect_task: str | None = None,
                 expect_config_hash: str | None = None, obs_range_margin: float = OBS_RANGE_MARGIN,
                 log: Callable[[str], None] = logger.info):
        self.session, self.meta = load_checked(path, num_threads, signing_key)
        log(f"{path}: sha256 digest over graph and metadata matches"
            + (", and its hmac_sha256 signature" if signing_key is not None else
               " (signed; pass the signing key to check the signature)" if SIGNATURE_FIELD in self.meta else ""))
        for name, expected in (("task", expect_task), ("config_hash", expect_config_hash)):
            if expected is not None and self.meta[name] != expected:
                raise ValueError(f"{path}: exported for {name} {self.meta[name]!r}, expected {expected!r}")
        if exec_horizon is None:  # the protocol the run was evaluated with (files that do not record it: H)
            exec_horizon = self.meta.get("exec_horizon", self.meta["horizon"])
        if not _is_int(exec_horizon) or not 1 <= exec_horizon <= self.meta["horizon"]:
            raise ValueError(f"--exec_horizon {exec_horizon} must lie in [1, H={self.meta['horizon']}]")
        self.exec_horizon = exec_horizon
        self.temporal_ensemble = bool(self.meta.get("temporal_ensemble", False) if temporal_ensemble is None
                                      else temporal_ensemble)
        self.ensemble_decay = self.meta.get("ensemble_decay", 0.01) if ensemble_decay is None else ensemble_decay
        if not _is_number(self.ensemble_decay) or self.ensemble_decay < 0:
            raise ValueError(f"--ensemble_decay {self.ensemble_decay} must be a finite number >= 0")
        # a chunk covers H steps and a new one arrives every exec_horizon steps: at most ceil(H/k) overlap
        self.num_slots = math.ceil(self.meta["horizon"] / exec_horizon) if self.temporal_ensemble else 1
        self.joint_level = "joint_names" in self.meta
        if self.joint_level:
            if robot_limits is None:
                raise ValueError(f"{path}: a joint-level export is played only against the robot's own limits, never "
                                 "the file's alone: give them (robot_limits=read_robot_limits(FILE), --robot_limits FILE)")
            robot = check_robot_limits(robot_limits, robot_limits.get("source", "robot_limits"))
            _check_within_robot(self.meta, robot, path)
            m = self.meta
            self.scale, self.offset = np.asarray(m["action_scale"]), np.asarray(m["action_offset"])
            self.lower, self.upper = np.asarray(m["joint_lower"]), np.asarray(m["joint_upper"])
            self.max_step = np.asarray(m["max_target_speed"]) / robot["control_rate_hz"]  # per control step
            log(f"robot limits {robot.get('source', 'given')}: {len(robot['joint_names'])} joints at "
                f"{robot['control_rate_hz']:g} Hz; the export's joint limits and servo speeds lie within them")
        elif robot_limits is not None:
            log("the export has no joint fields: its commands are actions in [-1, 1], the robot limits do not apply")
        if not _is_number(obs_range_margin) or obs_range_margin < 0:
            raise ValueError(f"obs_range_margin={obs_range_margin!r} must be a finite number >= 0")
        self.obs_low = self.obs_high = None
        if "obs_low" in self.meta:
            low, high = np.asarray(self.meta["obs_low"]), np.asarray(self.meta["obs_high"])
            width = np.maximum(high - low, 1e-6)  # a dimension the data never moved may still jitter
            self.obs_low, self.obs_high = low - obs_range_margin * width, high + obs_range_margin * width
            log(f"observations further than {obs_range_margin:g} range widths outside the training range are refused")
        else:
            log("no training range in the file: observations are checked for finiteness only")
        self.chunks: list[list] = []  # [chunk [H, A], steps since predicted], newest first
        self.last_command: np.ndarray | None = None
        self.inference_seconds: list[float] = []

    def reset(self, current: np.ndarray | None = None) -> None:
        """Start an episode. ``current``: the robot's present joint positions in action order; the first command then
        moves at most one rate step from them (None: the first command is only clamped to the limits)."""
        if current is not None:
            current = np.asarray(current, np.float64)
            if current.shape != (self.meta["action_dim"],) or not np.isfinite(current).all():
                raise ValueError(f"current joint positions of shape {current.shape} (finite: "
                                 f"{bool(np.isfinite(current).all())}); {self.meta['action_dim']} finite values expected")
            current = current.copy()
        self.chunks.clear()
        self.last_command = current

    def act(self, obs: np.ndarray, images: np.ndarray | None = None) -> np.ndarray:
        """The action [A] in [-1, 1] for observation [O] (and, for a policy that sees, the cameras' frames: uint8
        [C, H, W, 3] in the metadata's camera order); replans when the executed part of the chunk is used up.
        Raises ``ValueError`` (nothing commanded this step) for a non-finite observation, one outside the training
        range (widened by ``obs_range_margin``), frames of another shape or type, or a chunk that is not finite."""
        obs = np.asarray(obs, np.float32)
        if obs.shape != (self.meta["obs_dim"],) or not np.isfinite(obs).all():
            raise ValueError(f"observation of shape {obs.shape} (finite: {bool(np.isfinite(obs).all())}); the policy "
                             f"takes {self.meta['obs_dim']} finite values: nothing commanded")
        frames = image_shape_of(self.meta)
        if frames is None and images is not None:
            raise ValueError("camera frames given, but the policy takes none (an export of a state task): nothing "
                             "commanded")
        if frames is not None:
            given = None if images is None else (np.shape(images), np.asarray(images).dtype)
            if given != (frames, np.dtype(np.uint8)):
                raise ValueError(f"camera frames {'missing' if given is None else f'of shape {given[0]}, {given[1]}'}; "
                                 f"the policy takes uint8 {frames} from cameras {self.meta['cameras']} in this order: "
                                 "nothing commanded")
        if self.obs_low is not None:
            outside = np.flatnonzero((obs < self.obs_low) | (obs > self.obs_high))
            if outside.size:
                i = int(outside[0])
                raise ValueError(f"observation[{i}]={obs[i]:.6g} lies outside [{self.obs_low[i]:.6g}, "
                                 f"{self.obs_high[i]:.6g}], the training range widened by its margin ({outside.size} "
                                 "entries outside): nothing commanded")
        if not self.chunks or self.chunks[0][1] >= self.exec_horizon:
            start = time.perf_counter()
            feed = {self.meta["input"]: obs[None]}
            if frames is not None:
                feed[self.meta["images_input"]] = np.asarray(images)[None]
            chunk = self.session.run([self.meta["output"]], feed)[0][0]
            self.inference_seconds.append(time.perf_counter() - start)
            if not np.isfinite(chunk).all():  # not stored: the next step replans
                raise ValueError(f"the policy returned a non-finite chunk ({int((~np.isfinite(chunk)).sum())} NaN/inf "
                                 "entries) for this observation: nothing commanded")
            self.chunks = [[chunk, 0]] + self.chunks[: self.num_slots - 1]
        covering = [(chunk, age) for chunk, age in self.chunks if age < self.meta["horizon"]]  # newest first
        weights = np.exp(-self.ensemble_decay * np.arange(len(covering))[::-1])  # i = 0: the oldest
        action = sum(w * chunk[age] for w, (chunk, age) in zip(weights, covering)) / weights.sum()
        for entry in self.chunks:
            entry[1] += 1
        return np.clip(action, -1.0, 1.0)

    def command(self, action: np.ndarray) -> np.ndarray:
        """What is sent this control step: joint targets offset + scale * action, kept within the joint limits and
        moved at most ``max_target_speed / control_rate_hz`` from the last command; without joint fields, the
        action clamped to [-1, 1]. A non-finite action raises ``ValueError`` (the last command stands)."""
        action = np.asarray(action, np.float64)
        if action.shape != (self.meta["action_dim"],) or not np.isfinite(action).all():
            raise ValueError(f"action of shape {action.shape} (finite: {bool(np.isfinite(action).all())}); "
                             f"{self.meta['action_dim']} finite values expected: nothing commanded")
        action = np.clip(action, -1.0, 1.0)
        if not self.joint_level:
            return action
        target = np.clip(self.offset + self.scale * action, self.lower, self.upper)
        if self.last_command is not None:
            target = self.last_command + np.clip(target - self.last_command, -self.max_step, self.max_step)
        self.last_command = target
        return target

    def named(self, command: np.ndarray) -> dict[str, float]:
        """A command by joint name (joint-level exports), else by action index."""
        names = self.meta["joint_names"] if self.joint_level else [str(i) for i in range(len(command))]
        return dict(zip(names, np.asarray(command).tolist()))

    def action_of(self, command: np.ndarray) -> np.ndarray:
        """The normalized action that produces ``command`` (for a simulator that takes actions, not targets)."""
        if not self.joint_level:
            return np.asarray(command, np.float32)
        return np.clip((command - self.offset) / self.scale, -1.0, 1.0).astype(np.float32)
