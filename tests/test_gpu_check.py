"""bench/gpu_check.sh in its tiny CPU mode (the code path of a GPU visit): every figure, a run that comes back
through the device tool's file limits, loads here although it was saved on CUDA, and evaluates."""

import json
import math
import re
import subprocess
import sys

import pytest
import torch
from conftest import without_simulator

from lawr_ext import REPO_ROOT
from lawr_ext.runners import load_policy, read_checkpoint

sys.path.insert(0, str(REPO_ROOT / "bench"))
import gpu_transport  # noqa: E402
import latency  # noqa: E402

PHASES = ("flow", "critic", "planner")


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    """One tiny-mode check: (results folder, gpu_check.json, the run it trained), on a host without the simulator
    (as the GPU host is: no Isaac Lab, Warp, Newton or gymnasium)."""
    out, work = tmp_path_factory.mktemp("results"), tmp_path_factory.mktemp("work")
    env = without_simulator(tmp_path_factory.mktemp("site")) | {"PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(REPO_ROOT / "bench" / "gpu_check.sh"), str(out), "--device", "cpu",
                           "--work_dir", str(work)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "BLOCKED_LOADED []" in proc.stdout, proc.stdout[-2000:]
    return out, json.loads((out / "gpu_check.json").read_text()), work / "run"


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_report_has_every_figure(check):
    _, report, _ = check
    assert report["errors"] == {}
    assert report["host"]["torch"] == torch.__version__ and report["host"]["device_name"]
    for phase in PHASES:
        assert positive(report["probe"][phase]["steps_per_s"]), phase
        assert positive(report["planned_steps"][phase]), phase
        done = report["phases"][phase]
        assert done["num_steps"] == report["planned_steps"][phase], phase
        for figure in ("steps_per_s", "train_seconds", "wall_seconds", "peak_memory_mib"):
            assert positive(done[figure]), (phase, figure)
        assert done["final_metrics"], phase
    jvp = report["mean_flow_jvp"]
    assert positive(jvp["ratio"]) and positive(jvp["mean_flow"]["ms_per_step"])
    assert positive(jvp["flow_matching"]["ms_per_step"])
    assert report["sizes"]["flow"].startswith("transformer")  # the GPU run's architecture, shrunk
    for runtime in ("eager",):  # tiny mode's runtimes; each ratio within one runtime
        outcome = report["latency"]["runtimes"][runtime]
        assert outcome["errors"] == {}, runtime
        for batch in ("1", "4"):
            row = outcome["batches"][batch]
            assert all(positive(row[k]) for k in ("L-AWR_ms", "diffusion_ms", "ratio")), (runtime, batch)
            assert row["ratio"] == pytest.approx(row["diffusion_ms"] / row["L-AWR_ms"])


def test_results_fit_the_device_tools_limits(check):
    out, report, _ = check
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(p.stat().st_size <= 16 * 2**20 for p in files)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) and len(p.relative_to(out).parts) <= 3 for p in files)
    assert [p["name"] for p in report["transport"]["parts"]] == sorted(p.name for p in out.glob("run.tar.gz.*"))
    assert report["transport"]["left_out"] == []


def save_as_if_on_cuda(path, monkeypatch):
    """Rewrite a checkpoint as the GPU host writes it: storages tagged cuda:0."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    with monkeypatch.context() as patch:  # torch.save records each storage's device through location_tag
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(ckpt, path)
    if not torch.cuda.is_available():  # the file really names CUDA: a plain load fails on this host
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def returned_run(check, tmp_path_factory):
    out, _, _ = check
    run = tmp_path_factory.mktemp("returned") / "run"
    names = gpu_transport.unpack(out, run)
    assert {f"{phase}/final.pt" for phase in PHASES} <= set(names)
    with pytest.MonkeyPatch.context() as monkeypatch:
        for phase in PHASES:
            save_as_if_on_cuda(run / phase / "final.pt", monkeypatch)
    config = json.loads((run / "config.json").read_text())  # the run's config of record names the GPU host's device
    config["device"] = config["eval"]["device"] = "cuda"
    (run / "config.json").write_text(json.dumps(config))
    return run


def test_returned_run_is_the_trained_run_and_loads_on_the_cpu(check, returned_run):
    _, _, trained = check
    for phase in PHASES:  # every product back bit for bit
        original = torch.load(trained / phase / "final.pt", weights_only=True)["model"]
        returned = read_checkpoint(returned_run / phase / "final.pt", phase)["model"]
        assert list(original) == list(returned), phase
        assert all(torch.equal(original[k], returned[k]) for k in original), phase
    obs = torch.randn(3, latency.BIMANUAL_DIMS[0])
    for kind in ("lawr", "flow_bc"):
        with torch.no_grad():
            chunks = load_policy(returned_run, kind)(obs)
        assert chunks.shape == (3, *latency.BIMANUAL_DIMS[1:]) and torch.isfinite(chunks).all(), kind
    with pytest.raises(FileExistsError):  # never unpacks over a run
        gpu_transport.unpack(check[0], returned_run)


def test_damaged_part_is_refused(check, tmp_path):
    out, report, _ = check
    copy = tmp_path / "results"
    copy.mkdir()
    for name in ["gpu_check.json"] + [p["name"] for p in report["transport"]["parts"]]:
        (copy / name).write_bytes((out / name).read_bytes())
    part = copy / report["transport"]["parts"][0]["name"]
    part.write_bytes(b"x" + part.read_bytes()[1:])
    with pytest.raises(ValueError, match="sha256"):
        gpu_transport.unpack(copy, tmp_path / "run")


def test_pack_leaves_out_the_critic_rather_than_overflow(tmp_path):
    run = tmp_path / "run"
    products = {"flow": {"model": {"decoder.w": torch.randn(64, 64), "obs_normalizer._mean": torch.randn(1, 5)}},
                "planner": {"model": {"planner.w": torch.randn(32, 32)}},
                "critic": {"model": {"v_net.w": torch.randn(256, 256)}}}
    for phase, ckpt in products.items():
        (run / phase).mkdir(parents=True)
        torch.save(ckpt, run / phase / "final.pt")
    manifest = gpu_transport.pack(run, tmp_path, max_parts=3, part_bytes=16 * 1024)
    assert manifest["left_out"] == ["critic/final.pt"] and len(manifest["parts"]) <= 3
    back = tmp_path / "back"
    gpu_transport.unpack(tmp_path, back)
    for phase in ("flow", "planner"):
        returned = torch.load(back / phase / "final.pt", weights_only=True)["model"]
        assert returned.keys() == products[phase]["model"].keys(), phase
        assert all(torch.equal(returned[k], v) for k, v in products[phase]["model"].items()), phase
    assert not (back / "critic").exists()


def test_latency_bench_knows_the_tasks_sizes():
    from lawr_ext.tasks.bimanual.env_cfg import BimanualChunkEnvCfg

    cfg = BimanualChunkEnvCfg()
    assert latency.BIMANUAL_DIMS == (cfg.observation_space, cfg.chunk_horizon, cfg.action_space)


@pytest.mark.sim
def test_returned_run_evaluates_in_the_simulator(returned_run, tmp_path):
    """docs/gpu.md 'GPU check', last step: scripts/evaluate.py on the joined run (here 1 short episode)."""
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "evaluate.py"), "--checkpoint",
                           str(returned_run), "--num_envs", "1", "--num_episodes", "1", "--episode_length_s", "0.4",
                           "--support_samples", "0", "--no_progress", "--out", str(tmp_path / "eval")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["summary"]["episodes"] == 1
