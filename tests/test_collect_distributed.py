"""Collection under torchrun: two gloo ranks write disjoint rounds into one directory; the merged dataset is
exactly the single-process dataset, and any number of processes can finish a partial one."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from conftest import META, TWO_PROCESSES, LineEnv, LineExpert, collect_line, free_port, read_demos

from lawr_ext.data.collect import CollectConfig, collect
from lawr_ext.data.dataset import ChunkDataset, load_episodes
from lawr_ext.data.hdf5 import list_shards
from lawr_ext.utils.lock import LOCK_NAME

pytestmark = TWO_PROCESSES
NUM_ENVS, NUM_EPISODES = 3, 14  # rounds of 3, 3, 3, 3, 2 episodes

# One rank as torchrun starts it: join the group, collect this rank's rounds, wait for the others.
WORKER = """
import json, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import lawr_ext.data.collect as collect_module
from lawr_ext.utils.distributed import init_world
from test_collect_distributed import collect_part

world = init_world("cpu")
written, write = [], collect_module.write_episodes

def recording_write(path, records, first_id, meta):
    written.append(Path(path).name)
    write(path, records, first_id, meta)

collect_module.write_episodes = recording_write
collect_part(Path({out!r}), world.rank, world.size)
world.barrier()  # every round is on disk once all ranks are past this point
Path({out!r}, f"written_by_rank{{world.rank}}.json").write_text(json.dumps(written))
"""


def collect_part(out: Path, rank: int, world_size: int) -> Path:
    """This rank's share of the dataset ``collect_line(out, NUM_ENVS, NUM_EPISODES)`` writes in one process."""
    env = LineEnv(NUM_ENVS)
    cfg = CollectConfig(num_episodes=NUM_EPISODES, progress=False)
    return collect(env, LineExpert(env), out, cfg, META, num_strategies=2, num_qualities=3,
                   rank=rank, world_size=world_size)


def _run_two_ranks(out: Path) -> list[list[str]]:
    """Two processes with torchrun's environment; returns the shard files each rank wrote."""
    worker = out.parent / "worker.py"
    worker.write_text(WORKER.format(tests=str(Path(__file__).parent), out=str(out)))
    env = os.environ | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2",
                        "OMP_NUM_THREADS": "1"}
    ranks = [subprocess.Popen([sys.executable, str(worker)], env=env | {"RANK": str(r), "LOCAL_RANK": str(r)},
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    for proc in ranks:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-3000:]
    written = [json.loads((out / f"written_by_rank{r}.json").read_text()) for r in range(2)]
    for r in range(2):
        (out / f"written_by_rank{r}.json").unlink()
    return written


def _seeds(directory: Path, shard_names: list[str]) -> set[int]:
    seeds = set()
    for name in shard_names:
        with h5py.File(directory / name) as file:
            seeds |= {int(demo.attrs["seed"]) for demo in file["data"].values()}
    return seeds


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """(dataset directory, shard files each rank wrote) of one 2-rank collection."""
    out = tmp_path_factory.mktemp("collect") / "two_ranks"
    return out, _run_two_ranks(out)


def test_two_ranks_merge_into_the_single_process_dataset(two_ranks, tmp_path):
    out, written = two_ranks
    # each rank wrote its own rounds (round-robin), every round exactly once, with disjoint seeds
    assert written == [["shard_000000.hdf5", "shard_000002.hdf5", "shard_000004.hdf5"],
                       ["shard_000001.hdf5", "shard_000003.hdf5"]]
    assert sorted(p.name for p in out.iterdir()) == sorted(written[0] + written[1])
    assert not _seeds(out, written[0]) & _seeds(out, written[1])

    demos = read_demos(out)
    assert sorted(demos) == sorted(f"demo_{i}" for i in range(NUM_EPISODES))  # all present, once
    assert len({attrs["seed"] for _, attrs in demos.values()}) == 5  # one seed per round

    collect_line(tmp_path / "one_process", num_envs=NUM_ENVS, num_episodes=NUM_EPISODES)
    assert demos == read_demos(tmp_path / "one_process")  # the world size does not change the data

    dataset = ChunkDataset.from_path(out, horizon=4, gamma=0.9)
    assert dataset.episodes.num_episodes == NUM_EPISODES
    assert dataset.num_chunks == int((dataset.episodes.lengths - (~dataset.episodes.terminated).long()).sum())


def test_a_partial_multi_process_dataset_is_finished_by_one_process(two_ranks, tmp_path):
    """A killed 2-rank run leaves gaps (rank 1 ahead of rank 0); one process fills exactly the gaps."""
    out = shutil.copytree(two_ranks[0], tmp_path / "partial")
    (out / "shard_000002.hdf5").unlink()  # rank 0 was killed in round 2 mid-write
    (out / ".shard_000002.hdf5.k9x2.tmp.hdf5").write_bytes(b"half a shard")
    load_episodes(out)  # what survived is a readable dataset with a gap
    kept = {p.name: p.stat().st_mtime_ns for p in list_shards(out)}

    collect_line(out, num_envs=NUM_ENVS, num_episodes=NUM_EPISODES)
    collect_line(tmp_path / "one_process", num_envs=NUM_ENVS, num_episodes=NUM_EPISODES)
    assert read_demos(out) == read_demos(tmp_path / "one_process")
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept  # only the gap was collected
    assert sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME) == [f"shard_00000{r}.hdf5" for r in range(5)]  # temp file gone
