"""TrainConfig: hydra composition of each task's preset (its lawr_cfg entry point) with the shared profiles and
recipes, command-line overrides, one-line validation errors."""

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
    assert insertion.task == insertion.eval.task == "Bimanual-Chunk-Insertion" and insertion.critic.v_max == 1000.0


def test_every_registered_task_composes_from_the_preset_its_entry_point_names():
    import gymnasium as gym

    from lawr_ext.tasks import get_task, registered_tasks

    by_preset = {}
    for task in registered_tasks():
        spec = get_task(task)
        module, _, name = spec.lawr_cfg.partition(":")
        assert module.startswith("lawr_ext.tasks.") and module.endswith(".agents"), spec.lawr_cfg  # beside its env
        path = spec.lawr_cfg_file()
        assert path.name == name and path.parent.name == "agents" and path.is_file()
        by_preset.setdefault(path, task)
        if spec.env is not None:  # Isaac Lab's tools read it from gymnasium's registry (load_cfg_from_registry)
            assert gym.spec(task).kwargs["lawr_cfg_entry_point"] == spec.lawr_cfg
    # Bimanual-Chunk, -Insertion, their image variants, OGBench's cube-single and cube-double families
    assert len(by_preset) == 6
    for task in by_preset.values():  # one compose per preset: a family's preset serves each of its ids alike
        cfg = load_train_config(task, ["recipe=published"])  # every preset takes the shared overlays
        assert cfg.task == cfg.eval.task == task and cfg.baselines.fql.alpha == 300.0


def test_every_shipped_profile_and_recipe_composes_onto_a_preset():
    from importlib.resources import files

    overlays = files("lawr_ext.configs")
    profiles = {"cpu", "default", "gpu", "ogbench_cpu", "smoke", "tiny"}
    for group, names in (("profile", profiles), ("recipe", {"published"})):
        assert {f.name.removesuffix(".yaml") for f in overlays.joinpath(group).iterdir()} == names
        for name in names:  # an overlay keeps the task's own values
            assert load_train_config("Bimanual-Chunk", [f"{group}={name}"]).critic.v_max == 1000.0


@pytest.mark.parametrize("entry_point, message", [
    ("lawr_ext.tasks.bimanual.agents:no_such_preset.yaml", "is missing"),
    ("lawr_ext.tasks.no_such_family.agents:lawr.yaml", "No module named 'lawr_ext.tasks.no_such_family'"),
    ("lawr_ext.tasks.bimanual.agents", "is not 'package.module:file.yaml'"),
    ("lawr_ext.tasks.bimanual.agents:env_cfg.py", "is not 'package.module:file.yaml'"),
])
def test_a_task_whose_preset_cannot_be_found_is_a_one_line_error(monkeypatch, entry_point, message):
    from dataclasses import replace

    from lawr_ext.tasks import get_task, registry

    monkeypatch.setitem(registry._TASKS, "Bimanual-Chunk", replace(get_task("Bimanual-Chunk"), lawr_cfg=entry_point))
    with pytest.raises(ValueError) as err:
        load_train_config("Bimanual-Chunk")
    assert str(err.value).startswith("TrainConfig.task: task 'Bimanual-Chunk'") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_overrides_reach_every_section_with_their_types():
    cfg = load_train_config("Bimanual-Chunk", ["flow.num_steps=200", "critic.expectile=0.7", "data.horizon=10",
                                               "data.path=/tmp/some data.npz", "seed=3", "eval.num_envs=2"])
    assert cfg.flow.num_steps == 200 and cfg.critic.expectile == 0.7 and cfg.data.horizon == 10
    assert cfg.data.path == "/tmp/some data.npz" and cfg.seed == 3 and cfg.eval.num_envs == 2


def test_the_collection_a_run_asks_for_is_the_one_collected():
    from lawr_ext.data.collect import collect_config_of

    cfg = load_train_config("Bimanual-Chunk", ["profile=cpu", "data.collect_quality_mix=[0.25,0.25,0.5]"])
    collect = collect_config_of(cfg.data, seed=4, progress=False)
    assert collect.quality_mix == (0.25, 0.25, 0.5) and collect.num_episodes == 256 and collect.seed == 4
    assert collect_config_of(load_train_config("Bimanual-Chunk").data, seed=0).quality_mix == (0.5, 0.3, 0.2)


def test_profile_overlay_then_command_line_wins():
    smoke = load_train_config("Bimanual-Chunk", ["profile=smoke"])
    assert smoke.flow.arch == "mlp" and smoke.data.collect_num_envs == 64 and smoke.critic.v_max == 1000.0  # task value kept
    assert smoke.data.chunk_basis == "dct" and smoke.flow.lr_schedule == "cosine"
    assert load_train_config("Bimanual-Chunk", ["profile=smoke", "flow.num_steps=7"]).flow.num_steps == 7


