"""Where a gripper closes on its object, read off the state observation and the action executed from it.

The suboptimal expert grasps 3 cm across the fingers from an object's centre, the others at the centre. Whether a
policy's failed grasps are such offset grasps or imprecise centred ones is a question about this geometry, which
``eval/diagnostics.py`` (``GraspRecorder``, ``data_grasps``) asks of rollouts and datasets.

Observation layout (env.py ``_get_observations``, state tasks only): joint positions and velocities (16 + 16), one
pose (position, quaternion x y z w) per object in the env's order, the two grasp points (left, right).
"""

from __future__ import annotations

import torch

from .kernels import quat_rotate_inv

JOINT_OBS = 32               # joint positions + velocities before the object poses
GRASP_OBS = 6                # the two grasp points at the end
GRIPPER_ACTIONS = (6, 13)    # each arm's gripper command in the 14 actions (left, right); -1 closed, +1 open


def grasp_geometry(obs: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
    """State observations [N, O] and the actions [N, 14] executed from them -> per arm (left, right):

        closing  [N, 2] bool   the gripper command lies in the closed half of its range
        object   [N, 2] long   the object nearest the grasp point (index in the env's object order)
        offset   [N, 2, 3]     the grasp point in that object's frame [m]: x along its long axis, y across it (the
                               suboptimal expert's 3 cm), z along its local up
    """
    num_objects, rest = divmod(obs.shape[-1] - JOINT_OBS - GRASP_OBS, 7)
    if num_objects < 1 or rest:
        raise ValueError(f"grasp_geometry: an observation of {obs.shape[-1]} numbers holds no object poses "
                         f"(a state task's is {JOINT_OBS} + 7 per object + {GRASP_OBS}; image tasks have none)")
    if actions.shape[-1] != 14:
        raise ValueError(f"grasp_geometry: expected 14 actions per step, got {actions.shape[-1]}")
    poses = obs[:, JOINT_OBS:JOINT_OBS + 7 * num_objects].reshape(-1, 1, num_objects, 7)
    grasp = obs[:, -GRASP_OBS:].reshape(-1, 2, 1, 3)
    local = quat_rotate_inv(poses[..., 3:].expand(-1, 2, -1, -1), grasp - poses[..., :3])  # [N, 2, objects, 3]
    nearest = local.norm(dim=-1).argmin(-1)
    offset = local.gather(2, nearest[..., None, None].expand(-1, -1, 1, 3)).squeeze(2)
    return {"closing": actions[:, list(GRIPPER_ACTIONS)] < 0, "object": nearest, "offset": offset}
