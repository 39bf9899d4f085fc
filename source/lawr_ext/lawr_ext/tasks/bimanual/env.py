"""The Bimanual-Chunk DirectRLEnv: one class for both tasks (the cfg's ``task`` picks objects, reward and success).

Privileged state for scripted experts (env frame, i.e. relative to each env origin):
``arm_joint_pos`` [N,2,6], ``finger_gap`` [N,2], ``grasp_points`` [N,2,3], ``object_pose(name)`` [N,7] (xyzw).
``extras["success"]`` (bool [N]) is the success flag of the last step, computed before auto-resets;
``extras["physics_failure"]`` (bool [N]) marks envs whose physics blew up this step (reset, truncated, reward 0);
``extras["object_dropped"]`` (bool [N]) marks episodes that ended because an object was knocked off the table;
``extras["strategy"]`` (long [N]) is the expert strategy the episode's motion matches (-1 while undecided), so
evaluation can break a learned policy's results down by mode.
"""

from __future__ import annotations

import torch
from isaaclab.envs import DirectRLEnv

from . import kernels
from .env_cfg import BLOCK_SIZE, CAMERA_NAMES, PEG_SIZE, SOCKET, TABLE_SIZE, TOP_CAMERA_POS, BimanualChunkEnvCfg
from .robot import ALL_JOINT_NAMES, SPEC, arm_limits


def _half(size) -> tuple[float, float, float]:
    return tuple(s / 2 for s in size)


