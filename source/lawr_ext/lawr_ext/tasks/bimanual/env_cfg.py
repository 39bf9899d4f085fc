"""Configs of the Bimanual-Chunk task family (hand-over and insertion): scene, physics, timing, reset, reward.

Timing: physics at 100 Hz (``sim.dt = 0.01``), ``decimation = 2`` -> the policy acts at 50 Hz; an episode lasts
``episode_length_s`` seconds (400 steps by default). Policies predict chunks of ``chunk_horizon`` actions, but the
env itself always steps ONE 14-D action.

Actions (14, in [-1, 1]): per arm (left then right) 6 joint-position targets mapped linearly onto the joint
limits, then 1 gripper command (-1 closed .. +1 open) that drives both fingers of that arm.

Episode end: success ends the episode as ``terminated`` (the task is done; no reward can follow), the time
limit ends it as ``truncated``. ``extras["success"]`` holds the per-step success flag.

An object knocked off the table (below its top or beyond its edges by ``drop_margin``) ends the episode as
``terminated`` too (a real terminal state: the task can no longer be done), without success;
``extras["object_dropped"]`` flags it.

Servo targets: the drives' position targets move towards the commanded ones at most ``arm_target_speed`` /
``finger_target_speed`` (like the real servos' profile velocity), so a jumpy policy cannot whip the joints.

Physics failure: should an env's state still blow up (non-finite, or an object/joint far outside anything
physical), that env is reset at once and ends as ``truncated`` with reward 0; ``extras["physics_failure"]`` flags
it, so no NaN ever reaches a policy or a dataset.

Physics: Newton MuJoCo-Warp, on Warp's CPU device by default. ``device = "cuda:0"`` (or the ``physics_device``
argument of ``make_env``) runs the very same class at GPU scale, with CUDA graphs enabled there.
"""

from __future__ import annotations

import math

import isaaclab.sim as sim_utils
from isaaclab.actuators import ImplicitActuatorCfg
from isaaclab.assets import ArticulationCfg, AssetBaseCfg, RigidObjectCfg
from isaaclab.envs import DirectRLEnvCfg
from isaaclab.scene import InteractiveSceneCfg
from isaaclab.sensors import CameraCfg
from isaaclab.sim import SimulationCfg
from isaaclab.utils import configclass
from isaaclab_newton.physics import MJWarpSolverCfg, NewtonCfg
from isaaclab_newton.renderers import NewtonWarpRendererCfg

from .robot import (ALL_JOINT_NAMES, ARM_TARGET_SPEED, FINGER_TARGET_SPEED, SPEC, SocketSpec, write_robot_usd,
                    write_socket_usd)

#: Home pose of each arm: grasp point 0.25 m in front of its base, 0.15 m above the table, pointing down.
HOME_ARM_POSE = {"waist": 0.0, "shoulder": -0.29, "elbow": 0.67, "forearm_roll": 0.0, "wrist_angle": 1.19,
                 "wrist_rotate": 0.0}

OBJECT_FRICTION = 1.5  # MuJoCo takes the larger friction of two touching geoms, so this sets the grasp friction
TABLE_SIZE = (1.2, 0.8, 0.04)  # its top is the env frame's z = 0 [m]
PEG_SIZE = (0.10, 0.02, 0.02)  # [m]
BLOCK_SIZE = (0.12, 0.03, 0.03)  # the hand-over "cube": long enough for two grippers side by side [m]
SOCKET = SocketSpec()


def _robot_cfg(visual: bool = False) -> ArticulationCfg:
    home = {f"{side}_{joint}": value for side in ("left", "right") for joint, value in HOME_ARM_POSE.items()}
    home.update({name: SPEC.finger_upper for name in ALL_JOINT_NAMES if "finger" in name})
    return ArticulationCfg(
        prim_path="{ENV_REGEX_NS}/Robot",
        spawn=sim_utils.UsdFileCfg(usd_path=str(write_robot_usd(visual=visual))),
        init_state=ArticulationCfg.InitialStateCfg(pos=(0.0, 0.0, 0.0), joint_pos=home),
        actuators={
            # stiff position servos, stable at 100 Hz with small gravity sag (< 1 cm). The armature stands for the
            # geared servos' reflected rotor inertia, and it matters beyond realism: MuJoCo's soft joint limits
            # push back in proportion to a joint's effective mass, so with light joints the arms' contacts shoved
            # fingers 5 cm and wrists 0.5 rad past their limits under violent actions (now ~1 cm / < 0.05 rad; a
            # heavier finger flicks the light peg away as it closes)
            "arms": ImplicitActuatorCfg(joint_names_expr=[f".*_{joint}" for joint in HOME_ARM_POSE],
                                        stiffness=600.0, damping=60.0, armature=0.3, effort_limit_sim=60.0),
            # soft enough that a closed gripper squeezes with ~4 N (not 10 N) -> small contact penetration
            "fingers": ImplicitActuatorCfg(joint_names_expr=[".*_finger_.*"], stiffness=400.0, damping=40.0,
                                           armature=1.0, effort_limit_sim=10.0),
        },
    )


