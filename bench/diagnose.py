"""Why does a trained policy fail on a task? One command that measures each hypothesis and writes a table + plots.

    python bench/diagnose.py --task Bimanual-Chunk --dataset runs/datasets/bc256 --out runs/diagnose/bc256 \
        --run runs/Bimanual-Chunk/<time> [--parts replay precision exec_horizon learning_curve easiest scaling]

Parts (each one's result is cached in OUT/diagnose.json, so a killed or extended run redoes only what is missing):

    replay          the dataset's recorded actions replayed open-loop from the same resets: is the action path
                    reproducible (fraction of the clean expert's successes the replay reproduces)?
    precision       how close the frozen flow of --run comes to the dataset's chunks (one draw, 4-step draw, best of
                    16, a latent optimized on the sqrt(d) sphere, T(0)) and how close each trained policy does, in
                    env action units and end-effector millimetres (eval/diagnostics.py)
    weights         which chunks --run's Phase 3 regression leans on: the planner's AWR weights of the data's chunks
                    (frozen critic) grouped by expert quality and episode success, also within windows of the
                    episode's steps (--weight_windows) (no training, seconds)
    ranking         whether --run's critic tells the data's chunks that succeed from those that fail, and whether any
                    learner could: held-out AUC of the episode's success from probes fitted on half the episodes
                    (state alone; state and chunk) beside the V, Q and Q - V of --run's critic and of a critic of
                    the preset's settings (and the overrides) trained on the probes' half, per window of the steps
                    (--ranking_windows), for all episodes and within each expert quality (eval/diagnostics.py
                    success_ranking; a few minutes)
    grasps          where the grippers close on their objects: across the fingers from the object's centre, centred
                    (< 5 mm), loose (< 15 mm) or offset (>= 15 mm; the suboptimal expert's grasp is 30 mm off),
                    in the dataset (by expert quality) and in --episodes rollouts of each of --methods of --run (one
                    process), with the successes of each and the episodes that lifted nothing (state tasks only;
                    eval/diagnostics.py GraspRecorder)
    modes           whether --run's flow commits to one of the demonstrated strategies at the episodes' first states
                    (the data's first chunks are multimodal there) or averages them: each draw's end-effector motion
                    against the strategies' centroids (eval/diagnostics.py mode_commitment; seconds)
    exec_horizon    --run's policies executed with exec_horizon 1, 4, 8, 16, H and with ACT's temporal ensembling
    learning_curve  the whole pipeline trained at several step counts (--curve_steps, every phase alike), success and
                    return of L-AWR and flow BC at each, and the training cost per gradient step of each phase
    basis_error     how far the dataset's own chunks move when projected on K cosines per joint (--replay_coeffs): grasp
                    points on average and at each chunk's worst step, arm and gripper commands (no training, seconds)
    precision_curve Phase 1 alone, once per chunk representation (--representations NAME=OVERRIDE,...: the chunk
                    basis, network or optimizer settings), its frozen EMA flow's precision (one draw, best of 16, best
                    latent on the sphere; grasp-point mm) at each of --curve_steps against training wall-clock seconds:
                    precision per unit of compute, without the cost of rollouts
    easiest         the easiest learners on the easiest data: a deterministic L1 chunk regressor (the ACT baseline)
                    and Phase 1's flow, on clean-expert episodes of one strategy only (no multimodality, no RL)
    scaling         the pipeline with and without the dataset-fitted action normalizer (data.action_normalization)
    candidates      --run's L-AWR acting by the best, under its frozen critic's min Q, of N latents: the planner's own
                    and N - 1 fixed others around it or from the prior (--latents N:SPREAD ...; SPREAD 0: prior draws);
                    success, and how often the planner's own latent scores best on dataset states (chance 1 / N).
                    No training; state tasks (eval/diagnostics.py CriticScoredLatents)
    variants        Phase 3 variants (--variants NAME=OVERRIDE,...; default: the paper's ball, the sqrt(d) sphere,
                    the sphere with a Q term, the sphere trained 3x longer) trained on --run's frozen flow and
                    critic (copied, not retrained), each evaluated as L-AWR (its report in OUT/runs/<variant>/eval)
    wallclock       finished runs (--curve_runs RUN ...) placed by training wall-clock: each method's success (its
                    RUN/eval/<method>/eval.json, from scripts/evaluate.py or the training run) against the seconds of
                    the phases it needs (their checkpoints' train_seconds); no training, no rollouts. Plot:
                    OUT/wallclock.png

Several diagnose processes may share one OUT (e.g. the learning curve on one core, the rest on the other): each
result is merged into OUT/diagnose.json under a file lock.

Everything is trained with the task's preset and ``--profile`` (default cpu) plus any hydra ``overrides``, on
``--train_threads`` threads; every evaluation uses ``--episodes`` episodes in ``--num_envs`` envs with Wilson 95%
intervals, executing ``--exec_horizon`` steps of each chunk, with or without ``--temporal_ensemble`` (default: the
preset's, as ``scripts/evaluate.py`` does; both are part of each cache key, ``...@exec16`` or ``...@exec1_ensemble``,
so figures at different settings sit side by side), in ``--sim_processes`` processes, one per core (keyed
``..._2proc``: each process draws its own resets). Writes OUT/diagnose.md, OUT/learning_curve.png and
OUT/exec_horizon.png; OUT/runs/ holds the runs it trained.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from lawr_ext.algorithms import registry
from lawr_ext.configs.train import TrainConfig, load_train_config
from lawr_ext.data import keys
from lawr_ext.data.dataset import ChunkDataset, load_episodes
from lawr_ext.eval import evaluate_policy, write_report
from lawr_ext.eval.diagnostics import (GRASP_BIN_NAMES, CriticScoredLatents, GraspRecorder, data_grasps,
                                       flow_precision, grasp_summary, held_out_episodes, mode_commitment,
                                       policy_precision, success_ranking, weight_shares)
from lawr_ext.runners.checkpoint import checkpoint_path, final_path, read_checkpoint
from lawr_ext.runners.pipeline import (chunk_basis, load_policy, load_product, open_dataset, run_config, run_stage,
                                      write_run_config)
from lawr_ext.runners.sim_processes import run_sim_job
from lawr_ext.runners.trainer import dataset_dims
from lawr_ext.tasks import get_task
from lawr_ext.utils.io import atomic_write_text

PARTS = ("replay", "basis_error", "precision", "modes", "weights", "ranking", "grasps", "exec_horizon",
         "learning_curve", "precision_curve", "easiest", "scaling", "candidates", "variants", "wallclock")
# the parts that read one trained run (--run, or the learning curve's), in the order they run: Diagnosis methods
RUN_PARTS = ("precision", "modes", "weights", "ranking", "grasps", "exec_horizon", "candidates", "variants")
DEFAULT_REPRESENTATIONS = ("steps=data.chunk_basis=steps", "dct10=data.chunk_basis=dct,data.chunk_coeffs=10")
# Phase 3 variants: (a) the sphere, (b) + a Q term, (c) the amortization gap (the planner
# lands near one flow draw's precision, an optimized latent much closer: train it longer, faster)
DEFAULT_VARIANTS = ("ball=planner.latent=ball", "sphere=planner.latent=sphere",
                    "sphere_q1=planner.latent=sphere,planner.q_weight=1.0",
                    "sphere_3x=planner.latent=sphere,planner.num_steps=6000,planner.learning_rate=1e-3")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="Bimanual-Chunk")
    parser.add_argument("--dataset", required=True, help="the dataset every part trains on / replays")
    parser.add_argument("--out", required=True, help="output folder (diagnose.json/.md, plots, runs/)")
    parser.add_argument("--run", default=None, help="a trained run for 'precision' and 'exec_horizon' "
                                                    "(default: the learning curve's largest run)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--profile", default="cpu", help="training profile (lawr_ext/configs/profile/<name>.yaml)")
    parser.add_argument("--episodes", type=int, default=64, help="evaluation episodes per policy and setting")
    parser.add_argument("--num_envs", type=int, default=64)
    parser.add_argument("--sim_processes", type=int, default=1,
                        help="simulator processes per evaluation (one per core), as scripts/evaluate.py; 'grasps' "
                             "rolls out in one. Each process draws its own resets, so results are keyed by it "
                             "(...@exec1_ensemble_2proc)")
    parser.add_argument("--train_threads", type=int, default=1,
                        help="torch threads of the phases the parts train (evaluations simulate on one each)")
    parser.add_argument("--replay_episodes", type=int, default=128)
    parser.add_argument("--replay_coeffs", type=int, nargs="*", default=[],
                        help="also replay each recorded chunk projected on this many DCT cosines per joint")
    parser.add_argument("--exec_horizon", type=int, default=None,
                        help="steps of each chunk executed before replanning in every part but exec_horizon "
                             "(default: the task preset's eval.exec_horizon); results are cached per value")
    parser.add_argument("--temporal_ensemble", action=argparse.BooleanOptionalAction, default=None,
                        help="ACT's temporal ensembling in every part but exec_horizon (default: the preset's); "
                             "part of each cache key too (...@exec1_ensemble)")
    parser.add_argument("--ranking_windows", type=int, default=10,
                        help="windows of the episode's steps the 'ranking' part reports separately")
    parser.add_argument("--weight_windows", type=int, nargs="*", default=[],
                        help="'weights' also per window of the episode's steps: their boundaries, e.g. 0 60 200")
    parser.add_argument("--ranking_probe_steps", type=int, default=4000,
                        help="gradient steps of the 'ranking' part's two success probes")
    parser.add_argument("--exec_horizons", type=int, nargs="+", default=[1, 4, 8, 16, 50])
    parser.add_argument("--curve_steps", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument("--methods", nargs="+", default=["lawr", "flow_bc"], help="policies the parts evaluate")
    parser.add_argument("--latents", nargs="+", default=["8:0.3", "8:0"], metavar="N:SPREAD",
                        help="the 'candidates' part: N latents per chunk, around the planner's at SPREAD (0: prior)")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), metavar="NAME=OVERRIDE,...",
                        help="Phase 3 variants for the 'variants' part")
    parser.add_argument("--representations", nargs="+", default=list(DEFAULT_REPRESENTATIONS),
                        metavar="NAME=OVERRIDE,...", help="Phase 1 settings compared by the 'precision_curve' part")
    parser.add_argument("--curve_runs", nargs="+", default=[], metavar="RUN",
                        help="finished run directories the 'wallclock' part places by training seconds")
    parser.add_argument("overrides", nargs="*", help="hydra overrides applied to every training")
    return parser.parse_args()


class Diagnosis:
    """The parts' results, cached in OUT/diagnose.json after each measurement."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.out)
        self.path = self.out / "diagnose.json"
        self.out.mkdir(parents=True, exist_ok=True)
        self.results = self._read()
        self.results.setdefault("dataset", str(args.dataset))
        # evaluations start from the preset's eval settings, as scripts/evaluate.py starts from the run's
        chosen = {"exec_horizon": args.exec_horizon, "temporal_ensemble": args.temporal_ensemble}
        self.eval_cfg = replace(self.config([]).eval, num_envs=args.num_envs, num_episodes=args.episodes,
                                progress=False, **{k: v for k, v in chosen.items() if v is not None})
        # suffix of every cache key evaluated with these settings
        self.execution = f"@exec{self.eval_cfg.exec_horizon}" + ("_ensemble" if self.eval_cfg.temporal_ensemble else "")
        self.at = self.execution + (f"_{args.sim_processes}proc" if args.sim_processes > 1 else "")

    def _read(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def cached(self, part: str, key: str, compute, refresh: bool = False):
        """``results[part][key]``, computed (and saved) if missing, or always with ``refresh`` (cheap reads)."""
        import fcntl

        if refresh or key not in self.results.get(part, {}):
            started = time.perf_counter()
            value = compute()
            print(f"[diagnose] {part}/{key}: {json.dumps(value)[:300]} ({time.perf_counter() - started:.0f} s)",
                  flush=True)
            with open(self.out / ".diagnose.lock", "w") as lock:  # another process may have added results
                fcntl.flock(lock, fcntl.LOCK_EX)
                self.results = self._read() | {"dataset": self.results["dataset"]}
                self.results.setdefault(part, {})[key] = value
                atomic_write_text(json.dumps(self.results, indent=2) + "\n", self.path)
        return self.results[part][key]

    # --- building blocks -------------------------------------------------------------------------------------
    def config(self, overrides: list[str]) -> TrainConfig:
        return load_train_config(self.args.task, [f"profile={self.args.profile}", "progress=false"]
                                 + self.args.overrides + overrides)

    def train(self, name: str, overrides: list[str], stages: tuple[str, ...], keep=None) -> Path:
        """Train ``stages`` (and what they need) into OUT/runs/<name>; ``keep`` selects episodes (bool [E])."""
        cfg, run_dir = self.config(overrides), self.out / "runs" / name
        if keep is None:
            dataset = open_dataset(cfg, self.args.dataset)
        else:
            episodes = load_episodes(self.args.dataset).select(keep)
            dataset = ChunkDataset(episodes, cfg.data.horizon, cfg.data.gamma, source=self.args.dataset, seed=cfg.seed)
        write_run_config(run_dir, cfg, self.args.dataset)
        with torch_threads(self.args.train_threads):
            for stage in registry.with_needs(stages):
                run_stage(cfg, stage, dataset, run_dir)
        return run_dir

    def evaluate(self, run_dir: Path, method: str, report_dir: Path | None = None, **eval_fields) -> dict:
        """Success (Wilson CI), return and episode outcomes of ``method`` of ``run_dir``; the whole report (per
        strategy, timing) is also written to ``report_dir`` if given."""
        cfg = replace(self.eval_cfg, **eval_fields)
        if self.args.sim_processes > 1:  # each process rolls out its share; rank 0 writes the merged report
            with tempfile.TemporaryDirectory(prefix="diagnose_eval_") as tmp:
                result = run_sim_job(self.args.sim_processes, "evaluate", run_dir=run_dir, methods=[method],
                                     eval_cfg=cfg, out=report_dir or Path(tmp))[method]
            if result.error is not None:
                raise ValueError(f"evaluation of {method} of {run_dir} failed: {result.error}")
            report = result.report
        else:
            report = evaluate_policy(load_policy(run_dir, method), cfg)
            if report_dir is not None:
                write_report(report, report_dir)
        return outcome(report)

    def evaluate_module(self, policy, report_dir: Path | None = None) -> dict:
        """``evaluate`` for a policy module that no run holds (a diagnostic policy), in as many processes."""
        report = run_sim_job(self.args.sim_processes, "evaluate_policy", policy=policy, eval_cfg=self.eval_cfg)
        if report_dir is not None:
            write_report(report, report_dir)
        return outcome(report)

    # --- the parts -----------------------------------------------------------------------------------------
    def replay(self) -> None:
        from lawr_ext.eval.replay import replay_rounds
        from lawr_ext.modules.chunk_basis import ChunkBasis

        episodes = load_episodes(self.args.dataset)
        num_envs = int(episodes.meta.get("collection", {}).get("num_envs", 1))
        rounds = math.ceil(self.args.replay_episodes / num_envs)
        self.cached("replay", f"{rounds * num_envs}_episodes",
                    lambda: replay_rounds(episodes, rounds, source=self.args.dataset)["summary"])
        horizon = self.config([]).data.horizon
        for k in self.args.replay_coeffs:  # the same actions, each chunk projected on K cosines per joint
            self.cached("replay", f"{rounds * num_envs}_episodes@dct{k}",
                        lambda: replay_rounds(episodes, rounds, source=self.args.dataset,
                                              chunk_basis=ChunkBasis(horizon, "dct", k))["summary"])

    def precision(self, run_dir: Path) -> None:
        cfg, dims = run_config(run_dir), read_checkpoint(final_path(run_dir, "flow"))["dims"]
        dataset = open_dataset(cfg, self.args.dataset)
        end_effectors = _end_effectors(self.args.task)
        behavior = load_product(run_dir, "flow", cfg, dims)
        self.cached("precision", f"{run_dir.name}/flow",
                    lambda: flow_precision(behavior, dataset, end_effectors=end_effectors))
        for method in self.args.methods:
            stage = registry.METHODS[method]
            if stage.learner is not None and final_path(run_dir, stage.name).is_file():
                self.cached("precision", f"{run_dir.name}/{method}",
                            lambda: policy_precision(load_policy(run_dir, method), dataset, end_effectors=end_effectors))

    def weights(self, run_dir: Path) -> None:
        cfg, dims = run_config(run_dir), read_checkpoint(final_path(run_dir, "flow"))["dims"]
        behavior, critic = load_product(run_dir, "flow", cfg, dims), load_product(run_dir, "critic", cfg, dims)
        self.cached("weights", run_dir.name, lambda: weight_shares(
            behavior, critic.advantage, open_dataset(cfg, self.args.dataset), cfg.planner.weights,
            step_windows=tuple(self.args.weight_windows)), refresh=True)

    def ranking(self, run_dir: Path) -> None:
        """--run's critic (trained on every episode) and one of the preset's settings and the overrides, trained on
        the probes' half only (OUT/runs/ranking_half; its flow, which only supplies the normalizers and the chunk
        basis, is cut to 200 steps), scored on the held-out half beside the probes."""
        cfg, dims = run_config(run_dir), read_checkpoint(final_path(run_dir, "flow"))["dims"]
        dataset = open_dataset(cfg, self.args.dataset)
        held_out = held_out_episodes(dataset.episodes.num_episodes)
        behavior = load_product(run_dir, "flow", cfg, dims)
        critics = {"critic": (behavior, load_product(run_dir, "critic", cfg, dims))}
        half = self.train("ranking_half", ["flow.num_steps=200"], ("critic",), keep=~held_out)
        half_cfg, half_dims = run_config(half), read_checkpoint(final_path(half, "flow"))["dims"]  # its own data
        critics["half_critic"] = (load_product(half, "flow", half_cfg, half_dims),
                                  load_product(half, "critic", half_cfg, half_dims))
        self.cached("ranking", run_dir.name, lambda: success_ranking(
            behavior, critics, dataset, held_out=held_out, num_windows=self.args.ranking_windows,
            probe_steps=self.args.ranking_probe_steps))

    def grasps(self, run_dir: Path) -> None:
        spec = get_task(self.args.task)
        if spec.grasp_geometry is None:
            print(f"[diagnose] grasps skipped: {self.args.task} declares no grasp geometry")
            return
        geometry = spec.load("grasp_geometry")

        def data() -> dict:
            episodes = load_episodes(self.args.dataset)
            offsets = data_grasps(episodes, geometry)
            groups = {"all": torch.ones(episodes.num_episodes, dtype=torch.bool)}
            groups |= {f"quality {q}": episodes.quality == q for q in episodes.quality.unique().tolist()}
            return {name: grasp_summary(offsets[member], episodes.success[member]) for name, member in groups.items()}

        def rollouts(method: str) -> dict:
            recorder = GraspRecorder(geometry)
            evaluate_policy(load_policy(run_dir, method), self.eval_cfg, observer=recorder)
            return grasp_summary(recorder.offsets(), torch.tensor([e.success for e in recorder.episodes]),
                                 torch.tensor([e.strategy == -1 for e in recorder.episodes]))

        self.cached("grasps", "data", data)
        for method in self.args.methods:
            self.cached("grasps", f"{run_dir.name}/{method}{self.execution}", lambda: rollouts(method))  # one process

    def modes(self, run_dir: Path) -> None:
        cfg, dims = run_config(run_dir), read_checkpoint(final_path(run_dir, "flow"))["dims"]
        end_effectors = _end_effectors(self.args.task)
        if end_effectors is None:
            print(f"[diagnose] modes skipped: {self.args.task} declares no end effectors")
            return
        behavior = load_product(run_dir, "flow", cfg, dims)
        self.cached("modes", f"{run_dir.name}/flow",
                    lambda: mode_commitment(behavior, open_dataset(cfg, self.args.dataset), end_effectors))

    def exec_horizon(self, run_dir: Path) -> None:
        for method in self.args.methods:
            for k in self.args.exec_horizons:
                self.cached("exec_horizon", f"{run_dir.name}/{method}/exec{k}",
                            lambda: self.evaluate(run_dir, method, exec_horizon=k, temporal_ensemble=False))
            self.cached("exec_horizon", f"{run_dir.name}/{method}/exec1_ensemble",
                        lambda: self.evaluate(run_dir, method, exec_horizon=1, temporal_ensemble=True))

    def learning_curve(self) -> Path:
        run_dir = None
        for steps in self.args.curve_steps:
            overrides = [f"{phase}.num_steps={steps}" for phase in registry.PHASE_NAMES]
            run_dir = self.train(f"curve_{steps}", overrides, registry.PHASE_NAMES)
            self.cached("learning_curve", f"{steps}/seconds_per_step", lambda: _seconds_per_step(run_dir))
            for method in self.args.methods:
                self.cached("learning_curve", f"{steps}/{method}{self.at}", lambda: self.evaluate(run_dir, method))
        return run_dir

    def basis_error(self) -> None:
        """The dataset's chunks (2048, seeded) against their projection on K cosines, in env actions."""
        from lawr_ext.eval.diagnostics import chunk_errors
        from lawr_ext.modules.chunk_basis import ChunkBasis

        cfg = self.config(["data.chunk_basis=steps"])
        dataset = open_dataset(cfg, self.args.dataset)
        batch = dataset.batch(torch.randperm(dataset.num_chunks, generator=torch.Generator().manual_seed(0))[:2048])
        chunks = batch[keys.ACTIONS]  # env actions
        end_effectors = _end_effectors(self.args.task)
        for k in self.args.replay_coeffs:
            basis = ChunkBasis(cfg.data.horizon, "dct", k)
            projected = basis.decode(basis.encode(chunks)).clamp(-1.0, 1.0)
            errors = chunk_errors(projected, chunks, batch[keys.MASK], end_effectors)
            result = {"action_mae_per_dim": errors["action_mae_per_dim"]}
            if end_effectors is not None:
                distance = 1000 * (end_effectors(projected) - end_effectors(chunks)).norm(dim=-1).mean(-1)  # [B, H]
                result |= {"grasp_mm_mean": errors["end_effector_mm"],
                           "grasp_mm_worst_step": distance.masked_fill(~batch[keys.MASK], 0).max(-1).values.mean().item()}
            self.cached("basis_error", f"dct{k}", lambda: result)

    def precision_curve(self) -> None:
        """Phase 1 trained once per representation up to max(--curve_steps), its precision measured at each count."""
        from lawr_ext.algorithms.base import freeze
        from lawr_ext.algorithms.stage import StageInputs
        from lawr_ext.runners.trainer import stage_seed

        end_effectors = _end_effectors(self.args.task)
        counts = sorted(self.args.curve_steps)
        for spec in self.args.representations:
            name, _, overrides = spec.partition("=")
            if all(f"{name}/{n}" in self.results.get("precision_curve", {}) for n in counts):
                continue
            cfg = self.config([f"flow.num_steps={counts[-1]}"] + [o for o in overrides.split(",") if o])
            dataset = open_dataset(cfg, self.args.dataset)
            basis = chunk_basis(cfg)
            inputs = StageInputs(dataset.obs_dim, basis.num_coeffs, dataset.action_dim, dataset=dataset,
                                 chunk_basis=basis, action_normalization=cfg.data.action_normalization)
            torch.manual_seed(stage_seed(cfg, "flow"))
            dataset.generator.manual_seed(stage_seed(cfg, "flow"))
            learner = registry.PHASES["flow"].learner(registry.stage_config(cfg, "flow"), inputs)
            seconds, step = 0.0, 0
            for count in counts:
                started = time.perf_counter()
                with torch_threads(self.args.train_threads):
                    for step in range(step + 1, count + 1):
                        learner.update(learner.learner_batch(dataset.sample(cfg.flow.batch_size)))
                seconds += time.perf_counter() - started
                behavior = freeze(learner.product())
                found = flow_precision(behavior, dataset, end_effectors=end_effectors)
                point = {"steps": count, "train_seconds": seconds, "overrides": overrides,
                         "parameters": sum(p.numel() for p in learner.decoder.parameters())}
                point |= {kind: found[kind].get("end_effector_mm", found[kind]["action_mae"])
                          for kind in ("sample_1step", "best_of_16", "optimized_sphere")}
                self.cached("precision_curve", f"{name}/{count}", lambda: point)

    def easiest(self) -> None:
        episodes = load_episodes(self.args.dataset)
        keep = (episodes.quality == 0) & (episodes.strategy == 0)
        self.results.setdefault("easiest", {})["subset"] = f"quality 0 (clean), strategy 0: {int(keep.sum())} episodes"
        run_dir = self.train("easiest_clean_strategy0", [], ("act", "flow"), keep=keep)
        for method in ("act", "flow_bc"):
            self.cached("easiest", f"{method}{self.at}", lambda: self.evaluate(run_dir, method))
        full = self.train("easiest_all_data", [], ("act",))
        self.cached("easiest", f"act_on_all_data{self.at}", lambda: self.evaluate(full, "act"))

    def candidates(self, run_dir: Path) -> None:
        cfg, dims = run_config(run_dir), read_checkpoint(final_path(run_dir, "flow"))["dims"]
        if "images" in dims:
            raise SystemExit("[diagnose] candidates: state tasks only (the dataset's observations are scored raw)")
        critic = load_product(run_dir, "critic", cfg, dims)
        observations = open_dataset(cfg, self.args.dataset).observations
        states = observations[torch.randperm(len(observations), generator=torch.Generator().manual_seed(0))[:1024]]
        policy = load_policy(run_dir, "lawr")  # loaded once; each spec wraps its planner anew
        lawr = policy.policy
        for spec in self.args.latents:
            num, _, spread = spec.partition(":")
            num, spread = int(num), float(spread or 0)
            policy.policy = CriticScoredLatents(lawr, critic, num, spread)
            report_dir = self.out / "candidates" / f"{run_dir.name}_{num}x{spread:g}"
            self.cached("candidates", f"{run_dir.name}/{num}:{spread:g}{self.at}", lambda: {
                "planner_kept_on_data": policy.policy.planner_kept(states),
                **self.evaluate_module(policy, report_dir=report_dir)})

    def variants(self, run_dir: Path) -> None:
        import shutil

        for spec in self.args.variants:
            name, _, overrides = spec.partition("=")
            variant_dir = self.out / "runs" / f"{run_dir.name}__{name}"
            for phase in ("flow", "critic"):  # the frozen products are shared, only Phase 3 is trained
                (variant_dir / phase).mkdir(parents=True, exist_ok=True)
                # final.pt is the product; checkpoint.pt keeps its training record (seconds, for 'wallclock')
                for file in ("final.pt", "checkpoint.pt"):
                    if not (variant_dir / phase / file).is_file() and (run_dir / phase / file).is_file():
                        shutil.copy(run_dir / phase / file, variant_dir / phase / file)
            cfg = self.variant_config(run_config(run_dir), [o for o in overrides.split(",") if o], spec)
            write_run_config(variant_dir, cfg, self.args.dataset)
            with torch_threads(self.args.train_threads):
                run_stage(cfg, "planner", open_dataset(cfg, self.args.dataset), variant_dir)
            self.cached("variants", f"{run_dir.name}/{name}{self.at}", lambda: {"overrides": overrides, **self.evaluate(
                variant_dir, "lawr", report_dir=variant_dir / "eval" / "lawr")})  # an evaluated run, as 'wallclock' reads

    def variant_config(self, base: TrainConfig, overrides: list[str], spec: str) -> TrainConfig:
        """The run's config of record with Phase 3 recomposed: its seed, data, flow and critic stay the run's (they
        are frozen products, hashed with the seed), the planner is the preset's with the run's step count and the
        variant's overrides."""
        frozen = [o for o in overrides if o.split(".")[0].lstrip("+~") in ("data", "flow", "critic")]
        if frozen:
            raise SystemExit(f"[diagnose] variant {spec!r}: a variant retrains Phase 3 only on the run's frozen flow "
                             f"and critic; {', '.join(frozen)} would change those (train a new run instead)")
        cfg = self.config([f"seed={base.seed}", f"planner.num_steps={base.planner.num_steps}"] + overrides)
        return replace(cfg, data=base.data, flow=base.flow, critic=base.critic)

    def wallclock(self) -> None:
        """Each --curve_runs run's evaluated methods, at the training seconds of the phases each one needs."""
        for run in map(Path, self.args.curve_runs):
            cfg = run_config(run)
            trained_on = Path(cfg.data.path).resolve()
            if trained_on != Path(self.args.dataset).resolve():
                raise SystemExit(f"[diagnose] wallclock: {run} was trained on {trained_on}, not on --dataset "
                                 f"{self.args.dataset}: one curve compares runs on one dataset")
            evaluated = sorted(p.parent.name for p in (run / "eval").glob("*/eval.json"))
            if not evaluated:
                raise SystemExit(f"[diagnose] wallclock: {run} has no eval/<method>/eval.json: evaluate it first "
                                 f"(scripts/evaluate.py --checkpoint {run})")
            for method in evaluated:
                self.cached("wallclock", f"{run.name}/{method}", lambda: run_wallclock(run, method, cfg), refresh=True)

    def scaling(self) -> None:
        for mode in ("none", "min_max"):
            run_dir = self.train(f"scaling_{mode}", [f"data.action_normalization={mode}"], registry.PHASE_NAMES)
            for method in self.args.methods:
                self.cached("scaling", f"{mode}/{method}{self.at}", lambda: self.evaluate(run_dir, method))


def outcome(report: dict) -> dict:
    """What the tables read of an evaluation report: success (Wilson CI), return and how episodes ended."""
    s = report["summary"]
    return {k: s[k] for k in ("episodes", "successes", "success_rate", "success_ci95", "return_mean",
                              "objects_dropped", "physics_failures")}


@contextlib.contextmanager
def torch_threads(n: int):
    """Train on ``n`` threads, then simulate on one again (main's setting)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_wallclock(run_dir: Path, method: str, cfg: TrainConfig) -> dict:
    """``method``'s evaluation in ``run_dir`` (trained with ``cfg``) and the training seconds of every phase it is
    built from (a missing checkpoint stops with read_checkpoint's one line)."""
    stages = registry.with_needs((registry.METHODS[method].name,))
    seconds = {stage: float(read_checkpoint(checkpoint_path(run_dir, stage))["train_seconds"])
               for stage in stages if registry.STAGES[stage].learner is not None}  # not trained: 0 s
    s = json.loads((run_dir / "eval" / method / "eval.json").read_text())["summary"]
    return {"train_seconds": sum(seconds.values()), "phase_seconds": seconds, "flow_steps": cfg.flow.num_steps,
            "flow_batch": cfg.flow.batch_size, "planner_steps": cfg.planner.num_steps,
            "decode_steps": cfg.planner.decode_steps, "temperature": cfg.planner.weights.temperature,
            "planner_lr": cfg.planner.learning_rate, "planner_schedule": cfg.planner.lr_schedule,
            **{k: s[k] for k in ("episodes", "successes", "success_rate", "success_ci95", "return_mean")}}


def _weight_cells(g: dict) -> str:
    """chunks | weight share | per-state normalized share | mean advantage of one group of the 'weights' part."""
    normalized = "—" if g.get("normalized_share") is None else f"{g['normalized_share']:.3f}"  # cached before it: —
    return f"{g['chunk_fraction']:.3f} | {g['weight_share']:.3f} | {normalized} | {g['advantage_mean']:.1f}"


def _planner_rate(r: dict) -> str:
    return f"lr {r['planner_lr']:g}" + (" cosine" if r["planner_schedule"] == "cosine" else "")


def _end_effectors(task: str):
    spec = get_task(task)
    return spec.load("end_effectors") if spec.end_effectors else None


def _seconds_per_step(run_dir: Path) -> dict[str, float]:
    """Training wall-clock seconds per gradient step of each phase (from its final checkpoint)."""
    result = {}
    for phase in registry.PHASE_NAMES:
        ckpt = read_checkpoint(run_dir / phase / "checkpoint.pt")
        result[phase] = ckpt["train_seconds"] / max(ckpt["step"], 1)
    return result


def write_markdown(results: dict, out: Path) -> None:
    """diagnose.md: one table per part that was measured."""
    lines = [f"# Diagnosis of `{results.get('dataset')}`", ""]

    def rate(r: dict) -> str:
        lo, hi = r["success_ci95"]
        return f"{r['successes']}/{r['episodes']} [{lo:.2f}, {hi:.2f}] | {r['return_mean']:.0f}"

    if "replay" in results:
        lines += ["## Replay of recorded actions (@dctK: each chunk projected on K cosines per joint)", "",
                  "| replay | episodes | recorded successes | replayed | outcome matches | clean expert: recorded / "
                  "replayed | mean return difference |", "|---|---|---|---|---|---|---|"]
        for key, s in results["replay"].items():
            lines.append(f"| {key} | {s['episodes']} | {s['recorded_successes']} | {s['replayed_successes']} | "
                         f"{s['outcome_matches']} | {s['clean_recorded_successes']} / {s['clean_replayed_successes']} | "
                         f"{s['mean_return_difference']:.2g} |")
        lines.append("")
    if "precision" in results:
        lines += ["## Precision against the dataset's chunks", "",
                  "| model | chunks | mean abs action error | end-effector error [mm] |", "|---|---|---|---|"]
        for key, value in results["precision"].items():
            rows = value.items() if key.endswith("/flow") else [("policy", value)]
            rows = [(kind, e) for kind, e in rows if isinstance(e, dict) and "action_mae" in e]
            for kind, e in rows:
                mm = f"{e['end_effector_mm']:.1f}" if "end_effector_mm" in e else "-"
                lines.append(f"| {key} | {kind} | {e['action_mae']:.4f} | {mm} |")
        lines.append("")
    if "modes" in results:
        lines += ["## Mode commitment at the episodes' first states (end-effector motion of the first chunk)", "",
                  "| flow | draw | mean distance to the nearest strategy [mm] | committed | distinct strategies per state |",
                  "|---|---|---|---|---|"]
        for key, value in results["modes"].items():
            for kind, m in value.items():
                if isinstance(m, dict) and "committed" in m:
                    lines.append(f"| {key} | {kind} | {1000 * m['distance_m']:.0f} | {m['committed']:.2f} | "
                                 f"{m['distinct']:.2f} |")
        lines.append("")
    if "weights" in results:
        lines += ["## What Phase 3's weights lean on (AWR weights of the data's chunks, by expert quality and success)",
                  "", "| run | group | chunks | weight share | per-state normalized | mean advantage |",
                  "|---|---|---|---|---|---|"]
        for key, value in results["weights"].items():
            for group, g in value["groups"].items():
                lines.append(f"| {key} | {group} | {_weight_cells(g)} |")
        lines.append("")
        windowed = {key: value["windows"] for key, value in results["weights"].items() if value.get("windows")}
        if windowed:
            lines += ["Within each window of the steps where the chunks start (shares of its chunks and weight):",
                      "", "| run | steps | group | chunks | weight share | per-state normalized | mean advantage |",
                      "|---|---|---|---|---|---|---|"]
            for key, windows in windowed.items():
                for window in windows:
                    lo, hi = window["steps"]
                    for group, g in window["groups"].items():
                        lines.append(f"| {key} | {lo}-{'end' if hi is None else hi} | {group} | {_weight_cells(g)} |")
            lines.append("")
    if "ranking" in results:
        lines += ["## Which chunks succeed: held-out AUC of the episode's success (0.5 = chance)", ""]
        for key, value in results["ranking"].items():
            names = value["scores"]
            lines += [f"{key}: probes fitted on {value['train_episodes']} episodes, scored on "
                      f"{value['held_out_episodes']}; critic: --run's (every episode), half_critic: the probes' half",
                      "", "| run | steps | group | chunks | success | " + " | ".join(names) + " |",
                      "|---|---|---|---|---|" + "---|" * len(names)]
            for window in value["windows"]:
                for group, g in window["groups"].items():
                    aucs = " | ".join("—" if g[name] is None else f"{g[name]:.2f}" for name in names)
                    lines.append(f"| {key} | {window['steps'][0]}-{window['steps'][1]} | {group} | {g['chunks']} | "
                                 f"{g['success_rate']:.2f} | {aucs} |")
            lines.append("")
    if "grasps" in results:
        bins = " / ".join(GRASP_BIN_NAMES)
        lines += ["## Where the grippers close: across the fingers from the object's centre", "",
                  "centred < 5 mm, loose < 15 mm, offset >= 15 mm (the suboptimal expert's 30 mm), none: never closed. "
                  "Closures: one per arm and episode. By the worse arm: episodes, successes (, lifted nothing).", "",
                  f"| source | episodes | successes | closures: {bins} | across: quartiles [mm] | along: median [mm] | "
                  f"episodes by the worse arm: {bins} |", "|---|---|---|---|---|---|---|"]
        for key, value in results["grasps"].items():
            rows = value.items() if key == "data" else [("", value)]
            for group, g in rows:
                closures = " / ".join(str(g["closures"][name]) for name in GRASP_BIN_NAMES)
                worst = " / ".join(", ".join(map(str, g["episodes_by_worst_arm"][name])) for name in GRASP_BIN_NAMES)
                quartiles, along = g["across_quartiles_mm"], g["median_along_mm"]
                across = "—" if quartiles is None else ", ".join(f"{v:.1f}" for v in quartiles)
                along = "—" if along is None else f"{along:.1f}"
                label = f"{key} {group}".strip()
                lines.append(f"| {label} | {g['episodes']} | {g['successes']} | {closures} | {across} | {along} | "
                             f"{worst} |")
        lines.append("")
    if "basis_error" in results:
        lines += ["## The dataset's chunks projected on K cosines per joint", "",
                  "| basis | grasp points, mean [mm] | grasp points, worst step [mm] | mean abs action error per dim |",
                  "|---|---|---|---|"]
        for key, e in results["basis_error"].items():
            per_dim = ", ".join(f"{v:.3f}" for v in e["action_mae_per_dim"])
            lines.append(f"| {key} | {e.get('grasp_mm_mean', float('nan')):.2f} | "
                         f"{e.get('grasp_mm_worst_step', float('nan')):.2f} | {per_dim} |")
        lines.append("")
    if "precision_curve" in results:
        lines += ["## Phase 1 precision against training time (grasp-point error [mm], or mean abs action error)", "",
                  "| representation | steps | train s | one draw | best of 16 | best latent | parameters |",
                  "|---|---|---|---|---|---|---|"]
        for key, p in results["precision_curve"].items():
            lines.append(f"| {key.split('/')[0]} | {p['steps']} | {p['train_seconds']:.0f} | {p['sample_1step']:.1f} "
                         f"| {p['best_of_16']:.1f} | {p['optimized_sphere']:.1f} | {p['parameters']} |")
        lines.append("")
    if "candidates" in results:
        lines += ["## L-AWR acting by its critic's best of N latents (N:SPREAD; SPREAD 0: prior draws)", "",
                  "| run / latents | success [95% CI] | return | planner's own latent best on data (chance 1/N) |",
                  "|---|---|---|---|"]
        for key, r in results["candidates"].items():
            lines.append(f"| {key} | {rate(r)} | {r['planner_kept_on_data']:.2f} |")
        lines.append("")
    if "wallclock" in results:
        lines += ["## Success against training wall-clock (the phases each method needs)", "",
                  "| run / method | flow steps × batch | planner steps × flow jumps, temperature, learning rate | "
                  "train s | success [95% CI] | return |", "|---|---|---|---|---|---|"]
        for key, r in sorted(results["wallclock"].items(), key=lambda kv: kv[1]["train_seconds"]):
            planner = "—" if "planner" not in r["phase_seconds"] else \
                f"{r['planner_steps']} × {r['decode_steps']}, {r['temperature']:g}, {_planner_rate(r)}"
            lines.append(f"| {key} | {r['flow_steps']} × {r['flow_batch']} | {planner} | {r['train_seconds']:.0f} | "
                         f"{rate(r)} |")
        lines.append("")
    for part, title in (("exec_horizon", "Execution: steps of each chunk executed before replanning"),
                        ("learning_curve", "Learning curve (every phase trained for the given steps)"),
                        ("easiest", "Easiest learners"), ("scaling", "Action normalization"),
                        ("variants", "Phase 3 variants on one frozen flow and critic (L-AWR)")):
        if part not in results:
            continue
        lines += [f"## {title}", "", "| setting | success [95% CI] | return |", "|---|---|---|"]
        for key, r in results[part].items():
            if isinstance(r, dict) and "successes" in r:
                lines.append(f"| {key} | {rate(r)} |")
            elif isinstance(r, dict):
                lines.append(f"| {key} | " + ", ".join(f"{k} {v:.3f} s" for k, v in r.items()) + " | |")
            else:
                lines.append(f"| {key} | {r} | |")
        lines.append("")
    atomic_write_text("\n".join(lines), out / "diagnose.md")


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(part: str, parse) -> dict[str, list[tuple[float, dict]]]:
        curves: dict[str, list] = {}
        for key, r in results.get(part, {}).items():
            parsed = parse(key)
            if parsed is not None and isinstance(r, dict) and "successes" in r:
                curves.setdefault(parsed[0], []).append((parsed[1], r))
        return {name: sorted(points, key=lambda p: p[0]) for name, points in curves.items()}

    def draw(curves, xlabel: str, path: Path, log_x: bool, legend_below: bool = False) -> None:
        if not curves:
            return
        legend_inches = (0.22 * len(curves) + 0.2) * legend_below
        fig, (ax_s, ax_r) = plt.subplots(1, 2, figsize=(10, 4 + legend_inches))
        for name, points in curves.items():
            x = [p[0] for p in points]
            rates = [p[1]["success_rate"] for p in points]
            lo = [max(r - p[1]["success_ci95"][0], 0.0) for r, p in zip(rates, points)]
            hi = [max(p[1]["success_ci95"][1] - r, 0.0) for r, p in zip(rates, points)]
            ax_s.errorbar(x, rates, yerr=[lo, hi], marker="o", capsize=3, label=name)
            ax_r.plot(x, [p[1]["return_mean"] for p in points], marker="o", label=name)
        for ax, ylabel in ((ax_s, "success rate (95% Wilson CI)"), (ax_r, "mean return")):
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if log_x:
                ax.set_xscale("log")
            ax.grid(alpha=0.3)
            if not legend_below:
                ax.legend()
        if legend_below:  # long curve names: one legend under both panels
            fig.legend(*ax_s.get_legend_handles_labels(), loc="lower center", ncol=1, fontsize="small")
            fig.tight_layout(rect=(0, legend_inches / (4 + legend_inches), 1, 1))
        else:
            fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)

    def curve_key(key: str):
        steps, _, method = key.partition("/")
        method, _, exec_horizon = method.partition("@exec")
        return (f"{method} (exec_horizon {exec_horizon})", float(steps)) if exec_horizon else None

    def exec_key(key: str):
        run, method, setting = key.split("/")
        return None if "ensemble" in setting else (f"{method} ({run})", float(setting.removeprefix("exec")))

    draw(series("learning_curve", curve_key), "gradient steps per phase", out / "learning_curve.png", log_x=True)
    if results.get("precision_curve"):
        fig, ax = plt.subplots(figsize=(6, 4))
        names = dict.fromkeys(key.split("/")[0] for key in results["precision_curve"])
        for name in names:
            points = sorted((p for k, p in results["precision_curve"].items() if k.split("/")[0] == name),
                            key=lambda p: p["steps"])
            for kind, style in (("sample_1step", "-o"), ("optimized_sphere", ":s")):
                ax.plot([p["train_seconds"] for p in points], [p[kind] for p in points], style,
                        label=f"{name}: {'one draw' if kind == 'sample_1step' else 'best latent'}")
        ax.set_xlabel("Phase 1 training wall-clock [s]")
        ax.set_ylabel("grasp-point error [mm]")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "precision_curve.png", dpi=120)
        plt.close(fig)
    draw(series("exec_horizon", exec_key), "exec_horizon (steps per chunk before replanning)",
         out / "exec_horizon.png", log_x=True)

    def wallclock_key(key: str):
        r = results["wallclock"][key]
        method = f"{key.split('/')[-1]}, flow batch {r['flow_batch']}"
        if "planner" in r["phase_seconds"]:  # L-AWR-like: its planner's setting names the curve
            method += (f", planner {r['planner_steps']} steps × {r['decode_steps']} flow jump(s), "
                       f"temperature {r['temperature']:g}, {_planner_rate(r)}")
        return method, r["train_seconds"]

    draw(series("wallclock", wallclock_key), "training wall-clock of the phases it needs [s]",
         out / "wallclock.png", log_x=False, legend_below=True)


def main() -> None:
    args = parse_args()
    diagnosis = Diagnosis(args)
    torch.set_num_threads(1)
    if "replay" in args.parts:
        diagnosis.replay()
    curve_run = diagnosis.learning_curve() if "learning_curve" in args.parts else None
    run_dir = Path(args.run) if args.run else curve_run
    if run_dir is not None:
        for part in RUN_PARTS:
            if part in args.parts:
                getattr(diagnosis, part)(run_dir)
    elif set(RUN_PARTS) & set(args.parts):
        print(f"[diagnose] {' / '.join(RUN_PARTS)} skipped: give --run (or include learning_curve)")
    if "basis_error" in args.parts:
        diagnosis.basis_error()
    if "precision_curve" in args.parts:
        diagnosis.precision_curve()
    if "easiest" in args.parts:
        diagnosis.easiest()
    if "scaling" in args.parts:
        diagnosis.scaling()
    if "wallclock" in args.parts:
        diagnosis.wallclock()
    write_markdown(diagnosis.results, diagnosis.out)
    plot(diagnosis.results, diagnosis.out)
    print((diagnosis.out / "diagnose.md").read_text())


if __name__ == "__main__":
    main()
