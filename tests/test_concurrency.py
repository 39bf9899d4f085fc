"""Concurrency and files: one process per run directory and per dataset directory, kill -9 at any
moment loses nothing and leaves no temporary file behind for long, and written files respect the umask."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY, assert_refused, collect_line, read_demos, synthetic_dataset

from lawr_ext import REPO_ROOT
from lawr_ext.data.dataset import load_episodes
from lawr_ext.runners import final_path
from lawr_ext.utils.io import atomic_path, atomic_write_text
from lawr_ext.utils.lock import LOCK_NAME, LockedError, directory_lock

TESTS = str(Path(__file__).parent)
ENV = os.environ | {"OMP_NUM_THREADS": "1"}

HELD_TRAINER = """
import os, runpy, sys, time
from lawr_ext.data.dataset import ChunkDataset
gather = ChunkDataset.batch
def held_batch(self, ids):  # a training still running when the second one starts: held until the test releases it
    while not os.path.exists({release!r}):
        time.sleep(0.02)
    return gather(self, ids)
ChunkDataset.batch = held_batch
sys.argv = [{script!r}] + sys.argv[1:]
runpy.run_path({script!r}, run_name="__main__")
"""


def wait_for_holder(directory: Path, pid: int, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until process ``pid`` holds ``directory``'s lock (its pid is in the lock file)."""
    deadline = time.monotonic() + timeout
    while f"pid {pid} " not in ((directory / LOCK_NAME).read_text() if (directory / LOCK_NAME).exists() else ""):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the first process never took the lock"
        time.sleep(0.05)


def test_a_second_training_on_the_same_run_directory_is_refused_in_one_line(tmp_path):
    dataset, run = synthetic_dataset(tmp_path / "data.npz"), tmp_path / "run"
    script, release = str(REPO_ROOT / "scripts" / "train_lawr.py"), tmp_path / "release"
    (tmp_path / "held.py").write_text(HELD_TRAINER.format(script=script, release=str(release)))
    args = ["--task", "Bimanual-Chunk", "--dataset", str(dataset), "--run_dir", str(run), "--phase", "flow", *TINY]
    first = subprocess.Popen([sys.executable, str(tmp_path / "held.py"), *args], env=ENV, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_holder(run, first.pid, first)
        second = subprocess.run([sys.executable, script, *args], env=ENV, text=True, capture_output=True, timeout=300)
        assert_refused((second.returncode, second.stdout, second.stderr), str(run), f"in use by training pid {first.pid}")
        assert first.poll() is None  # the refusal touched nothing of the training in flight ...
    finally:
        release.touch()
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]  # ... which finishes
    assert final_path(run, "flow").is_file()


def test_the_lock_is_released_by_a_kill_and_taken_again_by_the_same_process(tmp_path):
    directory = tmp_path / "locked"
    with directory_lock(directory, "training"):
        with directory_lock(directory, "collection"):  # the holder may take it again (a collection in a training)
            pass
        holder = subprocess.run([sys.executable, "-c", "from lawr_ext.utils.lock import directory_lock\n"
                                 f"with directory_lock({str(directory)!r}, 'x'): pass"],
                                capture_output=True, text=True, env=ENV)
        assert holder.returncode != 0 and f"in use by training pid {os.getpid()}" in holder.stderr
    killed = subprocess.Popen([sys.executable, "-c", "import os, signal\nfrom lawr_ext.utils.lock import directory_lock\n"
                               f"with directory_lock({str(directory)!r}, 'training'): os.kill(os.getpid(), signal.SIGKILL)"],
                              env=ENV)
    assert killed.wait(timeout=60) == -signal.SIGKILL
    with directory_lock(directory, "training"):  # a killed holder leaves no stale lock
        pass


