"""The grasp diagnostic: where a gripper closes in its object's frame, latched per episode in a rollout and in a
dataset, and binned centred / loose / offset."""

import math

import pytest
import torch
from conftest import CountingEnv, StampPolicy

from lawr_ext.configs.eval import EvalConfig
from lawr_ext.data.episodes import Episodes
from lawr_ext.eval import rollout
from lawr_ext.eval.diagnostics import GraspRecorder, data_grasps, grasp_summary
from lawr_ext.tasks.bimanual.grasps import JOINT_OBS, grasp_geometry


def _yaw_quat(yaw: float) -> list[float]:
    return [0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)]


def _insertion_obs(grasp_left, grasp_right, peg=(0.0, 0.0, 0.0), peg_yaw=0.0, socket=(0.0, 0.3, 0.0)) -> torch.Tensor:
    return torch.tensor([0.0] * JOINT_OBS + list(peg) + _yaw_quat(peg_yaw) + list(socket) + _yaw_quat(0.0)
                        + list(grasp_left) + list(grasp_right))


def test_grasp_geometry_reads_the_offset_in_the_nearest_objects_frame():
    yaw = math.radians(30)
    along = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])
    across = torch.tensor([-math.sin(yaw), math.cos(yaw), 0.0])
    peg = torch.tensor([0.1, -0.05, 0.02])
    left = peg + 0.01 * along + 0.03 * across + torch.tensor([0.0, 0.0, 0.006])  # off-centre across the fingers
    right = torch.tensor([0.0, 0.3, 0.0]) + torch.tensor([0.002, -0.001, 0.0])  # near the socket
    obs = _insertion_obs(left.tolist(), right.tolist(), peg=peg.tolist(), peg_yaw=yaw).unsqueeze(0)
    actions = torch.zeros(1, 14)
    actions[0, 6], actions[0, 13] = -0.5, 0.5  # the left gripper closing, the right one open
    g = grasp_geometry(obs, actions)
    assert g["closing"].tolist() == [[True, False]]
    assert g["object"].tolist() == [[0, 1]]  # peg for the left arm, socket for the right
    assert g["offset"][0, 0].tolist() == pytest.approx([0.01, 0.03, 0.006], abs=1e-6)
    assert g["offset"][0, 1].tolist() == pytest.approx([0.002, -0.001, 0.0], abs=1e-6)


def test_grasp_geometry_refuses_an_observation_without_object_poses():
    with pytest.raises(ValueError, match="holds no object poses"):
        grasp_geometry(torch.zeros(2, 32), torch.zeros(2, 14))  # an image task's joints-only observation


def _step_geometry(obs: torch.Tensor, actions: torch.Tensor) -> dict:
    """CountingEnv's obs is (env, step): the left arm closes from step 1, the right from step 3; the offset records
    the step and the env it closed at."""
    step = obs[:, 1]
    closing = torch.stack([step >= 1, step >= 3], dim=1)
    offset = torch.stack([step, obs[:, 0], torch.zeros_like(step)], dim=-1)[:, None, :].expand(-1, 2, -1)
    return {"closing": closing, "offset": offset}


def test_rollout_observer_latches_each_episodes_first_closure_in_the_order_episodes_are_recorded():
    env = CountingEnv(lengths=[2, 5, 4])
    recorder = GraspRecorder(_step_geometry)
    episodes, _ = rollout(env, StampPolicy(4), EvalConfig(num_episodes=6, exec_horizon=4, progress=False), recorder)
    offsets = recorder.offsets()
    assert recorder.episodes == episodes and offsets.shape == (len(episodes), 2, 3)
    for episode, offset in zip(episodes, offsets):
        assert offset[0].tolist() == [1.0, episode.env_id, 0.0]  # closed at step 1 of its own episode, not earlier
        if episode.length > 3:  # the right arm closed at step 3
            assert offset[1].tolist() == [3.0, episode.env_id, 0.0]
        else:  # env 0's 2-step episodes end before the right arm closes
            assert offset[1].isnan().all()


