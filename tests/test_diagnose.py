"""bench/diagnose.py's bookkeeping: results of two processes sharing one OUT are merged, and the report shows them."""

import argparse
import json
import sys

import pytest
import torch

from lawr_ext import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import diagnose  # noqa: E402


def _args(out, exec_horizon=None, temporal_ensemble=None, sim_processes=1) -> argparse.Namespace:
    return argparse.Namespace(out=str(out), dataset="runs/datasets/d", task="Bimanual-Chunk", profile="cpu",
                              overrides=[], exec_horizon=exec_horizon, temporal_ensemble=temporal_ensemble,
                              num_envs=4, episodes=4, sim_processes=sim_processes, train_threads=1)


def _rate(successes: int, episodes: int) -> dict:
    return {"episodes": episodes, "successes": successes, "success_rate": successes / episodes,
            "success_ci95": [0.0, 1.0], "return_mean": 10.0 * successes}


def test_two_processes_sharing_out_keep_each_others_results(tmp_path):
    curve, other = diagnose.Diagnosis(_args(tmp_path)), diagnose.Diagnosis(_args(tmp_path))  # both read an empty OUT
    curve.cached("learning_curve", "1000/lawr@exec16", lambda: _rate(1, 4))
    other.cached("variants", "run/sphere", lambda: {"overrides": "planner.latent=sphere", **_rate(2, 4)})
    curve.cached("learning_curve", "3000/lawr@exec16", lambda: _rate(3, 4))
    saved = json.loads((tmp_path / "diagnose.json").read_text())
    assert set(saved["learning_curve"]) == {"1000/lawr@exec16", "3000/lawr@exec16"}
    assert saved["variants"]["run/sphere"]["successes"] == 2
    calls = []
    assert curve.cached("learning_curve", "1000/lawr@exec16", lambda: calls.append(1)) == _rate(1, 4) and not calls  # cached

    diagnose.write_markdown(saved, tmp_path)
    report = (tmp_path / "diagnose.md").read_text()
    assert "| run/sphere | 2/4 [0.00, 1.00] | 20 |" in report and "| 3000/lawr@exec16 | 3/4 [0.00, 1.00] | 30 |" in report


def test_default_variants_are_valid_planner_settings():
    from lawr_ext.configs.train import load_train_config

    for spec in diagnose.DEFAULT_VARIANTS:
        name, _, overrides = spec.partition("=")
        cfg = load_train_config("Bimanual-Chunk", ["profile=cpu"] + overrides.split(","))
        assert cfg.planner.latent in ("ball", "sphere"), name


def test_evaluations_use_the_presets_execution_and_key_their_results_by_it(tmp_path, monkeypatch):
    from lawr_ext.configs.train import load_train_config

    preset = load_train_config("Bimanual-Chunk", ["profile=cpu"]).eval
    preset_key = f"@exec{preset.exec_horizon}" + ("_ensemble" if preset.temporal_ensemble else "")
    seen = []
    monkeypatch.setattr(diagnose, "load_policy", lambda run_dir, method: None)
    monkeypatch.setattr(diagnose, "evaluate_policy", lambda policy, cfg: seen.append(
        (cfg.exec_horizon, cfg.temporal_ensemble)) or {"summary": {**_rate(1, 4), "objects_dropped": 0,
                                                                   "physics_failures": 0}})
    default = diagnose.Diagnosis(_args(tmp_path))
    eight = diagnose.Diagnosis(_args(tmp_path, exec_horizon=8, temporal_ensemble=False))
    ensembled = diagnose.Diagnosis(_args(tmp_path, exec_horizon=1, temporal_ensemble=True))
    default.evaluate(tmp_path, "lawr")
    eight.evaluate(tmp_path, "lawr")
    eight.evaluate(tmp_path, "lawr", exec_horizon=50)  # the exec_horizon part sweeps its own values
    ensembled.evaluate(tmp_path, "lawr")
    assert seen == [(preset.exec_horizon, preset.temporal_ensemble), (8, False), (50, False), (1, True)]
    assert default.at == preset_key and eight.at == "@exec8" and ensembled.at == "@exec1_ensemble"

    seen.clear()  # the sweep executes plainly at --exec_horizons, then with ACT's temporal ensembling at 1,
    default.args.exec_horizons, default.args.methods = [4, 16], ["lawr"]  # whatever the preset's execution
    default.exec_horizon(tmp_path)
    assert seen == [(4, False), (16, False), (1, True)] and set(default.results["exec_horizon"]) == {
        f"{tmp_path.name}/lawr/exec4", f"{tmp_path.name}/lawr/exec16", f"{tmp_path.name}/lawr/exec1_ensemble"}


