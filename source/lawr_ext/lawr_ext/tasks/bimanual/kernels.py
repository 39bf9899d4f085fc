"""Staged shaped reward and success of both tasks: one Warp kernel launch each over ALL envs, plus the same math
in plain torch (``*_reference``) that the tests compare against.

Tensors cross into Warp without copies (``wp.from_torch``). Inputs, all in the env frame:
    grasp [N, 2, 3] grasp points (between the finger pads) of the left/right gripper
    gap   [N, 2]    finger half-gap of each gripper [m]
    pose  [N, 7]    object position + quaternion (x, y, z, w)

An object is *held* by a gripper when its grasp point lies inside the object's box (a little slack across the
fingers) and the fingers are closed onto the object's width, not on air: ``half_width - 8 mm < gap < half_width + 8 mm``.

Hand-over stages: reach (the arm that has not held the block yet approaches it), grasp, lift, transfer (both
arms have held it: a per-env bit flag latched over the episode), success = transferred + lifted + held by
exactly one gripper. Insertion stages: reach (peg and socket), grasp, lift (each object half), transfer = peg
aligned with the socket axis while both are held and lifted, success = peg inside the hole, aligned, overlap
>= depth, both lifted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import warp as wp

HOLD_SLACK = 0.01  # grasp point may sit this far outside the object's box across the fingers [m]
GAP_BELOW = 0.008  # fingers may squeeze this far into the object's half width (soft contacts) [m]
GAP_ABOVE = 0.008  # ... and stay this far open [m]
LATERAL_TOL = 0.002  # extra lateral slack of the peg in the hole for success [m]

wp.init()  # idempotent; wp.from_torch needs an initialized runtime even before the simulator starts


@dataclass(frozen=True)
class RewardParams:
    """Weights and thresholds (filled from the env cfg's RewardCfg and object sizes)."""

    w_reach: float
    w_grasp: float
    w_lift: float
    w_transfer: float
    w_success: float
    lift_height: float
    reach_scale: float


# ------------------------------------------------------------------------------------------- warp


@wp.func
def _held(grasp: wp.vec3, gap: float, pos: wp.vec3, quat: wp.quat, half: wp.vec3) -> float:
    local = wp.quat_rotate_inv(quat, grasp - pos)
    inside = (wp.abs(local[0]) < half[0]) and (wp.abs(local[1]) < half[1] + HOLD_SLACK) and (
        wp.abs(local[2]) < half[2] + HOLD_SLACK)
    width = wp.min(half[1], half[2])
    closed_on_object = (gap > width - GAP_BELOW) and (gap < wp.max(half[1], half[2]) + GAP_ABOVE)
    if inside and closed_on_object:
        return 1.0
    return 0.0


@wp.func
def _position(pose: wp.array2d(dtype=wp.float32), i: int) -> wp.vec3:
    return wp.vec3(pose[i, 0], pose[i, 1], pose[i, 2])


@wp.func
def _rotation(pose: wp.array2d(dtype=wp.float32), i: int) -> wp.quat:
    return wp.quat(pose[i, 3], pose[i, 4], pose[i, 5], pose[i, 6])


@wp.func
def _lift(pos: wp.vec3, half_z: float, lift_height: float) -> float:
    return wp.clamp((pos[2] - half_z) / lift_height, 0.0, 1.0)


@wp.kernel
def handover_kernel(
    grasp: wp.array2d(dtype=wp.vec3),
    gap: wp.array2d(dtype=wp.float32),
    pose: wp.array2d(dtype=wp.float32),
    half: wp.vec3,
    held_flags: wp.array(dtype=wp.int32),
    p: wp.array(dtype=wp.float32),
    reward: wp.array(dtype=wp.float32),
    success: wp.array(dtype=wp.bool),
):
    i = wp.tid()
    pos, quat = _position(pose, i), _rotation(pose, i)
    held_l = _held(grasp[i, 0], gap[i, 0], pos, quat, half)
    held_r = _held(grasp[i, 1], gap[i, 1], pos, quat, half)
    flags = held_flags[i] | wp.int32(held_l) | (wp.int32(held_r) * 2)
    held_flags[i] = flags
    # reach: before any grasp the nearer arm, afterwards the arm that has not held the block yet
    d_l = wp.length(grasp[i, 0] - pos)
    d_r = wp.length(grasp[i, 1] - pos)
    d = wp.min(d_l, d_r)
    if flags == 1:
        d = d_r
    if flags == 2:
        d = d_l
    held_any = wp.max(held_l, held_r)
    lifted = _lift(pos, half[2], p[5])
    transferred = 0.0
    if flags == 3:
        transferred = 1.0
    ok = (transferred > 0.0) and (lifted >= 1.0) and (held_l + held_r == 1.0)
    bonus = 0.0
    if ok:
        bonus = 1.0
    reward[i] = (p[0] * (1.0 - wp.tanh(p[6] * d)) + p[1] * held_any + p[2] * lifted * held_any
                 + p[3] * transferred + p[4] * bonus)
    success[i] = ok


@wp.kernel
def insertion_kernel(
    grasp: wp.array2d(dtype=wp.vec3),
    gap: wp.array2d(dtype=wp.float32),
    peg_pose: wp.array2d(dtype=wp.float32),
    socket_pose: wp.array2d(dtype=wp.float32),
    peg_half: wp.vec3,
    socket_half: wp.vec3,
    hole_half: float,
    depth: float,
    align_cos: float,
    p: wp.array(dtype=wp.float32),
    reward: wp.array(dtype=wp.float32),
    success: wp.array(dtype=wp.bool),
):
    i = wp.tid()
    peg, peg_q = _position(peg_pose, i), _rotation(peg_pose, i)
    sock, sock_q = _position(socket_pose, i), _rotation(socket_pose, i)
    held_peg = wp.max(_held(grasp[i, 0], gap[i, 0], peg, peg_q, peg_half),
                      _held(grasp[i, 1], gap[i, 1], peg, peg_q, peg_half))
    held_sock = wp.max(_held(grasp[i, 0], gap[i, 0], sock, sock_q, socket_half),
                       _held(grasp[i, 1], gap[i, 1], sock, sock_q, socket_half))
    d_peg = wp.min(wp.length(grasp[i, 0] - peg), wp.length(grasp[i, 1] - peg))
    d_sock = wp.min(wp.length(grasp[i, 0] - sock), wp.length(grasp[i, 1] - sock))
    reach = 0.5 * (1.0 - wp.tanh(p[6] * d_peg)) + 0.5 * (1.0 - wp.tanh(p[6] * d_sock))
    lift_peg = _lift(peg, peg_half[2], p[5])
    lift_sock = _lift(sock, socket_half[2], p[5])
    # peg in the socket frame: offset from the hole axis, overlap along it, axis alignment
    rel = wp.quat_rotate_inv(sock_q, peg - sock)
    peg_axis = wp.quat_rotate_inv(sock_q, wp.quat_rotate(peg_q, wp.vec3(1.0, 0.0, 0.0)))
    cos = wp.abs(peg_axis[0])
    lateral = wp.sqrt(rel[1] * rel[1] + rel[2] * rel[2])
    overlap = socket_half[0] + peg_half[0] - wp.abs(rel[0])
    aligned = 0.0
    if held_peg * held_sock * lift_peg * lift_sock >= 1.0:
        aligned = cos * (1.0 - wp.tanh(p[6] * lateral))
    slack = hole_half - peg_half[1] + LATERAL_TOL
    ok = (cos > align_cos) and (wp.abs(rel[1]) < slack) and (wp.abs(rel[2]) < slack) and (overlap > depth) and (
        lift_peg >= 1.0) and (lift_sock >= 1.0)
    bonus = 0.0
    if ok:
        bonus = 1.0
    reward[i] = (p[0] * reach + p[1] * 0.5 * (held_peg + held_sock)
                 + p[2] * 0.5 * (lift_peg * held_peg + lift_sock * held_sock) + p[3] * aligned + p[4] * bonus)
    success[i] = ok


def _param_array(params: RewardParams, device) -> wp.array:
    values = [params.w_reach, params.w_grasp, params.w_lift, params.w_transfer, params.w_success,
              params.lift_height, params.reach_scale]
    return wp.from_torch(torch.tensor(values, dtype=torch.float32, device=device))


def handover_reward(grasp, gap, pose, half, held_flags, params: RewardParams):
    """Warp launch; updates ``held_flags`` (int32 [N]) in place; returns (reward [N], success bool [N])."""
    n = pose.shape[0]
    reward = torch.empty(n, dtype=torch.float32, device=pose.device)
    success = torch.empty(n, dtype=torch.bool, device=pose.device)
    wp.launch(handover_kernel, dim=n, device=str(pose.device), inputs=[
        wp.from_torch(grasp.contiguous(), dtype=wp.vec3), wp.from_torch(gap.contiguous()),
        wp.from_torch(pose.contiguous()), wp.vec3(*half), wp.from_torch(held_flags),
        _param_array(params, pose.device), wp.from_torch(reward), wp.from_torch(success, dtype=wp.bool)])
    return reward, success


def insertion_reward(grasp, gap, peg_pose, socket_pose, peg_half, socket_half, hole_half, depth, align_cos,
                     params: RewardParams):
    """Warp launch; returns (reward [N], success bool [N])."""
    n = peg_pose.shape[0]
    reward = torch.empty(n, dtype=torch.float32, device=peg_pose.device)
    success = torch.empty(n, dtype=torch.bool, device=peg_pose.device)
    wp.launch(insertion_kernel, dim=n, device=str(peg_pose.device), inputs=[
        wp.from_torch(grasp.contiguous(), dtype=wp.vec3), wp.from_torch(gap.contiguous()),
        wp.from_torch(peg_pose.contiguous()), wp.from_torch(socket_pose.contiguous()), wp.vec3(*peg_half),
        wp.vec3(*socket_half), float(hole_half), float(depth), float(align_cos), _param_array(params, peg_pose.device),
        wp.from_torch(reward), wp.from_torch(success, dtype=wp.bool)])
    return reward, success


# -------------------------------------------------------------------------------------- torch reference


def quat_rotate_inv(quat: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """Rotate ``vec`` by the inverse of the (x, y, z, w) quaternion ``quat`` (both batched)."""
    xyz, w = -quat[..., :3], quat[..., 3:]
    t = 2.0 * torch.linalg.cross(xyz, vec, dim=-1)
    return vec + w * t + torch.linalg.cross(xyz, t, dim=-1)


def quat_rotate(quat: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    conj = torch.cat([-quat[..., :3], quat[..., 3:]], dim=-1)
    return quat_rotate_inv(conj, vec)


def held_reference(grasp, gap, pose, half):
    """[N] float: is the object at ``pose`` held by the gripper at ``grasp`` with half-gap ``gap``."""
    half = torch.as_tensor(half, dtype=grasp.dtype, device=grasp.device)
    local = quat_rotate_inv(pose[:, 3:], grasp - pose[:, :3]).abs()
    inside = (local[:, 0] < half[0]) & (local[:, 1] < half[1] + HOLD_SLACK) & (local[:, 2] < half[2] + HOLD_SLACK)
    closed = (gap > half[1:].min() - GAP_BELOW) & (gap < half[1:].max() + GAP_ABOVE)
    return (inside & closed).float()


def handover_reward_reference(grasp, gap, pose, half, held_flags, params: RewardParams):
    """Plain torch twin of ``handover_reward`` (returns reward, success, new flags; does not modify inputs)."""
    held_l = held_reference(grasp[:, 0], gap[:, 0], pose, half)
    held_r = held_reference(grasp[:, 1], gap[:, 1], pose, half)
    flags = held_flags | held_l.int() | (held_r.int() * 2)
    d_l = (grasp[:, 0] - pose[:, :3]).norm(dim=-1)
    d_r = (grasp[:, 1] - pose[:, :3]).norm(dim=-1)
    d = torch.where(flags == 1, d_r, torch.where(flags == 2, d_l, torch.minimum(d_l, d_r)))
    held_any = torch.maximum(held_l, held_r)
    lifted = ((pose[:, 2] - half[2]) / params.lift_height).clamp(0.0, 1.0)
    transferred = (flags == 3).float()
    success = (flags == 3) & (lifted >= 1.0) & (held_l + held_r == 1.0)
    reward = (params.w_reach * (1.0 - torch.tanh(params.reach_scale * d)) + params.w_grasp * held_any
              + params.w_lift * lifted * held_any + params.w_transfer * transferred
              + params.w_success * success.float())
    return reward, success, flags


def insertion_reward_reference(grasp, gap, peg_pose, socket_pose, peg_half, socket_half, hole_half, depth, align_cos,
                               params: RewardParams):
    """Plain torch twin of ``insertion_reward``."""
    def held_any(pose, half):
        return torch.maximum(held_reference(grasp[:, 0], gap[:, 0], pose, half),
                             held_reference(grasp[:, 1], gap[:, 1], pose, half))

    def nearest(pose):
        return torch.minimum((grasp[:, 0] - pose[:, :3]).norm(dim=-1), (grasp[:, 1] - pose[:, :3]).norm(dim=-1))

    held_peg, held_sock = held_any(peg_pose, peg_half), held_any(socket_pose, socket_half)
    reach = 0.5 * (1 - torch.tanh(params.reach_scale * nearest(peg_pose))) + 0.5 * (
        1 - torch.tanh(params.reach_scale * nearest(socket_pose)))
    lift_peg = ((peg_pose[:, 2] - peg_half[2]) / params.lift_height).clamp(0.0, 1.0)
    lift_sock = ((socket_pose[:, 2] - socket_half[2]) / params.lift_height).clamp(0.0, 1.0)
    rel = quat_rotate_inv(socket_pose[:, 3:], peg_pose[:, :3] - socket_pose[:, :3])
    x_axis = torch.tensor([1.0, 0.0, 0.0], device=peg_pose.device).expand_as(rel)
    peg_axis = quat_rotate_inv(socket_pose[:, 3:], quat_rotate(peg_pose[:, 3:], x_axis))
    cos = peg_axis[:, 0].abs()
    lateral = rel[:, 1:].norm(dim=-1)
    overlap = socket_half[0] + peg_half[0] - rel[:, 0].abs()
    both_up = held_peg * held_sock * lift_peg * lift_sock >= 1.0
    aligned = torch.where(both_up, cos * (1 - torch.tanh(params.reach_scale * lateral)), torch.zeros_like(cos))
    slack = hole_half - peg_half[1] + LATERAL_TOL
    success = ((cos > align_cos) & (rel[:, 1].abs() < slack) & (rel[:, 2].abs() < slack) & (overlap > depth)
               & (lift_peg >= 1.0) & (lift_sock >= 1.0))
    reward = (params.w_reach * reach + params.w_grasp * 0.5 * (held_peg + held_sock)
              + params.w_lift * 0.5 * (lift_peg * held_peg + lift_sock * held_sock) + params.w_transfer * aligned
              + params.w_success * success.float())
    return reward, success
