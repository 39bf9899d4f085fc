"""OGBench as a lawr task family: ids and presets, OGBench's own envs behind the vec-env interface, and a tiny
train -> evaluate -> export -> deploy run on a dataset in OGBench's shipped layout, all on the CPU in seconds."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ogbench_dataset, run_script

from lawr_ext import REPO_ROOT
from lawr_ext.configs.train import load_train_config
from lawr_ext.tasks import PUBLISHED_OTHERS, get_task, make_env, registered_tasks

TASK = "ogbench:cube-single-play-singletask-v0"


def test_every_cube_task_is_registered_with_its_family_preset():
    ids = [t for t in registered_tasks() if t.startswith("ogbench:")]
    assert len(ids) == 2 * 2 * 6  # {single, double} x {play, noisy} x {default goal, task1..5}
    for task, v_min in ((TASK, -100.0), ("ogbench:cube-double-play-singletask-task5-v0", -200.0)):
        cfg = load_train_config(task)
        assert cfg.task == cfg.eval.task == task
        assert (cfg.data.horizon, cfg.critic.v_min, cfg.critic.v_max) == (5, v_min, 0.0)
        assert cfg.eval.exec_horizon == cfg.data.horizon and not cfg.eval.temporal_ensemble  # QC: whole chunk
        assert cfg.eval.num_episodes == 50
    spec = get_task(TASK)
    assert spec.experts is None and spec.action_spec is None and spec.control_hz == 20.0
    assert spec.load("published")(TASK)["fql"][0][:2] == ("FQL", 0.96)
    double = spec.load("published")("ogbench:cube-double-play-singletask-v0")
    assert double["qc"][0][:2] == ("QC", 0.72) and "best_of_n" not in double  # QC's figure beside QC as published
    # task2's figures come before the family's 5-task averages; the strongest methods lawr lacks are kept apart
    assert [name for name, *_ in double["qc"]] == ["QC", "QC"] and "task2" in double["qc"][0][2]
    assert "5-task average" in double["qc"][1][2]
    assert {name.split(":")[0] for name, *_ in double[PUBLISHED_OTHERS]} == {"BFN", "Value Flows"}
    task3 = spec.load("published")("ogbench:cube-double-play-singletask-task3-v0")
    assert [v for _, v, _ in task3["qc"]] == [0.66] and PUBLISHED_OTHERS in task3  # averages only


def test_the_env_is_ogbenchs_own_seeded_clipped_and_auto_resetting():
    env = make_env(TASK, num_envs=3, seed=5, episode_length_s=0.5)  # 10 steps
    try:
        assert (env.num_envs, env.obs_dim, env.action_dim, env.max_episode_length) == (3, 28, 5, 10)
        first = env.reset()[0]["policy"]
        assert first.shape == (3, 28) and first.dtype == torch.float32
        assert not torch.equal(first[0], first[1])  # env i is seeded seed + i
        assert torch.equal(env.reset()[0]["policy"], first)  # ... reproducibly
        big, unit = torch.full((3, 5), 7.0), torch.ones(3, 5)
        obs_big = env.step(big)[0]["policy"]
        env.reset()
        obs_unit = env.step(unit)[0]["policy"]
        assert torch.equal(obs_big, obs_unit)  # actions are clipped to [-1, 1] before they reach the env
        for step in range(2, 11):
            obs, reward, terminated, truncated, extras = env.step(unit)
            assert reward.tolist() == [-1.0] * 3  # singletask reward: the cube is not at its goal
            assert extras["success"].dtype == torch.bool and not extras["success"].any()
            assert truncated.all() == (step == 10) and not terminated.any()
            joint_velocities = obs["policy"][:, 6:12]
            # moving arms until the time limit; then the env was reset: a new episode's first obs (arm at rest)
            assert (joint_velocities.abs().sum(1) > 0).all() == (step < 10)
    finally:
        env.close()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """scripts/train_lawr.py on a 4-episode dataset in OGBench's layout: three phases, then L-AWR and flow BC
    evaluated in OGBench's env (2 episodes each)."""
    root = tmp_path_factory.mktemp("ogbench")
    dataset = ogbench_dataset(root / "cube-single-play-singletask-v0.npz", num_episodes=4, length=40)
    run = root / "run"
    tiny = ["progress=false", "log_interval=2", "checkpoint_interval=4",
            "flow.width=32", "flow.depth=1", "flow.time_embed_dim=8", "flow.batch_size=16", "flow.num_steps=6",
            "critic.hidden_dim=32", "critic.num_layers=1", "critic.num_bins=21", "critic.batch_size=16",
            "critic.num_steps=6", "planner.hidden_dim=32", "planner.num_blocks=1", "planner.batch_size=16",
            "planner.num_steps=6", "eval.num_envs=2", "eval.num_episodes=2"]
    done = _script("train_lawr.py", "--task", TASK, "--dataset", str(dataset), "--run_dir", str(run), *tiny)
    return run, dataset, done


def _script(name, *args):
    return subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / name), *args], capture_output=True, text=True,
                          timeout=300)


def test_train_lawr_trains_the_phases_and_evaluates_in_the_ogbench_env(tiny_run):
    run, _, done = tiny_run
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["dataset"]["episodes"] == 4 and summary["dataset"]["chunks"] == 160  # final steps bootstrapped
    for method in ("lawr", "flow_bc"):
        report = json.loads((run / "eval" / method / "eval.json").read_text())
        assert report["task"] == TASK and report["context"]["exec_horizon"] == 5
        s = report["summary"]
        assert s["episodes"] == 2 and len(s["success_ci95"]) == 2
        # An episode ends at success or after the env's own 200 steps; each step earns -1 or 0 (cube at goal).
        assert 1 <= s["length_mean"] <= 200 and -200 <= s["return_mean"] <= 0
        assert s["success_rate"] > 0 or s["length_mean"] == 200