class BimanualChunkEnv(DirectRLEnv):
    cfg: BimanualChunkEnvCfg

    def __init__(self, cfg: BimanualChunkEnvCfg, render_mode: str | None = None, **kwargs):
        if cfg.task not in ("handover", "insertion"):
            raise ValueError(f"BimanualChunkEnvCfg.task: expected 'handover' or 'insertion', got {cfg.task!r}")
        self.camera_names = _configure_cameras(cfg)
        super().__init__(cfg, render_mode, **kwargs)
        self.robot = self.scene["robot"]
        self.object_names = ("block",) if cfg.task == "handover" else ("peg", "socket")
        # our joint order (left arm, left fingers, right arm, right fingers) -> simulator joint indices
        self.joint_ids = torch.tensor(self.robot.find_joints(ALL_JOINT_NAMES, preserve_order=True)[0],
                                      device=self.device)
        self.arm_ids = self.joint_ids.view(2, 8)[:, :6]
        self.finger_ids = self.joint_ids.view(2, 8)[:, 6:]
        self.finger_body_ids = torch.tensor(self.robot.find_bodies(
            [f"{side}_finger_{f}" for side in ("left", "right") for f in ("a", "b")], preserve_order=True)[0],
            device=self.device).view(2, 2)
        limits = arm_limits(SPEC).to(self.device)
        self.arm_lower, self.arm_range = limits[:, 0], limits[:, 1] - limits[:, 0]
        self.joint_targets = self.robot.data.default_joint_pos.torch.clone()  # commanded by the last action
        self.servo_targets = self.joint_targets.clone()  # what the drives track: rate-limited towards the above
        self.max_target_step = torch.zeros(self.joint_targets.shape[1], device=self.device)
        self.max_target_step[self.arm_ids.flatten()] = cfg.arm_target_speed * cfg.sim.dt
        self.max_target_step[self.finger_ids.flatten()] = cfg.finger_target_speed * cfg.sim.dt
        # an object outside this xy box (the table top plus the margin) has been knocked off the table
        self.drop_box = torch.tensor(TABLE_SIZE[:2], device=self.device) / 2 + cfg.drop_margin
        self.held_flags = torch.zeros(self.num_envs, dtype=torch.int32, device=self.device)
        self.success = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        # which strategy the episode is following, read off the motion (see _classify_strategy)
        self.mover_arm = torch.full((self.num_envs,), -1, dtype=torch.long, device=self.device)
        self.max_height = torch.zeros(self.num_envs, device=self.device)
        self.reset_generator = torch.Generator(device=self.device)
        # the cameras' randomization draws from a generator of its own: turning it on moves no object's spawn
        self.camera_generator = torch.Generator(device=self.device)
        num_cameras = len(self.camera_names)
        self.frame_gain = torch.ones(self.num_envs, num_cameras, 3, device=self.device)
        self.frame_offset = torch.zeros(self.num_envs, num_cameras, 1, device=self.device)
        self.reseed(cfg.seed if cfg.seed is not None else 0)
        r = cfg.reward
        self.reward_params = kernels.RewardParams(r.reach, r.grasp, r.lift, r.transfer, r.success, r.lift_height,
                                                  r.reach_scale)

    launcher = None  # the simulation launcher context that make_env entered; closed with the env

    def close(self) -> None:
        super().close()
        if self.launcher is not None:
            self.launcher.close()
            self.launcher = None

    def reseed(self, seed: int) -> None:
        """Seed the reset randomization (object spawn, joint noise): same seed -> same reset states."""
        self.reset_generator.manual_seed(seed)
        self.camera_generator.manual_seed(seed + 7919)

    # ------------------------------------------------------------------ privileged state (env frame)

    @property
    def arm_joint_pos(self) -> torch.Tensor:
        return self.robot.data.joint_pos.torch[:, self.arm_ids]

    @property
    def finger_gap(self) -> torch.Tensor:
        return self.robot.data.joint_pos.torch[:, self.finger_ids].mean(-1)

    @property
    def grasp_points(self) -> torch.Tensor:
        # the two finger frames sit at the grasp point, each shifted along its own finger axis: their midpoint
        finger_pos = self.robot.data.body_link_pos_w.torch[:, self.finger_body_ids.flatten()].view(-1, 2, 2, 3)
        return finger_pos.mean(2) - self.scene.env_origins.unsqueeze(1)

    def object_pose(self, name: str) -> torch.Tensor:
        pose = self.scene[name].data.root_link_pose_w.torch.clone()
        pose[:, :3] -= self.scene.env_origins
        return pose

    def action_from_targets(self, arm_q: torch.Tensor, grip: torch.Tensor) -> torch.Tensor:
        """Inverse of the action mapping: arm joint targets [N,2,6] + gripper commands [N,2] -> actions [N,14]."""
        arm = 2.0 * (arm_q - self.arm_lower) / self.arm_range - 1.0
        return torch.cat([arm, grip.unsqueeze(-1)], dim=-1).clamp(-1.0, 1.0).flatten(1)

    # ------------------------------------------------------------------ DirectRLEnv hooks

    def _pre_physics_step(self, actions: torch.Tensor) -> None:
        actions = actions.clamp(-1.0, 1.0).view(-1, 2, 7)
        arm = self.arm_lower + 0.5 * (actions[..., :6] + 1.0) * self.arm_range
        finger = SPEC.finger_lower + 0.5 * (actions[..., 6:] + 1.0) * (SPEC.finger_upper - SPEC.finger_lower)
        self.joint_targets[:, self.arm_ids] = arm
        self.joint_targets[:, self.finger_ids] = finger.expand(-1, 2, 2)

    def _apply_action(self) -> None:
        # once per physics step: the servo targets follow the commanded ones at the profile velocity
        step = self.joint_targets - self.servo_targets
        self.servo_targets += torch.maximum(torch.minimum(step, self.max_target_step), -self.max_target_step)
        self.robot.set_joint_position_target_index(target=self.servo_targets)

    def camera_images(self, randomized: bool = True) -> torch.Tensor:
        """uint8 [N, cameras, H, W, 3]: what each camera of ``camera_names`` sees now (rendered when read), with this
        episode's colour and brightness jitter (``cameras.randomization``) unless ``randomized`` is False."""
        frames = torch.stack([self.scene[f"{name}_camera"].data.output["rgb"].torch[..., :3]
                              for name in self.camera_names], dim=1)
        randomization = self.cfg.cameras.randomization
        if not randomized or (randomization.color_gain == 0 and randomization.brightness == 0):
            return frames
        return jitter_frames(frames, self.frame_gain, self.frame_offset)

    def _randomize_cameras(self, env_ids: torch.Tensor) -> None:
        """Draw the reset envs' camera randomization (``cameras.randomization``) from the camera generator."""
        randomization, n = self.cfg.cameras.randomization, len(env_ids)

        def symmetric(scale: float, *shape: int) -> torch.Tensor:
            u = torch.rand(*shape, generator=self.camera_generator, device=self.device)
            return scale * (2.0 * u - 1.0)

        if randomization.color_gain > 0:
            self.frame_gain[env_ids] = 1.0 + symmetric(randomization.color_gain, n, *self.frame_gain.shape[1:])
        if randomization.brightness > 0:
            self.frame_offset[env_ids] = 255.0 * symmetric(randomization.brightness, n, *self.frame_offset.shape[1:])
        if randomization.top_position_noise > 0 and "top" in self.camera_names:
            position = torch.tensor(TOP_CAMERA_POS, device=self.device) + self.scene.env_origins[env_ids]
            position += symmetric(randomization.top_position_noise, n, 3)
            self.scene["top_camera"].set_world_poses(positions=position, env_ids=env_ids.tolist())

    def _get_observations(self) -> dict:
        parts = [self.robot.data.joint_pos.torch[:, self.joint_ids], self.robot.data.joint_vel.torch[:, self.joint_ids]]
        if self.camera_names:  # an image task: joints and images, no privileged state
            return {"policy": torch.cat(parts, dim=-1).float(), "images": self.camera_images()}
        parts += [self.object_pose(name) for name in self.object_names]
        parts.append(self.grasp_points.flatten(1))
        return {"policy": torch.cat(parts, dim=-1).float()}

    def _compute_reward_and_success(self) -> tuple[torch.Tensor, torch.Tensor]:
        grasp, gap = self.grasp_points, self.finger_gap
        if self.cfg.task == "handover":
            return kernels.handover_reward(grasp, gap, self.object_pose("block"), _half(BLOCK_SIZE),
                                           self.held_flags, self.reward_params)
        return kernels.insertion_reward(
            grasp, gap, self.object_pose("peg"), self.object_pose("socket"), _half(PEG_SIZE),
            _half((SOCKET.length, SOCKET.outer, SOCKET.outer)), SOCKET.hole / 2, self.cfg.insert_depth,
            self.cfg.align_cos, self.reward_params)

    def _physics_failed(self) -> torch.Tensor:
        """[N] bool: the env's state is non-finite or far outside anything physical (a simulator blow-up)."""
        joint_pos, joint_vel = self.robot.data.joint_pos.torch, self.robot.data.joint_vel.torch
        failed = ~(torch.isfinite(joint_pos).all(-1) & torch.isfinite(joint_vel).all(-1))
        failed |= joint_vel.abs().amax(-1) > self.cfg.max_joint_speed
        for name in self.object_names:
            pose = self.object_pose(name)
            failed |= ~torch.isfinite(pose).all(-1) | (pose[:, :3].norm(dim=-1) > self.cfg.max_object_distance)
        return failed

    def _object_dropped(self) -> torch.Tensor:
        """[N] bool: an object has been knocked off the table (fallen below its top or gone past its edges)."""
        dropped = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        for name in self.object_names:
            pos = self.object_pose(name)[:, :3]
            dropped |= (pos[:, 2] < -self.cfg.drop_margin) | (pos[:, :2].abs() > self.drop_box).any(-1)
        return dropped

    def _classify_strategy(self) -> torch.Tensor:
        """[N] long: the expert strategy id (experts.py) this episode's motion matches so far, -1 while undecided.

        Bit 0 is which arm moved the first object (hand-over: the block's giver, 0 = left; insertion: the peg's
        carrier, 0 = right), latched as the nearest gripper when that object first rises ``lift_height``. Bit 1 is
        whether the hand-over / meeting point was the high one (the block's / socket's highest point > 0.24 m, the
        midpoint between the experts' 0.2 m and 0.28 m)."""
        first, second = ("block", "block") if self.cfg.task == "handover" else ("peg", "socket")
        pose = self.object_pose(first)
        risen = (pose[:, 2] > self.cfg.reward.lift_height) & (self.mover_arm < 0)
        nearest = (self.grasp_points - pose[:, None, :3]).norm(dim=-1).argmin(-1)
        self.mover_arm = torch.where(risen, nearest, self.mover_arm)
        self.max_height = torch.maximum(self.max_height, self.object_pose(second)[:, 2])
        bit0 = self.mover_arm if self.cfg.task == "handover" else 1 - self.mover_arm
        strategy = bit0 + 2 * (self.max_height > 0.24).long()
        return torch.where(self.mover_arm < 0, -1, strategy)

    def _get_dones(self) -> tuple[torch.Tensor, torch.Tensor]:
        # reward and success come from one kernel launch; DirectRLEnv asks for dones first, then rewards
        failed = self._physics_failed()
        reward, success = self._compute_reward_and_success()
        # a blown-up env earns nothing and cannot succeed; it is reset right after this step, as truncated
        self._step_reward = torch.where(failed, torch.zeros_like(reward), reward)
        self.success = success & ~failed
        self.extras["success"] = self.success.clone()
        self.extras["physics_failure"] = failed
        dropped = self._object_dropped() & ~failed & ~self.success
        self.extras["object_dropped"] = dropped
        self.extras["strategy"] = self._classify_strategy()
        time_out = self.episode_length_buf >= self.max_episode_length
        return self.success | dropped, time_out | failed

    def _get_rewards(self) -> torch.Tensor:
        return self._step_reward

    def _reset_idx(self, env_ids: torch.Tensor | None) -> None:
        if env_ids is None:
            env_ids = torch.arange(self.num_envs, device=self.device)
        super()._reset_idx(env_ids)
        env_ids = env_ids.long()
        n, spawn = len(env_ids), self.cfg.spawn

        def uniform(bounds: tuple[float, float], *shape: int) -> torch.Tensor:
            u = torch.rand(*shape, generator=self.reset_generator, device=self.device)
            return bounds[0] + (bounds[1] - bounds[0]) * u

        joint_pos = self.robot.data.default_joint_pos.torch[env_ids].clone()
        joint_pos[:, self.arm_ids.flatten()] += uniform((-spawn.joint_noise, spawn.joint_noise), n, 12)
        self.robot.write_joint_position_to_sim_index(position=joint_pos, env_ids=env_ids)
        self.robot.write_joint_velocity_to_sim_index(velocity=torch.zeros_like(joint_pos), env_ids=env_ids)
        self.joint_targets[env_ids] = joint_pos
        self.servo_targets[env_ids] = joint_pos

        regions = {"block": (spawn.block_x, spawn.block_y, spawn.block_yaw),
                   "peg": (spawn.peg_x, spawn.peg_y, spawn.object_yaw),
                   "socket": (spawn.socket_x, spawn.socket_y, spawn.object_yaw)}
        for name in self.object_names:
            obj = self.scene[name]
            x_range, y_range, yaw_range = regions[name]
            pose = obj.data.default_root_pose.torch[env_ids].clone()
            pose[:, 0] = uniform(x_range, n)
            pose[:, 1] = uniform(y_range, n)
            yaw = uniform(yaw_range, n)
            pose[:, 3:] = torch.stack([torch.zeros_like(yaw), torch.zeros_like(yaw), torch.sin(yaw / 2),
                                       torch.cos(yaw / 2)], dim=-1)
            pose[:, :3] += self.scene.env_origins[env_ids]
            obj.write_root_pose_to_sim_index(root_pose=pose, env_ids=env_ids)
            obj.write_root_velocity_to_sim_index(root_velocity=torch.zeros(n, 6, device=self.device), env_ids=env_ids)
        self.held_flags[env_ids] = 0
        self.mover_arm[env_ids] = -1
        self.max_height[env_ids] = 0.0
        if self.camera_names:
            self._randomize_cameras(env_ids)