def test_evaluations_in_several_processes_are_keyed_apart_and_report_where_asked(tmp_path, monkeypatch):
    """--sim_processes evaluates as scripts/evaluate.py does (each process its own resets), so its results get their
    own cache keys; a failed rollout stops with its error instead of caching nothing."""
    from lawr_ext.runners.evaluation import MethodEvaluation

    calls = []

    def fake_job(processes, job, run_dir, methods, eval_cfg, out):
        calls.append((processes, job, methods, out))
        report = {"summary": {**_rate(3, 4), "objects_dropped": 0, "physics_failures": 0}}
        return {methods[0]: MethodEvaluation(methods[0], report=report)}

    monkeypatch.setattr(diagnose, "run_sim_job", fake_job)
    monkeypatch.setattr(diagnose, "evaluate_policy", lambda *a, **k: pytest.fail("evaluated in this process"))
    two = diagnose.Diagnosis(_args(tmp_path, sim_processes=2))
    assert two.at == two.execution + "_2proc" and diagnose.Diagnosis(_args(tmp_path)).at == two.execution
    assert two.evaluate(tmp_path, "lawr", report_dir=tmp_path / "eval")["successes"] == 3
    assert calls == [(2, "evaluate", ["lawr"], tmp_path / "eval")]
    two.evaluate(tmp_path, "flow_bc")  # no report wanted: written to a temporary folder, not into the run
    assert calls[-1][3] != tmp_path and not (tmp_path / "eval" / "flow_bc").exists()

    monkeypatch.setattr(diagnose, "run_sim_job", lambda *a, **k: {"lawr": MethodEvaluation("lawr", error="NaN obs")})
    with pytest.raises(ValueError, match="evaluation of lawr .* failed: NaN obs"):
        two.evaluate(tmp_path, "lawr")


def test_precision_curve_measures_each_representation_against_its_training_time(tmp_path):
    """Phase 1 once per representation: one point per step count, cumulative seconds, grasp-point errors, and a
    DCT flow with fewer parameters than the step flow of the same width."""
    from conftest import TINY, synthetic_dataset

    args = _args(tmp_path / "out")
    args.dataset = str(synthetic_dataset(tmp_path / "data.npz", length=12))
    args.profile, args.curve_steps = "tiny", [2, 4]
    args.overrides = TINY + ["data.horizon=10"]
    args.representations = ["steps=data.chunk_basis=steps", "dct4=data.chunk_basis=dct,data.chunk_coeffs=4"]
    diagnosis = diagnose.Diagnosis(args)
    diagnosis.precision_curve()
    curve = diagnosis.results["precision_curve"]
    assert set(curve) == {"steps/2", "steps/4", "dct4/2", "dct4/4"}
    for name in ("steps", "dct4"):
        assert 0 < curve[f"{name}/2"]["train_seconds"] < curve[f"{name}/4"]["train_seconds"]
        assert all(curve[f"{name}/4"][kind] > 0 for kind in ("sample_1step", "best_of_16", "optimized_sphere"))
    assert curve["dct4/4"]["parameters"] < curve["steps/4"]["parameters"]
    diagnose.write_markdown(diagnosis.results, diagnosis.out)
    diagnose.plot(diagnosis.results, diagnosis.out)
    assert "| dct4 | 4 |" in (diagnosis.out / "diagnose.md").read_text()
    assert (diagnosis.out / "precision_curve.png").stat().st_size > 0


def test_basis_error_grows_as_cosines_are_dropped(tmp_path):
    from conftest import TINY, synthetic_dataset

    args = _args(tmp_path / "out")
    args.dataset = str(synthetic_dataset(tmp_path / "data.npz", length=12))
    args.profile, args.replay_coeffs, args.overrides = "tiny", [2, 8], TINY + ["data.horizon=10"]
    diagnosis = diagnose.Diagnosis(args)
    diagnosis.basis_error()
    few, many = diagnosis.results["basis_error"]["dct2"], diagnosis.results["basis_error"]["dct8"]
    assert few["grasp_mm_mean"] > many["grasp_mm_mean"] > 0
    assert few["grasp_mm_worst_step"] >= few["grasp_mm_mean"]
    assert len(few["action_mae_per_dim"]) == 14
    diagnose.write_markdown(diagnosis.results, diagnosis.out)
    assert "| dct2 |" in (diagnosis.out / "diagnose.md").read_text()


