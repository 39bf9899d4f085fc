"""How a normalized action in [-1, 1]^14 becomes joint targets on the bimanual robot, for the export metadata.

Mirrors ``BimanualChunkEnv._pre_physics_step`` and ``_apply_action`` (tests/test_export.py checks they agree):
per arm, left then right, 6 joint-position targets mapped linearly onto the joint limits, then one gripper
command that drives both fingers of that arm. A robot computes ``target = offset + scale * action`` per action
entry, keeps it within ``[joint_lower, joint_upper]`` and moves it at most ``max_target_speed`` per second
(the servos' profile velocity, which the simulated drives follow too).
"""

from __future__ import annotations

from pathlib import Path

import torch

from lawr_ext.tasks.bimanual.robot import (ARM_TARGET_SPEED, FINGER_TARGET_SPEED, SIDES, SPEC, BimanualKinematics,
                                          RobotSpec, arm_limits)


def action_spec(spec: RobotSpec = SPEC) -> dict:
    """{"joint_names", "action_scale", "action_offset", "joint_lower", "joint_upper", "max_target_speed",
    "gripper_joints"} in action order (14 entries each, but the last)."""
    names, lower, upper, speed = [], [], [], []
    for side in SIDES:
        for link in spec.links:
            names.append(f"{side}_{link.joint}")
            lower.append(link.lower)
            upper.append(link.upper)
            speed.append(ARM_TARGET_SPEED)
        names.append(f"{side}_gripper")
        lower.append(spec.finger_lower)
        upper.append(spec.finger_upper)
        speed.append(FINGER_TARGET_SPEED)
    return {"joint_names": names,
            "action_scale": [(high - low) / 2 for low, high in zip(lower, upper)],
            "action_offset": [(high + low) / 2 for low, high in zip(lower, upper)],
            "joint_lower": lower, "joint_upper": upper, "max_target_speed": speed,
            "gripper_joints": {f"{side}_gripper": [f"{side}_finger_a", f"{side}_finger_b"] for side in SIDES}}


#: The robot's own limits for the robot side (lawr_ext/deploy.py reads them with read_robot_limits, never from an
#: exported file): ``robot_limits()`` at the tasks' control rate, written out so that a robot needs no torch.
ROBOT_LIMITS_FILE = Path(__file__).with_name("robot_limits.json")


def robot_limits(control_rate_hz: float, spec: RobotSpec = SPEC) -> dict:
    """{"joint_names", "joint_lower", "joint_upper", "max_target_speed", "control_rate_hz"}: what the robot allows,
    in action order (tests/test_deploy.py checks ``ROBOT_LIMITS_FILE`` holds exactly this)."""
    spec_of_actions = action_spec(spec)
    return {name: spec_of_actions[name] for name in ("joint_names", "joint_lower", "joint_upper", "max_target_speed")} \
        | {"control_rate_hz": control_rate_hz}


def grasp_points(actions: torch.Tensor, spec: RobotSpec = SPEC) -> torch.Tensor:
    """Where env actions [..., 14] put the two grasp points, [..., 2, 3] in the env frame [m]: the forward
    kinematics of their arm joint targets. Diagnostics use it to state a learner's errors in metres."""
    arm = actions.reshape(-1, 2, 7)[..., :6]
    limits = arm_limits(spec).to(actions.device)  # [6, 2]
    q = limits[:, 0] + 0.5 * (arm + 1.0) * (limits[:, 1] - limits[:, 0])
    positions, _, _ = BimanualKinematics(spec, actions.device).forward(q)
    return positions.reshape(*actions.shape[:-1], 2, 3)
