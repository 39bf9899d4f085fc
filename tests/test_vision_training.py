"""The vision encoder and the three phases on image data (no simulator): Phase 1 trains encoder + flow and freezes
both, the critic may train its own copy, the planner reads the frozen features, policies take (state, frames)."""

import pytest
import torch
from conftest import ACTION_DIM, HORIZON, TINY, LineEnv, LineExpert, assert_same_state

from lawr_ext.configs.train import load_train_config
from lawr_ext.data.collect import CollectConfig, collect
from lawr_ext.modules.vision import NatureCNN, ObservationEncoder, pack_observation, random_shift
from lawr_ext.runners import final_path, load_policy, load_product, read_checkpoint, train
from lawr_ext.utils.io import parameter_fingerprint

#: the module's trained image run is built once: its tests run on one test worker
pytestmark = pytest.mark.xdist_group("vision_run")
STATE_DIM, CAMERAS, SIZE = 32, 2, 32
VISION = TINY + ["flow.encoder.features=8", "flow.encoder.shift=2", "critic.v_min=-20", "critic.v_max=20"]


class CameraLineEnv(LineEnv):
    """The line env shaped as Bimanual-Chunk-Vision (32 joint values, two 32 x 32 cameras); a bright square on
    camera 0 marks the point's position."""

    camera_names = ("top", "left_wrist")

    def _obs(self):
        obs = super()._obs()
        frames = torch.full((self.num_envs, CAMERAS, SIZE, SIZE, 3), 40, dtype=torch.uint8)
        for env, x in enumerate(self.x.tolist()):
            column = min(max(int(x * 20), 0), SIZE - 4)
            frames[env, 0, 10:14, column:column + 4] = 250
        return obs | {"images": frames}


@pytest.fixture(scope="module")
def image_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("vision") / "data"
    env = CameraLineEnv(4, obs_dim=STATE_DIM)
    meta = {"task": "Bimanual-Chunk-Vision", "obs_dim": STATE_DIM, "action_dim": ACTION_DIM, "control_hz": 50.0,
            "chunk_horizon": HORIZON, "cameras": list(env.camera_names), "image_size": [SIZE, SIZE]}
    return collect(env, LineExpert(env, ACTION_DIM), out, CollectConfig(num_episodes=12, progress=False), meta,
                   num_strategies=2, num_qualities=3)


def observation(batch: int = 5, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (batch, CAMERAS, SIZE, SIZE, 3), generator=generator, dtype=torch.uint8)
    return pack_observation(torch.randn(batch, STATE_DIM, generator=generator), frames)