def _configure_cameras(cfg: BimanualChunkEnvCfg) -> tuple[str, ...]:
    """Keep the cameras ``cfg.cameras`` names, at its resolution, and remove the others from the scene (before the
    scene is built); the names in observation order (none for a state task)."""
    if cfg.cameras is None:
        return ()
    names = tuple(cfg.cameras.names)
    unknown = sorted(set(names) - set(CAMERA_NAMES))
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"BimanualChunkEnvCfg.cameras.names: expected distinct names from {CAMERA_NAMES}, "
                         f"got {names}")
    if cfg.cameras.width < 8 or cfg.cameras.height < 8:
        raise ValueError(f"BimanualChunkEnvCfg.cameras: width and height must be >= 8 px, got "
                         f"{cfg.cameras.width} x {cfg.cameras.height}")
    for name in CAMERA_NAMES:
        camera = getattr(cfg.scene, f"{name}_camera")
        if name not in names:
            setattr(cfg.scene, f"{name}_camera", None)
        elif camera is not None:
            camera.width, camera.height = cfg.cameras.width, cfg.cameras.height
    return names


def jitter_frames(frames: torch.Tensor, gain: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """uint8 frames [N, C, H, W, 3] scaled per env, camera and channel by ``gain`` [N, C, 3] and shifted by
    ``offset`` [N, C, 1] (in 0..255 units), rounded and clipped back to uint8."""
    jittered = frames.float() * gain[:, :, None, None, :] + offset[:, :, None, None, :]
    return jittered.round().clamp(0, 255).to(torch.uint8)