def _box_object(size: tuple[float, float, float], mass: float, color: tuple[float, float, float]) -> RigidObjectCfg:
    return RigidObjectCfg(
        prim_path="{ENV_REGEX_NS}/" + ("Block" if size == BLOCK_SIZE else "Peg"),
        spawn=sim_utils.CuboidCfg(
            size=size,
            rigid_props=sim_utils.UsdPhysicsRigidBodyCfg(),
            mass_props=sim_utils.MassCfg(mass=mass),
            collision_props=sim_utils.UsdPhysicsCollisionCfg(),
            physics_material=sim_utils.RigidBodyMaterialCfg(static_friction=OBJECT_FRICTION,
                                                            dynamic_friction=OBJECT_FRICTION),
            visual_material=sim_utils.PreviewSurfaceCfg(diffuse_color=color),
        ),
        init_state=RigidObjectCfg.InitialStateCfg(pos=(0.0, 0.0, size[2] / 2)),
    )


def _table_cfg() -> AssetBaseCfg:
    return AssetBaseCfg(
        prim_path="{ENV_REGEX_NS}/Table",
        spawn=sim_utils.CuboidCfg(size=TABLE_SIZE, collision_props=sim_utils.UsdPhysicsCollisionCfg(),
                                  visual_material=sim_utils.PreviewSurfaceCfg(diffuse_color=(0.6, 0.5, 0.4))),
        init_state=AssetBaseCfg.InitialStateCfg(pos=(0.0, 0.0, -TABLE_SIZE[2] / 2)),
    )


@configclass
class HandoverSceneCfg(InteractiveSceneCfg):
    """Two arms, a table (its top is the env frame's z = 0) and the block to hand over. No ground plane."""

    robot: ArticulationCfg = _robot_cfg()
    table: AssetBaseCfg = _table_cfg()
    block: RigidObjectCfg = _box_object(BLOCK_SIZE, 0.03, (0.8, 0.1, 0.1))


@configclass
class InsertionSceneCfg(InteractiveSceneCfg):
    """Two arms, the table, a peg and a socket (a square tube along x)."""

    robot: ArticulationCfg = _robot_cfg()
    table: AssetBaseCfg = _table_cfg()
    peg: RigidObjectCfg = _box_object(PEG_SIZE, 0.04, (0.1, 0.6, 0.1))
    socket = RigidObjectCfg(
        prim_path="{ENV_REGEX_NS}/Socket",
        spawn=sim_utils.UsdFileCfg(usd_path=str(write_socket_usd(SOCKET))),
        init_state=RigidObjectCfg.InitialStateCfg(pos=(0.0, 0.0, SOCKET.outer / 2)),
    )


#: The cameras an image task can have, ALOHA's set: an overhead view of the table and one camera on each wrist.
CAMERA_NAMES = ("top", "left_wrist", "right_wrist")
TOP_CAMERA_POS = (0.0, 0.0, 0.75)  # in the env frame [m]


def _camera_cfg(name: str) -> CameraCfg:
    """One camera of the image tasks, rendered by Newton's Warp ray tracer (Isaac Lab's default, RTX, needs Kit).
    The overhead camera hangs 0.75 m above the table centre looking straight down (image up = the env's +y); a
    wrist camera rides on its arm's wrist_rotate link, 8 cm above it, looking along the fingers, tilted 35 deg
    towards them (the palm and the finger pads fill the bottom of its image, as on ALOHA's wrist cameras). Width and height are set from ``CamerasCfg`` when the env is made."""
    if name == "top":
        prim_path, follows = "{ENV_REGEX_NS}/TopCamera", False
        offset = CameraCfg.OffsetCfg(pos=TOP_CAMERA_POS, rot=(0.0, 0.0, 0.0, 1.0), convention="opengl")
        focal_length = 16.0  # ~66 deg field of view: 0.98 m of the table, both grippers' reach
    else:
        tilt = math.radians(35.0)  # a rotation about the link's y axis turns the view (+x) towards -z
        prim_path, follows = "{ENV_REGEX_NS}/Robot/" + name.replace("wrist", "wrist_rotate_link") + "/camera", True
        offset = CameraCfg.OffsetCfg(pos=(0.0, 0.0, 0.08), rot=(0.0, math.sin(tilt / 2), 0.0, math.cos(tilt / 2)),
                                     convention="world")
        focal_length = 12.0  # ~82 deg: the fingers and what lies between them
    return CameraCfg(
        prim_path=prim_path, offset=offset, update_latest_camera_pose=follows, data_types=["rgb"], width=64,
        height=64, spawn=sim_utils.PinholeCameraCfg(focal_length=focal_length, clipping_range=(0.01, 5.0)),
        renderer_cfg=NewtonWarpRendererCfg(), background_color=(0.35, 0.4, 0.45),
    )