def test_mode_commitment_tells_a_flow_that_picks_a_strategy_from_one_that_averages_them():
    """Two strategies move the end effector to +x or -x from the same first state; a flow that draws one of them
    commits (and draws both across its noise), one that returns their mean sits half the separation away."""
    from types import SimpleNamespace

    import torch
    from tensordict import TensorDict
    from torch import nn

    from lawr_ext.data import keys
    from lawr_ext.eval.diagnostics import mode_commitment

    horizon, episodes, length = 4, 8, 6
    strategy = torch.arange(episodes) % 2
    sign = 1.0 - 2.0 * strategy.float()  # strategy 0 -> +x, 1 -> -x

    def chunks_of(signs: torch.Tensor) -> torch.Tensor:  # the end effector's x over the chunk, in actions[..., 0]
        ramp = torch.linspace(0.0, 0.3, horizon)
        return torch.stack([signs[:, None] * ramp, torch.zeros(len(signs), horizon)], dim=-1)

    first_rows = torch.arange(episodes) * length
    dataset = SimpleNamespace(
        episodes=SimpleNamespace(starts=first_rows, strategy=strategy),
        chunk_first_row=torch.arange(episodes * length), chunk_episode=torch.arange(episodes * length) // length,
        batch=lambda ids: TensorDict({keys.OBS: torch.zeros(len(ids), 3), keys.ACTIONS: chunks_of(sign[ids // length]),
                                      keys.MASK: torch.ones(len(ids), horizon)}, batch_size=[len(ids)]))

    class Flow(nn.Module):
        def __init__(self, averages: bool):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(1))
            self.averages = averages
            self.decoder = SimpleNamespace(sample=self.sample, decode=lambda z, obs: self.sample(obs, 1, noise=z))
            self.obs_normalizer = lambda obs: obs

        def sample(self, obs_norm, steps, noise):
            signs = torch.zeros(len(obs_norm)) if self.averages else torch.sign(noise[:, 0, 0])
            return chunks_of(signs)

        learner_batch = staticmethod(lambda batch: batch)
        env_chunks = staticmethod(lambda chunks: chunks)

    end_effectors = lambda actions: torch.stack([actions[..., 0], actions[..., 1], torch.zeros_like(actions[..., 0])],
                                                dim=-1).unsqueeze(-2)  # noqa: E731  [..., 1 point, 3]
    committed = mode_commitment(Flow(averages=False), dataset, end_effectors, draws=8)
    averaged = mode_commitment(Flow(averages=True), dataset, end_effectors, draws=8)
    assert committed["states"] == episodes and committed["centroid_separation_m"] == pytest.approx([0.6])
    assert committed["data"]["committed"] == 1.0 and committed["data"]["distance_m"] == pytest.approx(0.0, abs=1e-6)
    assert committed["sample_1step"]["committed"] == 1.0 and committed["sample_1step"]["distinct"] > 1.5
    assert averaged["sample_1step"]["committed"] == 0.0 and averaged["sample_1step"]["distinct"] == 1.0
    assert averaged["sample_1step"]["distance_m"] == pytest.approx(0.3) and averaged["origin"]["committed"] == 0.0


def test_weight_shares_group_the_planners_weights_by_expert_quality_and_success(tmp_path):
    """exp(A) weights of 8 chunks, hand-computed: a group's share of the summed weight beside its share of chunks."""
    import math
    from types import SimpleNamespace

    import torch
    from tensordict import TensorDict

    from lawr_ext.configs.awr import AWRWeightConfig
    from lawr_ext.data import keys
    from lawr_ext.eval.diagnostics import weight_shares

    quality = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    success = torch.tensor([1, 1, 1, 0, 1, 0, 0, 0], dtype=torch.bool)
    advantage = torch.tensor([0.0, 0.0, math.log(2), 0.0, math.log(4), 0.0, 0.0, 0.0])  # weights 1 1 2 1 4 1 1 1
    obs = torch.stack([quality.float(), torch.zeros(8)], dim=1)  # states: one per expert quality
    dataset = SimpleNamespace(num_chunks=8, batch=lambda ids: TensorDict(
        {keys.QUALITY: quality[ids], keys.SUCCESS: success[ids], "a": advantage[ids], keys.OBS: obs[ids],
         keys.ACTIONS: torch.ones(len(ids), 1, 1)}, batch_size=[len(ids)]))
    # The flow's draws (chunks of zeros) score their state's mean weight: quality 0: 1, 1: 1.5, 2: 1.75 (= Z(s)).
    state_mean = torch.tensor([1.0, 1.5, 1.75])
    decoder = SimpleNamespace(sample=lambda obs_norm: torch.zeros(len(obs_norm), 1, 1))
    behavior = SimpleNamespace(learner_batch=lambda batch: batch, obs_normalizer=lambda x: x, decoder=decoder)

    def advantage_fn(batch):
        drawn = batch[keys.ACTIONS].flatten(1)[:, 0] < 0.5
        return torch.where(drawn, state_mean[batch[keys.QUALITY]].log(), batch["a"])

    result = weight_shares(behavior, advantage_fn, dataset, AWRWeightConfig(temperature=1.0), batch_size=3)
    groups = result["groups"]
    assert result["chunks"] == 8 and set(groups) == {"quality 0 success 1", "quality 1 success 1",
                                                      "quality 1 success 0", "quality 2 success 1",
                                                      "quality 2 success 0"}
    expected = {"quality 0 success 1": (2 / 8, 2 / 12), "quality 1 success 1": (1 / 8, 2 / 12),
                "quality 1 success 0": (1 / 8, 1 / 12), "quality 2 success 1": (1 / 8, 4 / 12),
                "quality 2 success 0": (3 / 8, 3 / 12)}
    for name, (fraction, share) in expected.items():
        assert groups[name]["chunk_fraction"] == pytest.approx(fraction)
        assert groups[name]["weight_share"] == pytest.approx(share)
    assert groups["quality 2 success 1"]["advantage_mean"] == pytest.approx(math.log(4))
    # Divided by each state's mean weight, every state carries the same total weight per chunk (its states' share
    # follows its chunk fraction) and keeps its ranking within: quality 2's lucky chunk has 4 / 7 of its state's.
    normalized = {name: g["normalized_share"] for name, g in groups.items()}
    assert normalized["quality 0 success 1"] == pytest.approx(2 / 8)
    assert normalized["quality 1 success 1"] + normalized["quality 1 success 0"] == pytest.approx(2 / 8)
    assert normalized["quality 2 success 1"] == pytest.approx(4 / 7 * 4 / 8)
    diagnose.write_markdown({"dataset": "d", "weights": {"run": result}}, tmp_path)
    assert "| run | quality 2 success 1 | 0.125 | 0.333 | 0.28" in (tmp_path / "diagnose.md").read_text()

    # Two episodes of 4 chunks: chunks 0-3 start at steps 0, 1, 2, 3 of the first, 4-7 at steps 0-3 of the second.
    dataset.chunk_start_step = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    windows = weight_shares(behavior, lambda batch: batch["a"], dataset, AWRWeightConfig(temperature=1.0),
                            step_windows=(0, 2))["windows"]
    assert [(w["steps"], w["chunks"]) for w in windows] == [([0, 2], 4), ([2, None], 4)]
    early = windows[0]["groups"]  # chunks 0, 1, 4, 5: weights 1, 1, 4, 1
    assert early["quality 2 success 1"]["weight_share"] == pytest.approx(4 / 7)
    assert early["quality 0 success 1"]["chunk_fraction"] == pytest.approx(2 / 4)
    assert set(windows[1]["groups"]) == {"quality 1 success 1", "quality 1 success 0", "quality 2 success 0"}
    assert windows[1]["groups"]["quality 1 success 1"]["weight_share"] == pytest.approx(2 / 5)
    diagnose.write_markdown({"dataset": "d", "weights": {"run": {**result, "windows": windows}}}, tmp_path)
    assert "| run | 2-end | quality 1 success 1 | 0.250 | 0.400 | " in (tmp_path / "diagnose.md").read_text()


def test_wallclock_places_each_evaluated_method_at_the_seconds_of_the_phases_it_needs(tmp_path):
    import torch

    from lawr_ext.configs.train import load_train_config
    from lawr_ext.runners.checkpoint import FORMAT_VERSION
    from lawr_ext.runners.pipeline import write_run_config

    dataset = tmp_path / "data"
    run = tmp_path / "runs" / "r20k"
    write_run_config(run, load_train_config("Bimanual-Chunk-Insertion", [
        "profile=cpu", "flow.num_steps=20000", "flow.batch_size=128", "planner.learning_rate=3e-4"]), dataset)
    for phase, seconds in (("flow", 900.0), ("critic", 60.0), ("planner", 400.0)):
        (run / phase).mkdir(parents=True)
        torch.save({"format_version": FORMAT_VERSION, "stage": phase, "step": 1, "train_seconds": seconds},
                   run / phase / "checkpoint.pt")
    for method, successes in (("lawr", 64), ("flow_bc", 59)):
        (run / "eval" / method).mkdir(parents=True)
        (run / "eval" / method / "eval.json").write_text(json.dumps({"summary": _rate(successes, 128)}))

    args = _args(tmp_path / "out")
    args.dataset, args.curve_runs = str(dataset), [str(run)]
    diagnosis = diagnose.Diagnosis(args)
    diagnosis.wallclock()
    lawr, flow_bc = diagnosis.results["wallclock"]["r20k/lawr"], diagnosis.results["wallclock"]["r20k/flow_bc"]
    assert lawr["train_seconds"] == 1360.0 and lawr["successes"] == 64 and lawr["planner_steps"] == 8000
    assert (lawr["decode_steps"], lawr["temperature"], lawr["flow_steps"]) == (4, 0.5, 20000)  # Insertion at cpu
    assert (lawr["flow_batch"], lawr["planner_lr"], lawr["planner_schedule"]) == (128, 3e-4, "cosine")
    assert flow_bc["train_seconds"] == 900.0 and flow_bc["phase_seconds"] == {"flow": 900.0}  # flow BC trains nothing

    (run / "eval" / "lawr" / "eval.json").write_text(json.dumps({"summary": _rate(70, 128)}))  # re-evaluated
    diagnosis.wallclock()
    assert diagnosis.results["wallclock"]["r20k/lawr"]["successes"] == 70  # read afresh, not cached
    diagnose.write_markdown(diagnosis.results, tmp_path / "out")
    report = (tmp_path / "out" / "diagnose.md").read_text()
    assert "| r20k/flow_bc | 20000 × 128 | — | 900 | 59/128" in report
    assert "| r20k/lawr | 20000 × 128 | 8000 × 4, 0.5, lr 0.0003 cosine | 1360 | 70/128" in report
    diagnose.plot(diagnosis.results, tmp_path / "out")
    assert (tmp_path / "out" / "wallclock.png").stat().st_size > 0

    args.dataset = str(tmp_path / "other")  # a run on another dataset is refused in one line
    with pytest.raises(SystemExit, match="was trained on"):
        diagnose.Diagnosis(args).wallclock()


def test_variants_become_evaluated_runs_keyed_by_their_names(tmp_path, monkeypatch):
    """Each variant copies the frozen phases with their training records, trains Phase 3 only, and keeps its
    evaluation report, so 'wallclock' can place it; its cache key is the variant's name."""
    from lawr_ext.configs.train import load_train_config
    from lawr_ext.runners.pipeline import write_run_config

    dataset = tmp_path / "data"
    run = tmp_path / "runs" / "r30k"
    write_run_config(run, load_train_config("Bimanual-Chunk", ["profile=cpu", "flow.num_steps=30000", "flow.batch_size=96",
                                                               "critic.expectile=0.8", "seed=2"]), dataset)
    for phase in ("flow", "critic"):
        (run / phase).mkdir(parents=True)
        for file in ("final.pt", "checkpoint.pt"):
            (run / phase / file).write_bytes(f"{phase}/{file}".encode())
    trained = []
    monkeypatch.setattr(diagnose, "open_dataset", lambda cfg, path: None)
    monkeypatch.setattr(diagnose, "run_stage", lambda cfg, stage, data, run_dir: trained.append(
        (stage, run_dir.name, cfg.seed, cfg.flow.num_steps, cfg.flow.batch_size, cfg.critic.expectile,
         cfg.planner.weights.temperature)))
    monkeypatch.setattr(diagnose, "load_policy", lambda run_dir, method: None)
    summary = {**_rate(3, 4), "return_std": 1.0, "length_mean": 300.0, "length_std": 10.0, "physics_failures": 0,
               "objects_dropped": 0, "per_strategy": {"0": _rate(3, 4)}}
    monkeypatch.setattr(diagnose, "evaluate_policy", lambda policy, cfg: {"task": "Bimanual-Chunk", "summary": summary})

    args = _args(tmp_path / "out")
    args.dataset, args.variants = str(dataset), ["t1=planner.weights.temperature=1.0"]
    diagnosis = diagnose.Diagnosis(args)
    diagnosis.variants(run)
    variant = tmp_path / "out" / "runs" / "r30k__t1"
    # the frozen phases' settings are the run's own (its seed, which their hashes include, its flow steps and batch,
    # its critic), the override the variant's
    assert trained == [("planner", "r30k__t1", 2, 30000, 96, 0.8, 1.0)]
    assert [key.split("@")[0] for key in diagnosis.results["variants"]] == ["r30k/t1"]
    assert (variant / "flow" / "checkpoint.pt").read_bytes() == b"flow/checkpoint.pt"
    assert (variant / "critic" / "final.pt").read_bytes() == b"critic/final.pt"
    assert json.loads((variant / "eval" / "lawr" / "eval.json").read_text())["summary"]["per_strategy"]["0"]["successes"] == 3

    args.variants = ["b64=flow.batch_size=64"]  # a variant retrains Phase 3 only: a frozen phase's setting is refused
    with pytest.raises(SystemExit, match="Phase 3 only"):
        diagnose.Diagnosis(args).variants(run)


def test_auc_counts_ties_half_and_needs_both_classes():
    import torch

    from lawr_ext.eval.diagnostics import auc

    assert auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == pytest.approx(0.75)
    assert auc(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([0, 1, 1])) == pytest.approx(0.75)  # one tie: half
    assert auc(torch.tensor([3.0, 2.0, 1.0]), torch.tensor([1, 0, 0])) == pytest.approx(1.0)
    assert auc(torch.tensor([1.0, 2.0]), torch.tensor([1, 1])) is None


def test_success_ranking_finds_the_window_where_the_chunk_decides_the_outcome(tmp_path):
    """Episodes of 8 steps whose outcome is set by the chunk's first action from step 4 on (+1 succeeds, -1 fails)
    and unseen before it; the states are noise. The state-and-chunk probe and a critic whose Q reads that action
    rank the late chunks; the state probe and a constant V do not."""
    from types import SimpleNamespace

    import torch
    from tensordict import TensorDict
    from torch import nn

    from lawr_ext.data import keys
    from lawr_ext.eval.diagnostics import held_out_episodes, success_ranking

    horizon, episodes, length = 2, 64, 8
    generator = torch.Generator().manual_seed(0)
    success = torch.rand(episodes, generator=generator) < 0.5
    quality = torch.arange(episodes) % 2
    obs = torch.randn(episodes * length, 3, generator=generator)
    noise = torch.randn(episodes * length, horizon, 2, generator=generator)

    def batch(ids):
        episode, step = ids // length, ids % length
        actions = noise[ids].clone()
        decided = step >= 4
        actions[decided, :, 0] = (2.0 * success[episode].float() - 1.0)[decided, None]
        return TensorDict({keys.OBS: obs[ids], keys.ACTIONS: actions, keys.SUCCESS: success[episode].float(),
                           keys.QUALITY: quality[episode]}, batch_size=[len(ids)])

    dataset = SimpleNamespace(
        episodes=SimpleNamespace(num_episodes=episodes, starts=torch.arange(episodes) * length,
                                 lengths=torch.full((episodes,), length)),
        chunk_first_row=torch.arange(episodes * length), chunk_episode=torch.arange(episodes * length) // length,
        chunk_start_step=torch.arange(episodes * length) % length, batch=batch)

    class Critic(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Parameter(torch.zeros(1))
            self.obs_normalizer = lambda x: x

        def value(self, obs_norm):
            return torch.zeros(len(obs_norm))

        def q_value(self, obs_norm, actions, target=False):
            return actions[:, :, 0].mean(1)

    class Behavior(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Parameter(torch.zeros(1))
            self.obs_normalizer = lambda x: x
            self.learner_batch = lambda b: b

    behavior = Behavior()
    result = success_ranking(behavior, {"critic": (behavior, Critic())}, dataset, num_windows=2, probe_steps=400,
                             hidden=32)
    assert result["train_episodes"] == result["held_out_episodes"] == int(held_out_episodes(episodes).sum()) == 32
    assert torch.equal(held_out_episodes(episodes), held_out_episodes(episodes))
    assert result["scores"] == ["probe_state", "probe_state_chunk", "critic_v", "critic_q", "critic_advantage"]
    early, late = (w["groups"]["all"] for w in result["windows"])
    assert [w["steps"] for w in result["windows"]] == [[0, 4], [4, 8]]
    assert late["probe_state_chunk"] > 0.95 and late["critic_q"] == pytest.approx(1.0)
    assert late["critic_advantage"] == pytest.approx(1.0) and late["critic_v"] == pytest.approx(0.5)
    assert abs(early["critic_q"] - 0.5) < 0.2 and abs(early["probe_state_chunk"] - 0.5) < 0.25
    assert abs(late["probe_state"] - 0.5) < 0.25
    assert set(result["windows"][1]["groups"]) == {"all", "quality 0", "quality 1"}
    diagnose.write_markdown({"dataset": "d", "ranking": {"run": result}}, tmp_path)
    assert "| run | 4-8 | all |" in (tmp_path / "diagnose.md").read_text()


def test_ranking_scores_the_runs_critic_and_one_trained_on_the_probes_half_only(tmp_path):
    """The part trains a critic of the preset's settings on the episodes the probes fit (not the held-out ones) and
    reports both critics beside the probes; on data whose chunks decide the outcome the chunk probe ranks them."""
    from conftest import TINY, synthetic_dataset

    from lawr_ext.eval.diagnostics import held_out_episodes
    from lawr_ext.runners.checkpoint import final_path, read_checkpoint

    args = _args(tmp_path / "out")
    args.dataset = str(synthetic_dataset(tmp_path / "data.npz", num_episodes=32, length=12))
    args.profile, args.overrides, args.ranking_windows, args.ranking_probe_steps = "tiny", TINY, 2, 300
    diagnosis = diagnose.Diagnosis(args)
    run = diagnosis.train("full", [], ("critic",))
    diagnosis.ranking(run)
    result = diagnosis.results["ranking"]["full"]
    assert result["scores"] == ["probe_state", "probe_state_chunk", "critic_v", "critic_q", "critic_advantage",
                                "half_critic_v", "half_critic_q", "half_critic_advantage"]
    half_record = read_checkpoint(final_path(diagnosis.out / "runs" / "ranking_half", "critic"))
    full_record = read_checkpoint(final_path(run, "critic"))
    assert full_record["dims"]["episodes"] == 32
    assert half_record["dims"]["episodes"] == 32 - int(held_out_episodes(32).sum()) == result["train_episodes"]
    assert all(g["probe_state_chunk"] > 0.9 for w in result["windows"] for g in [w["groups"]["all"]])
    diagnose.write_markdown(diagnosis.results, diagnosis.out)
    assert "| half_critic_advantage |" in (diagnosis.out / "diagnose.md").read_text()


class _IdentityDecoder(torch.nn.Module):
    """T(z; s) = z: a candidate's chunk is its latent, so the test knows every chunk."""

    def decode(self, z, obs_norm, steps):
        return z


class _NearestCritic(torch.nn.Module):
    """min Q = -||chunk - target||^2: the critic prefers the candidate nearest ``target`` (one chunk, or one per
    state: the candidates come N per state in a row)."""

    def __init__(self, target):
        super().__init__()
        self.obs_normalizer = torch.nn.Identity()
        self.target = target

    def q_value(self, obs_norm, chunks):
        target = self.target
        if target.dim() == 3:
            target = target.repeat_interleave(chunks.shape[0] // target.shape[0], dim=0)
        return -(chunks - target).flatten(1).square().sum(-1)


def _scored(target, num_latents, spread):
    from lawr_ext.algorithms.planner import LAWRPolicy, LatentPlanner
    from lawr_ext.configs.planner import PlannerConfig
    from lawr_ext.eval.diagnostics import CriticScoredLatents

    torch.manual_seed(0)
    planner = LatentPlanner(PlannerConfig(hidden_dim=16, num_blocks=1), 3, 4, 2)
    lawr = LAWRPolicy(torch.nn.Identity(), planner, _IdentityDecoder())
    return CriticScoredLatents(lawr, _NearestCritic(target), num_latents, spread).eval(), planner


def test_critic_scored_latents_act_by_the_critics_best_candidate_and_keep_them_where_the_planner_is():
    """The chunk executed is the candidate of highest Q; candidates around the planner's latent keep its norm, prior
    candidates do not depend on the state; the planner's own latent is kept exactly where the critic ranks it first."""
    obs = torch.randn(5, 3)
    scored, planner = _scored(torch.zeros(4, 2), 8, 0.3)
    chunks, q = scored.candidates(obs)
    assert chunks.shape == (5, 8, 4, 2) and q.shape == (5, 8)
    torch.testing.assert_close(chunks[:, 0], planner(obs))  # index 0: the planner's own latent
    norms = planner(obs).flatten(1).norm(dim=-1)
    torch.testing.assert_close(chunks.flatten(2).norm(dim=-1), norms[:, None].expand(5, 8))
    best = scored(obs)
    torch.testing.assert_close(best, chunks[torch.arange(5), q.argmax(1)])
    assert (q.gather(1, q.argmax(1, keepdim=True)) >= q).all() and torch.equal(best, scored(obs))  # deterministic

    prior, _ = _scored(torch.zeros(4, 2), 4, 0.0)
    a, b = prior.candidates(obs)[0], prior.candidates(torch.randn(5, 3))[0]
    torch.testing.assert_close(a[:, 1:], b[:, 1:])  # the prior's draws, the same at every state
    assert not torch.allclose(a[:, 0], b[:, 0])

    own, planner = _scored(None, 8, 0.3)
    own.critic.target = planner(obs).detach()  # the critic ranks the planner's own latent first
    assert own.planner_kept(obs) == 1.0
    torch.testing.assert_close(own(obs), planner(obs))
    own.critic.target = chunks[:, 3].detach()  # ... or another candidate
    assert own.planner_kept(obs) == 0.0


@pytest.mark.parametrize("num_latents, spread", [(1, 0.3), (4, -0.1), (4, float("nan"))])
def test_critic_scored_latents_refuse_settings_that_choose_nothing(num_latents, spread):
    with pytest.raises(ValueError, match="CriticScoredLatents"):
        _scored(torch.zeros(4, 2), num_latents, spread)


def test_candidates_part_evaluates_the_scored_policy_in_every_process_and_reports_the_planners_share(tmp_path,
                                                                                                    monkeypatch):
    """--latents N:SPREAD: the run's L-AWR policy with its planner wrapped, evaluated as a whole module in
    --sim_processes processes; each spec keyed by run and spec, with how often the planner's own latent wins."""
    from lawr_ext.eval.diagnostics import CriticScoredLatents

    scored, planner = _scored(torch.zeros(4, 2), 2, 0.3)
    monkeypatch.setattr(diagnose, "run_config", lambda run: None)
    monkeypatch.setattr(diagnose, "read_checkpoint", lambda path: {"dims": {"obs_dim": 3}})
    monkeypatch.setattr(diagnose, "final_path", lambda run, stage: run / stage / "final.pt")
    monkeypatch.setattr(diagnose, "load_product", lambda run, stage, cfg, dims: scored.critic)
    monkeypatch.setattr(diagnose, "open_dataset", lambda cfg, path: argparse.Namespace(observations=torch.randn(40, 3)))
    monkeypatch.setattr(diagnose, "load_policy", lambda run, method: argparse.Namespace(policy=scored.policy))
    calls = []

    def fake_job(processes, job, policy, eval_cfg):
        calls.append((processes, job, type(policy.policy), policy.policy.num_latents, policy.policy.spread))
        summary = {**_rate(3, 4), "return_std": 1.0, "length_mean": 300.0, "length_std": 10.0,
                   "physics_failures": 0, "objects_dropped": 0, "per_strategy": {}}
        return {"task": "Bimanual-Chunk", "summary": summary}

    monkeypatch.setattr(diagnose, "run_sim_job", fake_job)
    args = _args(tmp_path / "out", sim_processes=2)
    args.latents = ["8:0.3", "4:0"]
    diagnosis = diagnose.Diagnosis(args)
    diagnosis.candidates(tmp_path / "s0")
    assert calls == [(2, "evaluate_policy", CriticScoredLatents, 8, 0.3),
                     (2, "evaluate_policy", CriticScoredLatents, 4, 0.0)]
    results = diagnosis.results["candidates"]
    assert [key.split("@")[0] for key in results] == ["s0/8:0.3", "s0/4:0"]
    assert all(key.endswith("_2proc") and 0.0 <= r["planner_kept_on_data"] <= 1.0 and r["successes"] == 3
               for key, r in results.items())
    assert (tmp_path / "out" / "candidates" / "s0_8x0.3" / "eval.json").is_file()
    diagnose.write_markdown(diagnosis.results, diagnosis.out)
    assert "| s0/8:0.3" in (tmp_path / "out" / "diagnose.md").read_text()
