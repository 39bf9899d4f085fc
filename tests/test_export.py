"""Export: ONNX, .pt2 and AOTInductor files reproduce the eager policy, and their metadata round-trips."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import EXPORT_DIMS, assert_refused, file_hashes, randomize_weights_, run_script, small_lawr_policy

from lawr_ext.algorithms.critic import DistributionalCritic
from lawr_ext.algorithms.flow import build_flow_decoder
from lawr_ext.configs.critic import CriticConfig
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.configs.planner import PlannerConfig
from lawr_ext.deploy import DIGEST_FIELD, EXPORT_FORMAT_VERSION, INTEGRITY_FIELDS
from lawr_ext.export import (METADATA_KEY, build_metadata, export_onnx, export_policy, export_pt2, load_exported,
                             load_onnx, load_pt2, max_abs_diff, trace)

OBS_DIM, H, A = EXPORT_DIMS
DATA_MEAN = torch.linspace(-3.0, 5.0, OBS_DIM)  # the observations small_lawr_policy's normalizer was fitted on
DATA_STD = torch.logspace(-2, 1, OBS_DIM)


@pytest.fixture(scope="module")
def exported(exported_policy):
    return exported_policy


def _run(fmt, path, obs):
    run, _ = load_exported(path, fmt)
    with torch.no_grad():
        return run(obs)


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
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


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_metadata_round_trips_inside_the_file(exported, fmt):
    _, metadata, paths = exported
    loaded = load_exported(paths[fmt])[1]
    assert {k: v for k, v in loaded.items() if k not in INTEGRITY_FIELDS} == metadata
    assert (DIGEST_FIELD in loaded) == (fmt == "onnx")  # the robot's file carries its digest
    assert loaded["format_version"] == EXPORT_FORMAT_VERSION and loaded["horizon"] == H and loaded["action_dim"] == A


def test_other_format_version_is_rejected_with_a_clear_message(exported, tmp_path):
    _, metadata, paths = exported
    model = onnx.load(str(paths["onnx"]))
    prop = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    prop.value = json.dumps({**metadata, "format_version": EXPORT_FORMAT_VERSION + 1})
    onnx.save(model, str(tmp_path / "future.onnx"))
    with pytest.raises(ValueError, match=f"format version {EXPORT_FORMAT_VERSION + 1}, this reads version "
                                         f"{EXPORT_FORMAT_VERSION}; re-export"):
        load_onnx(tmp_path / "future.onnx")

    program = torch.export.load(paths["pt2"])
    stale = {**metadata, "format_version": EXPORT_FORMAT_VERSION - 1}
    torch.export.save(program, tmp_path / "old.pt2", extra_files={f"{METADATA_KEY}.json": json.dumps(stale)})
    with pytest.raises(ValueError, match=f"format version {EXPORT_FORMAT_VERSION - 1}"):
        load_pt2(tmp_path / "old.pt2")


def test_the_export_format_does_not_follow_the_checkpoint_format(exported, monkeypatch):
    """A new checkpoint format leaves every deployed export readable: the export metadata has its own version."""
    import lawr_ext.utils.io

    policy, _, paths = exported
    monkeypatch.setattr(lawr_ext.utils.io, "FORMAT_VERSION", lawr_ext.utils.io.FORMAT_VERSION + 1)
    rebuilt = build_metadata(policy, task="t", obs_dim=OBS_DIM, control_rate_hz=50.0, config_hash="x")
    assert rebuilt["format_version"] == EXPORT_FORMAT_VERSION
    assert load_onnx(paths["onnx"])[1]["format_version"] == EXPORT_FORMAT_VERSION  # still accepted


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


@pytest.mark.parametrize("task", ["Bimanual-Chunk", "Bimanual-Chunk-Insertion", "Bimanual-Chunk-Vision",
                                  "Bimanual-Chunk-Insertion-Vision"])
def test_registered_rate_and_dims_are_the_env_cfgs(task):
    from lawr_ext.tasks import get_task, load_env_cfg

    cfg, spec = load_env_cfg(task), get_task(task)
    assert spec.control_hz == pytest.approx(1.0 / (cfg.sim.dt * cfg.decimation))
    assert (spec.obs_dim, spec.action_dim) == (cfg.observation_space, cfg.action_space)


def baseline_policy(method: str, **settings):
    """``method``'s product as ``load_policy`` returns it (wrapped into env actions), at toy size, every weight random
    (so a check is not about a trained policy); ``settings`` override the method's config."""
    from lawr_ext.algorithms.base import EnvActionPolicy
    from lawr_ext.algorithms.flow import BehaviorModel
    from lawr_ext.algorithms.registry import METHODS, matched_config
    from lawr_ext.algorithms.stage import StageInputs
    from lawr_ext.modules.normalizer import fit_normalizers

    torch.manual_seed(0)
    flow_cfg = FlowConfig(arch="mlp", width=32, depth=1, time_embed_dim=16)
    normalizer, actions = fit_normalizers(DATA_MEAN + DATA_STD * torch.randn(512, OBS_DIM),
                                          0.5 * torch.rand(512, A) - 0.25, "min_max")
    decoder = build_flow_decoder(flow_cfg, OBS_DIM, H, A).requires_grad_(False)
    critic = DistributionalCritic(CriticConfig(hidden_dim=16, num_layers=1), OBS_DIM, H, A, normalizer)
    inputs = StageInputs(OBS_DIM, H, A, {"flow": BehaviorModel(decoder, normalizer, actions), "critic": critic})
    stage = METHODS[method]
    cfg = matched_config(stage.name, flow_cfg, CriticConfig(hidden_dim=16, num_layers=1),
                         PlannerConfig(hidden_dim=32, num_blocks=1), **settings)
    return randomize_weights_(EnvActionPolicy(stage.product(cfg, inputs), actions).eval(), 0.3)


