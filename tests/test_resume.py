"""kill -9 a training run at several points; every rerun resumes, and the result is bit-identical.

The run is a subprocess killed with SIGKILL right after a chosen checkpoint lands (no clean-up code runs);
the rerun in the same run_dir must continue from the last checkpoint, and after all kills the final
networks and optimizer states must equal (torch.equal) those of an uninterrupted run. Between kills every
checkpoint on disk must load: writes are atomic renames, so a half-written checkpoint never exists.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, assert_same_state, synthetic_dataset

from lawr_ext.configs.train import load_train_config
from lawr_ext.runners import checkpoint_path, final_path, read_checkpoint, train
from lawr_ext.utils.lock import LOCK_NAME

#: 12 steps per phase, a checkpoint every 4: kills can land after the 1st or 2nd checkpoint of a phase.
SCHEDULE = TINY + ["flow.num_steps=12", "critic.num_steps=12", "planner.num_steps=12", "checkpoint_interval=4"]

WORKER = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[3]))
from lawr_ext.configs.train import load_train_config
from lawr_ext.data.dataset import ChunkDataset
from lawr_ext.runners import train

gather = ChunkDataset.batch
def slow_batch(self, ids):  # leaves the test time to kill between two checkpoints
    time.sleep(0.05)
    return gather(self, ids)
ChunkDataset.batch = slow_batch
train(load_train_config("Bimanual-Chunk", sys.argv[4:]), sys.argv[1], sys.argv[2])
"""


def _step(run: Path, phase: str) -> int:
    path = checkpoint_path(run, phase)
    return torch.load(path, weights_only=True)["step"] if path.exists() else 0


def _assert_only_whole_checkpoints(run: Path) -> None:
    for path in run.rglob("*.pt"):
        read_checkpoint(path)  # raises on a truncated / half-written file
    leftovers = [p.name for p in run.rglob("*") if p.is_file() and p.suffix not in (".pt", ".json", ".md", ".npz")
                 and "tfevents" not in p.name and p.name != LOCK_NAME]
    assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers), leftovers


def _start(worker: Path, dataset: Path, run: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(worker), str(dataset), str(run), str(torch.get_num_threads()), *SCHEDULE],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"OMP_NUM_THREADS": str(torch.get_num_threads())})


def _kill_after(proc: subprocess.Popen, run: Path, phase: str, min_step: int, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while _step(run, phase) < min_step:
        if proc.poll() is not None:
            pytest.fail(f"worker exited ({proc.returncode}) before {phase} step {min_step}: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"no {phase} checkpoint at step {min_step} after {timeout} s"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not final_path(run, "planner").exists(), "the kill came too late: the run had already finished"


def test_kill_9_at_several_points_then_resume_is_bit_identical(tmp_path):
    dataset = synthetic_dataset(tmp_path / "data.npz")
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    interrupted = tmp_path / "interrupted"

    for phase, checkpoints in (("flow", 1), ("critic", 2), ("planner", 1)):
        before = _step(interrupted, phase)
        _kill_after(_start(worker, dataset, interrupted), interrupted, phase, checkpoints * 4)
        assert _step(interrupted, phase) > before  # the rerun resumed and made progress before this kill
        _assert_only_whole_checkpoints(interrupted)
    finish = _start(worker, dataset, interrupted)
    assert finish.wait() == 0, finish.stderr.read()[-2000:]

    reference = tmp_path / "uninterrupted"
    train(load_train_config("Bimanual-Chunk", SCHEDULE), dataset, reference)

    for phase in ("flow", "critic", "planner"):
        got, want = read_checkpoint(checkpoint_path(interrupted, phase)), read_checkpoint(checkpoint_path(reference, phase))
        assert got["step"] == want["step"] == 12
        assert_same_state(got["learner"], want["learner"], f"{phase} training state")
        assert_same_state(read_checkpoint(final_path(interrupted, phase))["model"],
                      read_checkpoint(final_path(reference, phase))["model"], f"{phase} final")