@configclass
class CameraRandomizationCfg:
    """Domain randomization of what the cameras see, drawn per env at each reset (all off by default): what a policy
    trained in simulation needs to meet real cameras. Colour and lighting are jittered on the rendered frames."""

    color_gain: float = 0.0  # each camera's R, G and B scaled by U(1 - g, 1 + g): white balance and light colour
    brightness: float = 0.0  # and shifted by U(-b, b) x 255, the same for R, G and B: exposure and light level
    top_position_noise: float = 0.0  # the overhead camera moved by U(-n, n) along each axis [m]


@configclass
class CamerasCfg:
    """The cameras of an image task: which (in the order the policy sees them), at what resolution, randomized how."""

    names: tuple[str, ...] = CAMERA_NAMES  # a subset of CAMERA_NAMES, in observation order
    width: int = 64  # [px]
    height: int = 64  # [px]
    randomization: CameraRandomizationCfg = CameraRandomizationCfg()


@configclass
class SpawnCfg:
    """Reset randomization: objects spawn uniformly in these regions of the table (env frame) [m, rad]."""

    # hand-over: the block lies across the middle, reachable by both arms, along x (the arm-to-arm axis)
    block_x: tuple[float, float] = (-0.04, 0.04)
    block_y: tuple[float, float] = (-0.08, 0.08)
    block_yaw: tuple[float, float] = (-0.3, 0.3)
    # insertion: peg on the +y side, socket on the -y side, both along x
    peg_x: tuple[float, float] = (-0.04, 0.04)
    peg_y: tuple[float, float] = (0.08, 0.14)
    socket_x: tuple[float, float] = (-0.04, 0.04)
    socket_y: tuple[float, float] = (-0.14, -0.08)
    object_yaw: tuple[float, float] = (-0.25, 0.25)
    joint_noise: float = 0.02  # uniform noise on the home arm joints [rad]


@configclass
class HandoverVisionSceneCfg(HandoverSceneCfg):
    """The hand-over scene with visual geometry on every link and the three cameras (unused ones are removed)."""

    robot: ArticulationCfg = _robot_cfg(visual=True)
    top_camera: CameraCfg = _camera_cfg("top")
    left_wrist_camera: CameraCfg = _camera_cfg("left_wrist")
    right_wrist_camera: CameraCfg = _camera_cfg("right_wrist")


@configclass
class InsertionVisionSceneCfg(InsertionSceneCfg):
    """The insertion scene with visual geometry on every link and the three cameras."""

    robot: ArticulationCfg = _robot_cfg(visual=True)
    top_camera: CameraCfg = _camera_cfg("top")
    left_wrist_camera: CameraCfg = _camera_cfg("left_wrist")
    right_wrist_camera: CameraCfg = _camera_cfg("right_wrist")


@configclass
class RewardCfg:
    """Staged shaped reward (see kernels.py); each stage is in [0, 1] and weighted here."""

    reach: float = 1.0  # grippers approach their graspable targets
    grasp: float = 1.0  # an object is held between closed fingers
    lift: float = 1.0  # held objects are above the table
    transfer: float = 2.0  # hand-over: both arms have held the block / insertion: peg aligned with socket
    # bonus on the success step, which ends the episode: worth the top stages' 5 per step held forever
    # (5 / (1 - 0.99)), so finishing always beats holding the hand-over (or the aligned peg) until the time
    # limit. With 5 the experts' successes earned 376 and their failures 320, and a critic-steered planner
    # farmed 421 with no success (docs/diagnose.md, "The reward").
    success: float = 500.0
    lift_height: float = 0.06  # object bottom above the table that counts as lifted [m]
    reach_scale: float = 10.0  # 1 - tanh(scale * distance)


