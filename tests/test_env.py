"""Physical sanity of the Bimanual-Chunk env (kit-less Newton MuJoCo-Warp on the CPU; a few small envs).

The insertion task is used because its scene holds every object kind: a procedural box (peg) and a multi-shape
USD body (socket).
"""

import contextlib
import io

import lawr_ext  # noqa: F401  (sets the Warp kernel cache before warp loads)
import pytest
import torch

from lawr_ext.tasks import make_env
from lawr_ext.tasks.bimanual.env_cfg import HOME_ARM_POSE, PEG_SIZE, SOCKET
from lawr_ext.tasks.bimanual.robot import SPEC, arm_limits

pytestmark = pytest.mark.sim
NUM_ENVS = 4
ARM_LIMIT_SLACK = 0.05  # [rad] how far violent actions may push an arm joint past its limit (soft limits)
FINGER_LIMIT_SLACK = 0.015  # [m] ... and a finger


STARTUP_OUTPUT = io.StringIO()  # what creating the env printed


@pytest.fixture(scope="module")
def env():
    with contextlib.redirect_stdout(STARTUP_OUTPUT):
        env = make_env("Bimanual-Chunk-Insertion", NUM_ENVS, seed=0)
    yield env
    env.close()


def test_creating_the_env_prints_no_isaac_lab_info_pages(env):
    """Isaac Lab's [INFO] lines (scene, simulation start, render interval) show with --verbose only."""
    assert "[INFO]" not in STARTUP_OUTPUT.getvalue(), STARTUP_OUTPUT.getvalue()[:2000]


def _hold_home(env, grip: float = 1.0) -> torch.Tensor:
    home = torch.tensor(list(HOME_ARM_POSE.values())).expand(env.num_envs, 2, 6)
    return env.action_from_targets(home, torch.full((env.num_envs, 2), grip))


def test_reset_and_step_shapes(env):
    obs, _ = env.reset()
    assert obs["policy"].shape == (NUM_ENVS, env.cfg.observation_space)
    assert obs["policy"].dtype == torch.float32
    obs, reward, terminated, truncated, extras = env.step(torch.zeros(NUM_ENVS, 14))
    assert obs["policy"].shape == (NUM_ENVS, env.cfg.observation_space)
    assert reward.shape == terminated.shape == truncated.shape == (NUM_ENVS,)
    assert terminated.dtype == truncated.dtype == torch.bool
    assert extras["success"].shape == (NUM_ENVS,) and extras["success"].dtype == torch.bool
    assert torch.isfinite(obs["policy"]).all() and torch.isfinite(reward).all()


def test_same_seed_same_reset_state(env):
    env.reseed(7)
    first = env.reset()[0]["policy"].clone()
    for _ in range(5):  # move things around in between
        env.step(2 * torch.rand(NUM_ENVS, 14) - 1)
    env.reseed(7)
    again = env.reset()[0]["policy"]
    torch.testing.assert_close(again, first)
    env.reseed(8)
    other = env.reset()[0]["policy"]
    assert not torch.allclose(other[:, 32:], first[:, 32:])  # object poses differ with another seed
    # the spawn randomization really spreads the objects within the documented region
    peg_y = env.object_pose("peg")[:, 1]
    assert ((peg_y >= env.cfg.spawn.peg_y[0]) & (peg_y <= env.cfg.spawn.peg_y[1])).all()


def test_objects_rest_on_the_table(env):
    env.reseed(3)
    env.reset()
    start = {name: env.object_pose(name) for name in env.object_names}
    action = _hold_home(env)
    for _ in range(50):  # 1 s with the arms holding their home pose above the table
        env.step(action)
    half_height = {"peg": PEG_SIZE[2] / 2, "socket": SOCKET.outer / 2}
    for name in env.object_names:
        pose = env.object_pose(name)
        assert torch.isfinite(pose).all()
        # resting on the table top (z = 0): not sunk through, not launched, barely moved
        torch.testing.assert_close(pose[:, 2], torch.full((NUM_ENVS,), half_height[name]), atol=3e-3, rtol=0)
        assert (pose[:, :2] - start[name][:, :2]).norm(dim=-1).max() < 0.01
        assert env.scene[name].data.root_link_vel_w.torch.abs().max() < 0.05