@pytest.mark.parametrize("method", ["gaussian_awr", "lps", "dsrl_na", "act"])
def test_deterministic_baselines_export_to_graphs_that_match_them(tmp_path, method):
    """Every deterministic baseline's product exports with the same parity as L-AWR's."""
    policy = baseline_policy(method)
    metadata = build_metadata(policy, task="Bimanual-Chunk", obs_dim=OBS_DIM, control_rate_hz=50.0, config_hash="0")
    obs = DATA_MEAN + DATA_STD * torch.randn(16, OBS_DIM)
    for fmt, export in (("onnx", export_onnx), ("pt2", export_pt2)):
        path = export(policy, tmp_path / f"{method}.{fmt}", metadata)
        assert max_abs_diff(policy, path, obs, fmt) <= 1e-4, (method, fmt)
    with torch.no_grad():
        assert policy(obs).std() > 1e-3  # not a constant graph


@pytest.mark.parametrize("flow", [{}, {"arch": "mlp", "conditioning": "film"}], ids=["transformer", "mlp_film"])
def test_a_planner_acting_through_several_flow_jumps_exports_to_graphs_that_match_it(tmp_path, flow):
    """planner.decode_steps > 1 unrolls its jumps into the graph: the export reproduces the multi-jump policy, not
    the one-step map; with the default flow and with the Insertion preset's (the MLP with FiLM)."""
    torch.manual_seed(0)
    policy = randomize_weights_(small_lawr_policy(decode_steps=3, **flow), 0.1)
    metadata = build_metadata(policy, task="Bimanual-Chunk", obs_dim=OBS_DIM, control_rate_hz=50.0, config_hash="0")
    obs = DATA_MEAN + DATA_STD * torch.randn(16, OBS_DIM)
    for fmt, export in (("onnx", export_onnx), ("pt2", export_pt2)):
        path = export(policy, tmp_path / f"lawr3.{fmt}", metadata)
        assert max_abs_diff(policy, path, obs, fmt) <= 1e-4, fmt
    with torch.no_grad():
        obs_norm = policy.obs_normalizer(obs)
        one_jump = policy.decoder.decode(policy.planner(obs_norm), obs_norm, 1)
        assert (policy(obs) - one_jump).abs().max() > 1e-3  # the graph is not the one-step map


