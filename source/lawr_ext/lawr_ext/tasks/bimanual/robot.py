"""The bimanual robot: one source of truth for its kinematics, its USD, and its batched torch FK / IK.

Two 6-DoF ViperX-300-class arms (ALOHA layout) face each other across a table. Each arm has the joints
waist (z), shoulder (y), elbow (y), forearm_roll (x), wrist_angle (y), wrist_rotate (x) and a parallel
gripper of two prismatic fingers. Link offsets and joint limits are APPROXIMATE values taken from the
public ViperX 300 6DOF specifications and the Interbotix ``vx300s`` description
(https://github.com/Interbotix/interbotix_ros_manipulators, BSD-3-Clause; reach ~0.75 m). Masses, the
collision shapes (capsules/boxes) and the finger pads are our own simplification, chosen for a fast
and stable CPU simulation, not for photorealism.

Frames: each arm's base frame has x pointing at the other arm and z up. The left arm sits at
x = -ARM_BASE_X, the right arm at +ARM_BASE_X (yawed by pi); the table top is the plane z = 0 of the env
frame. A finger joint position is the distance of that finger's inner pad face from the grasp point, so
both fingers share the same limits and ``finger = 0`` would be pads touching.

``write_robot_usd()`` writes the articulation into the ignored ``build/`` folder, cached by a hash of
all parameters below; ``forward_kinematics`` and ``solve_ik`` use the very same numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from lawr_ext import REPO_ROOT
from lawr_ext.utils.io import atomic_write_text

ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
SIDES = ("left", "right")


@dataclass(frozen=True)
class ArmLink:
    """One revolute joint and the link it moves (the link frame sits at the joint, parallel to its parent)."""

    joint: str
    offset: tuple[float, float, float]  # joint position in the parent link frame [m]
    axis: str  # "X" | "Y" | "Z", joint axis in the link frame
    lower: float  # joint limit [rad]
    upper: float  # joint limit [rad]
    mass: float  # link mass [kg]
    capsule: tuple[float, float] | None  # (radius, length) of a collision capsule along the link's +x, or None


@dataclass(frozen=True)
class RobotSpec:
    """All kinematic and physical parameters of the bimanual robot."""

    arm_base_x: float = 0.45  # |x| of each arm base in the env frame [m] (bases 0.9 m apart)
    arm_base_z: float = 0.0  # arm base height above the table top [m]
    links: tuple[ArmLink, ...] = (
        ArmLink("waist", (0.0, 0.0, 0.079), "Z", -math.pi, math.pi, 0.8, None),
        ArmLink("shoulder", (0.0, 0.0, 0.04805), "Y", -1.85, 1.26, 0.8, None),
        ArmLink("elbow", (0.05955, 0.0, 0.3), "Y", -1.76, 1.61, 0.6, (0.025, 0.2)),
        ArmLink("forearm_roll", (0.2, 0.0, 0.0), "X", -math.pi, math.pi, 0.4, (0.02, 0.06)),
        ArmLink("wrist_angle", (0.1, 0.0, 0.0), "Y", -1.87, 2.23, 0.2, None),
        ArmLink("wrist_rotate", (0.069744, 0.0, 0.0), "X", -math.pi, math.pi, 0.3, None),
    )
    grasp_offset: float = 0.1  # grasp point (between the finger pads) ahead of the wrist_rotate joint [m]
    palm_size: tuple[float, float, float] = (0.04, 0.09, 0.03)  # gripper palm box (x, y, z) [m]
    finger_lower: float = 0.004  # finger pad half-gap limits [m]: 8 mm closed ..
    finger_upper: float = 0.04  # .. 80 mm open
    finger_mass: float = 0.04  # [kg]
    pad_size: tuple[float, float, float] = (0.05, 0.01, 0.022)  # finger pad box (x along the tool, thickness, z) [m]
    pad_solimp: tuple[float, ...] = (0.95, 0.99, 0.001, 0.5, 2.0)  # MuJoCo solimp of the pad contacts
    limit_solref: tuple[float, float] = (0.02, 1.0)  # MuJoCo solreflimit (time constant, damping ratio) of all joints
    limit_solimp: tuple[float, ...] = (0.95, 0.99, 0.001, 0.5, 2.0)  # MuJoCo solimplimit: hard joint limits


SPEC = RobotSpec()
# Servo profile velocity: how fast the drives' position targets may move towards the commanded ones, as the real
# arms' servos do (ViperX/ALOHA Dynamixels: ~3-5 rad/s unloaded). The env's defaults (env_cfg.py) and the limits
# an exported policy's deployment enforces (action_spec.py) are these.
ARM_TARGET_SPEED = 4.0  # [rad/s]
FINGER_TARGET_SPEED = 0.25  # [m/s]


def joint_names(side: str) -> list[str]:
    """Joint names of one arm in action order: 6 arm joints then the two fingers."""
    return [f"{side}_{j}" for j in ARM_JOINTS] + [f"{side}_finger_a", f"{side}_finger_b"]


ALL_JOINT_NAMES = joint_names("left") + joint_names("right")


def arm_limits(spec: RobotSpec = SPEC) -> torch.Tensor:
    """[6, 2] lower/upper limits of the arm joints (same for both arms)."""
    return torch.tensor([[link.lower, link.upper] for link in spec.links])


# --------------------------------------------------------------------------------------------- USD


def spec_hash(spec=SPEC) -> str:
    """Short hash of a spec dataclass: the cache key of the USD written from it."""
    return hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode()).hexdigest()[:12]


def _new_stage(root_path: str):
    """An in-memory Z-up, metre stage whose default prim is an Xform at ``root_path``."""
    from pxr import Usd, UsdGeom

    stage = Usd.Stage.CreateInMemory()
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    root = UsdGeom.Xform.Define(stage, root_path)
    stage.SetDefaultPrim(root.GetPrim())
    return stage, root


def _cached_usd(name: str, spec, out_dir: Path | None, build_stage: Callable[[], object]) -> Path:
    """``<out_dir or build/assets>/<name>_<hash of spec>.usda``, written from ``build_stage()`` unless it exists."""
    path = (out_dir or REPO_ROOT / "build" / "assets") / f"{name}_{spec_hash(spec)}.usda"
    if not path.exists():
        stage = build_stage()  # held while exporting: its root layer lives only as long as the stage
        # atomic: parallel processes (torchrun ranks, test workers) may write the same cached asset at once
        atomic_write_text(stage.GetRootLayer().ExportToString(), path)
    return path


def _box_inertia(mass: float, size: tuple[float, float, float]) -> tuple[float, float, float]:
    x, y, z = size
    return (mass * (y * y + z * z) / 12, mass * (x * x + z * z) / 12, mass * (x * x + y * y) / 12)


def write_robot_usd(spec: RobotSpec = SPEC, out_dir: Path | None = None, visual: bool = False) -> Path:
    """Write the two-arm articulation as USD (once per parameter hash) and return its path.

    ``visual``: also give every link visual-only geometry (no collider, no mass: the physics is the same), so
    that a camera sees whole arms; without it only the collision shapes exist, and several links have none.
    The image tasks use this file, the state tasks the one without (a separate cached file)."""
    if visual:
        return _cached_usd("bimanual_vx300_visual", spec, out_dir, lambda: _add_visuals(_robot_stage(spec), spec))
    return _cached_usd("bimanual_vx300", spec, out_dir, lambda: _robot_stage(spec))


#: Colours of the visual geometry (linear RGB): dark arms like the ViperX's, lighter grippers.
ARM_COLOR = (0.08, 0.08, 0.09)
JOINT_COLOR = (0.25, 0.25, 0.28)
GRIPPER_COLOR = (0.55, 0.55, 0.6)


def _add_visuals(stage, spec: RobotSpec):
    """Visual-only shapes on every link of both arms (USD geometry without ``CollisionAPI``): the pedestal on
    the waist, the upper arm on the shoulder (which has no collider), forearm, wrist, palm and finger pads. A
    body with visual shapes shows those, not its colliders, so every collider is mirrored here."""
    from pxr import Gf, UsdGeom

    def shape(parent: str, name: str, kind, center, size=None, axis=None, radius=None, height=None,
              tilt_y: float = 0.0, color=ARM_COLOR) -> None:
        prim = kind.Define(stage, f"{parent}/visual_{name}")
        prim.AddTranslateOp().Set(Gf.Vec3d(*center))
        if tilt_y:
            prim.AddRotateYOp().Set(math.degrees(tilt_y))
        if size is not None:
            prim.CreateSizeAttr(1.0)
            prim.AddScaleOp().Set(Gf.Vec3f(*size))
        else:
            prim.CreateAxisAttr(axis)
            prim.CreateRadiusAttr(radius)
            prim.CreateHeightAttr(height)
        prim.CreateDisplayColorAttr([Gf.Vec3f(*color)])

    links = {link.joint: link for link in spec.links}
    for side in SIDES:
        root = f"/Robot/{side}"
        waist_z = links["waist"].offset[2]
        shape(f"{root}_waist_link", "pedestal", UsdGeom.Cylinder, (0.0, 0.0, -waist_z / 2), axis="Z", radius=0.05,
              height=waist_z, color=JOINT_COLOR)
        shape(f"{root}_waist_link", "turret", UsdGeom.Cube, (0.0, 0.0, 0.025), size=(0.07, 0.08, 0.05))
        # the upper arm, from the shoulder joint to the elbow joint
        ex, _, ez = links["elbow"].offset
        shape(f"{root}_shoulder_link", "upper_arm", UsdGeom.Capsule, (ex / 2, 0.0, ez / 2), axis="Z", radius=0.025,
              height=math.hypot(ex, ez), tilt_y=math.atan2(ex, ez))
        shape(f"{root}_shoulder_link", "shoulder", UsdGeom.Cylinder, (0.0, 0.0, 0.0), axis="Y", radius=0.035,
              height=0.07, color=JOINT_COLOR)
        shape(f"{root}_elbow_link", "elbow", UsdGeom.Cylinder, (0.0, 0.0, 0.0), axis="Y", radius=0.03, height=0.06,
              color=JOINT_COLOR)
        forearm = links["forearm_roll"].offset[0]
        shape(f"{root}_elbow_link", "forearm", UsdGeom.Capsule, (forearm / 2, 0.0, 0.0), axis="X", radius=0.025,
              height=forearm)
        wrist = links["wrist_angle"].offset[0]
        shape(f"{root}_forearm_roll_link", "forearm_tip", UsdGeom.Capsule, (wrist / 2, 0.0, 0.0), axis="X",
              radius=0.02, height=wrist)
        shape(f"{root}_wrist_angle_link", "wrist", UsdGeom.Cube, (links["wrist_rotate"].offset[0] / 2, 0.0, 0.0),
              size=(links["wrist_rotate"].offset[0], 0.05, 0.04), color=JOINT_COLOR)
        shape(f"{root}_wrist_rotate_link", "palm",  UsdGeom.Cube,
              (spec.grasp_offset - spec.pad_size[0] - spec.palm_size[0] / 2, 0.0, 0.0), size=spec.palm_size,
              color=GRIPPER_COLOR)
        for finger in ("a", "b"):
            shape(f"{root}_finger_{finger}", "pad", UsdGeom.Cube,
                  (-spec.pad_size[0] / 2 + 0.01, spec.pad_size[1] / 2, 0.0), size=spec.pad_size, color=GRIPPER_COLOR)
    return stage


def _robot_stage(spec: RobotSpec):
    from pxr import Gf, Sdf, Usd, UsdGeom, UsdPhysics

    stage, root = _new_stage("/Robot")
    UsdPhysics.ArticulationRootAPI.Apply(root.GetPrim())

    def body(name: str, pos: Gf.Vec3d, rot: Gf.Quatd, mass: float, inertia_size) -> Usd.Prim:
        xf = UsdGeom.Xform.Define(stage, f"/Robot/{name}")
        xf.AddTranslateOp().Set(pos)
        xf.AddOrientOp(UsdGeom.XformOp.PrecisionDouble).Set(rot)
        UsdPhysics.RigidBodyAPI.Apply(xf.GetPrim())
        mass_api = UsdPhysics.MassAPI.Apply(xf.GetPrim())
        mass_api.CreateMassAttr(mass)
        mass_api.CreateDiagonalInertiaAttr(Gf.Vec3f(*_box_inertia(mass, inertia_size)))
        mass_api.CreateCenterOfMassAttr(Gf.Vec3f(0.0))
        return xf.GetPrim()

    def box(parent: Usd.Prim, name: str, center, size) -> None:
        cube = UsdGeom.Cube.Define(stage, parent.GetPath().AppendChild(name))
        cube.CreateSizeAttr(1.0)
        cube.AddTranslateOp().Set(Gf.Vec3d(*center))
        cube.AddScaleOp().Set(Gf.Vec3f(*size))
        UsdPhysics.CollisionAPI.Apply(cube.GetPrim())

    def capsule(parent: Usd.Prim, name: str, radius: float, length: float) -> None:
        cap = UsdGeom.Capsule.Define(stage, parent.GetPath().AppendChild(name))
        cap.CreateAxisAttr("X")
        cap.CreateRadiusAttr(radius)
        cap.CreateHeightAttr(length)
        cap.AddTranslateOp().Set(Gf.Vec3d(length / 2, 0.0, 0.0))
        UsdPhysics.CollisionAPI.Apply(cap.GetPrim())

    def joint(kind, name: str, parent: Usd.Prim | None, child: Usd.Prim, pos0, rot0=Gf.Quatf(1.0)):
        j = kind.Define(stage, f"/Robot/joints/{name}")
        if parent is not None:
            j.CreateBody0Rel().SetTargets([parent.GetPath()])
        j.CreateBody1Rel().SetTargets([child.GetPath()])
        j.CreateLocalPos0Attr(Gf.Vec3f(*pos0))
        j.CreateLocalRot0Attr(rot0)
        j.CreateLocalPos1Attr(Gf.Vec3f(0.0))
        j.CreateLocalRot1Attr(Gf.Quatf(1.0))
        return j

    def stiff_limits(j) -> None:
        # Newton's default limit gains (ke 1e4, kd 10) become a ~0.2 s, underdamped MuJoCo limit: fingers and
        # joints then leave their range under load. MuJoCo's own default impedance keeps them inside.
        prim = j.GetPrim()
        prim.AddAppliedSchema("MjcJointAPI")
        prim.CreateAttribute("mjc:solreflimit", Sdf.ValueTypeNames.DoubleArray).Set(list(spec.limit_solref))
        prim.CreateAttribute("mjc:solimplimit", Sdf.ValueTypeNames.DoubleArray).Set(list(spec.limit_solimp))

    def drive(j, kind: str) -> None:
        # gains are placeholders: Isaac Lab's actuator config sets the real stiffness/damping
        d = UsdPhysics.DriveAPI.Apply(j.GetPrim(), kind)
        d.CreateTypeAttr("force")
        d.CreateStiffnessAttr(1.0)
        d.CreateDampingAttr(0.1)

    base = body("base", Gf.Vec3d(0.0), Gf.Quatd(1.0), 2.0, (0.1, 0.1, 0.1))
    joint(UsdPhysics.FixedJoint, "world_fixed", None, base, (0.0, 0.0, 0.0))
    for side, sign in (("left", -1.0), ("right", 1.0)):
        yaw = Gf.Rotation(Gf.Vec3d(0, 0, 1), 0.0 if side == "left" else 180.0)
        rot = Gf.Quatd(yaw.GetQuat())
        pos = Gf.Vec3d(sign * spec.arm_base_x, 0.0, spec.arm_base_z)
        parent, arm_pos = base, pos
        for i, link in enumerate(spec.links):
            arm_pos = arm_pos + yaw.TransformDir(Gf.Vec3d(*link.offset))
            size = (link.capsule[1], 0.05, 0.05) if link.capsule else (0.05, 0.05, 0.05)
            child = body(f"{side}_{link.joint}_link", arm_pos, rot, link.mass, size)
            if link.capsule:
                capsule(child, "collision", *link.capsule)
            # joint frame = child frame; in the parent frame it sits at the link offset (the waist's parent
            # is the shared base, so its joint frame also carries the arm's position and yaw)
            pos0 = arm_pos if i == 0 else Gf.Vec3d(*link.offset)
            rot0 = Gf.Quatf(rot) if i == 0 else Gf.Quatf(1.0)
            j = joint(UsdPhysics.RevoluteJoint, f"{side}_{link.joint}", parent, child, pos0, rot0)
            j.CreateAxisAttr(link.axis)
            j.CreateLowerLimitAttr(math.degrees(link.lower))
            j.CreateUpperLimitAttr(math.degrees(link.upper))
            drive(j, "angular")
            stiff_limits(j)
            parent = child
        box(parent, "palm", (spec.grasp_offset - spec.pad_size[0] - spec.palm_size[0] / 2, 0.0, 0.0), spec.palm_size)
        grasp_pos = arm_pos + yaw.TransformDir(Gf.Vec3d(spec.grasp_offset, 0.0, 0.0))
        for finger, flip in (("a", False), ("b", True)):
            # finger b is the mirror image: its frame is the gripper frame turned by pi about x
            flip_rot = Gf.Quatd(0.0, 1.0, 0.0, 0.0) if flip else Gf.Quatd(1.0)
            child = body(f"{side}_finger_{finger}", grasp_pos, rot * flip_rot, spec.finger_mass, spec.pad_size)
            box(child, "pad", (-spec.pad_size[0] / 2 + 0.01, spec.pad_size[1] / 2, 0.0), spec.pad_size)
            # stiffer contact impedance than MuJoCo's default on the pads: millimetre, not centimetre, squeeze
            pad = stage.GetPrimAtPath(child.GetPath().AppendChild("pad"))
            pad.CreateAttribute("mjc:solimp", Sdf.ValueTypeNames.DoubleArray).Set(list(spec.pad_solimp))
            # condim 4 adds torsional friction: a block held near one end must not pivot about the finger axis
            pad.CreateAttribute("mjc:condim", Sdf.ValueTypeNames.Int).Set(4)
            j = joint(UsdPhysics.PrismaticJoint, f"{side}_finger_{finger}", parent, child,
                      (spec.grasp_offset, 0.0, 0.0), Gf.Quatf(flip_rot))
            j.CreateAxisAttr("Y")
            j.CreateLowerLimitAttr(spec.finger_lower)
            j.CreateUpperLimitAttr(spec.finger_upper)
            drive(j, "linear")
            stiff_limits(j)
    return stage


@dataclass(frozen=True)
class SocketSpec:
    """A square tube (the insertion socket) along x: four walls around a square hole."""

    length: float = 0.06  # [m]
    outer: float = 0.044  # outer width/height [m]
    hole: float = 0.028  # hole width/height [m]; the peg is 0.02 wide: 4 mm clearance per side
    mass: float = 0.08  # [kg]


def write_socket_usd(spec: SocketSpec = SocketSpec(), out_dir: Path | None = None) -> Path:
    """Write the socket (one rigid body of four box walls) as USD, cached by a hash of its parameters."""
    return _cached_usd("socket", spec, out_dir, lambda: _socket_stage(spec))


def _socket_stage(spec: SocketSpec):
    from pxr import Gf, UsdGeom, UsdPhysics

    stage, root = _new_stage("/Socket")
    UsdPhysics.RigidBodyAPI.Apply(root.GetPrim())
    mass_api = UsdPhysics.MassAPI.Apply(root.GetPrim())
    mass_api.CreateMassAttr(spec.mass)
    mass_api.CreateDiagonalInertiaAttr(Gf.Vec3f(*_box_inertia(spec.mass, (spec.length, spec.outer, spec.outer))))
    mass_api.CreateCenterOfMassAttr(Gf.Vec3f(0.0))
    wall = (spec.outer - spec.hole) / 2
    mid = (spec.hole + wall) / 2
    walls = {
        "top": ((0, 0, mid), (spec.length, spec.outer, wall)),
        "bottom": ((0, 0, -mid), (spec.length, spec.outer, wall)),
        "side_pos": ((0, mid, 0), (spec.length, wall, spec.hole)),
        "side_neg": ((0, -mid, 0), (spec.length, wall, spec.hole)),
    }
    for name, (center, size) in walls.items():
        cube = UsdGeom.Cube.Define(stage, f"/Socket/{name}")
        cube.CreateSizeAttr(1.0)
        cube.AddTranslateOp().Set(Gf.Vec3d(*center))
        cube.AddScaleOp().Set(Gf.Vec3f(*size))
        UsdPhysics.CollisionAPI.Apply(cube.GetPrim())
    return stage


# ------------------------------------------------------------------------------------- torch FK / IK


def _axis_rotation(axis: str, angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] about a principal axis."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rows = {
        "X": ((one, zero, zero), (zero, c, -s), (zero, s, c)),
        "Y": ((c, zero, s), (zero, one, zero), (-s, zero, c)),
        "Z": ((c, -s, zero), (s, c, zero), (zero, zero, one)),
    }[axis]
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


class BimanualKinematics:
    """Batched forward kinematics, geometric Jacobian and damped-least-squares IK of both arms.

    Arm joint positions are [N, 2, 6] (side 0 = left, 1 = right); poses are in the env frame (table top z = 0).
    """

    def __init__(self, spec: RobotSpec = SPEC, device: str | torch.device = "cpu"):
        self.spec = spec
        self.device = torch.device(device)
        yaws = torch.tensor([0.0, math.pi], device=self.device)
        self.base_pos = torch.tensor([[-spec.arm_base_x, 0.0, spec.arm_base_z],
                                      [spec.arm_base_x, 0.0, spec.arm_base_z]], device=self.device)
        self.base_rot = _axis_rotation("Z", yaws)  # [2, 3, 3]
        self.offsets = torch.tensor([link.offset for link in spec.links], device=self.device)  # [6, 3]
        self.axes = [link.axis for link in spec.links]
        unit = {"X": (1.0, 0.0, 0.0), "Y": (0.0, 1.0, 0.0), "Z": (0.0, 0.0, 1.0)}
        self.axis_vectors = torch.tensor([unit[a] for a in self.axes], device=self.device)  # [6, 3]
        self.grasp_offset = torch.tensor([spec.grasp_offset, 0.0, 0.0], device=self.device)
        self.limits = arm_limits(spec).to(self.device)  # [6, 2]

    def forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Grasp-point position [N,2,3], tool rotation [N,2,3,3] (columns: tool x = approach, y = finger axis)
        and the geometric Jacobian [N,2,6,6] (rows: linear xyz, angular xyz)."""
        n = q.shape[0]
        pos = self.base_pos.expand(n, 2, 3)
        rot = self.base_rot.expand(n, 2, 3, 3)
        joint_pos, joint_axis = [], []
        for i, axis in enumerate(self.axes):
            pos = pos + (rot @ self.offsets[i].unsqueeze(-1)).squeeze(-1)
            joint_pos.append(pos)
            joint_axis.append((rot @ self.axis_vectors[i].unsqueeze(-1)).squeeze(-1))
            rot = rot @ _axis_rotation(axis, q[..., i])
        tool = pos + (rot @ self.grasp_offset.unsqueeze(-1)).squeeze(-1)
        axes = torch.stack(joint_axis, dim=-1)  # [N,2,3,6]
        levers = tool.unsqueeze(-1) - torch.stack(joint_pos, dim=-1)
        jacobian = torch.cat([torch.linalg.cross(axes, levers, dim=-2), axes], dim=-2)
        return tool, rot, jacobian

    def solve_ik(self, q: torch.Tensor, target_pos: torch.Tensor, target_rot: torch.Tensor,
                 iterations: int = 12, damping: float = 0.05, rot_weight: float = 0.3) -> torch.Tensor:
        """Damped-least-squares IK from the seed ``q`` [N,2,6] to grasp-point poses; returns joints within limits."""
        q = q.clone()
        eye = torch.eye(6, device=q.device)
        weight = torch.tensor([1.0, 1.0, 1.0, rot_weight, rot_weight, rot_weight], device=q.device)
        for _ in range(iterations):
            pos, rot, jac = self.forward(q)
            # orientation error: half the sum of column cross products (small-angle axis * angle)
            rot_err = 0.5 * torch.linalg.cross(rot, target_rot, dim=-2).sum(-1)
            err = torch.cat([target_pos - pos, rot_err], dim=-1) * weight
            jac = jac * weight.unsqueeze(-1)
            jjt = jac @ jac.transpose(-1, -2) + damping**2 * eye
            dq = (jac.transpose(-1, -2) @ torch.linalg.solve(jjt, err.unsqueeze(-1))).squeeze(-1)
            q = torch.clamp(q + dq, self.limits[:, 0], self.limits[:, 1])
        return q
