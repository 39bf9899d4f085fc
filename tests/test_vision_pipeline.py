"""The image task end to end at tiny size, in the simulator: collection with the cameras (2 envs, 32 x 32 frames,
10-step episodes) -> training of the three phases on state + frames -> evaluation that renders the same cameras ->
export with frames as an input -> the robot side playing it on a rendered frame."""

import lawr_ext  # noqa: F401  (sets the Warp kernel cache before warp loads)
import numpy as np
import pytest
from conftest import TINY

from lawr_ext.configs.eval import EvalConfig
from lawr_ext.configs.train import load_train_config
from lawr_ext.data.collect import CollectConfig, collect_task
from lawr_ext.data.dataset import load_episodes
from lawr_ext.deploy import OnnxChunkPolicy, read_robot_limits
from lawr_ext.export import export_policy
from lawr_ext.runners import train
from lawr_ext.runners.evaluation import evaluate_run
from lawr_ext.tasks.bimanual.action_spec import ROBOT_LIMITS_FILE

pytestmark = pytest.mark.sim
TASK, SIZE, STEPS = "Bimanual-Chunk-Vision", 32, 10
ENV = {"episode_length_s": STEPS / 50, "chunk_horizon": 4, "cameras.height": SIZE, "cameras.width": SIZE}


def test_collect_train_evaluate_export_and_deploy_from_images(tmp_path):
    data = collect_task(TASK, tmp_path / "data", 2, CollectConfig(num_episodes=2, progress=False), **ENV)
    episodes = load_episodes(data)
    assert episodes.images.shape == (2 * STEPS, 3, SIZE, SIZE, 3) and episodes.obs.shape[1] == 32
    assert episodes.meta["cameras"] == ["top", "left_wrist", "right_wrist"]
    assert episodes.images.float().std() > 5.0  # rendered scenes, not blank frames

    run = tmp_path / "run"
    cfg = load_train_config(TASK, TINY + ["flow.encoder.features=8", "critic.v_max=50"])
    train(cfg, data, run)

    eval_cfg = EvalConfig(task=TASK, num_envs=2, num_episodes=2, exec_horizon=4, progress=False)
    results = evaluate_run(run, ["lawr"], eval_cfg, env_overrides={"episode_length_s": STEPS / 50})
    report = results["lawr"].report
    assert results["lawr"].error is None and report["summary"]["episodes"] == 2

    onnx = export_policy(run, "lawr", formats=("onnx",), log=lambda line: None)["onnx"]
    robot = OnnxChunkPolicy(str(onnx), robot_limits=read_robot_limits(ROBOT_LIMITS_FILE), log=lambda line: None)
    assert robot.meta["cameras"] == ["top", "left_wrist", "right_wrist"]
    assert robot.meta["image_shape"] == [3, SIZE, SIZE]
    action = robot.act(episodes.obs[0].numpy(), episodes.images[0].numpy())
    assert action.shape == (14,) and np.isfinite(action).all()
