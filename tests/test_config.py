"""TrainConfig: hydra composition of the tasks/ presets, command-line overrides, one-line validation errors."""

from dataclasses import asdict

import pytest

from lawr_ext.algorithms.registry import hashed_config
from lawr_ext.configs.flow import FlowConfig
from lawr_ext.configs.train import TrainConfig, load_train_config, train_config_from_dict
from lawr_ext.utils.io import config_hash


def test_task_preset_composes_into_the_typed_config():
    cfg = load_train_config("Bimanual-Chunk")
    assert isinstance(cfg, TrainConfig) and isinstance(cfg.flow, FlowConfig)
    assert (cfg.task, cfg.data.horizon, cfg.eval.task) == ("Bimanual-Chunk", 50, "Bimanual-Chunk")
    insertion = load_train_config("Bimanual-Chunk-Insertion")
    assert insertion.task == insertion.eval.task == "Bimanual-Chunk-Insertion" and insertion.critic.v_max == 500.0


def test_overrides_reach_every_section_with_their_types():
    cfg = load_train_config("Bimanual-Chunk", ["flow.num_steps=200", "critic.expectile=0.7", "data.horizon=10",
                                               "data.path=/tmp/some data.npz", "seed=3", "eval.num_envs=2"])
    assert cfg.flow.num_steps == 200 and cfg.critic.expectile == 0.7 and cfg.data.horizon == 10
    assert cfg.data.path == "/tmp/some data.npz" and cfg.seed == 3 and cfg.eval.num_envs == 2


def test_profile_overlay_then_command_line_wins():
    smoke = load_train_config("Bimanual-Chunk", ["profile=smoke"])
    assert smoke.flow.arch == "mlp" and smoke.data.collect_num_envs == 4 and smoke.critic.v_max == 500.0  # task value kept
    assert load_train_config("Bimanual-Chunk", ["profile=smoke", "flow.num_steps=7"]).flow.num_steps == 7


@pytest.mark.parametrize("override, field", [
    ("data.horizon=0", "DataConfig.horizon"),
    ("data.horizon=-5", "DataConfig.horizon"),
    ("data.gamma=1.5", "DataConfig.gamma"),
    ("planner.weights.temperature=0", "temperature"),
    ("planner.weights.temperature=-1", "temperature"),
    ("critic.expectile=1.0", "expectile"),
    ("critic.v_max=-1", "v_max"),
    ("flow.num_steps=0", "FlowConfig.num_steps"),
    ("checkpoint_interval=0", "TrainConfig.checkpoint_interval"),
    ("flow.no_such_field=1", "no_such_field"),
    ("no_such_section.x=1", "no_such_section"),
    ("flow.num_steps=many", "num_steps"),
    ("profile=no_such_profile", "no_such_profile"),
])
def test_bad_values_fail_with_one_line_naming_the_field(override, field):
    with pytest.raises(ValueError) as err:
        load_train_config("Bimanual-Chunk", [override])
    message = str(err.value)
    assert field in message and "\n" not in message, message


def test_unknown_task_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"unknown task 'Bimanual-Nope'") as err:
        load_train_config("Bimanual-Nope")
    assert "\n" not in str(err.value)


def test_checkpoint_hash_covers_exactly_what_a_phase_depends_on():
    base = load_train_config("Bimanual-Chunk")

    def hashes(*overrides):
        cfg = load_train_config("Bimanual-Chunk", list(overrides))
        return [config_hash(hashed_config(cfg, p)) for p in ("flow", "critic", "planner")]

    flow, critic, planner = hashes()
    assert hashes("log_interval=7", "checkpoint_interval=9", "eval.num_envs=3", "run_dir=elsewhere",
                  "data.path=moved.npz", "device=cuda") == [flow, critic, planner]
    new_planner = hashes("planner.weights.temperature=3.0")
    assert new_planner[:2] == [flow, critic] and new_planner[2] != planner
    new_flow = hashes("flow.learning_rate=1e-3")
    assert all(a != b for a, b in zip(new_flow, [flow, critic, planner]))  # later phases build on the flow
    assert train_config_from_dict(asdict(base)) == base


def test_presets_are_found_when_lawr_is_installed_from_a_wheel(tmp_path):
    """Users edit the presets in the checkout's top-level tasks/; a wheel must carry them (package data)."""
    import shutil
    import subprocess
    import sys
    import zipfile

    from lawr_ext import REPO_ROOT

    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for name in ("tasks", "source"):  # the link lawr_ext/presets -> tasks/ stays a link, as in a checkout
        shutil.copytree(REPO_ROOT / name, source / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    installed = tmp_path / "site"
    zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))).extractall(installed)
    compose = ("import lawr_ext.configs.train as t; cfg = t.load_train_config('Bimanual-Chunk-Insertion', "
               "['profile=smoke']); print(t.PRESET_DIR.resolve(), cfg.task, cfg.flow.arch, cfg.critic.v_max)")
    done = subprocess.run([sys.executable, "-c", compose], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(installed), "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(installed / "lawr_ext" / "presets"), "Bimanual-Chunk-Insertion", "mlp", "500.0"]
