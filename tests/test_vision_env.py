"""The image tasks: cameras rendered kit-less by Newton's Warp ray tracer, joints + images as the policy's
observation, visual geometry on every robot link (one small simulator: 2 envs, 32 x 24 images)."""

import lawr_ext  # noqa: F401  (sets the Warp kernel cache before warp loads)
import pytest
import torch

from lawr_ext.tasks import get_task, load_env_cfg, make_env
from lawr_ext.tasks.bimanual.env import jitter_frames
from lawr_ext.tasks.bimanual.env_cfg import HOME_ARM_POSE, TOP_CAMERA_POS

NUM_ENVS = 2
WIDTH, HEIGHT = 32, 24
CAMERAS = ("left_wrist", "top")  # a subset, in an order of its own


def test_visual_geometry_on_every_link_of_the_image_tasks_robot_only(tmp_path):
    from pxr import Usd, UsdPhysics

    from lawr_ext.tasks.bimanual.robot import write_robot_usd

    visual = Usd.Stage.Open(str(write_robot_usd(out_dir=tmp_path, visual=True)))
    bodies = [prim for prim in visual.Traverse() if prim.HasAPI(UsdPhysics.RigidBodyAPI) and prim.GetName() != "base"]
    assert len(bodies) == 2 * (6 + 2)
    for body in bodies:
        shapes = [child for child in body.GetChildren() if child.GetName().startswith("visual_")]
        assert shapes, f"{body.GetPath()} has no visual geometry"
        assert not any(shape.HasAPI(UsdPhysics.CollisionAPI) or shape.HasAPI(UsdPhysics.MassAPI) for shape in shapes)
    # the state tasks' robot is the file it always was: no visual geometry, so nothing of their physics moves
    plain = Usd.Stage.Open(str(write_robot_usd(out_dir=tmp_path)))
    assert not [prim for prim in plain.Traverse() if prim.GetName().startswith("visual_")]
    assert [p.GetPath() for p in plain.Traverse()] == [p.GetPath() for p in visual.Traverse()
                                                       if "visual_" not in str(p.GetPath())]


def test_image_tasks_observe_joints_only_and_keep_object_state_for_experts_and_reward():
    for task in ("Bimanual-Chunk-Vision", "Bimanual-Chunk-Insertion-Vision"):
        cfg, spec = load_env_cfg(task), get_task(task)
        assert cfg.cameras is not None and tuple(cfg.cameras.names) == ("top", "left_wrist", "right_wrist")
        assert spec.obs_dim == cfg.observation_space == 32 and spec.experts is not None
    assert load_env_cfg("Bimanual-Chunk").cameras is None


@pytest.mark.sim
def test_cameras_render_what_moves_at_the_configured_set_and_resolution_randomized_per_episode():
    randomization = {"color_gain": 0.3, "brightness": 0.1, "top_position_noise": 0.05}
    env = make_env("Bimanual-Chunk-Vision", NUM_ENVS, seed=0,
                   **{"cameras.names": CAMERAS, "cameras.width": WIDTH, "cameras.height": HEIGHT},
                   **{f"cameras.randomization.{name}": value for name, value in randomization.items()})
    try:
        assert env.camera_names == CAMERAS
        obs, _ = env.reset()
        # colour and brightness jitter, drawn per env and camera at the reset, applied to the rendered frames
        assert ((env.frame_gain - 1).abs() <= 0.3).all() and (env.frame_gain != 1).all()
        assert ((env.frame_offset.abs() <= 25.5) & (env.frame_offset != 0)).all()
        assert torch.equal(obs["images"], jitter_frames(env.camera_images(randomized=False), env.frame_gain,
                                                        env.frame_offset))
        # the overhead camera moved within the noise, each env its own way
        moved = env.scene["top_camera"].data.pos_w.torch - env.scene.env_origins - torch.tensor(TOP_CAMERA_POS)
        assert (moved.abs() <= 0.05 + 1e-6).all() and (moved.abs() > 0).any(dim=1).all()
        assert not torch.allclose(moved[0], moved[1])
        assert set(obs) == {"policy", "images"}
        assert obs["policy"].shape == (NUM_ENVS, 32) and obs["policy"].dtype == torch.float32
        images = obs["images"]
        assert images.shape == (NUM_ENVS, 2, HEIGHT, WIDTH, 3) and images.dtype == torch.uint8
        first = images.clone()
        assert first.float().std(dim=(2, 3, 4)).min() > 5.0  # every camera sees a scene, not a blank frame
        home = torch.tensor(list(HOME_ARM_POSE.values())).expand(NUM_ENVS, 2, 6).clone()
        home[:, 0, 0] += 0.6  # swing the left arm's waist: its wrist camera turns, the top camera sees it move
        action = env.action_from_targets(home, torch.ones(NUM_ENVS, 2))
        for _ in range(25):
            obs, *_ = env.step(action)
        moved = (obs["images"].float() - first.float()).abs().mean(dim=(2, 3, 4))
        assert (moved > 2.0).all(), moved  # [env, camera]: both cameras' images change with the arm
        # the expert still reads the privileged object state the policy no longer sees
        assert env.object_pose("block").shape == (NUM_ENVS, 7)
    finally:
        env.close()


def test_unknown_camera_is_refused_in_one_line():
    from lawr_ext.tasks.bimanual.env import _configure_cameras

    cfg = load_env_cfg("Bimanual-Chunk-Vision")
    cfg.cameras.names = ("top", "head")
    with pytest.raises(ValueError, match=r"cameras.names: expected distinct names from .* got \('top', 'head'\)"):
        _configure_cameras(cfg)


def test_frame_jitter_scales_shifts_rounds_and_clips():
    frames = torch.tensor([0, 100, 250], dtype=torch.uint8).view(1, 1, 1, 1, 3)
    gain, offset = torch.tensor([[[1.0, 1.5, 1.1]]]), torch.tensor([[[10.0]]])
    assert jitter_frames(frames, gain, offset).flatten().tolist() == [10, 160, 255]
