"""The robot side (lawr_ext/deploy.py): an exported file whose metadata was tampered with is refused, field by
field, before anything is commanded: by its digest (and signature), by the metadata checks, and by the robot's own
limits; every command is finite, stays within the joint limits and moves at most at the servo speed."""

import json
import re
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import EXPORT_ACTION_SPEC, EXPORT_DIMS, EXPORT_ROBOT_LIMITS, assert_refused, run_script

from lawr_ext.deploy import DIGEST_FIELD, EXPORT_FORMAT_VERSION, METADATA_KEY, OnnxChunkPolicy, integrity_fields

OBS_DIM, H, A = EXPORT_DIMS
RATE = 50.0


def tampered(exported_policy, tmp_path, change, *, redigest: bool = True, signing_key: bytes | None = None,
             source=None) -> str:
    """The exported policy.onnx (or ``source``) with ``change(metadata)`` applied to its metadata and nothing else.
    ``redigest``: its sha256 recomputed, as anyone who can edit the file can (the checks after the digest are
    what then refuses it); ``signing_key``: signed, as the holder of that key can."""
    model = onnx.load(str(source or exported_policy[2]["onnx"]))
    prop = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    meta = json.loads(prop.value)
    change(meta)
    if (redigest or signing_key is not None) and json.dumps(meta).find("NaN") < 0:  # NaN has no canonical JSON
        meta |= integrity_fields(model.SerializeToString(), meta, signing_key)
    prop.value = json.dumps(meta)
    path = tmp_path / f"tampered{len(list(tmp_path.glob('tampered*')))}.onnx"
    onnx.save(model, str(path))
    return str(path)


def player(path, **kwargs) -> OnnxChunkPolicy:
    """The robot side for the exported toy policy: its robot's own limits given, as a robot gives them."""
    return OnnxChunkPolicy(str(path), **{"robot_limits": EXPORT_ROBOT_LIMITS} | kwargs)


def setting(**values):
    return lambda meta: meta.update(values)


def dropping(*names):
    return lambda meta: [meta.pop(name) for name in names]