@pytest.fixture(scope="module")
def image_run(image_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("vision_run") / "run"
    train(load_train_config("Bimanual-Chunk-Vision", VISION), image_dataset, run)
    return run


def test_three_phases_train_on_frames_and_policies_act_on_state_and_frames(image_run):
    obs = observation()
    for method in ("lawr", "flow_bc"):
        policy = load_policy(image_run, method)
        chunk = policy(obs)
        assert chunk.shape == (5, HORIZON, ACTION_DIM) and torch.isfinite(chunk).all()
        encoder = policy.policy.obs_normalizer
        assert isinstance(encoder, ObservationEncoder) and not encoder.training
        assert encoder.output_dim == STATE_DIM + CAMERAS * 8
    lawr = load_policy(image_run, "lawr")
    assert torch.equal(lawr(obs), lawr(obs))  # no augmentation when acting: deterministic
    assert not torch.equal(lawr(obs), lawr(pack_observation(obs[:, :STATE_DIM], observation(seed=1)[:, STATE_DIM:]
                                                           .view(5, CAMERAS, SIZE, SIZE, 3).byte())))  # frames count
    with pytest.raises(ValueError, match=r"ObservationEncoder: observations have dim 32, expected 6176"):
        lawr(obs[:, :STATE_DIM])  # state without its frames
    dims = read_checkpoint(final_path(image_run, "flow"))["dims"]
    assert dims["obs_dim"] == STATE_DIM and dims["images"] == [CAMERAS, SIZE, SIZE]


def test_encoder_is_frozen_with_the_flow_and_the_critic_reads_it_unless_it_trains_its_own_copy(image_run,
                                                                                               image_dataset):
    cfg = load_train_config("Bimanual-Chunk-Vision", VISION)
    dims = read_checkpoint(final_path(image_run, "flow"))["dims"]
    behavior = load_product(image_run, "flow", cfg, dims)
    frozen = parameter_fingerprint(behavior.obs_normalizer)
    assert not any(p.requires_grad for p in behavior.obs_normalizer.parameters())
    # phases 2 and 3 keep Phase 1's encoder, and neither saves a copy of it
    assert parameter_fingerprint(load_policy(image_run, "lawr").policy.obs_normalizer) == frozen
    for stage in ("critic", "planner"):
        assert not [k for k in read_checkpoint(final_path(image_run, stage))["model"] if ".cnn." in k], stage

    run = image_run.parent / "finetuned"
    cfg = load_train_config("Bimanual-Chunk-Vision", VISION + ["critic.finetune_encoder=true"])
    train(cfg, image_dataset, run, stages=("flow", "critic"))
    own = [k for k in read_checkpoint(final_path(run, "critic"))["model"] if k.startswith("obs_normalizer.cnn.")]
    assert own  # the critic's own, trained copy is in its product
    critic = load_product(run, "critic", cfg, dims)
    flow = load_product(run, "flow", cfg, dims)
    assert parameter_fingerprint(flow.obs_normalizer) == frozen  # the same Phase 1, untouched by the critic
    assert parameter_fingerprint(critic.obs_normalizer) != frozen


def test_random_shift_moves_frames_by_whole_pixels_and_only_while_training():
    frames = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    assert torch.equal(random_shift(frames, 0), frames)
    torch.manual_seed(3)
    shifted = random_shift(frames, 2)
    assert shifted.shape == frames.shape
    padded = torch.nn.functional.pad(frames, (2, 2, 2, 2), mode="replicate")
    crops = [padded[:, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
    for i in range(2):
        assert any(torch.equal(shifted[i], crop[i]) for crop in crops)
    encoder = ObservationEncoder(torch.nn.Identity(), STATE_DIM, (CAMERAS, SIZE, SIZE), features=8, shift=4)
    obs = observation()
    assert not torch.equal(encoder.train()(obs), encoder(obs))
    assert torch.equal(encoder.eval()(obs), encoder(obs))


def test_a_pretrained_encoder_is_loaded_from_a_local_file(tmp_path, image_dataset):
    torch.manual_seed(7)
    pretrained = NatureCNN(SIZE, SIZE, 8)
    path = tmp_path / "cnn.pt"
    torch.save(pretrained.state_dict(), path)
    run = tmp_path / "run"
    cfg = load_train_config("Bimanual-Chunk-Vision", VISION + [f"flow.encoder.pretrained={path}",
                                                               "flow.encoder.train_pretrained=false"])
    train(cfg, image_dataset, run, stages=("flow",))
    behavior = load_product(run, "flow", cfg, read_checkpoint(final_path(run, "flow"))["dims"])
    assert parameter_fingerprint(behavior.obs_normalizer.cnn) == parameter_fingerprint(pretrained)  # kept fixed

    missing = load_train_config("Bimanual-Chunk-Vision", VISION + [f"flow.encoder.pretrained={tmp_path}/none.pt"])
    with pytest.raises(ValueError, match=r"none.pt: pretrained encoder file not found \(flow.encoder.pretrained\)"):
        train(missing, image_dataset, tmp_path / "run2", stages=("flow",))


def test_every_baseline_trains_on_the_frozen_features_and_acts_on_state_and_frames(image_run, image_dataset):
    from lawr_ext.algorithms.registry import BASELINE_NAMES

    cfg = load_train_config("Bimanual-Chunk-Vision", VISION + [
        "baselines.diffusion.num_train_timesteps=10", "baselines.diffusion.sample_steps=5",
        "baselines.best_of_n.num_samples=4", "baselines.qc.num_samples=4"])
    train(cfg, image_dataset, image_run, stages=BASELINE_NAMES)
    obs = observation()
    frozen = parameter_fingerprint(load_policy(image_run, "lawr").policy.obs_normalizer)
    for name in BASELINE_NAMES:
        chunk = load_policy(image_run, name)(obs)
        assert chunk.shape == (5, HORIZON, ACTION_DIM) and torch.isfinite(chunk).all(), name
        assert not [k for k in read_checkpoint(final_path(image_run, name))["model"] if ".cnn." in k], name
    assert parameter_fingerprint(load_policy(image_run, "lawr").policy.obs_normalizer) == frozen


def test_export_takes_joint_state_and_uint8_frames_names_its_cameras_and_deploy_refuses_other_frames(image_run):
    import numpy as np

    from lawr_ext.deploy import OnnxChunkPolicy, read_robot_limits
    from lawr_ext.export import export_policy, load_exported
    from lawr_ext.tasks.bimanual.action_spec import ROBOT_LIMITS_FILE

    paths = export_policy(image_run, "lawr", formats=("onnx", "pt2"), log=lambda line: None)
    policy = load_policy(image_run, "lawr")
    obs = observation(7, seed=4)
    state, frames = obs[:, :STATE_DIM], obs[:, STATE_DIM:].reshape(7, CAMERAS, SIZE, SIZE, 3).to(torch.uint8)
    for fmt, path in paths.items():
        run, metadata = load_exported(path)
        assert metadata["cameras"] == ["top", "left_wrist"] and metadata["image_shape"] == [CAMERAS, SIZE, SIZE]
        assert metadata["obs_dim"] == STATE_DIM and metadata["images_input"] == "images"
        with torch.no_grad():
            assert (run(state, frames) - policy(pack_observation(state, frames))).abs().max() <= 1e-4, fmt

    robot = OnnxChunkPolicy(str(paths["onnx"]), robot_limits=read_robot_limits(ROBOT_LIMITS_FILE),
                            obs_range_margin=1e9, log=lambda line: None)
    action = robot.act(state[0].numpy(), frames[0].numpy())
    assert action.shape == (ACTION_DIM,) and np.isfinite(action).all()
    for bad, said in ((frames[0, :1].numpy(), r"of shape \(1, 32, 32, 3\), uint8"),
                      (frames[0].numpy().astype(np.float32), r"of shape \(2, 32, 32, 3\), float32"),
                      (None, "missing")):
        with pytest.raises(ValueError, match=rf"camera frames {said}; the policy takes uint8 \(2, 32, 32, 3\) from "
                                             r"cameras \['top', 'left_wrist'\] in this order: nothing commanded"):
            robot.act(state[0].numpy(), bad)


def test_evaluation_diagnostics_read_the_frames_of_the_dataset(image_run, image_dataset):
    from lawr_ext.data.dataset import ChunkDataset, load_episodes
    from lawr_ext.eval.diagnostics import policy_precision, support_check
    from lawr_ext.runners.evaluation import camera_overrides

    dataset = ChunkDataset(load_episodes(image_dataset), HORIZON, 0.9)
    policy = load_policy(image_run, "lawr")
    assert support_check(policy, dataset, 8)["support/nn_ratio"] > 0
    assert policy_precision(policy, dataset, num_chunks=8)["action_mae"] >= 0
    # the evaluation env renders the cameras the run trained on, in its order and at its resolution
    assert camera_overrides(image_run) == {"cameras.names": ("top", "left_wrist"), "cameras.height": SIZE,
                                           "cameras.width": SIZE}


def test_latency_bench_times_the_image_policies_with_their_encoder():
    import sys

    from lawr_ext import REPO_ROOT
    from lawr_ext.configs.flow import FlowConfig

    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import latency

    flow = FlowConfig(arch="mlp", width=32, depth=1, time_embed_dim=8)
    result = latency.measure(batch_sizes=(1,), runtimes=("eager",), dims=(STATE_DIM, HORIZON, ACTION_DIM),
                             diffusion_steps=2, repeats=1, flow_cfg=flow, image_shape=(CAMERAS, SIZE, SIZE))
    assert result["config"]["images"] == [CAMERAS, SIZE, SIZE]
    assert result["runtimes"]["eager"]["batches"]["1"]["L-AWR_ms"] > 0
    policies = latency.build_policies(STATE_DIM, HORIZON, ACTION_DIM, 2, flow, image_shape=(CAMERAS, SIZE, SIZE))
    assert isinstance(policies["L-AWR"].policy.obs_normalizer, ObservationEncoder)
    assert policies["diffusion"](observation()).shape == (5, HORIZON, ACTION_DIM)


def test_phase_one_on_frames_resumes_to_the_same_encoder_and_flow(image_dataset, tmp_path, monkeypatch):
    """Stopped after its first checkpoint (step 4 of 8), Phase 1 resumes to exactly the uninterrupted run's
    encoder, its EMA, the flow and the optimizer state (the random shifts draw from the RNG the checkpoint keeps)."""
    from lawr_ext.algorithms.flow import MeanFlow
    from lawr_ext.runners import checkpoint_path

    cfg = load_train_config("Bimanual-Chunk-Vision", VISION)
    train(cfg, image_dataset, tmp_path / "straight", stages=("flow",))
    update, calls = MeanFlow.update, []

    def stopping(self, batch):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("stopped")
        return update(self, batch)

    monkeypatch.setattr(MeanFlow, "update", stopping)
    with pytest.raises(RuntimeError, match="stopped"):
        train(cfg, image_dataset, tmp_path / "resumed", stages=("flow",))
    monkeypatch.setattr(MeanFlow, "update", update)
    assert read_checkpoint(checkpoint_path(tmp_path / "resumed", "flow"))["step"] == 4
    train(cfg, image_dataset, tmp_path / "resumed", stages=("flow",))
    for path, state in ((checkpoint_path, "learner"), (final_path, "model")):
        got, want = (read_checkpoint(path(tmp_path / run, "flow")) for run in ("resumed", "straight"))
        assert_same_state(got[state], want[state], path.__name__)
    model = read_checkpoint(final_path(tmp_path / "straight", "flow"))["model"]
    assert any(k.startswith("obs_normalizer.cnn.") for k in model)  # the encoder is part of what resumed