@configclass
class BimanualChunkEnvCfg(DirectRLEnvCfg):
    """Bimanual-Chunk: hand the block from one arm to the other (either direction counts).

    Success: the block is lifted, held by exactly one gripper, and both grippers have held it this episode.
    """

    task: str = "handover"  # "handover" | "insertion"; selects the objects, the reward kernel and the experts
    chunk_horizon: int = 50  # H: actions per policy chunk (used by data/training; the env steps single actions)
    decimation = 2  # physics steps per action: 100 Hz physics / 2 = 50 Hz control
    episode_length_s = 8.0  # 400 control steps
    action_space = 14
    observation_space = 16 + 16 + 7 + 6  # joint pos, joint vel, block pose (pos + xyzw quat), 2 grasp points
    state_space = 0
    seed: int | None = 0
    # servo profile velocity: the drives' position targets move towards the commanded ones at most this fast, as
    # the real arms' servos do (robot.py); inf = jump at once
    arm_target_speed: float = ARM_TARGET_SPEED  # [rad/s]
    finger_target_speed: float = FINGER_TARGET_SPEED  # [m/s]
    # an object this far below the table top, or this far beyond its edges, has been knocked off the table [m]
    drop_margin: float = 0.05
    max_object_distance: float = 1.5  # an object this far from its env origin has blown up (physics failure) [m]
    max_joint_speed: float = 100.0  # a joint faster than this has blown up (physics failure) [rad/s or m/s]
    spawn: SpawnCfg = SpawnCfg()
    reward: RewardCfg = RewardCfg()
    # image tasks: the cameras; the policy then sees joint positions and velocities ("policy") and the cameras'
    # RGB images ("images", uint8 [N, cameras, H, W, 3]), no object pose. None: the state task's observation
    cameras: CamerasCfg | None = None
    sim: SimulationCfg = SimulationCfg(
        dt=1 / 100,
        device="cpu",
        physics=NewtonCfg(
            # per-world constraint/contact capacity with headroom (overflowing drops contacts: grasps slip);
            # elliptic friction cones with impratio 10: friction stiff relative to normal forces, so held objects
            # do not creep out (pyramidal cones let the socket slide ~2 cm down the pads while carried: 0/8
            # insertions; elliptic: 11/16); ls_iterations 50 (MuJoCo's default): 20 ran out on contact-rich
            # steps and MuJoCo-Warp printed "linesearch iterations limit reached" thousands of times per collect
            solver_cfg=MJWarpSolverCfg(njmax=200, nconmax=48, iterations=50, ls_iterations=50,
                                       integrator="implicitfast", cone="elliptic", impratio=10.0),
            num_substeps=1,
            use_cuda_graph=False,  # CPU default; make_env turns it on for CUDA devices
        ),
    )
    scene: HandoverSceneCfg = HandoverSceneCfg(num_envs=16, env_spacing=2.0, replicate_physics=True)


@configclass
class BimanualInsertionEnvCfg(BimanualChunkEnvCfg):
    """Bimanual-Chunk-Insertion: one arm holds the socket, the other pushes the peg into it, both in the air.

    Success: the peg is inside the socket's hole (aligned, >= ``insert_depth`` overlap) and both are lifted.
    """

    task: str = "insertion"
    observation_space = 16 + 16 + 7 + 7 + 6  # ... peg pose, socket pose, grasp points
    insert_depth: float = 0.02  # peg/socket overlap along the socket axis that counts as inserted [m]
    align_cos: float = math.cos(math.radians(15.0))  # peg axis within 15 deg of the socket axis
    scene: InsertionSceneCfg = InsertionSceneCfg(num_envs=16, env_spacing=2.0, replicate_physics=True)


PROPRIO_DIM = 16 + 16  # joint positions and velocities: what an image task's "policy" observation holds


@configclass
class BimanualChunkVisionEnvCfg(BimanualChunkEnvCfg):
    """Bimanual-Chunk-Vision: the hand-over seen through cameras. The policy observes joint positions and
    velocities plus the cameras' images; the object pose is the experts', the reward's and the success check's."""

    observation_space = PROPRIO_DIM
    cameras: CamerasCfg = CamerasCfg()
    scene: HandoverVisionSceneCfg = HandoverVisionSceneCfg(num_envs=16, env_spacing=2.0, replicate_physics=True)

    def __post_init__(self):
        self.sim.render_interval = self.decimation  # cameras render when read, once per control step


@configclass
class BimanualInsertionVisionEnvCfg(BimanualInsertionEnvCfg):
    """Bimanual-Chunk-Insertion-Vision: the insertion seen through cameras (observation as the hand-over's)."""

    observation_space = PROPRIO_DIM
    cameras: CamerasCfg = CamerasCfg()
    scene: InsertionVisionSceneCfg = InsertionVisionSceneCfg(num_envs=16, env_spacing=2.0, replicate_physics=True)

    def __post_init__(self):
        self.sim.render_interval = self.decimation  # cameras render when read, once per control step
