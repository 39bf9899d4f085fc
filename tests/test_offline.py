"""Offline training imports no simulator: on a GPU host without Isaac Lab, Warp, Newton or gymnasium,
``import lawr_ext.runners`` works and ``scripts/train_lawr.py --dataset D --no_eval`` trains all three phases.

In a subprocess a meta-path hook (conftest.without_simulator) makes importing any of those packages raise
ImportError, as if they were not installed; it trains a tiny run from a plain dataset (.npz and a plain HDF5 file) and a
collected shard directory (written here, with Isaac Lab, before the hook exists).
"""

import os
import subprocess
import sys

import pytest
import torch
from conftest import BIMANUAL_LINE_META, TINY, collect_line, plain_hdf5_copy, synthetic_dataset, without_simulator

from lawr_ext import REPO_ROOT
from lawr_ext.runners import final_path, read_checkpoint


@pytest.mark.parametrize("layout", ["npz", "plain_hdf5", "collected_shards"])
def test_train_lawr_without_any_simulator_package(tmp_path, layout):
    overrides = list(TINY)
    if layout == "collected_shards":  # the line env's rewards (its position, up to ~1.2 per step) need a wider support
        dataset = collect_line(tmp_path / "shards", num_envs=3, num_episodes=6, meta=BIMANUAL_LINE_META)
        overrides.append("critic.v_max=10")
    else:
        dataset = synthetic_dataset(tmp_path / "data.npz")
        if layout == "plain_hdf5":
            dataset = plain_hdf5_copy(dataset, tmp_path / "data.hdf5")
    run = tmp_path / "run"
    command = [sys.executable, str(REPO_ROOT / "scripts" / "train_lawr.py"), "--task", "Bimanual-Chunk", "--dataset", str(dataset),
               "--run_dir", str(run), "--device", "cpu", "--no_eval", *overrides]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env=without_simulator(tmp_path / "site") | {"OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "BLOCKED_LOADED []" in done.stdout, done.stdout[-2000:]
    for phase in ("flow", "critic", "planner"):
        assert read_checkpoint(final_path(run, phase))["stage"] == phase
