"""Nothing lost, nothing silently wrong: a run's records are only written for the dataset and the
settings they belong to, and a file that does not belong is named in one line.

Every refusal here goes through the script a user runs (in this process: ``conftest.run_script``) and asserts a
non-zero exit, one line on stderr and, where nothing may change, the run directory's bytes unchanged.
"""

import json
import pickle
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import (BIMANUAL_LINE_META, TINY, assert_refused, assert_same_state, collect_line, file_hashes,
                      grown_dataset, run_script, synthetic_dataset)

from lawr_ext.algorithms.registry import STAGES, hashed_config, resolved_config, stage_config
from lawr_ext.configs.train import load_train_config
from lawr_ext.data.dataset import ChunkDataset
from lawr_ext.runners import CheckpointError, checkpoint_path, final_path, load_policy, read_checkpoint, train
from lawr_ext.runners.checkpoint import product_hash
from lawr_ext.runners.pipeline import run_config
from lawr_ext.utils.io import FORMAT_VERSION, config_hash

TRAIN = ("train_lawr.py", "--task", "Bimanual-Chunk", "--no_eval")


@pytest.fixture
def run(finished_run, tmp_path) -> Path:
    """A copy of the finished tiny run, to change."""
    return Path(shutil.copytree(finished_run[1], tmp_path / "run"))


@pytest.fixture(scope="module")
def other_run(tmp_path_factory) -> Path:
    """A finished tiny run of another seed: products of another run."""
    root = tmp_path_factory.mktemp("other_run")
    train(load_train_config("Bimanual-Chunk", TINY + ["seed=1"]), synthetic_dataset(root / "data.npz"), root / "run")
    return root / "run"


# --- the dataset a run was trained on --------------------------------------------------------------------
def test_every_checkpoint_records_the_datasets_fingerprint(finished_run):
    dataset, run = finished_run
    fingerprint = ChunkDataset.from_path(dataset, 4, 0.9).fingerprint
    records = [read_checkpoint(path) for path in run.rglob("*.pt")]
    assert len(records) == 6  # checkpoint.pt and final.pt of three phases
    assert all(r["dims"]["data_sha256"] == fingerprint and r["dims"]["episodes"] == 24 for r in records)
    other = ChunkDataset.from_path(synthetic_dataset(run.parent / "other.npz", num_episodes=20), 4, 0.9)
    assert other.fingerprint != fingerprint


def test_refused_resume_writes_nothing(run, finished_run):
    """A width-48 resume of a width-32 run: refused on the config hash before config.json is rewritten."""
    before = file_hashes(run)
    assert_refused(run_script(*TRAIN, "--dataset", str(finished_run[0]), "--run_dir", str(run), *TINY, "flow.width=48"),
                   "flow/final.pt", "config hash")
    assert file_hashes(run) == before


@pytest.mark.parametrize("state", ["finished", "killed_in_phase_1"])
def test_resume_on_another_dataset_of_the_same_shape_is_refused(run, tmp_path, state):
    if state == "killed_in_phase_1":  # only phase 1's periodic checkpoint on disk, as a kill leaves it
        for path in list(run.iterdir()):
            if path.name not in ("flow", "config.json", "summary.json", "summary.md", "tensorboard", ".lock"):
                shutil.rmtree(path)
        final_path(run, "flow").unlink()
    before = file_hashes(run)
    other = synthetic_dataset(tmp_path / "other.npz", num_episodes=20)
    assert_refused(run_script(*TRAIN, "--dataset", str(other), "--run_dir", str(run), *TINY),
                   "trained on another dataset", "other.npz", "use a new run_dir")
    assert file_hashes(run) == before  # data.path in config.json and summary.json included


def test_a_grown_plain_dataset_is_a_new_dataset(run, finished_run, tmp_path):
    before = file_hashes(run)
    grown = grown_dataset(finished_run[0], tmp_path / "grown.npz")
    assert_refused(run_script(*TRAIN, "--dataset", str(grown), "--run_dir", str(run), *TINY),
                   "first 24 episodes", "now has 28", "appending episodes makes a new dataset")
    assert file_hashes(run) == before


