"""How a normalized action in [-1, 1]^14 becomes joint targets on the bimanual robot, for the export metadata.

Mirrors ``BimanualChunkEnv._pre_physics_step`` (tests/test_export.py checks the two agree): per arm, left
then right, 6 joint-position targets mapped linearly onto the joint limits, then one gripper command that
drives both fingers of that arm. A robot computes ``target = offset + scale * action`` per action entry.
"""

from __future__ import annotations

from lawr_ext.tasks.bimanual.robot import SIDES, SPEC, RobotSpec


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
