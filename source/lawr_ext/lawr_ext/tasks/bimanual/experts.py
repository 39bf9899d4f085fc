"""Scripted, batched experts for both tasks: privileged object poses + damped-least-squares IK.

Each env gets a *strategy* (the mode of the demonstration) and a *quality* label at reset:

    hand-over  strategy % 2: 0 = left arm picks the block and hands it to the right, 1 = the reverse
               strategy // 2: hand-over point 0 = low and central, 1 = high and towards +y
    insertion  strategy % 2: 0 = left arm holds the socket and the right arm inserts the peg, 1 = the reverse
               strategy // 2: meeting point 0 = low and central, 1 = high and towards +y
    quality    0 = clean, 1 = noisy (jittered targets + joint noise: shakier motions, still succeeds),
               2 = suboptimal (grasps off-centre by ``miss_offset``, half of them also let go early: mostly fails)
               measured on the insertion, 16 envs each (seed 1): clean 16/16, noisy 13/16, suboptimal 5/16

The expert follows a fixed phase schedule (in control steps). Within a phase each arm's commanded grasp point
moves towards that phase's target at a capped speed; targets are recomputed every step from the current object
poses (closed loop), so the insertion corrects for how the peg actually sits in the gripper: its position error and,
by turning the peg arm's wrist, its axis error w.r.t. the socket (a peg grasped ~10 deg askew otherwise meets the
rim, pivots in its grasp and jams).

    expert = make_expert(task, env); expert.reset(env_ids, strategy, quality); actions = expert.act()
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .env_cfg import PEG_SIZE, SOCKET
from .kernels import quat_rotate
from .robot import SPEC, BimanualKinematics

NUM_STRATEGIES = 4
QUALITY = ("clean", "noisy", "suboptimal")
ARM_SIGN = (-1.0, 1.0)  # left arm sits at -x, right arm at +x


@dataclass
class ExpertConfig:
    """Motion and noise parameters of the scripted experts."""

    max_speed: float = 0.25  # cap on the commanded grasp-point speed [m/s]
    insert_speed: float = 0.1  # slower cap while inserting [m/s]
    approach_height: float = 0.08  # pre-grasp height above the grasp point [m]
    receiver_offset: float = 0.035  # hand-over: the giver grasps the block centre (no pivoting torque), the
    # receiver this far from it on its own side [m]
    noisy_target_std: float = 0.002  # noisy expert: per-step target jitter [m]
    noisy_joint_std: float = 0.004  # noisy expert: joint command noise [rad]
    miss_offset: float = 0.03  # suboptimal expert: grasp offset across the fingers [m]
    ik_iterations: int = 4  # warm-started DLS iterations per control step
    tilt: float = 0.5  # approach axis tilted this far from vertical, away from the arm's base [rad]


def _grasp_rotation(finger_axis: torch.Tensor, arm: torch.Tensor, tilt: float) -> torch.Tensor:
    """Tool rotation [N,3,3]: fingers close along ``finger_axis`` (horizontal); the approach axis points down,
    tilted by ``tilt`` rad away from the arm's own base, so two grippers on one object keep their wrists apart."""
    sign = torch.tensor(ARM_SIGN, device=finger_axis.device)[arm].unsqueeze(-1)
    away = torch.linalg.cross(finger_axis, torch.tensor([0.0, 0.0, 1.0], device=finger_axis.device).expand_as(
        finger_axis), dim=-1)
    away = away * torch.where((away[:, :1] * sign) > 0, -1.0, 1.0)  # horizontal, pointing away from the base
    approach = math.sin(tilt) * away
    approach[:, 2] = -math.cos(tilt)
    return torch.stack([approach, finger_axis, torch.linalg.cross(approach, finger_axis, dim=-1)], dim=-1)