def test_evaluate_script_reuses_the_runs_protocol(tiny_run):
    run, _, _ = tiny_run
    status, _, err = run_script("evaluate.py", "--checkpoint", str(run), "--num_envs", "1", "--num_episodes", "1",
                                "--no_progress", "--out", str(run / "eval" / "again"))
    assert status == 0, err[-3000:]
    report = json.loads((run / "eval" / "again" / "eval.json").read_text())
    assert report["config"]["exec_horizon"] == 5 and report["summary"]["episodes"] == 1
    assert report["support"] is not None  # L-AWR's support check ran on the run's dataset


def test_export_without_joint_names_and_deploy_in_the_ogbench_env(tiny_run):
    run, _, _ = tiny_run
    status, _, err = run_script("export.py", "--checkpoint", str(run), "--formats", "onnx")
    assert status == 0, err[-3000:]
    from lawr_ext.export import load_onnx

    _, metadata = load_onnx(run / "export" / "policy.onnx")
    assert metadata["task"] == TASK and "joint_names" not in metadata and metadata["exec_horizon"] == 5
    assert metadata["temporal_ensemble"] is False  # the run's evaluation protocol travels with the file
    assert "action_scale" not in metadata  # no action spec: the env takes the actions as they are
    # its own process: the robot side checks that it loaded neither torch nor the rest of lawr
    done = _script("deploy_onnx.py", "--onnx", str(run / "export" / "policy.onnx"), "--episode_length_s", "1.0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "episode: 20 steps" in done.stdout and "4 chunks" in done.stdout  # H = 5, played whole


def test_collection_is_refused_with_a_pointer_to_datasets(tmp_path):
    status, _, err = run_script("train_lawr.py", "--task", TASK, "--run_dir", str(tmp_path / "run"), "--no_eval")
    assert status != 0 and "has no scripted experts" in err and "--dataset" in err


def test_test_data_has_the_shipped_layout(tmp_path):
    arrays = np.load(ogbench_dataset(tmp_path / "d.npz", num_episodes=1, length=5))
    assert {k: arrays[k].dtype for k in arrays.files} == dict.fromkeys(
        ("observations", "next_observations", "actions", "rewards", "masks", "terminals", "qpos", "qvel"),
        np.float32)
    assert arrays["terminals"].tolist() == [0, 0, 0, 0, 1]


def test_a_file_as_downloaded_trains_under_its_task_relabelled_by_ogbenchs_own_functions(tmp_path):
    """OGBench's download holds observations, actions, terminals, qpos, qvel and no rewards: under its ogbench:
    task lawr relabels it as ogbench.make_env_and_datasets does, says so in one line, and trains on it."""
    import warnings

    from conftest import TINY, assert_refused, run_script
    from ogbench.relabel_utils import relabel_dataset
    from ogbench.utils import load_dataset

    from lawr_ext.data.dataset import load_episodes
    from lawr_ext.data.reading import Reading

    shipped = np.load(ogbench_dataset(tmp_path / "shipped.npz", num_episodes=3, length=20))
    raw = tmp_path / "cube-single-play-v0.npz"
    np.savez(raw, **{key: shipped[key] for key in ("observations", "actions", "terminals", "qpos", "qvel")})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        episodes = load_episodes(raw, reading=Reading(task=TASK))
    import ogbench

    singletask = ogbench.make_env_and_datasets("cube-single-play-singletask-v0", env_only=True)
    expected = load_dataset(str(raw), add_info=True)  # ogbench's own reading and relabelling of the file
    relabel_dataset(singletask.spec.id, singletask, expected)
    assert episodes.lengths.tolist() == [19, 19, 19]  # each trajectory's extra last state is not a transition
    assert episodes.rewards.tolist() == expected["rewards"].tolist()
    assert episodes.no_bootstrap.tolist() == (expected["masks"] == 0).tolist()
    assert torch.equal(episodes.final_obs, torch.from_numpy(expected["next_observations"][18::19]))
    notes = [str(w.message) for w in caught if "as downloaded" in str(w.message)]
    assert len(notes) == 1 and "ogbench.relabel_utils.relabel_dataset" in notes[0]

    tiny = [o for o in TINY if not o.startswith("critic.v_")] + ["critic.v_min=-20", "critic.v_max=0"]
    run = tmp_path / "run"
    status, _, err = run_script("train_lawr.py", "--task", TASK, "--dataset", str(raw), "--run_dir", str(run),
                                "--device", "cpu", "--no_eval", *tiny)
    assert status == 0, err[-3000:]
    assert json.loads((run / "summary.json").read_text())["dataset"]["episodes"] == 3
    # The export reads the run's dataset as training read it (its observation range goes into the metadata).
    from lawr_ext.export import export_policy, load_onnx

    _, metadata = load_onnx(export_policy(run, formats=("onnx",))["onnx"])
    assert metadata["obs_low"] == pytest.approx(episodes.obs.min(dim=0).values.tolist())
    # Under another task the file has no rewards, and a file of another family has other dims: one line each.
    for task, fragments in (("Bimanual-Chunk", ["OGBench file as downloaded", "--task ogbench:"]),
                            ("ogbench:cube-double-play-singletask-v0",
                             ["'observations' have dim 28, OGBench's cube-double-play-singletask-v0 has 37"])):
        assert_refused(run_script("train_lawr.py", "--task", task, "--dataset", str(raw), "--run_dir",
                                  str(tmp_path / "refused"), "--device", "cpu", "--no_eval", *tiny), str(raw), *fragments)
        assert not (tmp_path / "refused").exists()