def test_a_grown_shard_directory_is_a_new_dataset(tmp_path):
    dataset, run = collect_line(tmp_path / "shards", num_envs=3, num_episodes=6, meta=BIMANUAL_LINE_META), tmp_path / "run"
    overrides = TINY + ["critic.v_max=10", "flow.num_steps=4", "critic.num_steps=4", "planner.num_steps=4"]
    train(load_train_config("Bimanual-Chunk", overrides), dataset, run, stages=("flow",))
    collect_line(dataset, num_envs=3, num_episodes=9, meta=BIMANUAL_LINE_META)  # one more round appended
    before = file_hashes(run)
    with pytest.raises(CheckpointError, match="first 6 episodes .* now has 9: appending episodes makes a new dataset"):
        train(load_train_config("Bimanual-Chunk", overrides), dataset, run, stages=("flow",))
    assert file_hashes(run) == before


# --- files that do not belong to the run -----------------------------------------------------------------
def test_a_foreign_planner_is_named_not_the_flow(run, other_run):
    shutil.copy(final_path(other_run, "planner"), final_path(run, "planner"))
    for script in ("export.py", "evaluate.py"):
        line = assert_refused(run_script(script, "--checkpoint", str(run)), "planner/final.pt", "comes from another run")
        assert "flow/final.pt:" not in line
    assert not (run / "export").exists() and not (run / "eval").exists()


def test_a_foreign_flow_is_named_when_the_run_record_agrees_with_the_planner(run, other_run):
    shutil.copy(final_path(other_run, "flow"), final_path(run, "flow"))
    with pytest.raises(CheckpointError) as error:
        load_policy(run)
    assert str(error.value).startswith(str(final_path(run, "flow"))) and "comes from another run" in str(error.value)


def rewrite(path: Path, change) -> None:
    """Rewrite the record at ``path`` through ``change(record)``, as another file in its place would be."""
    record = torch.load(path, weights_only=True)
    change(record)
    torch.save(record, path)


def test_the_planner_holds_only_its_own_networks_and_names_what_it_was_built_on(run):
    flow, critic, planner = (read_checkpoint(final_path(run, n)) for n in ("flow", "critic", "planner"))
    assert planner["model"] and all(key.startswith("planner.") for key in planner["model"])  # no flow tensor
    assert not any(key.startswith("obs_normalizer.") for key in critic["model"])  # the flow's, not the critic's
    assert planner["built_on"] == {"flow": product_hash(flow), "critic": product_hash(critic)}
    assert critic["built_on"] == {"flow": product_hash(flow)} and flow["built_on"] == {}
    resumable = read_checkpoint(checkpoint_path(run, "planner"))["learner"]["modules"]  # its training state too
    assert resumable and all(key.startswith("planner.") for key in resumable)


@pytest.mark.parametrize("swapped", ["flow", "critic"])
def test_a_product_other_than_the_one_a_stage_was_built_on_is_refused(run, finished_run, swapped):
    """Same settings, other weights (as a retrained flow/final.pt would be): the planner built on the run's own is
    refused in one line naming it, whether the swapped product is needed to act (flow) or not (critic)."""
    rewrite(final_path(run, swapped), lambda record: next(iter(record["model"].values())).add_(1.0))
    with pytest.raises(CheckpointError, match=f"was built on another {swapped}/final.pt than the one in this run_dir"):
        load_policy(run)
    before = file_hashes(run)
    assert_refused(run_script("export.py", "--checkpoint", str(run)), "planner/final.pt" if swapped == "critic" else
                   "/final.pt", f"was built on another {swapped}/final.pt", "copy whole run directories")
    assert_refused(run_script(*TRAIN, "--dataset", str(finished_run[0]), "--run_dir", str(run), "--phase", "planner",
                              *TINY), f"was built on another {swapped}/final.pt")
    assert file_hashes(run) == before


