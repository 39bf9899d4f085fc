"""The chunk basis (data.chunk_basis=dct): exact algebra, reconstruction bounds on robot-like chunks, and a run whose
learners see K coefficients while its policy, its evaluation and its export still produce H-step chunks."""

import math

import pytest
import torch
from conftest import TINY, fitted_obs_normalizer, synthetic_dataset

from lawr_ext.algorithms.base import EnvActionPolicy
from lawr_ext.algorithms.flow import FlowBCPolicy, build_flow_decoder
from lawr_ext.configs.data import DataConfig
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.configs.train import load_train_config
from lawr_ext.data import keys
from lawr_ext.data.dataset import ChunkDataset
from lawr_ext.modules.chunk_basis import ChunkBasis, dct_matrix
from lawr_ext.modules.normalizer import ActionNormalizer


def servo_chunks(num: int, horizon: int = 50, arm_dims: int = 12, seed: int = 0) -> torch.Tensor:
    """Chunks as the Bimanual experts command them: each arm joint moves between random waypoints at a bounded
    speed (at most 0.08 of the action range per step), each gripper opens or closes once, as a step."""
    g = torch.Generator().manual_seed(seed)
    chunks = torch.empty(num, horizon, arm_dims + 2)
    for b in range(num):
        for d in range(arm_dims):
            value, target, t = torch.rand(1, generator=g) * 2 - 1, torch.rand(1, generator=g) * 2 - 1, 0
            for t in range(horizon):
                if torch.rand(1, generator=g) < 0.05:
                    target = torch.rand(1, generator=g) * 2 - 1
                value = value + (target - value).clamp(-0.08, 0.08)
                chunks[b, t, d] = value
        for d in range(arm_dims, arm_dims + 2):
            switch = int(torch.randint(1, horizon, (1,), generator=g))
            chunks[b, :switch, d], chunks[b, switch:, d] = 1.0, -1.0
    return chunks


def test_dct_rows_are_orthonormal_and_the_full_basis_is_exact():
    basis = dct_matrix(50, 10)
    assert torch.allclose(basis @ basis.T, torch.eye(10), atol=1e-5)
    full = ChunkBasis(50, "dct", 50)
    chunks = torch.randn(4, 50, 14)
    assert torch.allclose(full.decode(full.encode(chunks)), chunks, atol=1e-5)
    # the first cosine is the chunk's mean (times sqrt(H)): a constant chunk is one coefficient
    constant = torch.full((1, 50, 14), 0.3)
    coeffs = ChunkBasis(50, "dct", 10).encode(constant)
    assert torch.allclose(coeffs[:, 0], torch.full((1, 14), 0.3 * math.sqrt(50)), atol=1e-5)
    assert coeffs[:, 1:].abs().max() < 1e-5


def test_squared_error_between_coefficients_is_the_error_between_decoded_chunks():
    basis = ChunkBasis(50, "dct", 10)
    a, b = torch.randn(8, 10, 14), torch.randn(8, 10, 14)
    in_coeffs = (a - b).square().sum((1, 2))
    in_steps = (basis.decode(a) - basis.decode(b)).square().sum((1, 2))
    assert torch.allclose(in_coeffs, in_steps, rtol=1e-4)


def test_steps_basis_is_the_identity_and_has_no_buffer():
    basis = ChunkBasis(50)
    chunks = torch.randn(2, 50, 14)
    assert basis.num_coeffs == 50 and basis.encode(chunks) is chunks and basis.decode(chunks) is chunks
    assert len(basis.state_dict()) == 0  # runs saved before the basis existed load unchanged