def test_image_presets_layer_their_overlay_on_the_profile_and_the_command_line_still_wins():
    for task in ("Bimanual-Chunk-Vision", "Bimanual-Chunk-Insertion-Vision"):
        cpu = load_train_config(task, ["profile=cpu"])
        assert cpu.planner.num_steps == 6000 and cpu.data.chunk_basis == "dct" and cpu.data.chunk_coeffs == 10
        assert cpu.flow.num_steps == 10_000 and cpu.planner.decode_steps == 4  # the profile's and the preset's own
        assert load_train_config(task, ["profile=cpu", "planner.num_steps=2000"]).planner.num_steps == 2000
        for profile in ("tiny", "smoke"):  # no overlay for these: the profile's sizes as for the state tasks
            assert (load_train_config(task, [f"profile={profile}"]).planner.num_steps
                    == load_train_config("Bimanual-Chunk", [f"profile={profile}"]).planner.num_steps)
        assert load_train_config(task).planner.num_steps == load_train_config("Bimanual-Chunk").planner.num_steps
    assert load_train_config("Bimanual-Chunk", ["profile=cpu"]).planner.num_steps == 2000  # state tasks untouched
    assert load_train_config("Bimanual-Chunk", ["profile=cpu"]).data.chunk_basis != "dct"


def test_insertion_preset_layers_its_cpu_overlay_and_leaves_the_other_profiles_and_tasks_alone():
    cpu = load_train_config("Bimanual-Chunk-Insertion", ["profile=cpu"])
    assert (cpu.flow.batch_size, cpu.flow.num_steps) == (256, 24_000)
    assert (cpu.flow.conditioning, cpu.flow.compute_dtype) == ("film", "auto")
    assert (cpu.planner.num_steps, cpu.planner.learning_rate, cpu.planner.lr_schedule) == (8000, 1e-3, "cosine")
    assert cpu.planner.decode_steps == 4 and cpu.critic.num_steps == 3000  # the preset's and the profile's own
    assert load_train_config("Bimanual-Chunk-Insertion", ["profile=cpu", "flow.batch_size=128"]).flow.batch_size == 128
    for profile in ("tiny", "smoke"):
        smoke = load_train_config("Bimanual-Chunk-Insertion", [f"profile={profile}"])
        assert smoke.planner.lr_schedule == "constant"
        assert smoke.flow.batch_size == load_train_config("Bimanual-Chunk", [f"profile={profile}"]).flow.batch_size
    for task in ("Bimanual-Chunk", "Bimanual-Chunk-Insertion-Vision"):
        assert load_train_config(task, ["profile=cpu"]).planner.lr_schedule == "constant"
        assert load_train_config(task, ["profile=cpu"]).flow.conditioning == "concat"


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
    ("baselines.fql.critic_loss=huber", "FQLConfig.critic_loss"),
    ("baselines.qc.q_agg=max", "QCConfig.q_agg"),
    ("baselines.dsrl_na.latent=cube", "DSRLNAConfig.latent"),
    ("baselines.lps.q_weight=0", "LPSConfig"),
    ("planner.awr_weight=-1", "PlannerConfig.awr_weight"),
    ("data.collect_quality_mix=[0.5,-0.5,1]", "DataConfig.collect_quality_mix"),
    ("data.collect_quality_mix=[0,0,0]", "DataConfig.collect_quality_mix"),
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
                  "data.path=moved.npz", "device=cuda", "data.collect_quality_mix=[0,0,1]") == [flow, critic, planner]
    new_planner = hashes("planner.weights.temperature=3.0")
    assert new_planner[:2] == [flow, critic] and new_planner[2] != planner
    new_flow = hashes("flow.learning_rate=1e-3")
    assert all(a != b for a, b in zip(new_flow, [flow, critic, planner]))  # later phases build on the flow
    assert train_config_from_dict(asdict(base)) == base


def test_runs_saved_before_a_setting_existed_keep_their_checkpoint_hashes():
    """The hashes of the profile=cpu presets as runs saved them. A new setting changes them unless it is left out of
    the hash at the value that trains as before (registry.LATER_DEFAULTS); otherwise every earlier run's checkpoints
    would be refused as "from another run" and no earlier run could be evaluated or resumed."""
    # Insertion's hashes moved when its preset took planner.q_weight=0.1, the FiLM flow and then compute_dtype=auto
    # (preset changes, not new settings); its runs saved in bf16 keep theirs under flow.compute_dtype=bfloat16
    saved = {("Bimanual-Chunk", ()): ["32bb800bf61b853a", "6c5fd96646f750d3", "25ac072c389a6210"],
             ("Bimanual-Chunk-Insertion", ()): ["88fb1b20ec037325", "6340e250ef8285ab", "599ba72c4a3f524b"],
             ("Bimanual-Chunk-Insertion", ("flow.compute_dtype=bfloat16",)): ["2d92f7993bdd8d66", "3d43605c98d5d7bc",
                                                                            "835ccd3a626a8fd8"]}
    for (task, overrides), hashes in saved.items():
        cfg = load_train_config(task, ["profile=cpu", *overrides])
        assert [config_hash(hashed_config(cfg, p)) for p in ("flow", "critic", "planner")] == hashes, (
            f"{task}: a new setting changed the checkpoint hashes; add it to registry.LATER_DEFAULTS")