def test_a_run_of_an_older_lawr_is_refused_in_one_line_saying_how_to_retrain(run, finished_run):
    dataset = str(finished_run[0].resolve())
    config = json.loads((run / "config.json").read_text())
    for name in ("flow", "critic", "planner"):  # the older layout: the config in each record, format version 4
        rewrite(final_path(run, name), lambda record: record.update(format_version=4, config=config))
    before = file_hashes(run)
    retrain = ("retrain it in a new run directory: python scripts/train_lawr.py --task Bimanual-Chunk "
               f"--dataset {dataset}")
    for script in ("export.py", "evaluate.py"):
        assert_refused(run_script(script, "--checkpoint", str(run)), "flow/final.pt", "written by an older lawr",
                       retrain, "--run_dir NEW_RUN_DIR")
    assert_refused(run_script(*TRAIN, "--dataset", dataset, "--run_dir", str(run), *TINY), "written by an older lawr",
                   retrain)
    assert file_hashes(run) == before


def test_a_planner_that_holds_a_copy_of_the_flow_is_refused_and_leaves_the_flow_alone(run):
    flow_model = read_checkpoint(final_path(run, "flow"))["model"]
    rewrite(final_path(run, "planner"), lambda record: record["model"].update(
        {key: torch.zeros_like(value) for key, value in flow_model.items() if key.startswith("decoder.")}))
    with pytest.raises(CheckpointError, match="holds a copy of the networks it was built from .* older lawr; retrain"):
        load_policy(run)
    assert_same_state(read_checkpoint(final_path(run, "flow"))["model"], flow_model)