TAMPERED = {  # the action spec's lists and the shapes first, then every other field a robot relies on -> the words the refusal must hold
    "one_action_scale": (setting(action_scale=[1.0]), ["action_scale has 1 entries", f"action_dim={A}"]),
    "three_joint_names": (setting(joint_names=["a", "b", "c"]), ["joint_names has 3 entries"]),
    "horizon_1000": (setting(horizon=1000), ["horizon=1000", f"{H} x {A}"]),
    "obs_dim": (setting(obs_dim=OBS_DIM + 1), [f"obs_dim={OBS_DIM + 1}", f"takes {OBS_DIM}"]),
    "action_dim": (setting(action_dim=A - 1), [f"action_dim={A - 1}", f"{H} x {A}"]),
    "format_version": (setting(format_version=EXPORT_FORMAT_VERSION - 1),
                       [f"format version {EXPORT_FORMAT_VERSION - 1}", "re-export"]),
    "no_format_version": (dropping("format_version"), ["format version None"]),
    "joint_limits_missing": (dropping("joint_lower", "joint_upper"), ["lacks ['joint_lower', 'joint_upper']"]),
    "joint_lower_short": (lambda m: m["joint_lower"].pop(), [f"joint_lower has {A - 1} entries"]),
    "max_target_speed_long": (lambda m: m["max_target_speed"].append(1.0), [f"max_target_speed has {A + 1}"]),
    "nan_offset": (lambda m: m["action_offset"].__setitem__(2, float("nan")), ["action_offset[2]", "finite"]),
    "zero_scale": (lambda m: m["action_scale"].__setitem__(0, 0.0), ["action_scale[0] is 0"]),
    "limits_inverted": (lambda m: m["joint_upper"].__setitem__(1, m["joint_lower"][1]), ["joint_lower[1]", "joint_upper[1]"]),
    "zero_speed": (lambda m: m["max_target_speed"].__setitem__(3, 0.0), ["max_target_speed[3]", "> 0"]),
    "duplicate_joint": (lambda m: m["joint_names"].__setitem__(1, m["joint_names"][0]), ["distinct names"]),
    "control_rate_zero": (setting(control_rate_hz=0), ["control_rate_hz=0"]),
    "horizon_string": (setting(horizon="50"), ["horizon='50'", "integer"]),
    "input_name": (setting(input="observation"), ["input 'observation'", "the graph has 'obs'"]),
    "no_task": (dropping("task"), ["lacks ['task']"]),
    "exec_horizon_past_H": (setting(exec_horizon=H + 1), [f"exec_horizon={H + 1}", f"[1, H={H}]"]),
    "ensemble_flag_string": (setting(temporal_ensemble="yes"), ["temporal_ensemble='yes'", "true or false"]),
    "ensemble_decay_negative": (setting(ensemble_decay=-1.0), ["ensemble_decay=-1.0", ">= 0"]),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_metadata_is_refused_before_the_first_command(exported_policy, tmp_path, case):
    change, fragments = TAMPERED[case]
    path = tampered(exported_policy, tmp_path, change)
    with pytest.raises(ValueError) as error:
        player(path, exec_horizon=8)
    message = str(error.value)
    assert "\n" not in message and message.startswith(path), message
    assert all(f in message for f in fragments), (fragments, message)


def test_exec_horizon_is_checked_against_the_graphs_horizon(exported_policy):
    path = str(exported_policy[2]["onnx"])
    player(path, exec_horizon=H)
    for bad in (0, H + 1, 100):
        with pytest.raises(ValueError, match=rf"--exec_horizon {bad} must lie in \[1, H={H}\]"):
            player(path, exec_horizon=bad)


@pytest.mark.parametrize("exec_horizon", [1, 3])
def test_temporal_ensembling_on_the_robot_executes_what_the_evaluation_measured(exported_policy, tmp_path,
                                                                                exec_horizon):
    """The robot side averages stored chunks exactly as the evaluation's ChunkScheduler does (the setting travels in
    the file), and without ensembling it plays chunk[0..k-1] of each prediction."""
    import torch

    from lawr_ext.eval.rollout import ChunkScheduler

    path = tampered(exported_policy, tmp_path, setting(exec_horizon=exec_horizon, temporal_ensemble=True,
                                                       ensemble_decay=0.3))
    ensembled, plain = player(path), player(path, temporal_ensemble=False)
    assert ensembled.temporal_ensemble and ensembled.exec_horizon == exec_horizon and not plain.temporal_ensemble
    scheduler = ChunkScheduler(1, H, A, exec_horizon, temporal_ensemble=True, ensemble_decay=0.3)
    rng = np.random.default_rng(0)
    ensembled.reset(), plain.reset()
    played, averaged, chunks = [], [], []
    for _ in range(3 * H):
        obs = rng.normal(size=OBS_DIM).astype(np.float32)
        chunk = ensembled.session.run(None, {"obs": obs[None]})[0]
        if scheduler.needs_plan()[0]:
            scheduler.push(torch.tensor([0]), torch.from_numpy(chunk))
            chunks.append(chunk[0])
        averaged.append(ensembled.act(obs))
        np.testing.assert_allclose(averaged[-1], np.clip(scheduler.act()[0].numpy(), -1, 1), atol=1e-5)
        played.append(plain.act(obs))
    assert len(ensembled.inference_seconds) == len(plain.inference_seconds) == len(chunks) == 3 * H // exec_horizon
    np.testing.assert_allclose(played, np.clip(np.concatenate([c[:exec_horizon] for c in chunks]), -1, 1), atol=1e-6)
    # once a second chunk covers the step, the vote is not the newest chunk's entry
    assert np.abs(np.asarray(averaged[exec_horizon:]) - np.asarray(played[exec_horizon:])).max() > 1e-3


def test_the_deploy_script_refuses_a_tampered_file_in_one_line(exported_policy, tmp_path):
    path = tampered(exported_policy, tmp_path, setting(action_scale=[1.0]))
    assert_refused(run_script("deploy_onnx.py", "--onnx", path), "[deploy]", "action_scale has 1 entries")
    assert_refused(run_script("deploy_onnx.py", "--onnx", str(exported_policy[2]["onnx"]), "--exec_horizon", "100"),
                   "[deploy]", "--exec_horizon 100")
    assert_refused(run_script("deploy_onnx.py", "--onnx", str(exported_policy[2]["onnx"]), "--ensemble_decay", "-1"),
                   "[deploy]", "--ensemble_decay -1.0")


def test_commands_stay_within_the_joint_limits_and_move_at_most_at_the_servo_speed(exported_policy):
    policy = player(exported_policy[2]["onnx"], exec_horizon=4)
    spec = {k: np.asarray(v) for k, v in EXPORT_ACTION_SPEC.items() if k != "joint_names"}
    max_step = spec["max_target_speed"] / RATE  # 0.02 per control step
    current = spec["action_offset"].copy()
    policy.reset(current)
    rng = np.random.default_rng(0)
    commands = [current]
    for step in range(200):  # bang-bang actions, beyond [-1, 1] too: the worst a policy can send
        action = rng.choice([-3.0, -1.0, 1.0, 3.0], size=A) if step < 150 else np.full(A, 2.0)
        commands.append(policy.command(action))
    commands = np.stack(commands)
    assert (commands >= spec["joint_lower"] - 1e-12).all() and (commands <= spec["joint_upper"] + 1e-12).all()
    assert (np.abs(np.diff(commands, axis=0)) <= max_step + 1e-12).all()
    assert np.abs(np.diff(commands, axis=0)).max() == pytest.approx(max_step[0])  # the limit binds
    np.testing.assert_allclose(commands[-1], spec["joint_upper"])  # held at +1 it reaches the upper limit ...
    assert policy.named(commands[-1])["joint_3"] == pytest.approx(0.8)
    np.testing.assert_allclose(policy.action_of(commands[-1]), 1.0)  # ... which is action +1


def test_commands_are_clamped_to_the_limits_even_where_the_scale_reaches_past_them(exported_policy, tmp_path):
    wide = {"action_scale": [2.0] * A}  # offset + 2 a reaches 1.5 past the +-0.5 limits
    policy = player(tampered(exported_policy, tmp_path, setting(**wide)), exec_horizon=4)
    policy.reset()  # no current position: the first command is only clamped
    command = policy.command(np.ones(A))
    np.testing.assert_allclose(command, EXPORT_ACTION_SPEC["joint_upper"])


def test_without_joint_fields_commands_are_the_actions_clamped_to_the_unit_box(exported_policy, tmp_path):
    """A task with no action spec (e.g. a family without a robot description) exports shapes only."""
    path = tampered(exported_policy, tmp_path, dropping(*EXPORT_ACTION_SPEC))
    policy = player(path, exec_horizon=4)
    assert not policy.joint_level
    np.testing.assert_array_equal(policy.command(np.array([2.0, -3.0, 0.5] + [0.0] * (A - 3))),
                                  [1.0, -1.0, 0.5] + [0.0] * (A - 3))
    action = policy.act(np.zeros(OBS_DIM, np.float32))
    assert action.shape == (A,) and np.abs(action).max() <= 1.0


def test_a_bad_observation_commands_nothing(exported_policy):
    policy = player(exported_policy[2]["onnx"], exec_horizon=4)
    for obs in (np.full(OBS_DIM, np.nan, np.float32), np.zeros(OBS_DIM + 1, np.float32)):
        with pytest.raises(ValueError, match="nothing commanded"):
            policy.act(obs)


def test_the_robot_side_loads_neither_torch_nor_the_rest_of_lawr(exported_policy):
    code = ("import sys, numpy as np; from lawr_ext.deploy import OnnxChunkPolicy; "
            f"p = OnnxChunkPolicy({str(exported_policy[2]['onnx'])!r}, 8, robot_limits={EXPORT_ROBOT_LIMITS!r}); p.reset(); "
            f"p.command(p.act(np.zeros({OBS_DIM}, np.float32))); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lawr_ext')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['lawr_ext', 'lawr_ext.deploy']"


# ---------------------------------------------------------------- integrity, plausibility, never a non-finite command

SIGNING_KEY = b"a lab's secret"
EDITED_SAFETY_FIELDS = {  # what an edit of the file would let through, and the words of its plausibility refusal
    "joint_limits_widened": (lambda m: m.update(joint_lower=[-100.0] * A, joint_upper=[100.0] * A),
                             ["joint limits [-100.0, 100.0] of joint_0", "reach outside [-0.5, 0.5]"]),
    "servo_speed_1e9": (lambda m: m["max_target_speed"].__setitem__(5, 1e9),
                        ["max_target_speed[5]=1000000000.0 of joint_5", "exceeds the servo speed 1.0"]),
    "control_rate_1e-9": (setting(control_rate_hz=1e-9), ["control_rate_hz=1e-09", "[1, 1000] Hz"]),
    "control_rate_25": (setting(control_rate_hz=25.0), ["control_rate_hz=25.0", "the robot runs at 50 Hz"]),
    "config_hash": (setting(config_hash="fedcba9876543210"), None),  # plausible: only the digest can tell
    "task": (setting(task="Bimanual-Chunk-Insertion"), None),
}


@pytest.mark.parametrize("case", sorted(EDITED_SAFETY_FIELDS))
def test_an_edited_file_is_refused_by_its_digest(exported_policy, tmp_path, case):
    path = tampered(exported_policy, tmp_path, EDITED_SAFETY_FIELDS[case][0], redigest=False)
    with pytest.raises(ValueError) as error:
        player(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(path), message
    assert "does not match" in message or "control_rate_hz=1e-09" in message, message  # 1e-9 Hz: no robot's rate


@pytest.mark.parametrize("case", sorted(k for k, (_, words) in EDITED_SAFETY_FIELDS.items() if words))
def test_edited_safety_limits_with_a_recomputed_digest_are_refused_by_the_robots_own_limits(exported_policy, tmp_path,
                                                                                           case):
    change, fragments = EDITED_SAFETY_FIELDS[case]
    path = tampered(exported_policy, tmp_path, change)
    with pytest.raises(ValueError) as error:
        player(path)
    message = str(error.value)
    assert "\n" not in message and all(f in message for f in fragments), (fragments, message)


@pytest.mark.parametrize("case", sorted(set(EDITED_SAFETY_FIELDS) - {"control_rate_1e-9"}))  # no robot's rate at all
def test_a_signature_tells_an_edit_whose_digest_was_recomputed(exported_policy, tmp_path, case):
    signed = tampered(exported_policy, tmp_path, lambda meta: None, signing_key=SIGNING_KEY)
    player(signed, signing_key=SIGNING_KEY)  # the lab's own file loads with its key
    edited = tampered(exported_policy, tmp_path, EDITED_SAFETY_FIELDS[case][0], source=signed)  # digest recomputed
    with pytest.raises(ValueError, match="signature does not match the signing key"):
        player(edited, signing_key=SIGNING_KEY, robot_limits=EXPORT_ROBOT_LIMITS | {"control_rate_hz": 25.0}
               if case == "control_rate_25" else EXPORT_ROBOT_LIMITS)
    with pytest.raises(ValueError, match="not signed, but a signing key was given"):
        player(exported_policy[2]["onnx"], signing_key=SIGNING_KEY)
    with pytest.raises(ValueError, match="does not match the signing key"):
        player(signed, signing_key=b"another key")


def test_another_task_or_config_hash_than_expected_is_refused(exported_policy):
    path = str(exported_policy[2]["onnx"])
    player(path, expect_task="Bimanual-Chunk", expect_config_hash="0123456789abcdef")
    with pytest.raises(ValueError, match="exported for config_hash '0123456789abcdef', expected 'fedcba9876543210'"):
        player(path, expect_config_hash="fedcba9876543210")
    with pytest.raises(ValueError, match="exported for task 'Bimanual-Chunk', expected 'Bimanual-Chunk-Insertion'"):
        player(path, expect_task="Bimanual-Chunk-Insertion")
    assert_refused(run_script("deploy_onnx.py", "--onnx", path, "--expect_config_hash", "fedcba9876543210"),
                   "[deploy]", "config_hash '0123456789abcdef', expected 'fedcba9876543210'")


def test_limits_are_never_taken_from_the_file_alone(exported_policy):
    path = str(exported_policy[2]["onnx"])
    with pytest.raises(ValueError, match="only against the robot's own limits"):
        OnnxChunkPolicy(path)
    other_robot = EXPORT_ROBOT_LIMITS | {"joint_names": [f"j{i}" for i in range(A)], "source": "other.json"}
    with pytest.raises(ValueError, match=r"the robot's own limits \(other.json\) name \['j0'"):
        player(path, robot_limits=other_robot)
    lines = []
    wider = EXPORT_ROBOT_LIMITS | {"joint_upper": [10.0] * A, "source": "wider.json"}  # the user's explicit choice
    player(path, robot_limits=wider, log=lines.append)
    assert any(line.startswith("robot limits wider.json: 14 joints at 50 Hz") for line in lines), lines


def test_the_shipped_bimanual_robot_limits_are_the_robots_and_accept_its_exports(exported_policy, tmp_path):
    from lawr_ext.deploy import read_robot_limits
    from lawr_ext.tasks import get_task
    from lawr_ext.tasks.bimanual.action_spec import ROBOT_LIMITS_FILE, action_spec, robot_limits

    shipped = read_robot_limits(ROBOT_LIMITS_FILE)
    assert {k: v for k, v in shipped.items() if k != "source"} == robot_limits(get_task("Bimanual-Chunk").control_hz)
    spec = {k: v for k, v in action_spec().items()}
    path = tampered(exported_policy, tmp_path, setting(**spec))
    assert player(path, robot_limits=shipped).joint_level
    spec["joint_upper"][0] += 0.1  # one joint's range wider than the robot's
    with pytest.raises(ValueError, match=r"of left_waist \(joint_lower\[0\], joint_upper\[0\]\) reach outside"):
        player(tampered(exported_policy, tmp_path, setting(**spec)), robot_limits=shipped)


def test_a_graph_with_one_nan_weight_is_refused_before_the_first_command(exported_policy, tmp_path):
    import copy

    import torch

    from lawr_ext.export import export_onnx

    policy, metadata, _ = exported_policy
    broken = copy.deepcopy(policy)
    with torch.no_grad():
        next(p for name, p in broken.named_parameters() if "planner" in name).view(-1)[0] = float("nan")
    path = export_onnx(broken, tmp_path / "nan.onnx", metadata)
    with pytest.raises(ValueError, match="non-finite chunk .* for a typical observation: a NaN or inf weight"):
        player(path)


def test_an_extreme_observation_commands_nothing(exported_policy, tmp_path):
    """3e38 is a finite float32: without a recorded training range the graph turns it into NaN, and the chunk is
    refused; with the range (what scripts/export.py records) the observation is refused before the graph runs."""
    extreme = np.zeros(OBS_DIM, np.float32)
    extreme[3] = 3e38
    policy = player(exported_policy[2]["onnx"], exec_horizon=4)
    policy.reset(np.asarray(EXPORT_ACTION_SPEC["action_offset"]))
    last = policy.command(policy.act(np.zeros(OBS_DIM, np.float32)))
    with pytest.raises(ValueError, match=r"non-finite chunk \(\d+ NaN/inf entries\) for this observation: nothing"):
        for _ in range(4):  # the next replan meets the extreme observation
            last = policy.command(policy.act(extreme))
    assert np.isfinite(last).all() and np.array_equal(policy.last_command, last)  # the last command stands

    ranged = player(tampered(exported_policy, tmp_path, setting(obs_low=[-1.0] * OBS_DIM, obs_high=[1.0] * OBS_DIM)))
    ranged.act(np.full(OBS_DIM, 2.9, np.float32))  # within the range widened by one width on each side
    for value, words in ((3e38, "observation[3]=3e+38 lies outside [-3, 3]"), (3.1, "observation[3]=3.1 lies")):
        obs = np.zeros(OBS_DIM, np.float32)
        obs[3] = value
        with pytest.raises(ValueError, match=re.escape(words)):
            ranged.act(obs)
    with pytest.raises(ValueError, match="finite values expected: nothing commanded"):
        ranged.command(np.full(A, np.nan))