def test_ogbench_presets_run_fql_with_its_papers_alpha_on_its_papers_q_term():
    """alpha = 300 is FQL's value for the cube tasks against an unnormalized Q term; the two go together."""
    for task in ("ogbench:cube-single-play-singletask-v0", "ogbench:cube-double-play-singletask-v0"):
        fql = load_train_config(task, ["profile=ogbench_cpu"]).baselines.fql
        assert (fql.alpha, fql.normalize_q_loss) == (300.0, False), task


def test_presets_are_found_when_lawr_is_installed_from_a_wheel(tmp_path):
    """The presets (beside each task family's env), the shared profiles and recipes and the robot limits the
    deploy script reads by default are package data: an installed lawr composes and deploys as a checkout does."""
    import shutil
    import subprocess
    import sys
    import zipfile

    from lawr_ext import REPO_ROOT

    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "source", source / "source", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    installed = tmp_path / "site"
    zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl"))).extractall(installed)
    compose = ("import lawr_ext.configs.train as t, lawr_ext.tasks.bimanual.action_spec as a; "
               "cfg = t.load_train_config('Bimanual-Chunk-Insertion', ['profile=smoke', 'recipe=published']); "
               "print(t.get_task(cfg.task).lawr_cfg_file(), a.ROBOT_LIMITS_FILE.is_file(), cfg.task, cfg.flow.arch, "
               "cfg.critic.v_max, cfg.baselines.fql.alpha, "
               "t.load_train_config('Bimanual-Chunk-Vision', ['profile=cpu']).planner.num_steps, "
               "t.load_train_config('Bimanual-Chunk-Insertion', ['profile=cpu']).flow.batch_size)")
    done = subprocess.run([sys.executable, "-c", compose], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(installed), "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    preset = installed / "lawr_ext" / "tasks" / "bimanual" / "agents" / "lawr_bimanual_chunk_insertion.yaml"
    assert done.stdout.split() == [str(preset), "True", "Bimanual-Chunk-Insertion", "mlp", "1000.0", "300.0", "6000",
                                 "256"]


def test_baselines_match_the_capacity_and_budget_of_the_phase_they_stand_in_for():
    """baselines.match_lawr: latent actors take the planner's network and budget (keeping where their z lives),
    QC's critic the critic phase's budget, whole-policy learners the flow's network and Phase 1's budget."""
    from lawr_ext.algorithms.registry import stage_config

    cfg = load_train_config("Bimanual-Chunk", ["profile=cpu", "planner.num_steps=1234", "critic.num_steps=777"])
    lps, dsrl = stage_config(cfg, "lps"), stage_config(cfg, "dsrl_na")
    for peer, latent in ((lps, "sphere"), (dsrl, "box")):
        assert (peer.hidden_dim, peer.num_blocks, peer.num_steps, peer.batch_size, peer.latent) == (
            cfg.planner.hidden_dim, cfg.planner.num_blocks, 1234, cfg.planner.batch_size, latent)
    assert dsrl.noise_critic == cfg.critic and (lps.awr_weight, lps.q_weight) == (0.0, 1.0)
    assert stage_config(cfg, "gaussian_awr").num_steps == 1234
    qc = stage_config(cfg, "qc")
    assert qc.critic == cfg.critic and (qc.num_steps, qc.batch_size) == (777, cfg.critic.batch_size)
    act = stage_config(cfg, "act")
    assert (act.network.arch, act.network.width, act.network.depth) == (cfg.flow.arch, cfg.flow.width, cfg.flow.depth)
    assert (act.num_steps, act.batch_size) == (cfg.flow.num_steps, cfg.flow.batch_size)
    own = load_train_config("Bimanual-Chunk", ["profile=cpu", "baselines.match_lawr=false"])
    assert stage_config(own, "lps").hidden_dim == 512 and stage_config(own, "act").num_steps == 100_000


def test_published_recipe_switches_the_baselines_to_their_papers_settings():
    ours, published = (load_train_config("Bimanual-Chunk", extra) for extra in ([], ["recipe=published"]))
    assert (ours.baselines.fql.alpha, ours.baselines.fql.normalize_q_loss) == (10.0, True)
    fql = published.baselines.fql
    assert (fql.alpha, fql.normalize_q_loss, fql.critic_loss, fql.q_agg, fql.bc_flow_steps) == (300.0, False, "mse",
                                                                                                 "mean", 10)
    assert published.baselines.act.use_vae and published.baselines.act.kl_weight == 10.0
    assert published.baselines.qc.num_samples == 32 and published.baselines.dsrl_na.box_magnitude == 1.5
    assert published.flow == ours.flow and published.planner == ours.planner  # L-AWR itself is untouched