def test_config_json_is_the_config_of_record(run, finished_run):
    """It holds what trained (each baseline's settings as built, the dataset read), and everything that loads a run
    reads it: without it nothing is guessed."""
    cfg = load_train_config("Bimanual-Chunk", TINY)
    recorded = run_config(run)
    assert recorded == resolved_config(replace(cfg, data=replace(cfg.data, path=str(finished_run[0].resolve()))))
    assert recorded.baselines.fql == stage_config(cfg, "fql") != cfg.baselines.fql  # match_lawr, as it trains
    assert all(config_hash(hashed_config(recorded, n)) == config_hash(hashed_config(cfg, n)) for n in STAGES)
    (run / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json: missing: the run's config of record"):
        load_policy(run)
    assert_refused(run_script("export.py", "--checkpoint", str(run)), "config.json", "missing")


class Payload:
    """What a crafted checkpoint smuggles in: an object that runs code when unpickled."""

    def __reduce__(self):
        return (print, ("unpickled!",))


@pytest.mark.parametrize("damage", ["truncated", "pickle", "not_torch"])
@pytest.mark.parametrize("script", ["export.py", "evaluate.py"])
def test_unreadable_checkpoint_is_one_line_and_never_suggests_unsafe_loading(run, script, damage):
    path = final_path(run, "planner" if script == "export.py" else "flow")
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "pickle":
        torch.save({"format_version": FORMAT_VERSION, "model": Payload()}, path)
    else:
        path.write_bytes(pickle.dumps({"format_version": FORMAT_VERSION}))
    line = assert_refused(run_script(script, "--checkpoint", str(run)), str(path), "not a readable lawr checkpoint")
    assert "weights_only" not in line and "unpickled!" not in line


@pytest.mark.parametrize("script", ["export.py", "evaluate.py"])
def test_a_run_directory_that_is_a_file_or_missing_is_one_line(tmp_path, script):
    (tmp_path / "file").write_text("not a run\n")
    assert_refused(run_script(script, "--checkpoint", str(tmp_path / "file")), "file", "neither a run directory")
    assert_refused(run_script(script, "--checkpoint", str(tmp_path / "missing")), "missing", "no such run directory")


def test_export_into_a_path_it_cannot_write_is_one_line(finished_run, tmp_path):
    (tmp_path / "file").write_text("in the way\n")
    assert_refused(run_script("export.py", "--checkpoint", str(finished_run[1]), "--out", str(tmp_path / "file" / "x")),
                   str(tmp_path / "file"))


def test_training_into_a_run_directory_that_is_a_file_is_one_line(finished_run, tmp_path):
    (tmp_path / "file").write_text("not a run\n")
    assert_refused(run_script(*TRAIN, "--dataset", str(finished_run[0]), "--run_dir", str(tmp_path / "file"), *TINY),
                   str(tmp_path / "file"), "is a file")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a CUDA device")
def test_a_device_the_host_lacks_is_one_line_before_anything_is_written(finished_run, tmp_path):
    assert_refused(run_script(*TRAIN, "--dataset", str(finished_run[0]), "--run_dir", str(tmp_path / "run"), *TINY,
                              "device=cuda"), "'cuda'", "no CUDA device")
    assert not (tmp_path / "run").exists()


# --- the command line a user types first ------------------------------------------------------------------
def test_overrides_after_the_baseline_names_are_overrides(finished_run, tmp_path):
    """``--baselines flow_bc gaussian_awr critic.hidden_dim=24 ...``: nargs='*' once took the overrides for names."""
    run = tmp_path / "run"
    status, out, err = run_script(*TRAIN, "--dataset", str(finished_run[0]), "--run_dir", str(run),
                                  "--baselines", "flow_bc", "gaussian_awr", *TINY, "critic.hidden_dim=24")
    assert status == 0, err[-3000:]
    assert final_path(run, "gaussian_awr").is_file() and final_path(run, "flow_bc").is_file()
    assert run_config(run).critic.hidden_dim == 24


# --- refused before any work, and a full disk ------------------------------------------------------------
def test_a_resume_without_its_dataset_is_refused_before_any_collection(run, finished_run):
    """Without --dataset a new dataset would be collected into the run (tens of seconds in the simulator) and then
    refused as another dataset: the run's records name its dataset, and the refusal comes first."""
    before = file_hashes(run)
    assert_refused(run_script(*TRAIN, "--run_dir", str(run), *TINY),
                   f"{run} trains on the dataset {finished_run[0]}", f"pass --dataset {finished_run[0]}")
    assert file_hashes(run) == before and not (run / "dataset").exists()


@pytest.mark.parametrize("where", ["equal", "inside"])
def test_a_run_dir_in_the_dataset_directory_is_refused(tmp_path, where):
    dataset = collect_line(tmp_path / "data", num_envs=2, num_episodes=4, meta=BIMANUAL_LINE_META)
    before = file_hashes(dataset)
    run = dataset if where == "equal" else dataset / "run"
    assert_refused(run_script(*TRAIN, "--dataset", str(dataset), "--run_dir", str(run), *TINY),
                   f"--run_dir {run} is (inside) the dataset directory", "mix with the shards")
    assert file_hashes(dataset) == before and not (dataset / "run").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs to fill (mounting needs root: otherwise the test is skipped, saying so); unmounted after."""
    import os
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)]).returncode != 0:  # busy: detach it now, freed once unused
            subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(small_disk):
    from lawr_ext.runners.checkpoint import checkpoint_path
    from lawr_ext.utils.cli import one_line
    from lawr_ext.utils.io import atomic_torch_save

    path = checkpoint_path(small_disk / "run", "flow")
    atomic_torch_save({"step": 4, "weights": torch.zeros(1000)}, path)
    before = file_hashes(small_disk)
    with pytest.raises(OSError) as error:  # a bigger checkpoint than the disk has room for
        atomic_torch_save({"step": 8, "weights": torch.zeros(1 << 20)}, path)
    assert one_line(error.value).startswith(f"{path}: no space left on device {small_disk} (")
    assert "\n" not in one_line(error.value)
    assert file_hashes(small_disk) == before  # the earlier checkpoint intact, no temporary file left