def _rotation_from_vector(rotvec: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [N,3,3] of rotation vectors [N,3] (axis * angle)."""
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).view(-1, 3, 3)
    return torch.linalg.matrix_exp(skew)


def _horizontal_axis(quat: torch.Tensor) -> torch.Tensor:
    """An object's long (x) axis projected onto the table plane, unit length [N,3]."""
    x = torch.zeros(quat.shape[0], 3, device=quat.device)
    x[:, 0] = 1.0
    axis = quat_rotate(quat, x)
    axis[:, 2] = 0.0
    return axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def _finger_axis(long_axis: torch.Tensor, arm: torch.Tensor) -> torch.Tensor:
    """Horizontal axis across ``long_axis``, signed so each arm turns its wrist the least (home: +y left, -y right)."""
    across = torch.stack([-long_axis[:, 1], long_axis[:, 0], torch.zeros_like(long_axis[:, 0])], dim=-1)
    sign = torch.where(arm == 0, 1.0, -1.0).unsqueeze(-1)
    return across * sign


class BimanualExpert:
    """Phase-scheduled expert; subclasses give the per-role targets of each phase."""

    schedule: tuple[int, ...] = ()  # phase end times in control steps
    num_strategies = NUM_STRATEGIES  # the labels collection draws per episode
    quality_names = QUALITY

    def __init__(self, env, cfg: ExpertConfig | None = None):
        self.env = env
        self.cfg = cfg or ExpertConfig()
        self.n, self.device = env.num_envs, env.device
        self.kin = BimanualKinematics(SPEC, self.device)
        self.dt = env.step_dt
        self.boundaries = torch.tensor(self.schedule, device=self.device)
        self.t = torch.zeros(self.n, dtype=torch.long, device=self.device)
        self.strategy = torch.zeros(self.n, dtype=torch.long, device=self.device)
        self.quality = torch.zeros(self.n, dtype=torch.long, device=self.device)
        self.cmd_pos = torch.zeros(self.n, 2, 3, device=self.device)
        self.q_cmd = torch.zeros(self.n, 2, 6, device=self.device)
        self.release_step = torch.zeros(self.n, dtype=torch.long, device=self.device)

    def reset(self, env_ids: torch.Tensor, strategy: torch.Tensor, quality: torch.Tensor) -> None:
        """Start new episodes in ``env_ids`` (call right after the env reset them)."""
        env_ids = env_ids.long()
        self.t[env_ids] = 0
        self.strategy[env_ids] = strategy.to(self.device).long()
        self.quality[env_ids] = quality.to(self.device).long()
        self.q_cmd[env_ids] = self.env.arm_joint_pos[env_ids]
        self.cmd_pos[env_ids] = self.env.grasp_points[env_ids]
        # the suboptimal expert lets go somewhere in the carry phase in half of its episodes
        lo, hi = self.schedule[2], self.schedule[3]
        release = torch.randint(lo, hi, (len(env_ids),), device=self.device)
        never = torch.rand(len(env_ids), device=self.device) < 0.5
        self.release_step[env_ids] = torch.where(never, torch.iinfo(torch.long).max, release)

    def act(self) -> torch.Tensor:
        """Actions [N,14] in the env's normalized space for the current state."""
        phase = torch.searchsorted(self.boundaries, self.t, right=True)
        target, rot, grip, speed = self.targets(phase)
        noisy = (self.quality == 1).view(-1, 1, 1).float()
        target = target + noisy * self.cfg.noisy_target_std * torch.randn_like(target)
        step = target - self.cmd_pos
        max_step = (speed * self.dt).unsqueeze(-1)
        self.cmd_pos += step * (max_step / step.norm(dim=-1, keepdim=True).clamp_min(1e-9)).clamp(max=1.0)
        self.q_cmd = self.kin.solve_ik(self.q_cmd, self.cmd_pos, rot, iterations=self.cfg.ik_iterations)
        q = self.q_cmd + noisy * self.cfg.noisy_joint_std * torch.randn_like(self.q_cmd)
        self.t += 1
        return self.env.action_from_targets(q, grip)

    def targets(self, phase: torch.Tensor):
        """Per-arm target grasp point [N,2,3], tool rotation [N,2,3,3], gripper command [N,2], speed cap [N,2]."""
        raise NotImplementedError

    def _by_arm(self, role_a_arm: torch.Tensor, value_a: torch.Tensor, value_b: torch.Tensor) -> torch.Tensor:
        """Stack two role values into arm slots: role a goes to arm ``role_a_arm``, role b to the other."""
        a_is_left = (role_a_arm == 0).view(-1, *([1] * (value_a.dim() - 1)))
        left = torch.where(a_is_left, value_a, value_b)
        right = torch.where(a_is_left, value_b, value_a)
        return torch.stack([left, right], dim=1)

    def _miss(self, finger_axis: torch.Tensor) -> torch.Tensor:
        """Off-centre grasp offset of the suboptimal expert (zero for the others)."""
        return (self.quality == 2).float().unsqueeze(-1) * self.cfg.miss_offset * finger_axis

    def _grip(self, closed: torch.Tensor) -> torch.Tensor:
        return torch.where(closed, -1.0, 1.0)


class HandoverExpert(BimanualExpert):
    """Giver: approach, descend, close, carry to the hand-over point; receiver: approach, descend, close;
    then the giver opens and retreats."""

    # approach, descend, close, carry, recv approach, recv descend, recv close, giver open, giver retreat
    schedule = (40, 65, 80, 130, 170, 195, 210, 225, 250)

    def targets(self, phase):
        env, cfg = self.env, self.cfg
        pose = env.object_pose("block")
        giver = self.strategy % 2
        receiver = 1 - giver
        high = (self.strategy // 2 == 1).float().unsqueeze(-1)
        handover_point = torch.tensor([0.0, 0.0, 0.2], device=self.device) + high * torch.tensor(
            [0.0, 0.08, 0.08], device=self.device)
        axis = _horizontal_axis(pose[:, 3:])
        giver_sign = torch.tensor(ARM_SIGN, device=self.device)[giver].unsqueeze(-1)
        giver_fingers = _finger_axis(axis, giver)
        receiver_fingers = _finger_axis(axis, receiver)
        up = torch.tensor([0.0, 0.0, 1.0], device=self.device)
        lift_z = cfg.approach_height * up

        # giver: grasp the block at its centre
        giver_grasp = pose[:, :3] + self._miss(giver_fingers)
        carried = handover_point
        giver_target = torch.where((phase == 0).unsqueeze(-1), giver_grasp + lift_z, giver_grasp)
        giver_target = torch.where((phase >= 3).unsqueeze(-1), carried, giver_target)
        giver_now = self.cmd_pos[torch.arange(self.n), giver]
        giver_target = torch.where((phase == 8).unsqueeze(-1), giver_now + lift_z, giver_target)
        giver_target = torch.where((phase >= 9).unsqueeze(-1), giver_now, giver_target)
        giver_closed = (phase >= 2) & (phase < 7)
        early_release = (self.quality == 2) & (self.t >= self.release_step)
        giver_closed &= ~early_release

        # receiver: waits at home above the table, then grasps the other end in the air
        receiver_grasp = pose[:, :3] - giver_sign * cfg.receiver_offset * axis + self._miss(receiver_fingers)
        receiver_now = self.cmd_pos[torch.arange(self.n), receiver]
        # rise above the hand-over height first so the open gripper never sweeps through the block
        raised = torch.cat([receiver_now[:, :2], handover_point[:, 2:] + cfg.approach_height], dim=-1)
        receiver_target = torch.where((phase == 3).unsqueeze(-1), raised, receiver_now)
        receiver_target = torch.where((phase == 4).unsqueeze(-1), receiver_grasp + lift_z, receiver_target)
        receiver_target = torch.where((phase == 5).unsqueeze(-1), receiver_grasp, receiver_target)
        receiver_closed = phase >= 6

        target = self._by_arm(giver, giver_target, receiver_target)
        rot = self._by_arm(giver, _grasp_rotation(giver_fingers, giver, cfg.tilt),
                           _grasp_rotation(receiver_fingers, receiver, cfg.tilt))
        grip = self._by_arm(giver, self._grip(giver_closed), self._grip(receiver_closed))
        speed = torch.full((self.n, 2), cfg.max_speed, device=self.device)
        return target, rot, grip, speed


class InsertionExpert(BimanualExpert):
    """Both arms grasp their object at once, lift them apart along x (so the two never cross paths), carry them to a
    meeting point on the x axis; the peg arm then aligns the peg with the socket's measured axis and pushes it in."""

    APPROACH, DESCEND, CLOSE, SEPARATE, CARRY, ALIGN, INSERT = range(7)
    schedule = (40, 65, 80, 110, 160, 205, 265)  # end of each phase above [control steps]
    peg_grasp_offset = 0.0  # peg grasped at its centre too; its far half (5 cm) goes into the socket [m]
    socket_grasp_offset = 0.0  # socket grasped at its centre: no pivoting torque, both mouths free [m]
    grasp_height = 0.006  # grasp the thin peg above its centre so the finger tips clear the table [m]
    separate_height = 0.1  # both objects are lifted to this height while they move apart along x [m]
    standoff = 0.02  # peg tip to socket mouth before inserting [m]
    carry_standoff = 0.05  # peg tip to socket mouth while both are carried: their paths must not cross [m]
    insertion = 0.03  # final overlap of peg and socket [m]
    align_gain = 0.1  # fraction of the peg's axis error turned away per control step while aligning/inserting
    insert_gate = (0.002, 0.05)  # the push starts once the peg is this close to the socket axis [m] and angle [rad]

    def __init__(self, env, cfg: ExpertConfig | None = None):
        super().__init__(env, cfg)
        self.peg_rot = torch.eye(3, device=self.device).repeat(self.n, 1, 1)  # commanded peg-arm tool rotation
        self.pushing = torch.zeros(self.n, dtype=torch.bool, device=self.device)  # the peg passed the insert gate

    def targets(self, phase):
        env, cfg = self.env, self.cfg
        peg, sock = env.object_pose("peg"), env.object_pose("socket")
        peg_arm = 1 - self.strategy % 2
        sock_arm = 1 - peg_arm
        rows = torch.arange(self.n, device=self.device)
        signs = torch.tensor(ARM_SIGN, device=self.device)
        peg_sign, sock_sign = signs[peg_arm].unsqueeze(-1), signs[sock_arm].unsqueeze(-1)
        high = (self.strategy // 2 == 1).float().unsqueeze(-1)
        meet = torch.tensor([0.0, 0.0, 0.2], device=self.device) + high * torch.tensor([0.0, 0.08, 0.08],
                                                                                      device=self.device)
        x_axis = torch.tensor([1.0, 0.0, 0.0], device=self.device).expand(self.n, 3)
        peg_axis, sock_axis = _horizontal_axis(peg[:, 3:]), _horizontal_axis(sock[:, 3:])
        lift_z = torch.tensor([0.0, 0.0, cfg.approach_height], device=self.device)

        def during(*phases: int) -> torch.Tensor:
            return torch.isin(phase, torch.tensor(phases, device=self.device)).unsqueeze(-1)

        def from_(first: int) -> torch.Tensor:
            return (phase >= first).unsqueeze(-1)

        # fingers across the object while picking it up; across the x axis once lifted (aligns both objects)
        lifted = from_(self.SEPARATE)
        peg_fingers = torch.where(lifted, _finger_axis(x_axis, peg_arm), _finger_axis(peg_axis, peg_arm))
        sock_fingers = torch.where(lifted, _finger_axis(x_axis, sock_arm), _finger_axis(sock_axis, sock_arm))

        def pick_then_carry(grasp: torch.Tensor, carried: torch.Tensor, now: torch.Tensor) -> torch.Tensor:
            """Above the grasp, down to it, then apart along x at a common height, then to the carry pose."""
            target = torch.where(during(self.APPROACH), grasp + lift_z, grasp)
            apart = torch.cat([carried[:, :1], now[:, 1:2], torch.full_like(now[:, 2:], self.separate_height)], -1)
            target = torch.where(during(self.SEPARATE), apart, target)
            return torch.where(from_(self.CARRY), carried, target)

        sock_grasp = sock[:, :3] + sock_sign * self.socket_grasp_offset * sock_axis + self._miss(sock_fingers)
        sock_center_goal = meet + sock_sign * 0.5 * SOCKET.length
        sock_now = self.cmd_pos[rows, sock_arm]
        sock_target = pick_then_carry(sock_grasp, sock_center_goal + sock_sign * self.socket_grasp_offset * x_axis,
                                      sock_now)
        sock_target = torch.where(from_(self.ALIGN), sock_now, sock_target)  # the socket holds still from here

        peg_grasp = peg[:, :3] + peg_sign * self.peg_grasp_offset * peg_axis + self._miss(peg_fingers)
        peg_grasp[:, 2] += self.grasp_height
        reach = 0.5 * (SOCKET.length + PEG_SIZE[0])
        pre_insert = sock_center_goal + peg_sign * (reach + self.carry_standoff)
        peg_now = self.cmd_pos[rows, peg_arm]
        peg_target = pick_then_carry(peg_grasp, pre_insert + peg_sign * self.peg_grasp_offset * x_axis, peg_now)
        # closed loop on the measured poses: move the gripper by the peg's error w.r.t. the socket's real axis
        socket_axis_3d = quat_rotate(sock[:, 3:], x_axis)
        socket_axis_3d = socket_axis_3d * torch.sign(socket_axis_3d[:, :1])  # the tube is symmetric: pick +x
        peg_axis_3d = quat_rotate(peg[:, 3:], x_axis)
        peg_axis_3d = peg_axis_3d * torch.sign((peg_axis_3d * socket_axis_3d).sum(-1, keepdim=True))
        offset = peg[:, :3] - sock[:, :3]
        off_axis = (offset - (offset * socket_axis_3d).sum(-1, keepdim=True) * socket_axis_3d).norm(dim=-1)
        angle = torch.linalg.cross(peg_axis_3d, socket_axis_3d, dim=-1).norm(dim=-1).clamp(max=1.0).asin()
        # push only once lined up (the arms lag their commands): pushing a misaligned peg jams it on the rim
        lined_up = (off_axis < self.insert_gate[0]) & (angle < self.insert_gate[1])
        self.pushing = (phase >= self.INSERT) & (self.pushing | lined_up)
        depth = torch.where(self.pushing.unsqueeze(-1), torch.full_like(peg_sign, reach - self.insertion),
                            torch.full_like(peg_sign, reach + self.standoff))
        peg_goal = sock[:, :3] + peg_sign * depth * socket_axis_3d
        peg_target = torch.where(from_(self.ALIGN), peg_now + (peg_goal - peg[:, :3]), peg_target)

        # a peg that sits tilted in its grasp is turned until its axis matches the socket's measured axis (integral
        # action on the commanded tool rotation: no steady error however askew the peg was grasped)
        turn = _rotation_from_vector(self.align_gain * torch.linalg.cross(peg_axis_3d, socket_axis_3d, dim=-1))
        self.peg_rot = torch.where(from_(self.ALIGN).unsqueeze(-1), turn @ self.peg_rot,
                                   _grasp_rotation(peg_fingers, peg_arm, cfg.tilt))

        closed = phase >= self.CLOSE
        early_release = (self.quality == 2) & (self.t >= self.release_step)
        target = self._by_arm(peg_arm, peg_target, sock_target)
        rot = self._by_arm(peg_arm, self.peg_rot, _grasp_rotation(sock_fingers, sock_arm, cfg.tilt))
        grip = self._by_arm(peg_arm, self._grip(closed & ~early_release), self._grip(closed))
        peg_speed = torch.where(self.pushing, cfg.insert_speed, cfg.max_speed)
        speed = self._by_arm(peg_arm, peg_speed, torch.full_like(peg_speed, cfg.max_speed))
        return target, rot, grip, speed


def run_first_episodes(env, expert: BimanualExpert, strategy: torch.Tensor,
                       quality: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run one expert episode in every env (from a fresh reset) and report how each env's FIRST episode ended.

    Returns per-env tensors: ``success`` and ``object_dropped`` (bool), and ``strategy_read``: the strategy the
    env read off the episode's motion (extras["strategy"] when it ended; -2 if it had not ended)."""
    env.reset()
    expert.reset(torch.arange(env.num_envs), strategy=strategy, quality=quality)
    n = env.num_envs
    success = torch.zeros(n, dtype=torch.bool, device=env.device)
    dropped = torch.zeros(n, dtype=torch.bool, device=env.device)
    done = torch.zeros(n, dtype=torch.bool, device=env.device)
    strategy_read = torch.full((n,), -2, dtype=torch.long, device=env.device)
    for _ in range(env.max_episode_length):
        _, _, terminated, truncated, extras = env.step(expert.act())
        ending = (terminated | truncated) & ~done
        success |= extras["success"] & ~done
        dropped |= extras["object_dropped"] & ending
        strategy_read[ending] = extras["strategy"][ending]
        done |= ending
        if done.all():
            break
    return {"success": success, "object_dropped": dropped, "strategy_read": strategy_read}


def make_expert(task: str, env, cfg: ExpertConfig | None = None) -> BimanualExpert:
    """The scripted expert for a registered task id, batched over ``env.num_envs``."""
    experts = {"Bimanual-Chunk": HandoverExpert, "Bimanual-Chunk-Insertion": InsertionExpert,
               # the image tasks' experts read the same privileged state, which their policies do not see
               "Bimanual-Chunk-Vision": HandoverExpert, "Bimanual-Chunk-Insertion-Vision": InsertionExpert}
    if task not in experts:
        raise ValueError(f"make_expert: no scripted expert for task {task!r}; known: {tuple(experts)}")
    return experts[task](env, cfg)