def test_joint_limits_hold_when_grippers_slam(env):
    """Grippers slammed fully open/closed in free space while the arms jump between random targets near home."""
    env.reseed(4)
    env.reset()
    limits = arm_limits(SPEC)
    home = _hold_home(env)
    for step in range(60):
        if step % 10 == 0:  # redrawn every 10 steps so joints have time to reach their targets
            action = (home + 0.1 * (2 * torch.rand(NUM_ENVS, 14) - 1)).clamp(-1, 1)
            grippers = torch.where(torch.rand(NUM_ENVS, 2) < 0.5, -1.0, 1.0)
            action[:, [6, 13]] = grippers
        obs, reward, *_ = env.step(action)
        assert torch.isfinite(obs["policy"]).all() and torch.isfinite(reward).all()
        arm = env.arm_joint_pos
        assert (arm >= limits[:, 0] - 0.02).all() and (arm <= limits[:, 1] + 0.02).all()
        fingers = env.robot.data.joint_pos.torch[:, env.finger_ids.flatten()]
        # in free space the finger limits hold within millimetres (an early kit-less probe saw 116 mm)
        assert (fingers >= SPEC.finger_lower - 5e-3).all() and (fingers <= SPEC.finger_upper + 5e-3).all()


def test_blown_up_env_is_reset_as_truncated(env):
    """A non-finite simulator state (as a learned policy once produced) never reaches the policy: the env is flagged,
    truncated with reward 0 and reset, and the other envs step on untouched."""
    env.reseed(5)
    env.reset()
    velocity = env.robot.data.joint_vel.torch.clone()
    velocity[0] = float("nan")
    env.robot.write_joint_velocity_to_sim_index(velocity=velocity[:1], env_ids=torch.tensor([0]))
    obs, reward, terminated, truncated, extras = env.step(_hold_home(env))
    assert extras["physics_failure"].tolist() == [True] + [False] * (NUM_ENVS - 1)
    assert truncated[0] and not truncated[1:].any() and reward[0] == 0.0
    assert torch.isfinite(obs["policy"]).all() and torch.isfinite(reward).all()
    obs, *_, extras = env.step(_hold_home(env))  # the reset env simulates normally again
    assert torch.isfinite(obs["policy"]).all() and not extras["physics_failure"].any()


def test_violent_actions_keep_joints_near_their_limits_and_states_finite(env):
    """Bang-bang actions at the corners of [-1, 1]^14 (arms slammed into each other, the table and their limits).

    Limits are MuJoCo's soft constraints: arms crushing a gripper into the table still push a finger past its range
    by up to about a centimetre. Measured on this batch: arms 0.001 rad, fingers 6.8 mm past; on 16 envs x 300
    steps: 0.03 rad, 13 mm. Before the servo rate limit and the armatures: 0.64 rad and 96 mm."""
    env.reseed(6)
    env.reset()
    limits = arm_limits(SPEC)
    generator = torch.Generator().manual_seed(0)
    worst_arm, worst_finger = 0.0, 0.0
    for step in range(100):
        if step % 5 == 0:
            action = torch.where(torch.rand(NUM_ENVS, 14, generator=generator) < 0.5, -1.0, 1.0)
        obs, reward, *_ = env.step(action)
        assert torch.isfinite(obs["policy"]).all() and torch.isfinite(reward).all()
        arm = env.arm_joint_pos
        worst_arm = max(worst_arm, float(torch.maximum(limits[:, 0] - arm, arm - limits[:, 1]).max()))
        fingers = env.robot.data.joint_pos.torch[:, env.finger_ids.flatten()]
        worst_finger = max(worst_finger, float(torch.maximum(SPEC.finger_lower - fingers,
                                                             fingers - SPEC.finger_upper).max()))
    assert worst_arm < ARM_LIMIT_SLACK, f"an arm joint went {worst_arm:.3f} rad past its limit"
    assert worst_finger < FINGER_LIMIT_SLACK, f"a finger went {1000 * worst_finger:.1f} mm past its limit"


def test_object_knocked_off_the_table_ends_the_episode_as_terminated(env):
    env.reseed(7)
    env.reset()
    pose = env.scene["peg"].data.root_link_pose_w.torch.clone()
    pose[0, 2] -= 0.2  # env 0's peg below the table top: it has fallen off
    env.scene["peg"].write_root_pose_to_sim_index(root_pose=pose[:1], env_ids=torch.tensor([0]))
    _, reward, terminated, truncated, extras = env.step(_hold_home(env))
    assert extras["object_dropped"].tolist() == [True] + [False] * (NUM_ENVS - 1)
    assert terminated.tolist() == [True] + [False] * (NUM_ENVS - 1) and not truncated.any()
    assert not extras["success"].any() and not extras["physics_failure"].any()
    assert torch.isfinite(reward).all()
