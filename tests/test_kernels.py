"""The Warp reward/success kernels agree with their plain-torch reference (no simulator: fast)."""

import math

import lawr_ext  # noqa: F401  (sets the Warp kernel cache before warp loads)
import pytest
import torch

from lawr_ext.tasks.bimanual import kernels

PARAMS = kernels.RewardParams(w_reach=1.0, w_grasp=1.0, w_lift=1.0, w_transfer=2.0, w_success=5.0, lift_height=0.06,
                              reach_scale=10.0)
BLOCK_HALF = (0.06, 0.015, 0.015)
PEG_HALF = (0.05, 0.01, 0.01)
SOCKET_HALF = (0.03, 0.022, 0.022)


def _yaw_quat(yaw: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(yaw)
    return torch.stack([zero, zero, torch.sin(yaw / 2), torch.cos(yaw / 2)], dim=-1)


def _random_quat(n: int, gen: torch.Generator) -> torch.Tensor:
    q = torch.randn(n, 4, generator=gen)
    return q / q.norm(dim=-1, keepdim=True)


def _handover_states(n: int, gen: torch.Generator):
    """Random states with many held / lifted / transferred cases (grasp points placed on the block)."""
    pos = torch.rand(n, 3, generator=gen) * torch.tensor([0.2, 0.2, 0.3]) - torch.tensor([0.1, 0.1, 0.0])
    quat = torch.where(torch.rand(n, 1, generator=gen) < 0.5, _yaw_quat(torch.rand(n, generator=gen) - 0.5),
                       _random_quat(n, gen))
    pose = torch.cat([pos, quat], dim=-1)
    # grasp points: on the block (+-3 cm along it, small jitter) or anywhere
    along = torch.tensor([[-0.03, 0.0, 0.0], [0.03, 0.0, 0.0]]).expand(n, 2, 3)
    jitter = 0.012 * torch.randn(n, 2, 3, generator=gen)
    on_block = pos.unsqueeze(1) + kernels.quat_rotate(quat.unsqueeze(1).expand(n, 2, 4), along + jitter)
    anywhere = torch.rand(n, 2, 3, generator=gen) * 0.4 - 0.2
    grasp = torch.where(torch.rand(n, 2, 1, generator=gen) < 0.7, on_block, anywhere)
    gap = torch.rand(n, 2, generator=gen) * 0.04
    flags = torch.randint(0, 4, (n,), generator=gen, dtype=torch.int32)
    return grasp, gap, pose, flags


def test_handover_kernel_matches_reference():
    gen = torch.Generator().manual_seed(0)
    grasp, gap, pose, flags = _handover_states(4096, gen)
    ref_reward, ref_success, ref_flags = kernels.handover_reward_reference(grasp, gap, pose, torch.tensor(BLOCK_HALF),
                                                                           flags, PARAMS)
    warp_flags = flags.clone()
    reward, success = kernels.handover_reward(grasp, gap, pose, BLOCK_HALF, warp_flags, PARAMS)
    torch.testing.assert_close(reward, ref_reward, atol=1e-5, rtol=1e-5)
    assert torch.equal(success, ref_success)
    assert torch.equal(warp_flags, ref_flags)  # the kernel latches the held flags in place
    # the random states exercise every branch, so agreement is meaningful
    assert 0 < ref_success.sum() < len(ref_success)
    assert len(torch.unique(ref_flags)) == 4


def test_handover_success_semantics():
    """Success needs both arms to have held the block, the block lifted, and exactly one gripper on it now."""
    pose = torch.tensor([[0.0, 0.0, 0.15, 0.0, 0.0, 0.0, 1.0]]).repeat(3, 1)
    grasp = torch.tensor([[[-0.03, 0.0, 0.15], [0.03, 0.0, 0.15]]]).repeat(3, 1, 1)
    gap = torch.tensor([[0.04, 0.013], [0.013, 0.013], [0.04, 0.013]])  # env 0: left opened, env 1: both hold
    flags = torch.tensor([3, 3, 2], dtype=torch.int32)  # env 2: the left arm never held it
    _, success = kernels.handover_reward(grasp, gap, pose, BLOCK_HALF, flags, PARAMS)
    assert success.tolist() == [True, False, False]
    pose[0, 2] = 0.02  # back on the table: not a hand-over in the air
    _, success = kernels.handover_reward(grasp, gap, pose, BLOCK_HALF, torch.tensor([3, 3, 2], dtype=torch.int32),
                                         PARAMS)
    assert not success[0]


def _insertion_states(n: int, gen: torch.Generator):
    sock_pos = torch.rand(n, 3, generator=gen) * torch.tensor([0.2, 0.2, 0.2]) + torch.tensor([-0.1, -0.1, 0.0])
    sock_quat = _yaw_quat(0.3 * torch.randn(n, generator=gen))
    # peg near the socket axis (often inside), axis nearly aligned
    along = torch.rand(n, 1, generator=gen) * 0.14 - 0.07
    lateral = 0.01 * torch.randn(n, 2, generator=gen)
    local = torch.cat([along, lateral], dim=-1)
    peg_pos = sock_pos + kernels.quat_rotate(sock_quat, local)
    tilt = 0.3 * torch.randn(n, generator=gen)
    tilt_quat = torch.stack([torch.zeros_like(tilt), torch.sin(tilt / 2), torch.zeros_like(tilt), torch.cos(tilt / 2)],
                            -1)
    peg_quat = _quat_mul(sock_quat, tilt_quat)
    grasp = torch.stack([sock_pos, peg_pos], dim=1) + 0.01 * torch.randn(n, 2, 3, generator=gen)
    gap = torch.rand(n, 2, generator=gen) * 0.04
    return grasp, gap, torch.cat([peg_pos, peg_quat], -1), torch.cat([sock_pos, sock_quat], -1)


def _quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ax, ay, az, aw = a.unbind(-1)
    bx, by, bz, bw = b.unbind(-1)
    return torch.stack([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz], dim=-1)


def test_insertion_kernel_matches_reference():
    gen = torch.Generator().manual_seed(1)
    grasp, gap, peg, sock = _insertion_states(4096, gen)
    args = (PEG_HALF, SOCKET_HALF, 0.014, 0.02, math.cos(math.radians(15)), PARAMS)
    reward, success = kernels.insertion_reward(grasp, gap, peg, sock, *args)
    ref_reward, ref_success = kernels.insertion_reward_reference(grasp, gap, peg, sock, torch.tensor(PEG_HALF),
                                                                 torch.tensor(SOCKET_HALF), *args[2:])
    torch.testing.assert_close(reward, ref_reward, atol=1e-5, rtol=1e-5)
    assert torch.equal(success, ref_success)
    assert 0 < ref_success.sum() < len(ref_success)


@pytest.mark.parametrize("offset, tilt, expected", [(0.0, 0.0, True), (0.02, 0.0, False), (0.0, 0.6, False)])
def test_insertion_success_semantics(offset, tilt, expected):
    """Peg 4 cm deep in the lifted socket succeeds; 2 cm off-axis or 34 degrees tilted does not."""
    sock = torch.tensor([[0.0, 0.0, 0.15, 0.0, 0.0, 0.0, 1.0]])
    tilt_q = torch.tensor([[0.0, math.sin(tilt / 2), 0.0, math.cos(tilt / 2)]])
    peg = torch.cat([torch.tensor([[0.03 + 0.05 - 0.04, offset, 0.15]]), tilt_q], dim=-1)
    grasp = torch.tensor([[[-0.015, 0.0, 0.15], [0.065, 0.0, 0.15]]])
    gap = torch.tensor([[0.02, 0.009]])
    _, success = kernels.insertion_reward(grasp, gap, peg, sock, PEG_HALF, SOCKET_HALF, 0.014, 0.02,
                                          math.cos(math.radians(15)), PARAMS)
    assert success.item() is expected
