"""Export: ONNX / TorchScript graphs reproduce the eager policy, and their metadata round-trips."""

import json

import numpy as np
import onnx
import pytest
import torch
from conftest import EXPORT_DIMS, small_lawr_policy

from lawr_ext.algorithms.critic import DistributionalCritic
from lawr_ext.algorithms.flow import build_flow_decoder
from lawr_ext.configs.critic import CriticConfig
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.configs.planner import PlannerConfig
from lawr_ext.export import (METADATA_KEY, build_metadata, export_onnx, export_torchscript, load_onnx, load_torchscript,
                             max_abs_diff)
from lawr_ext.modules.normalizer import fit_obs_normalizer
from lawr_ext.utils.io import FORMAT_VERSION

OBS_DIM, H, A = EXPORT_DIMS
DATA_MEAN = torch.linspace(-3.0, 5.0, OBS_DIM)  # the observations small_lawr_policy's normalizer was fitted on
DATA_STD = torch.logspace(-2, 1, OBS_DIM)


@pytest.fixture(scope="module")
def exported(exported_policy):
    return exported_policy


def _run(fmt, path, obs):
    if fmt == "onnx":
        session, _ = load_onnx(path)
        return torch.from_numpy(session.run(["actions"], {"obs": obs.numpy()})[0])
    module, _ = load_torchscript(path)
    with torch.no_grad():
        return module(obs)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("batch", [1, 7, 256])
def test_exported_graph_matches_eager_policy(exported, fmt, batch):
    policy, _, paths = exported
    observations = {"random": torch.randn(batch, OBS_DIM),
                    "dataset": DATA_MEAN + DATA_STD * torch.randn(batch, OBS_DIM)}
    for kind, obs in observations.items():
        with torch.no_grad():
            eager = policy(obs)
        out = _run(fmt, paths[fmt], obs)
        assert out.shape == (batch, H, A)
        assert (out - eager).abs().max().item() <= 1e-4, (fmt, kind)
        # The comparison is not vacuous: the chunk is far from constant and depends on the observation.
        assert eager.std() > 0.1
    if batch > 1:
        assert (eager[0] - eager[1]).abs().max() > 1e-2


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_metadata_round_trips_inside_the_file(exported, fmt):
    _, metadata, paths = exported
    loaded = (load_onnx if fmt == "onnx" else load_torchscript)(paths[fmt])[1]
    assert loaded == metadata
    assert loaded["format_version"] == FORMAT_VERSION and loaded["horizon"] == H and loaded["action_dim"] == A


def test_other_format_version_is_rejected_with_a_clear_message(exported, tmp_path):
    _, metadata, paths = exported
    model = onnx.load(str(paths["onnx"]))
    prop = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    prop.value = json.dumps({**metadata, "format_version": FORMAT_VERSION + 1})
    onnx.save(model, str(tmp_path / "future.onnx"))
    with pytest.raises(ValueError, match=f"format version {FORMAT_VERSION + 1}.*re-export"):
        load_onnx(tmp_path / "future.onnx")

    module, _ = load_torchscript(paths["torchscript"])
    stale = {**metadata, "format_version": FORMAT_VERSION - 1}
    torch.jit.save(module, str(tmp_path / "old.pt"), _extra_files={f"{METADATA_KEY}.json": json.dumps(stale)})
    with pytest.raises(ValueError, match="format version"):
        load_torchscript(tmp_path / "old.pt")


def test_metadata_must_describe_every_action_dimension(exported):
    _, metadata, _ = exported
    spec = {k: metadata[k] for k in ("joint_names", "action_scale", "action_offset", "joint_lower", "joint_upper",
                                      "max_target_speed")}
    with pytest.raises(ValueError, match="joint_names has 13 entries"):
        build_metadata(small_lawr_policy(), task="t", obs_dim=OBS_DIM, control_rate_hz=50.0, config_hash="x",
                       **spec | {"joint_names": spec["joint_names"][:-1]})
    with pytest.raises(ValueError, match="come all together"):
        build_metadata(small_lawr_policy(), task="t", obs_dim=OBS_DIM, control_rate_hz=50.0, config_hash="x",
                       joint_names=spec["joint_names"], action_scale=spec["action_scale"])
    shapes_only = build_metadata(small_lawr_policy(), task="t", obs_dim=OBS_DIM, control_rate_hz=50.0, config_hash="x")
    assert "joint_names" not in shapes_only  # a task without an action spec exports shapes only


def test_onnx_session_output_is_float32_chunk(exported):
    _, _, paths = exported
    session, metadata = load_onnx(paths["onnx"])
    out = session.run(None, {"obs": np.zeros((2, metadata["obs_dim"]), np.float32)})[0]
    assert out.dtype == np.float32 and out.shape == (2, metadata["horizon"], metadata["action_dim"])