@pytest.mark.parametrize("num_coeffs, arm_bound, gripper_bound", [(6, 0.05, 0.40), (10, 0.03, 0.30), (16, 0.02, 0.25)])
def test_robot_like_chunks_reconstruct_within_bounds(num_coeffs, arm_bound, gripper_bound):
    """Arm joints moved at servo speed come back to a few hundredths of the action range; a gripper step is
    rounded over a few steps (its mean error stays bounded, most of it next to the switch)."""
    chunks = servo_chunks(32)
    basis = ChunkBasis(50, "dct", num_coeffs)
    error = (basis.decode(basis.encode(chunks)) - chunks).abs()
    assert error[..., :12].mean() < arm_bound
    assert error[..., 12:].mean() < gripper_bound
    fewer = ChunkBasis(50, "dct", num_coeffs // 2)
    assert (fewer.decode(fewer.encode(chunks)) - chunks).abs()[..., :12].mean() > error[..., :12].mean()


def test_config_refuses_a_basis_larger_than_the_chunk():
    with pytest.raises(ValueError, match="DataConfig.chunk_coeffs"):
        DataConfig(horizon=8, chunk_basis="dct", chunk_coeffs=9)
    with pytest.raises(ValueError, match="DataConfig.chunk_basis"):
        DataConfig(chunk_basis="bspline")


def test_learner_batches_carry_normalized_coefficients_and_the_dataset_keeps_the_steps(tmp_path):
    from lawr_ext.algorithms.base import learner_batch
    from lawr_ext.data.dataset import load_episodes
    from lawr_ext.modules.normalizer import fit_normalizers

    episodes = load_episodes(synthetic_dataset(tmp_path / "data.npz"))
    basis = ChunkBasis(4, "dct", 2)
    dataset = ChunkDataset(episodes, 4, 0.9)
    actions = fit_normalizers(dataset.observations, dataset.actions, "min_max").actions
    ids = torch.arange(0, dataset.num_chunks, 7)
    recorded = dataset.batch(ids)
    coeffs = learner_batch(recorded, actions, basis)
    assert coeffs[keys.ACTIONS].shape == (len(ids), 2, episodes.actions.shape[1])
    assert coeffs[keys.MASK].all() and coeffs[keys.MASK].shape == (len(ids), 2)
    assert not recorded[keys.MASK].all()  # the dataset's batch is untouched: env actions, real-step mask
    assert recorded[keys.ACTIONS].shape == (len(ids), 4, episodes.actions.shape[1])
    assert torch.allclose(coeffs[keys.ACTIONS], basis.encode(actions.normalize(recorded[keys.ACTIONS])))
    for key in (keys.OBS, keys.REWARD, keys.NEXT_OBS, keys.DISCOUNT, keys.TERMINAL):  # the chunk rule is unchanged
        assert torch.equal(coeffs[key], recorded[key])
    steps = learner_batch(recorded, actions, ChunkBasis(4))
    assert torch.equal(steps[keys.MASK], recorded[keys.MASK])


def test_env_action_policy_decodes_to_full_chunks():
    obs_dim, horizon, coeffs, action_dim = 5, 20, 4, 3
    basis = ChunkBasis(horizon, "dct", coeffs)
    decoder = build_flow_decoder(FlowConfig(arch="mlp", width=16, depth=1, time_embed_dim=8), obs_dim, coeffs,
                                 action_dim).requires_grad_(False)
    policy = FlowBCPolicy(decoder, fitted_obs_normalizer(torch.randn(64, obs_dim)))
    env_policy = EnvActionPolicy(policy, ActionNormalizer(action_dim), basis).eval()
    assert (env_policy.horizon, env_policy.action_dim) == (horizon, action_dim)
    torch.manual_seed(0)
    chunks = env_policy(torch.randn(6, obs_dim))
    torch.manual_seed(0)
    expected = basis.decode(policy(torch.randn(6, obs_dim))).clamp(-1, 1)
    assert chunks.shape == (6, horizon, action_dim)
    assert torch.allclose(chunks, expected)


def test_a_dct_run_trains_every_phase_on_coefficients_and_exports_full_chunks(tmp_path):
    """The whole path with data.chunk_basis=dct: the flow, the critic and the planner are built for K coefficients
    (the planner's latent is K x A), load_policy hands out H-step chunks, and the ONNX graph matches it."""
    from lawr_ext.export import build_metadata, export_onnx, load_onnx
    from lawr_ext.runners import load_policy, train
    from lawr_ext.runners.pipeline import load_product

    dataset = synthetic_dataset(tmp_path / "data.npz")
    cfg = load_train_config("Bimanual-Chunk", TINY + ["data.horizon=6", "data.chunk_basis=dct", "data.chunk_coeffs=3"])
    train(cfg, dataset, tmp_path / "run")
    policy = load_policy(tmp_path / "run", "lawr")
    assert policy.policy.planner.horizon == 3 and policy.policy.decoder.horizon == 3
    assert policy.chunk_basis.kind == "dct" and policy.horizon == 6
    obs = torch.randn(5, policy.policy.planner.net.inp.in_features)
    with torch.no_grad():
        chunks = policy(obs)
    assert chunks.shape == (5, 6, policy.action_dim)
    # every chunk lies in the span of the K cosines before the clamp to the action box
    basis = policy.chunk_basis
    with torch.no_grad():
        unclamped = policy.action_normalizer.unnormalize(basis.decode(policy.policy(obs)))
    assert torch.equal(unclamped.clamp(-1, 1), chunks)
    assert torch.allclose(basis.decode(basis.encode(unclamped)), unclamped, atol=1e-5)
    assert not torch.allclose(unclamped[:, :1], unclamped[:, 1:2], atol=1e-3)  # not constant in time
    flow = torch.load(tmp_path / "run" / "flow" / "final.pt", weights_only=True)
    assert torch.equal(flow["model"]["chunk_basis.basis"], dct_matrix(6, 3))
    assert flow["model"]["chunk_basis.basis"].shape == (3, 6)
    critic = load_product(tmp_path / "run", "critic", cfg, flow["dims"])
    assert critic.q_nets[0][0].in_features == obs.shape[1] + 3 * policy.action_dim  # Q reads the K coefficients

    metadata = build_metadata(policy, task="Bimanual-Chunk", obs_dim=obs.shape[1], control_rate_hz=50.0,
                              config_hash="0123456789abcdef")
    session, read = load_onnx(export_onnx(policy, tmp_path / "policy.onnx", metadata))
    assert read["horizon"] == 6
    out = session.run(["actions"], {"obs": obs.numpy()})[0]
    assert out.shape == (5, 6, policy.action_dim)
    assert abs(out - chunks.numpy()).max() <= 1e-4


def test_settings_added_later_keep_earlier_checkpoint_hashes_at_their_old_behaviour():
    """data.chunk_basis=steps and flow/planner.lr_schedule=constant train as before these settings existed, so they
    stay out of the config hash (runs saved earlier still load and resume); any other value is part of it."""
    from lawr_ext.algorithms.registry import hashed_config
    from lawr_ext.utils.io import config_hash

    def hashed(*overrides):
        return hashed_config(load_train_config("Bimanual-Chunk", ["profile=cpu", *overrides]), "planner")

    default = hashed()
    assert "chunk_basis" not in default["data"]
    assert "lr_schedule" not in default["flow"] and "lr_schedule" not in default["planner"]
    assert config_hash(hashed("data.chunk_coeffs=12")) == config_hash(default)  # ignored for "steps"
    for change in ("data.chunk_basis=dct", "flow.lr_schedule=cosine", "planner.lr_schedule=cosine"):
        assert config_hash(hashed(change)) != config_hash(default), change
    assert hashed("data.chunk_basis=dct")["data"]["chunk_coeffs"] == 10


def test_cosine_schedule_decays_the_flow_learning_rate_to_zero_over_its_steps():
    from tensordict import TensorDict

    from lawr_ext.algorithms.flow import MeanFlow

    cfg = FlowConfig(arch="mlp", width=16, depth=1, time_embed_dim=8, num_steps=4, learning_rate=1e-3,
                     lr_schedule="cosine")
    learner = MeanFlow(cfg, 3, 5, 2, fitted_obs_normalizer(torch.randn(32, 3)))
    batch = TensorDict({keys.OBS: torch.randn(8, 3), keys.ACTIONS: torch.randn(8, 5, 2),
                        keys.MASK: torch.ones(8, 5, dtype=torch.bool)}, batch_size=[8])
    rates = []
    for _ in range(4):
        learner.update(batch)
        rates.append(learner.optimizers["flow"].param_groups[0]["lr"])
    assert rates == pytest.approx([1e-3, 1e-3 * 0.5 * (1 + math.cos(math.pi / 4)), 5e-4,
                                   1e-3 * 0.5 * (1 + math.cos(3 * math.pi / 4))])


def test_replayed_actions_are_projected_chunk_by_chunk():
    """The replay diagnosis's projection: consecutive H-step chunks, the last one padded by holding its action;
    a full basis changes nothing, a smaller one changes each chunk only within its own span."""
    from lawr_ext.eval.replay import project_on_basis

    actions = servo_chunks(3, horizon=23)  # 23 steps: two chunks of 10 and a padded one of 3
    assert torch.allclose(project_on_basis(actions, ChunkBasis(10, "dct", 10)), actions, atol=1e-5)
    basis = ChunkBasis(10, "dct", 4)
    projected = project_on_basis(actions, basis)
    assert projected.shape == actions.shape
    first = basis.decode(basis.encode(actions[:, :10]))
    assert torch.allclose(projected[:, :10], first, atol=1e-6)
    padded = torch.cat([actions[:, 20:], actions[:, -1:].expand(-1, 7, -1)], dim=1)
    assert torch.allclose(projected[:, 20:], basis.decode(basis.encode(padded))[:, :3], atol=1e-6)
    assert not torch.allclose(projected, actions, atol=1e-3)
