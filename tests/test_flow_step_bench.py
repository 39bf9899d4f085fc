"""bench/flow_step.py: its full-batch reference computes the learner's target, and it times every variant."""

import json
import subprocess
import sys

import torch

from lawr_ext import REPO_ROOT
from lawr_ext.algorithms.flow import MeanFlow, interpolate
from lawr_ext.configs.flow import FlowConfig

sys.path.insert(0, str(REPO_ROOT / "bench"))
import flow_step  # noqa: E402


def test_the_full_batch_reference_computes_the_learners_target():
    torch.manual_seed(0)
    learner = MeanFlow(FlowConfig(arch="mlp", width=32, depth=2, time_embed_dim=16), 5, 8, 3, torch.nn.Identity())
    x, noise, obs = torch.randn(12, 8, 3), torch.randn(12, 8, 3), torch.randn(12, 5)
    t = 0.1 + 0.9 * torch.rand(12)
    r = torch.where(torch.arange(12) % 2 == 0, t, t * torch.rand(12))  # half the rows skip the JVP in the learner
    z_t, v = interpolate(x, noise, t), noise - x
    reference = flow_step.FullBatchJVP.mean_flow_target(learner.decoder, z_t, t, r, obs, v)
    learners = MeanFlow.mean_flow_target(learner.decoder, z_t, t, r, obs, v)
    assert not torch.equal(reference[1::2], v[1::2])  # the r < t rows carry a JVP term
    torch.testing.assert_close(learners, reference, rtol=1e-5, atol=1e-5)


def test_it_times_every_variant(tmp_path, monkeypatch, capsys):
    out = tmp_path / "steps.json"
    monkeypatch.setattr(sys, "argv", ["flow_step.py", "--task", "Bimanual-Chunk", "--steps", "2", "--json", str(out),
                                      "profile=tiny"])
    flow_step.main()
    seconds = json.loads(out.read_text())["seconds_per_step"]
    assert set(seconds) == {"plain flow matching", "JVP on every row", "JVP on r < t rows", "all rows r < t", "bf16 autocast"}
    assert all(s > 0 for s in seconds.values())
    assert "| JVP on r < t rows |" in capsys.readouterr().out


def test_a_wrong_override_is_one_line_on_stderr():
    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "flow_step.py"), "--task", "Bimanual-Chunk",
                           "flow.batch_size=0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("[flow_step] ") and "batch_size" in done.stderr
    assert "Traceback" not in done.stderr
