"""How a normalized action in [-1, 1]^14 becomes joint targets on the bimanual robot, for the export metadata.

Mirrors ``BimanualChunkEnv._pre_physics_step`` (tests/test_export.py checks the two agree): per arm, left
then right, 6 joint-position targets mapped linearly onto the joint limits, then one gripper command that
drives both fingers of that arm. A robot computes ``target = offset + scale * action`` per action entry.
"""

from __future__ import annotations

import torch

from lawr_ext.tasks.bimanual.robot import SIDES, SPEC, BimanualKinematics, RobotSpec, arm_limits


def action_spec(spec: RobotSpec = SPEC) -> dict:
    """{"joint_names", "action_scale", "action_offset", "gripper_joints"} in action order (14 entries each)."""
    names, scale, offset = [], [], []
    for side in SIDES:
        for link in spec.links:
            names.append(f"{side}_{link.joint}")
            scale.append((link.upper - link.lower) / 2)
            offset.append((link.upper + link.lower) / 2)
        names.append(f"{side}_gripper")
        scale.append((spec.finger_upper - spec.finger_lower) / 2)
        offset.append((spec.finger_upper + spec.finger_lower) / 2)
    return {"joint_names": names, "action_scale": scale, "action_offset": offset,
            "gripper_joints": {f"{side}_gripper": [f"{side}_finger_a", f"{side}_finger_b"] for side in SIDES}}


def grasp_points(actions: torch.Tensor, spec: RobotSpec = SPEC) -> torch.Tensor:
    """Where env actions [..., 14] put the two grasp points, [..., 2, 3] in the env frame [m]: the forward
    kinematics of their arm joint targets. Diagnostics use it to state a learner's errors in metres."""
    arm = actions.reshape(-1, 2, 7)[..., :6]
    limits = arm_limits(spec).to(actions.device)  # [6, 2]
    q = limits[:, 0] + 0.5 * (arm + 1.0) * (limits[:, 1] - limits[:, 0])
    positions, _, _ = BimanualKinematics(spec, actions.device).forward(q)
    return positions.reshape(*actions.shape[:-1], 2, 3)