#: The methods whose policy draws noise, and settings that keep their graphs small (diffusion unrolls its K steps).
STOCHASTIC_METHODS = {"flow_bc": {}, "fql": {}, "ofql": {}, "best_of_n": {}, "qc": {},
                      "diffusion": {"sample_steps": 2, "num_train_timesteps": 10}}


@pytest.mark.parametrize("method", sorted(STOCHASTIC_METHODS))
def test_policies_that_draw_noise_export_with_the_noise_drawn_inside_the_graph(tmp_path, method):
    """torch.export refused flow BC's (and best-of-N's, QC's, one-step FQL's) noise draw with a symbolic batch: each
    now exports to ONNX and .pt2, draws fresh noise per call in the graph, any batch size."""
    policy = baseline_policy(method, **STOCHASTIC_METHODS[method])
    metadata = build_metadata(policy, task="Bimanual-Chunk", obs_dim=OBS_DIM, control_rate_hz=50.0, config_hash="0")
    obs = DATA_MEAN + DATA_STD * torch.randn(5, OBS_DIM)
    program = trace(policy, OBS_DIM)  # both files from one trace
    for fmt, export in (("onnx", export_onnx), ("pt2", export_pt2)):
        path = export(program, tmp_path / f"{method}.{fmt}", metadata)
        # one loaded file, as a robot holds it (a new onnxruntime session replays its default seed)
        run = load_exported(path, fmt)[0]
        with torch.no_grad():
            first, second = run(obs), run(obs)
        assert first.shape == (5, H, A) and torch.isfinite(first).all() and first.abs().max() <= 1.0, (method, fmt)
        assert (first - second).abs().max() > 1e-4, (method, fmt)  # the noise is drawn per call, not baked in


def poisoned(run: Path) -> Path:
    """``run`` with one weight of its planner's saved product set to NaN: a policy whose chunks are not finite."""
    final = run / "planner" / "final.pt"
    record = torch.load(final, weights_only=True)
    weight = next(v for k, v in record["model"].items() if v.is_floating_point() and "planner" in k)
    weight.view(-1)[0] = float("nan")
    torch.save(record, final)
    return run


def test_a_refused_export_never_replaces_a_good_one_nor_leaves_a_folder(finished_run, tmp_path):
    run = Path(shutil.copytree(finished_run[1], tmp_path / "run"))
    out = tmp_path / "deploy"
    status, stdout, err = run_script("export.py", "--checkpoint", str(run), "--out", str(out), "--formats", "onnx")
    assert status == 0 and "max |exported - eager|" in stdout, err[-2000:]
    good = file_hashes(out)
    poisoned(run)
    assert_refused(run_script("export.py", "--checkpoint", str(run), "--out", str(out)),
                   f"{out / 'policy.onnx'}: refused, not written", "non-finite")
    assert file_hashes(out) == good  # the earlier export stands, and no temporary file is left
    assert_refused(run_script("export.py", "--checkpoint", str(run), "--formats", "pt2"),
                   "policy.pt2: refused, not written", "non-finite")
    assert not (run / "export").exists()  # no empty folder where nothing was written


def test_the_export_script_exports_flow_bc_and_the_robot_side_plays_it(finished_run, tmp_path):
    from lawr_ext.deploy import OnnxChunkPolicy, read_robot_limits
    from lawr_ext.tasks.bimanual.action_spec import ROBOT_LIMITS_FILE

    run = Path(shutil.copytree(finished_run[1], tmp_path / "run"))
    status, stdout, err = run_script("export.py", "--checkpoint", str(run), "--policy", "flow_bc", "--formats", "onnx")
    assert status == 0 and "flow_bc draws noise" in stdout, err[-2000:]
    robot = OnnxChunkPolicy(str(run / "export" / "flow_bc" / "policy.onnx"), robot_limits=read_robot_limits(ROBOT_LIMITS_FILE))
    with np.load(finished_run[0]) as data:  # the export records the range of the run's training observations
        observations = data["observations"]
    np.testing.assert_allclose(robot.meta["obs_low"], observations.min(0), rtol=1e-6)
    robot.reset()
    assert np.isfinite(robot.command(robot.act(observations[0]))).all()


