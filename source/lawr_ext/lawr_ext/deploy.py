"""The robot side of an exported policy: check a ``policy.onnx`` and play its chunks, with numpy and onnxruntime only.

This module imports nothing of lawr and no torch, so it can be copied onto a robot next to the file. Everything
it needs travels in the file's metadata (``scripts/export.py`` writes it, ``lawr_ext/export`` builds it with
:func:`check_metadata`, the same check this side runs before the first command)::

    format_version     METADATA_FORMAT of the exporter
    task, policy, config_hash
    horizon, action_dim, obs_dim   must match the graph: input [B, obs_dim], output [B, horizon, action_dim]
    control_rate_hz    actions per second
    input, output      the graph's input and output names

optionally, how the run was evaluated (so the robot executes chunks as the reported figures did)::

    exec_horizon       chunk steps executed before replanning, in [1, H]
    temporal_ensemble  ACT-style: each step averages every stored chunk that covers it (bool)
    ensemble_decay     m in the weight exp(-m*i), i = 0 for the oldest covering chunk (>= 0)

and, for a task with an action spec (all of them or none), one entry per action dimension::

    joint_names        the joint (or gripper) each action entry commands
    action_scale, action_offset   target = offset + scale * action, action in [-1, 1]
    joint_lower, joint_upper      the target is kept within these limits
    max_target_speed   the target moves at most this fast (units per second): the servos' profile velocity

Without them (e.g. a task family with no robot description) the commands are the actions, clamped to [-1, 1].
A file that breaks any of this is refused in one line (``ValueError``) before anything is commanded.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np

METADATA_KEY = "lawr_metadata"  # ONNX metadata_props key (TorchScript: extra file "<key>.json")
METADATA_FORMAT = 4             # the layout above; lawr_ext.utils.io.FORMAT_VERSION of the exporter
JOINT_FIELDS = ("joint_names", "action_scale", "action_offset", "joint_lower", "joint_upper", "max_target_speed")
_POSITIVE_INTS = ("horizon", "action_dim", "obs_dim")
_STRINGS = ("task", "config_hash", "input", "output")


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
    if version != METADATA_FORMAT:
        raise refuse(f"exported with format version {version}, this reads version {METADATA_FORMAT}; re-export the "
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
    if not _is_number(meta["control_rate_hz"]) or meta["control_rate_hz"] <= 0:
        raise refuse(f"metadata control_rate_hz={meta['control_rate_hz']!r} must be a finite number > 0")
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
    present = [k for k in JOINT_FIELDS if k in meta]
    if present and len(present) < len(JOINT_FIELDS):
        raise refuse(f"metadata has {present} but lacks {[k for k in JOINT_FIELDS if k not in meta]}: the joint "
                     "fields come all together or not at all")
    if present:
        _check_joint_fields(meta, refuse)
    return meta


def _check_joint_fields(meta: dict, refuse) -> None:
    action_dim = meta["action_dim"]
    for name in JOINT_FIELDS:
        values = meta[name]
        if not isinstance(values, list) or len(values) != action_dim:
            count = len(values) if isinstance(values, list) else type(values).__name__
            raise refuse(f"metadata {name} has {count} entries, the policy has action_dim={action_dim}")
    names = meta["joint_names"]
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise refuse(f"metadata joint_names must be {action_dim} distinct names, got {names}")
    for name in JOINT_FIELDS[1:]:
        bad = [i for i, v in enumerate(meta[name]) if not _is_number(v)]
        if bad:
            raise refuse(f"metadata {name}[{bad[0]}]={meta[name][bad[0]]!r} is not a finite number")
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


def _static(dims) -> list[int | None]:
    return [d if _is_int(d) else None for d in dims]


class OnnxChunkPolicy:
    """Plays exported chunks: one ONNX call per ``exec_horizon`` control steps, each action turned into a command
    within the exported joint limits and servo profile.

    With ``temporal_ensemble`` every stored chunk that still covers the current step votes for its entry there,
    weighted exp(-m*i) with i = 0 for the oldest vote: the rule of ``lawr_ext.eval.rollout.ChunkScheduler``, so
    a robot executes what the evaluation measured. ``None`` for any of the three: the file's recorded setting.
    """

    def __init__(self, path: str, exec_horizon: int | None = None, num_threads: int = 0,
                 temporal_ensemble: bool | None = None, ensemble_decay: float | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types for unreadable files
            raise ValueError(f"{path}: not a readable ONNX file ({' '.join(str(err).split())[:200]})") from None
        props = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise ValueError(f"{path}: no '{METADATA_KEY}' in the ONNX metadata_props; not a lawr export")
        try:
            meta = json.loads(props[METADATA_KEY])
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: the export metadata is not JSON ({err})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0].shape) != 2 or len(outputs[0].shape) != 3:
            raise ValueError(f"{path}: the graph must map obs [B, O] to one chunk [B, H, A]")
        obs_dim = _static(inputs[0].shape)[1]
        horizon, action_dim = _static(outputs[0].shape)[1:]
        self.meta = check_metadata(meta, path, obs_dim,
                                   (horizon, action_dim) if None not in (horizon, action_dim) else None)
        if (self.meta["input"], self.meta["output"]) != (inputs[0].name, outputs[0].name):
            raise ValueError(f"{path}: metadata names input {self.meta['input']!r} and output {self.meta['output']!r}, "
                             f"the graph has {inputs[0].name!r} and {outputs[0].name!r}")
        probe = self.session.run(None, {inputs[0].name: np.zeros((1, self.meta["obs_dim"]), np.float32)})[0]
        if probe.shape != (1, self.meta["horizon"], self.meta["action_dim"]):
            raise ValueError(f"{path}: metadata says chunks of {self.meta['horizon']} x {self.meta['action_dim']}, the "
                             f"graph returns {probe.shape[1:]}")
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
            m = self.meta
            self.scale, self.offset = np.asarray(m["action_scale"]), np.asarray(m["action_offset"])
            self.lower, self.upper = np.asarray(m["joint_lower"]), np.asarray(m["joint_upper"])
            self.max_step = np.asarray(m["max_target_speed"]) / m["control_rate_hz"]  # per control step
        self.chunks: list[list] = []  # [chunk [H, A], steps since predicted], newest first
        self.last_command: np.ndarray | None = None
        self.inference_seconds: list[float] = []

    def reset(self, current: np.ndarray | None = None) -> None:
        """Start an episode. ``current``: the robot's present joint positions in action order; the first command then
        moves at most one rate step from them (None: the first command is only clamped to the limits)."""
        self.chunks.clear()
        self.last_command = None if current is None else np.asarray(current, np.float64).copy()

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The action [A] in [-1, 1] for observation [O]; replans when the executed part of the chunk is used up."""
        obs = np.asarray(obs, np.float32)
        if obs.shape != (self.meta["obs_dim"],) or not np.isfinite(obs).all():
            raise ValueError(f"observation of shape {obs.shape} (finite: {bool(np.isfinite(obs).all())}); the policy "
                             f"takes {self.meta['obs_dim']} finite values: nothing commanded")
        if not self.chunks or self.chunks[0][1] >= self.exec_horizon:
            start = time.perf_counter()
            chunk = self.session.run([self.meta["output"]], {self.meta["input"]: obs[None]})[0][0]
            self.inference_seconds.append(time.perf_counter() - start)
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
        action clamped to [-1, 1]."""
        action = np.clip(np.asarray(action, np.float64), -1.0, 1.0)
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
