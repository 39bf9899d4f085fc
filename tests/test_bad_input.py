"""Fuzz-style bad input: every malformed dataset or config fails with ONE line naming the file/field and the
problem, through the library and through the CLI, and never writes over a good run or dataset.

Datasets are derived systematically from a good one (plain .npz, plain HDF5, a collected shard directory):
a key removed, a dtype or shape changed, NaN/inf injected, the file cut at several byte offsets, garbage
bytes, a dimension or chunk horizon that disagrees with the config, nothing at all.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import (META, TINY, assert_refused, collect_line, file_hashes, plain_hdf5_copy, run_script,
                      synthetic_dataset)

from lawr_ext import REPO_ROOT
from lawr_ext.configs.train import load_train_config
from lawr_ext.data.dataset import ChunkDataset
from lawr_ext.data.episodes import DatasetError
from lawr_ext.data.hdf5 import list_shards
from lawr_ext.data.plain import REQUIRED_KEYS, write_plain
from lawr_ext.runners import train

HORIZON, GAMMA = 4, 0.9


def good_arrays(tmp_path: Path) -> dict[str, np.ndarray]:
    with np.load(synthetic_dataset(tmp_path / "good.npz")) as npz:
        return {key: npz[key] for key in npz.files}


def assert_one_line(error: BaseException, *fragments: str) -> None:
    message = str(error)
    assert "\n" not in message and message.strip() == message, repr(message)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def load(path: Path, **kwargs) -> ChunkDataset:
    return ChunkDataset.from_path(path, HORIZON, GAMMA, **kwargs)


# --- plain format (.npz): each mutation of a good file -> (expected words in the message) ----------------
def _set(key, value_of):
    return lambda arrays: arrays | {key: value_of(arrays[key])}


def _poison(key, value):
    def poison(arrays):
        bad = arrays[key].copy()
        bad.flat[7] = value
        return arrays | {key: bad}
    return poison


PLAIN_CASES = {
    **{f"missing_{key}": (lambda arrays, key=key: {k: v for k, v in arrays.items() if k != key}, ["missing", key])
       for key in REQUIRED_KEYS},
    "int_observations": (_set("observations", lambda v: v.astype(np.int64)), ["'observations'", "float"]),
    "string_actions": (_set("actions", lambda v: v.astype(str)), ["'actions'"]),
    "float_terminals": (_set("terminals", lambda v: v.astype(np.float32) * 0.5), ["'terminals'", "0/1 flags", "0.5"]),
    "float_quality": (lambda a: a | {"quality": np.zeros(len(a["rewards"]), np.float32)}, ["'quality'", "integer"]),
    "rewards_2d": (_set("rewards", lambda v: v[:, None]), ["'rewards'", "1-D"]),
    "observations_1d": (_set("observations", lambda v: v[:, 0]), ["'observations'", "2 dims"]),
    "actions_short": (_set("actions", lambda v: v[:-3]), ["'actions'", "rows"]),
    "timeouts_long": (_set("timeouts", lambda v: np.concatenate([v, v[:2]])), ["'timeouts'", "rows"]),
    "nan_observation": (_poison("observations", np.nan), ["'observations'", "NaN or inf"]),
    "inf_action": (_poison("actions", np.inf), ["'actions'", "NaN or inf"]),
    "nan_reward": (_poison("rewards", np.nan), ["'rewards'", "NaN or inf"]),
    "action_out_of_range": (_poison("actions", 3.0), ["[-1, 1]"]),
    "label_changes_in_episode": (lambda a: a | {"strategy": np.arange(len(a["rewards"]))}, ["'strategy'", "within"]),
    "empty": (lambda arrays: {k: v[:0] for k, v in arrays.items()}, ["empty"]),
}


@pytest.mark.parametrize("case", sorted(PLAIN_CASES))
def test_malformed_plain_dataset_is_one_line_naming_file_and_problem(tmp_path, case):
    mutate, fragments = PLAIN_CASES[case]
    path = tmp_path / f"{case}.npz"
    write_plain(path, **mutate(good_arrays(tmp_path)))
    with pytest.raises(DatasetError) as error:
        load(path)
    assert_one_line(error.value, str(path), *fragments)


@pytest.mark.parametrize("expected, fragments", [
    ({"action_dim": 3}, ["'actions' have dim 14", "the config expects 3"]),
    ({"obs_dim": 5}, ["'observations' have dim 45", "the config expects 5"]),
])
def test_dimension_that_disagrees_with_the_config(tmp_path, expected, fragments):
    path = synthetic_dataset(tmp_path / "good.npz")
    with pytest.raises(DatasetError) as error:
        load(path, **expected)
    assert_one_line(error.value, str(path), *fragments)


# --- HDF5: garbage, truncation at several offsets, broken groups ----------------------------------------
def plain_hdf5(tmp_path: Path) -> Path:
    return plain_hdf5_copy(synthetic_dataset(tmp_path / "good.npz"), tmp_path / "plain.hdf5")


def collected(out: Path, meta: dict = META, num_episodes: int = 6) -> Path:
    return collect_line(out, num_envs=3, num_episodes=num_episodes, meta=meta)


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.25, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("layout", ["plain_file", "collected_shard"])
def test_truncated_hdf5(tmp_path, layout, fraction):
    if layout == "plain_file":
        dataset = broken = plain_hdf5(tmp_path)
    else:
        dataset = collected(tmp_path / "shards")
        broken = list_shards(dataset)[1]
    load(dataset)  # intact: loads
    data = broken.read_bytes()
    broken.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(DatasetError) as error:
        load(dataset)
    assert_one_line(error.value, str(broken), "truncated or corrupt")


@pytest.mark.parametrize("name", ["garbage.npz", "garbage.hdf5", "garbage.h5"])
def test_garbage_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DatasetError) as error:
        load(path)
    assert_one_line(error.value, str(path), "truncated or corrupt")


@pytest.mark.parametrize("name, fragments", [
    ("missing.npz", ["file not found"]),
    ("data.csv", ["unknown dataset format"]),
    ("empty_dir", ["no shard_*.hdf5", "empty"]),
])
def test_missing_unknown_or_empty(tmp_path, name, fragments):
    path = tmp_path / name
    if name == "data.csv":
        path.write_text("1,2,3\n")
    elif name == "empty_dir":
        path.mkdir()
    with pytest.raises(DatasetError) as error:
        load(path)
    assert_one_line(error.value, str(path), *fragments)


def _delete(key):
    def edit(demo):
        del demo[key]
    return edit


def _replace(key, value_of):
    def edit(demo):
        value = value_of(demo[key][()])
        del demo[key]
        demo[key] = value
    return edit


SHARD_CASES = {
    "missing_rewards": (_delete("rewards"), ["missing 'rewards'"]),
    "missing_obs": (_delete("obs"), ["missing 'obs/policy'"]),
    "int_actions": (_replace("actions", lambda v: v.astype(np.int32)), ["'actions'", "float"]),
    "actions_3d": (_replace("actions", lambda v: v[:, :, None]), ["actions [T, A]"]),
    # values are validated after the shards are joined: the message names the dataset directory
    "nan_rewards": (_replace("rewards", lambda v: np.full_like(v, np.nan)), ["shards:", "'rewards'", "NaN or inf"]),
    "inf_obs": (_replace("obs/policy", lambda v: np.full_like(v, np.inf)), ["shards:", "'observations'", "NaN or inf"]),
    "wider_actions": (_replace("actions", lambda v: np.concatenate([v, v], 1)), ["widths", "differ"]),
    "short_dones": (_replace("dones", lambda v: v[:1]), ["'dones'", "steps"]),
    "done_mid_episode": (_replace("dones", lambda v: np.ones_like(v)), ["before its last step"]),
}


@pytest.mark.parametrize("case", sorted(SHARD_CASES))
def test_malformed_collected_shard(tmp_path, case):
    edit, fragments = SHARD_CASES[case]
    dataset = collected(tmp_path / "shards")
    shard = list_shards(dataset)[1]
    with h5py.File(shard, "r+") as file:
        edit(file["data/demo_4"])
    with pytest.raises(DatasetError) as error:
        load(dataset)
    assert_one_line(error.value, str(dataset), *fragments)
    if "shards:" not in fragments:
        assert str(shard) in str(error.value)


def test_dataset_collected_for_another_chunk_horizon(tmp_path):
    dataset = collected(tmp_path / "shards", META | {"chunk_horizon": 6})
    ChunkDataset.from_path(dataset, 6, GAMMA)  # loads for the horizon it was collected for
    with pytest.raises(DatasetError) as error:
        load(dataset)
    assert_one_line(error.value, str(dataset), "chunk horizon 6", f"H={HORIZON}")


# --- configs ---------------------------------------------------------------------------------------------
CONFIG_CASES = [
    ("Bimanual-Chunk", ["data.horizon=-1"], ["DataConfig.horizon", ">= 1", "-1"]),
    ("Bimanual-Chunk", ["data.horizon=0"], ["DataConfig.horizon"]),
    ("Bimanual-Chunk", ["planner.weights.temperature=0"], ["temperature", "> 0"]),
    ("Bimanual-Chunk", ["planner.weights.temperature=-0.5"], ["temperature", "> 0"]),
    ("Bimanual-Chunk", ["data.gamma=1.5"], ["DataConfig.gamma"]),
    ("Bimanual-Chunk", ["flow.num_steps=0"], ["FlowConfig.num_steps"]),
    ("No-Such-Task", [], ["unknown task", "No-Such-Task"]),
    ("Bimanual-Chunk", ["data.nonsense=1"], ["nonsense", "not in 'DataConfig'"]),
    ("Bimanual-Chunk", ["nonsense=1"], ["nonsense", "not in 'TrainConfig'"]),
    ("Bimanual-Chunk", ["data.horizon=abc"], ["data.horizon", "abc", "Integer"]),
    ("Bimanual-Chunk", ["critic.expectile=high"], ["critic.expectile", "high"]),
    # silently accepted once, refused now
    ("Bimanual-Chunk", ["+critic.expectle=0.9"], ["critic.expectle", "not a setting"]),
    ("Bimanual-Chunk", ["++critic.expectle=0.9"], ["critic.expectle", "not a setting"]),
    ("Bimanual-Chunk", ["flow.time_embed_dim=0"], ["FlowConfig.time_embed_dim", ">= 1", "0"]),
    ("Bimanual-Chunk", ["planner.typical_set_margin=nan"], ["PlannerConfig.typical_set_margin", "nan"]),
    ("Bimanual-Chunk", ["critic.v_max=inf"], ["CriticConfig.v_max", "finite", "inf"]),
    ("Bimanual-Chunk", ["flow.time_mu=nan"], ["TrainConfig.flow.time_mu", "finite", "nan"]),  # no check of its own
    # tracebacks once, one line now
    ("Bimanual-Chunk", ["flow.num_heads=0"], ["FlowConfig.num_heads", ">= 1", "0"]),
    ("Bimanual-Chunk", ["device=banana"], ["TrainConfig.device", "banana"]),
    ("Bimanual-Chunk", ["eval.device=banana"], ["EvalConfig.device", "banana"]),
]


@pytest.mark.parametrize("task, overrides, fragments", CONFIG_CASES, ids=lambda v: str(v))
def test_malformed_config_is_one_line_naming_the_field(task, overrides, fragments):
    with pytest.raises(ValueError) as error:
        load_train_config(task, overrides)
    assert_one_line(error.value, *fragments)


@pytest.mark.parametrize("overrides, fragments", [case[1:] for case in CONFIG_CASES[-9:]], ids=lambda v: str(v))
def test_config_refusals_are_one_line_from_the_cli(tmp_path, overrides, fragments):
    """Bad input found through ``scripts/train_lawr.py``: exit != 0, one line on stderr, nothing written."""
    run = tmp_path / "run"
    assert_refused(run_script("train_lawr.py", "--task", "Bimanual-Chunk", "--run_dir", str(run), "--no_eval",
                              "--dataset", str(synthetic_dataset(tmp_path / "data.npz")), *overrides),
                   "bad configuration", *fragments)
    assert not run.exists()


# --- the dataset against the task ------------------------------------------------------------------------
@pytest.mark.parametrize("shape, fragments", [
    ({"obs_dim": 10}, ["'observations' have dim 10", "task 'Bimanual-Chunk' expects 45"]),
    ({"obs_dim": 0}, ["'observations' have dim 0", "task 'Bimanual-Chunk' expects 45"]),
    ({"action_dim": 3}, ["'actions' have dim 3", "task 'Bimanual-Chunk' expects 14"]),
], ids=str)
def test_dataset_of_other_dims_than_the_task_is_refused_before_training(tmp_path, shape, fragments):
    arrays = good_arrays(tmp_path)
    arrays["observations"] = arrays["observations"][:, : shape.get("obs_dim", 45)]
    if "action_dim" in shape:
        arrays["actions"] = arrays["actions"][:, : shape["action_dim"]]
    write_plain(tmp_path / "other.npz", **arrays)
    run = tmp_path / "run"
    assert_refused(run_script("train_lawr.py", "--task", "Bimanual-Chunk", "--dataset", str(tmp_path / "other.npz"),
                              "--run_dir", str(run), "--no_eval", *TINY), str(tmp_path / "other.npz"), *fragments)
    assert not run.exists()


def test_chunk_horizon_is_bounded_by_the_longest_episode(tmp_path):
    """data.horizon=100000 once allocated 7 GB and died; the longest episode bounds it."""
    dataset = synthetic_dataset(tmp_path / "data.npz")  # episodes of 10 steps
    ChunkDataset.from_path(dataset, 10, GAMMA)
    with pytest.raises(DatasetError) as error:
        ChunkDataset.from_path(dataset, 11, GAMMA)
    assert_one_line(error.value, str(dataset), "H=11", "longest episode (10 steps)")
    run = tmp_path / "run"
    assert_refused(run_script("train_lawr.py", "--task", "Bimanual-Chunk", "--dataset", str(dataset), "--run_dir",
                              str(run), "--no_eval", *TINY, "data.horizon=100000"), "H=100000", "longest episode")
    assert not run.exists()


# --- nothing written over good files; the CLI a user runs -----------------------------------------------
@pytest.fixture
def good_run(finished_run, tmp_path):
    """A copy of the finished tiny run (checkpoints and finals of all phases) and its good dataset."""
    dataset, run = finished_run
    return dataset, Path(shutil.copytree(run, tmp_path / "good_run"))


def truncated_copy(dataset: Path, into: Path) -> Path:
    bad = into / "truncated.npz"
    bad.write_bytes(dataset.read_bytes()[:1000])
    return bad


def test_bad_dataset_through_the_library_leaves_checkpoints_and_dataset_alone(good_run, tmp_path):
    dataset, run = good_run
    products = [p for p in run.rglob("*.pt")]
    assert products  # checkpoints and finals of the good run
    before = file_hashes(dataset, *products)
    with pytest.raises(DatasetError) as error:
        train(load_train_config("Bimanual-Chunk", TINY), truncated_copy(dataset, tmp_path), run)
    assert_one_line(error.value, "truncated.npz", "truncated or corrupt")
    assert file_hashes(dataset, *products) == before


def test_bad_dataset_leaves_the_run_config_alone(good_run, tmp_path):
    dataset, run = good_run
    before = file_hashes(run / "config.json")
    bad = truncated_copy(dataset, tmp_path)
    with pytest.raises(DatasetError):  # as scripts/train_lawr.py --dataset BAD calls it
        train(load_train_config("Bimanual-Chunk", TINY + [f"data.path='{bad}'"]), bad, run)
    assert file_hashes(run / "config.json") == before


def test_dataset_collected_on_another_task_is_refused_before_anything_is_written(tmp_path):
    dataset = collected(tmp_path / "shards", META | {"task": "Bimanual-Chunk-Insertion", "chunk_horizon": 4})
    run = tmp_path / "run"
    with pytest.raises(DatasetError) as error:
        train(load_train_config("Bimanual-Chunk", TINY + ["data.horizon=4"]), dataset, run)
    assert_one_line(error.value, str(dataset), "Bimanual-Chunk-Insertion", "Bimanual-Chunk")
    assert not run.exists()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "train_lawr.py"), *args, "--no_eval"],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("kind", ["truncated_dataset", "nan_dataset", "zero_temperature"])
def test_cli_reports_one_line_and_keeps_the_good_run(good_run, tmp_path, kind):
    """What a user sees: exit code != 0, the last stderr line is the message, no traceback; bytes unchanged."""
    dataset, run = good_run
    args, overrides, fragments = ["--dataset", str(dataset)], list(TINY), []
    if kind == "truncated_dataset":
        args[1] = str(truncated_copy(dataset, tmp_path))
        fragments = ["truncated.npz", "truncated or corrupt"]
    elif kind == "nan_dataset":
        bad = tmp_path / "nan.npz"
        write_plain(bad, **_poison("rewards", np.nan)(good_arrays(tmp_path)))
        args[1], fragments = str(bad), ["nan.npz", "'rewards'", "NaN or inf"]
    else:
        overrides.append("planner.weights.temperature=0")
        fragments = ["temperature", "> 0"]
    products = [p for p in run.rglob("*.pt")]
    before = file_hashes(dataset, *products)
    result = run_cli("--task", "Bimanual-Chunk", "--run_dir", str(run), *args, *overrides)
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last_line = result.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in last_line, result.stderr[-2000:]
    assert file_hashes(dataset, *products) == before


# --- what was accepted silently or with a raw traceback, and is one line now ------------------------------
def test_a_shard_copied_in_again_under_new_ids_is_refused(tmp_path):
    dataset = collected(tmp_path / "data")
    shards = list_shards(dataset)
    copy = dataset / "shard_000009.hdf5"
    shutil.copy(shards[0], copy)
    with h5py.File(copy, "r+") as file:  # new demo ids: the duplicate-id check alone does not see it
        for name in list(file["data"]):
            file["data"].move(name, f"demo_{900 + int(name.split('_')[1])}")
    with pytest.raises(DatasetError) as error:
        load(dataset)
    assert_one_line(error.value, str(copy), "holds the same episodes (seeds [", f"as {shards[0].name}", "copied in twice")


def _ogbench_flags(arrays: dict) -> dict:
    """The good arrays in OGBench's convention: masks = 1 - success, terminals at each episode's end."""
    return arrays | {"masks": ~arrays["success"].astype(bool) | ~arrays["terminals"].astype(bool)}


@pytest.mark.parametrize("case, change, fragments", [
    ("timeout_with_mask_0", lambda a: _ogbench_flags(a) | {"timeouts": a["terminals"]},
     ["rows have timeouts = 1 and masks = 0", "OGBench's convention", "masks = 0 decides"]),
    ("d4rl_terminals_with_all_ones_masks", lambda a: a | {"masks": np.ones(len(a["rewards"]), np.float32)},
     ["'masks' are all 1", "24 'terminals'", "OGBench's convention", "bootstrapped, also after them", "leave 'masks'"]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_conflicting_flags_say_which_convention_was_used(tmp_path, case, change, fragments):
    write_plain(tmp_path / f"{case}.npz", **change(good_arrays(tmp_path)))
    with pytest.warns(Warning) as caught:
        load(tmp_path / f"{case}.npz")
    notes = [str(w.message) for w in caught if type(w.message).__name__ == "DatasetWarning"]
    assert len(notes) == 1, [str(w.message) for w in caught]
    assert_one_line(notes[0], str(tmp_path / f"{case}.npz"), *fragments)


def test_next_observations_within_round_off_are_the_next_states_and_others_are_named(tmp_path):
    arrays = good_arrays(tmp_path)
    following = np.concatenate([arrays["observations"][1:], arrays["observations"][-1:]])
    write_plain(tmp_path / "round_off.npz", **arrays, next_observations=following + np.float32(1e-6))
    assert load(tmp_path / "round_off.npz").episodes.lengths.tolist() == [10] * 24  # not 240 one-step episodes
    write_plain(tmp_path / "other.npz", **arrays, next_observations=following + np.float32(1e-3))
    with pytest.raises(DatasetError) as error:
        load(tmp_path / "other.npz")
    assert_one_line(error.value, "'next_observations' differ from the next row's 'observations' at 216 of 216 rows",
                    "by up to 0.001", "tolerance 1e-05 + 1e-05 * |observation|")


@pytest.mark.parametrize("arguments, fragments", [
    (["-m", "seed=0,1,2"], ["-m: hydra's command-line flags are not supported", "--seeds 0 1 2"]),
    (["--multirun", "seed=0,1"], ["--multirun: hydra's command-line flags are not supported"]),
    (["hydra.run.dir=elsewhere"], ["hydra.run.dir=elsewhere: hydra's own settings are not used", "--run_dir"]),
], ids=str)
def test_hydra_sweeps_and_hydra_settings_are_refused_in_one_line(tmp_path, arguments, fragments):
    run = tmp_path / "run"
    assert_refused(run_script("train_lawr.py", "--task", "Bimanual-Chunk", "--run_dir", str(run), "--no_eval",
                              "--dataset", str(synthetic_dataset(tmp_path / "data.npz")), *TINY, *arguments),
                   "bad configuration", *fragments)
    assert not run.exists() and not (tmp_path / "elsewhere").exists()