def test_export_policy_writes_each_format_from_one_trace_and_the_robot_plays_the_onnx(finished_run, tmp_path):
    """The library API: a run's L-AWR policy as ONNX and .pt2, each within 1e-4 of the eager policy at any batch
    size, the same metadata inside both, and the ONNX file played by the robot side against the robot's limits."""
    from lawr_ext.deploy import OnnxChunkPolicy, read_robot_limits
    from lawr_ext.runners.pipeline import load_policy
    from lawr_ext.tasks.bimanual.action_spec import ROBOT_LIMITS_FILE

    run = Path(shutil.copytree(finished_run[1], tmp_path / "run"))
    lines = []
    paths = export_policy(run, "lawr", ("onnx", "pt2"), log=lines.append)
    assert paths == {"onnx": run / "export" / "policy.onnx", "pt2": run / "export" / "policy.pt2"}
    assert len(lines) == 2 and all("max |exported - eager|" in line for line in lines)
    policy = load_policy(run)
    with np.load(finished_run[0]) as data:
        dataset_obs = data["observations"]
    observations = torch.from_numpy(dataset_obs[:7]).float()
    metadata = {}
    for fmt, path in paths.items():
        run_file, metadata[fmt] = load_exported(path)
        for batch in (1, 7):
            with torch.no_grad():
                eager, exported = policy(observations[:batch]), run_file(observations[:batch])
            assert exported.shape == eager.shape and (exported - eager).abs().max() <= 1e-4, (fmt, batch)
    assert {k: v for k, v in metadata["onnx"].items() if k not in INTEGRITY_FIELDS} == metadata["pt2"]
    assert metadata["pt2"]["policy"] == policy.name
    np.testing.assert_allclose(metadata["pt2"]["obs_low"], dataset_obs.min(0), rtol=1e-6)

    robot = OnnxChunkPolicy(str(paths["onnx"]), robot_limits=read_robot_limits(ROBOT_LIMITS_FILE))
    robot.reset()
    for obs in observations.numpy():
        assert np.isfinite(robot.command(robot.act(obs))).all()


def test_export_policy_refuses_an_unknown_format_or_method_in_one_line(finished_run, tmp_path):
    with pytest.raises(ValueError, match=r"formats=\('torchscript',\): choose from \('onnx', 'pt2', 'aoti'\)"):
        export_policy(finished_run[1], formats=("torchscript",), out=tmp_path / "out")
    with pytest.raises(ValueError, match="method 'nope': choose from"):
        export_policy(finished_run[1], method="nope", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_aoti_package_matches_eager_at_any_batch_and_carries_the_metadata(finished_run, tmp_path):
    """export_policy's AOTInductor package (compiled C++, ~30 s on a 2-core CPU: the one AOTI compile of the suite),
    checked on its temporary file as every format is."""
    from lawr_ext.export import load_aoti
    from lawr_ext.runners.pipeline import load_policy

    run = Path(shutil.copytree(finished_run[1], tmp_path / "run"))
    lines = []
    path = export_policy(run, formats=("aoti",), out=tmp_path / "deploy", log=lines.append)["aoti"]
    assert path == tmp_path / "deploy" / "policy.aoti.pt2" and "max |exported - eager|" in lines[0]
    assert sorted(p.name for p in path.parent.iterdir()) == ["policy.aoti.pt2"]  # no temporary file left
    model, metadata = load_aoti(path)
    assert load_exported(path)[1] == metadata and metadata["format_version"] == EXPORT_FORMAT_VERSION
    policy = load_policy(run)
    assert metadata["policy"] == policy.name and metadata["horizon"] == policy.horizon
    for batch in (1, 7):
        obs = torch.randn(batch, metadata["obs_dim"])
        with torch.no_grad():
            eager, compiled = policy(obs), model(obs)
        assert compiled.shape == eager.shape and (compiled - eager).abs().max() <= 1e-4, batch