def test_action_spec_reproduces_the_env_action_mapping():
    from types import SimpleNamespace

    from lawr_ext.tasks import get_task, load_env_cfg
    from lawr_ext.tasks.bimanual.env import BimanualChunkEnv
    from lawr_ext.tasks.bimanual.robot import ALL_JOINT_NAMES, SPEC, arm_limits

    # The env's own _pre_physics_step on a stand-in with its joint bookkeeping (our joint order = sim order).
    joint_ids = torch.arange(16).view(2, 8)
    limits = arm_limits(SPEC)
    env = SimpleNamespace(arm_ids=joint_ids[:, :6], finger_ids=joint_ids[:, 6:], arm_lower=limits[:, 0],
                          arm_range=limits[:, 1] - limits[:, 0], joint_targets=torch.zeros(5, 16))
    actions = torch.rand(5, 14) * 2 - 1
    BimanualChunkEnv._pre_physics_step(env, actions)

    spec = get_task("Bimanual-Chunk").load("action_spec")()
    targets = torch.tensor(spec["action_offset"]) + torch.tensor(spec["action_scale"]) * actions
    for i, name in enumerate(spec["joint_names"]):
        for joint in spec["gripper_joints"].get(name, [name]):
            assert torch.allclose(env.joint_targets[:, ALL_JOINT_NAMES.index(joint)], targets[:, i], atol=1e-6), name
    # the limits a deployment clamps to are the env's action range, and its rate limit the env's servo speeds
    assert torch.allclose(torch.tensor(spec["joint_lower"]), torch.tensor(spec["action_offset"]) - torch.tensor(spec["action_scale"]))
    assert torch.allclose(torch.tensor(spec["joint_upper"]), torch.tensor(spec["action_offset"]) + torch.tensor(spec["action_scale"]))
    cfg = load_env_cfg("Bimanual-Chunk")
    assert spec["max_target_speed"] == ([cfg.arm_target_speed] * 6 + [cfg.finger_target_speed]) * 2


@pytest.mark.parametrize("task", ["Bimanual-Chunk", "Bimanual-Chunk-Insertion"])
def test_registered_rate_and_dims_are_the_env_cfgs(task):
    from lawr_ext.tasks import get_task, load_env_cfg

    cfg, spec = load_env_cfg(task), get_task(task)
    assert spec.control_hz == pytest.approx(1.0 / (cfg.sim.dt * cfg.decimation))
    assert (spec.obs_dim, spec.action_dim) == (cfg.observation_space, cfg.action_space)


@pytest.mark.parametrize("method", ["gaussian_awr", "lps", "dsrl_na", "act"])
def test_deterministic_baselines_export_to_graphs_that_match_them(tmp_path, method):
    """Every deterministic baseline's product (what ``load_policy`` returns, wrapped into env actions) exports with
    the same parity as L-AWR's; random weights, so the check is not about a trained policy."""
    from lawr_ext.algorithms.base import EnvActionPolicy
    from lawr_ext.algorithms.flow import BehaviorModel
    from lawr_ext.algorithms.registry import METHODS, matched_config
    from lawr_ext.algorithms.stage import StageInputs
    from lawr_ext.modules.normalizer import ActionNormalizer

    torch.manual_seed(0)
    flow_cfg = FlowConfig(arch="mlp", width=32, depth=1, time_embed_dim=16)
    normalizer = fit_obs_normalizer(DATA_MEAN + DATA_STD * torch.randn(512, OBS_DIM))
    decoder = build_flow_decoder(flow_cfg, OBS_DIM, H, A).requires_grad_(False)
    actions = ActionNormalizer.fit(0.5 * torch.rand(256, A) - 0.25, "min_max")
    critic = DistributionalCritic(CriticConfig(hidden_dim=16, num_layers=1), OBS_DIM, H, A, normalizer)
    inputs = StageInputs(OBS_DIM, H, A, {"flow": BehaviorModel(decoder, normalizer, actions), "critic": critic})
    stage = METHODS[method]
    cfg = matched_config(stage.name, flow_cfg, CriticConfig(hidden_dim=16, num_layers=1),
                         PlannerConfig(hidden_dim=32, num_blocks=1))
    policy = EnvActionPolicy(stage.product(cfg, inputs), actions).eval()
    with torch.no_grad():
        for p in policy.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    metadata = build_metadata(policy, task="Bimanual-Chunk", obs_dim=OBS_DIM, control_rate_hz=50.0, config_hash="0")
    obs = DATA_MEAN + DATA_STD * torch.randn(16, OBS_DIM)
    for fmt, export in (("onnx", export_onnx), ("torchscript", export_torchscript)):
        path = export(policy, tmp_path / f"{method}.{'onnx' if fmt == 'onnx' else 'pt'}", metadata)
        assert max_abs_diff(policy, path, obs) <= 1e-4, (method, fmt)
    with torch.no_grad():
        assert policy(obs).std() > 1e-3  # not a constant graph
