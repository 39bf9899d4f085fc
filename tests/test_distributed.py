"""Two gloo processes (as torchrun starts them) train like one process with the same global batch."""

import json
import os
import shutil
import subprocess
import sys

import torch
from conftest import TINY, TWO_PROCESSES, free_port, synthetic_dataset

from lawr_ext.configs.train import load_train_config
from lawr_ext.runners import final_path, read_checkpoint, train

WORKER = """
import json, sys, torch
torch.set_num_threads(1)
import lawr_ext.runners.pipeline as pipeline
from lawr_ext.configs.train import load_train_config
from lawr_ext.utils.distributed import init_world
from lawr_ext.utils.io import parameter_fingerprint

cfg = load_train_config("Bimanual-Chunk", sys.argv[3:])
world = init_world(cfg.device)
fingerprints, train_stage = {}, pipeline.train_stage

def recording_train_stage(cfg, phase, learner, *args):  # every rank's weights after each phase
    metrics = train_stage(cfg, phase, learner, *args)
    fingerprints[phase] = world.gather(parameter_fingerprint(learner))
    return metrics

pipeline.train_stage = recording_train_stage
pipeline.train(cfg, sys.argv[1], sys.argv[2], world=world)
if world.is_writer:
    open(sys.argv[2] + "/fingerprints.json", "w").write(json.dumps(fingerprints))
"""


pytestmark = TWO_PROCESSES


def test_two_gloo_ranks_stay_identical_and_match_one_process(tmp_path):
    dataset = synthetic_dataset(tmp_path / "data.npz")
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    overrides = TINY + ["flow.batch_size=16", "critic.batch_size=16", "planner.batch_size=16"]  # 8 chunks per rank
    run = tmp_path / "two_ranks"
    env = os.environ | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    ranks = [subprocess.Popen([sys.executable, str(worker), str(dataset), str(run), *overrides],
                              env=env | {"RANK": str(r), "LOCAL_RANK": str(r)}, stderr=subprocess.PIPE, text=True)
             for r in range(2)]
    for proc in ranks:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]

    fingerprints = json.loads((run / "fingerprints.json").read_text())
    assert sorted(fingerprints) == ["critic", "flow", "planner"]  # every phase was recorded
    assert all(len(set(per_rank)) == 1 for per_rank in fingerprints.values()), fingerprints  # ranks in lockstep

    # One process, same global batches, each phase on top of the two-rank run's earlier phases (the flow's
    # noise draws differ per rank by design; critic and planner updates are deterministic given the batch).
    for phase, earlier in (("critic", ("flow",)), ("planner", ("flow", "critic"))):
        reference = tmp_path / f"one_process_{phase}"
        for done in earlier:
            shutil.copytree(run / done, reference / done)
        train(load_train_config("Bimanual-Chunk", overrides), dataset, reference, (phase,))
        two, one = (read_checkpoint(final_path(r, phase))["model"] for r in (run, reference))
        for name in one:
            torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=lambda m: f"{phase} {name}: {m}")


EXIT_WORKER = """
import torch
from lawr_ext.utils.distributed import init_world
world = init_world("cpu")
for _ in range(50):
    world.gather(torch.randn(1000).sum().item())
"""


def test_ranks_that_finish_exit_cleanly_without_tearing_the_group_down_themselves(tmp_path):
    # Left to interpreter finalization, gloo's threads aborted about one such exit in three (SIGABRT).
    worker = tmp_path / "worker.py"
    worker.write_text(EXIT_WORKER)
    for _ in range(8):
        env = os.environ | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
        ranks = [subprocess.Popen([sys.executable, str(worker)], env=env | {"RANK": str(r), "LOCAL_RANK": str(r)},
                                  stderr=subprocess.PIPE, text=True) for r in range(2)]
        for proc in ranks:
            assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]
