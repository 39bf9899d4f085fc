"""Evaluation under torchrun: two gloo ranks each roll out their share of the episodes in their own envs
(own seed range); every rank ends with the same merged report, which counts every episode once."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import TWO_PROCESSES, free_port

pytestmark = TWO_PROCESSES

# One rank as torchrun starts it. make_env is replaced by the counting fake env of test_eval (no simulator):
# env e's episodes last 2 + e steps and the ones of env 1 succeed.
WORKER = """
import json, sys
sys.path.insert(0, {tests!r})
import lawr_ext.tasks
from lawr_ext.configs.eval import EvalConfig
from lawr_ext.eval import evaluate_policy
from lawr_ext.utils.distributed import init_world
from conftest import CountingEnv, StampPolicy

seeds = []
def fake_make_env(task, num_envs, device, seed, **overrides):
    seeds.append(seed)
    env = CountingEnv(lengths=[2 + e for e in range(num_envs)], succeed={{1}})
    env.close = lambda: None
    return env

lawr_ext.tasks.make_env = fake_make_env
world = init_world("cpu")
cfg = EvalConfig(task="Bimanual-Chunk", num_envs=2, num_episodes=7, exec_horizon=2, progress=False)
report = evaluate_policy(StampPolicy(4), cfg, world)
print(json.dumps({{"seeds": seeds, "summary": report["summary"], "processes": report["context"]["processes"]}}))
"""


def test_two_ranks_split_the_episodes_and_merge_one_report(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    env = os.environ | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2",
                        "OMP_NUM_THREADS": "1"}
    ranks = [subprocess.Popen([sys.executable, str(worker)], env=env | {"RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outputs = []
    for proc in ranks:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert outputs[0]["summary"] == outputs[1]["summary"]  # every rank holds the merged report
    assert outputs[0]["processes"] == 2
    assert outputs[0]["seeds"] != outputs[1]["seeds"]  # disjoint seed ranges
    summary = outputs[0]["summary"]
    # 7 episodes = 4 on rank 0 + 3 on rank 1, each rank with 2 envs: env 1 (success) runs 2 + 1 of them
    assert summary["episodes"] == 7 and summary["successes"] == 3