def test_a_second_collector_on_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "shards"
    code = (f"import sys; sys.path.insert(0, {TESTS!r}); from pathlib import Path; from conftest import collect_line; "
            f"collect_line(Path({str(out)!r}), num_episodes=8, step_delay_s=0.05)")
    first = subprocess.Popen([sys.executable, "-c", code], env=ENV, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_holder(out, first.pid, first)
        with pytest.raises(LockedError, match=f"in use by collection pid {first.pid}"):
            collect_line(out, num_episodes=8)
    finally:
        first.communicate(timeout=120)
    assert first.returncode == 0
    collect_line(tmp_path / "ref", num_episodes=8)
    assert read_demos(out) == read_demos(tmp_path / "ref")


KILLED_COLLECTOR = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from conftest import collect_line
from lawr_ext.data import hdf5_writer

written = [0]
write = hdf5_writer._LabeledWriter.write_labeled_episode
def write_then_die(self, record, demo_id):  # kill -9 in the middle of writing shard files
    write(self, record, demo_id)
    written[0] += 1
    if written[0] == {kill_after}:
        os.kill(os.getpid(), signal.SIGKILL)
hdf5_writer._LabeledWriter.write_labeled_episode = write_then_die
collect_line(Path({out!r}), num_episodes=12)
"""


@pytest.mark.parametrize("kill_after", [4, 5, 11], ids=lambda n: f"episode{n}")
def test_collection_killed_at_any_moment_resumes_to_the_uninterrupted_dataset(tmp_path, kill_after):
    """Rounds of 4 episodes, killed after writing the first shard's last episode (before its rename), the
    second's first, the last one's third."""
    out = tmp_path / "killed"
    script = KILLED_COLLECTOR.format(tests=TESTS, out=str(out), kill_after=kill_after)
    killed = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    if kill_after > 4:
        assert load_episodes(out).num_episodes == 4 * ((kill_after - 1) // 4)  # the whole shards: a readable dataset
    assert [p for p in out.iterdir() if p.name.endswith(".tmp.hdf5")]  # the kill left the shard in flight
    collect_line(out, num_episodes=12)
    collect_line(tmp_path / "ref", num_episodes=12)
    assert read_demos(out) == read_demos(tmp_path / "ref")
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [LOCK_NAME]  # temp files cleaned


KILLED_WRITE = """
import os, signal
from lawr_ext.utils.io import atomic_path
with atomic_path({target!r}) as tmp:
    tmp.write_bytes(b"half an export")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_an_export_killed_mid_write_leaves_a_temp_file_the_next_export_removes(exported_policy, tmp_path):
    from lawr_ext.export import export_pt2

    policy, metadata, _ = exported_policy
    target = tmp_path / "export" / "policy.pt2"
    left = []
    for _ in range(2):  # each write of the target removes what the killed one before it left
        killed = subprocess.Popen([sys.executable, "-c", KILLED_WRITE.format(target=str(target))], env=ENV)
        assert killed.wait(timeout=60) == -signal.SIGKILL
        left.append(sorted(p.name for p in target.parent.iterdir()))
    assert len(left[0]) == len(left[1]) == 1 and left[0] != left[1] and f".{killed.pid}." in left[1][0]
    (target.parent / ".policy.pt2.k9x2.tmp").write_bytes(b"")  # a 0-byte one of an older lawr
    stale = sorted(p.name for p in target.parent.iterdir())
    assert len(stale) == 2 and not target.exists()
    with atomic_path(target.parent / "other.onnx") as tmp:  # other targets' writes leave them alone
        tmp.write_bytes(b"x")
    assert all((target.parent / name).exists() for name in stale)
    export_pt2(policy, target, metadata)  # as every export format, through atomic_path
    assert sorted(p.name for p in target.parent.iterdir()) == ["other.onnx", "policy.pt2"]


def test_a_write_in_flight_is_not_removed_as_stale(tmp_path):
    target = tmp_path / "summary.json"
    with atomic_path(target) as outer:  # this process is alive: its temp file is a write in flight
        outer.write_text("{}")
        atomic_write_text("{}", tmp_path / "other.json")
        assert outer.exists()
    assert target.read_text() == "{}"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    """A deploy user must be able to read the exported policy: no longer 0600 whatever the umask."""
    previous = os.umask(umask)
    try:
        atomic_write_text("x", tmp_path / "file.txt")
        with atomic_path(tmp_path / "policy.pt") as tmp:
            torch.save({}, tmp)
    finally:
        os.umask(previous)
    for name in ("file.txt", "policy.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