def test_data_grasps_find_each_episodes_first_closing_command():
    lengths = torch.tensor([3, 4])
    obs = torch.stack([torch.tensor([e, t], dtype=torch.float32) for e, n in enumerate(lengths.tolist())
                       for t in range(n)])
    episodes = Episodes(obs=obs, actions=torch.zeros(len(obs), 14), rewards=torch.zeros(len(obs)), lengths=lengths,
                        terminated=torch.zeros(2, dtype=torch.bool), success=torch.tensor([True, False]),
                        strategy=torch.zeros(2, dtype=torch.long), quality=torch.zeros(2, dtype=torch.long))
    offsets = data_grasps(episodes, _step_geometry)
    assert offsets[0, 0].tolist() == [1.0, 0.0, 0.0] and offsets[0, 1].isnan().all()  # 3 steps: the right never
    assert offsets[1, 0].tolist() == [1.0, 1.0, 0.0] and offsets[1, 1].tolist() == [3.0, 1.0, 0.0]


def test_grasp_summary_bins_by_the_offset_across_the_fingers_and_the_worse_arm():
    nan = math.nan
    across_mm = [[1.0, 2.0],    # centred, succeeded
                 [-3.0, 12.0],  # the worse arm loose, failed
                 [30.0, 1.0],   # offset (either sign), succeeded
                 [-29.0, nan]]  # the right arm never closed, failed, lifted nothing
    offsets = torch.zeros(4, 2, 3)
    offsets[..., 1] = torch.tensor(across_mm) / 1000
    offsets[..., 0] = 0.002
    offsets[3, 1] = nan
    success, lifted_nothing = torch.tensor([True, False, True, False]), torch.tensor([False, False, False, True])
    summary = grasp_summary(offsets, success, lifted_nothing)
    assert summary["closures"] == {"centred": 4, "loose": 1, "offset": 2, "none": 1}
    assert summary["episodes_by_worst_arm"] == {"centred": [1, 1, 0], "loose": [1, 0, 0], "offset": [1, 1, 0],
                                                "none": [1, 0, 1]}
    assert summary["median_across_mm"] == pytest.approx(3.0)  # of 1, 2, 3, 12, 30, 1, 29
    assert summary["median_along_mm"] == pytest.approx(2.0)
    assert summary["across_quartiles_mm"] == pytest.approx([1.5, 3.0, 20.5])  # linear between order statistics
    assert summary["episodes"] == 4 and summary["successes"] == 2


def test_diagnose_reports_the_datas_grasps_per_group_and_each_policys(tmp_path):
    import sys

    from lawr_ext import REPO_ROOT

    sys.path.insert(0, str(REPO_ROOT / "bench"))
    import diagnose

    offsets = torch.zeros(2, 2, 3)
    offsets[1, :, 1] = 0.03
    summary = grasp_summary(offsets, torch.tensor([True, False]), torch.tensor([False, True]))
    diagnose.write_markdown({"dataset": "d", "grasps": {"data": {"all": summary, "quality 2": summary},
                                                        "run/flow_bc@exec1_ensemble": summary}}, tmp_path)
    table = [line for line in (tmp_path / "diagnose.md").read_text().splitlines() if line.startswith("| ")]
    columns = table[0].count(" | ") + 1
    assert all(row.count(" | ") + 1 == columns for row in table[1:])  # header and rows agree
    rows = table[1:]
    assert [row.split(" | ")[0] for row in rows] == ["| data all", "| data quality 2", "| run/flow_bc@exec1_ensemble"]
    assert rows[0].split(" | ")[3] == "2 / 0 / 2 / 0"  # closures: two centred, two offset
    assert rows[0].split(" | ")[4] == "0.0, 15.0, 30.0"  # quartiles across the fingers
    assert rows[0].split(" | ")[6] == "1, 1, 0 / 0, 0, 0 / 1, 0, 1 / 0, 0, 0 |"  # by the worse arm
