"""Shared test setup and the helpers more than one test file uses (a tiny run, toy envs, policies)."""

import dataclasses
import os
import socket
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lawr_ext.algorithms.base import ChunkPolicy
from lawr_ext.data.collect import CollectConfig, collect
from lawr_ext.data.hdf5 import list_shards
from lawr_ext.data.plain import write_plain

# Tests are tiny: one thread per process avoids oversubscribing CI's 2 cores (measured 23 s -> 2.5 s for a pipeline).
torch.set_num_threads(int(os.environ.get("LAWR_TEST_THREADS", "1")))
# ... and the scripts tests start as processes of their own (trainings, rollouts) do the same: beside the other
# test worker, a process that takes every core for its own threads only makes both wait.
os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("LAWR_TEST_THREADS", "1"))


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)


# ---------------------------------------------------------------- what the two test workers must not both do

#: Module- and session-scoped fixtures that take seconds to minutes to build (trained toy models, an AOTInductor
#: export, a tiny training run, the bimanual env). With pytest-xdist every worker builds its own copy of a fixture
#: its tests use, so the tests of each one share an xdist_group: one worker builds it once.
SHARED_FIXTURES = {"exported_policy", "toy_flow", "frozen_phases", "behavior_flow", "diffusion", "tiny_run", "check",
                   "env"}
#: The group of the tests that simulate (the ``sim`` mark): on a fresh clone the first of them compiles the
#: simulator's Warp kernels into build/warp_cache (minutes on one core); one worker compiles them, not both at once.
SIMULATOR_GROUP = "simulator"
#: The mark of the tests that start ranks of their own (gloo on a free localhost port): one such test at a time,
#: so that no two of them pick a port between another's pick and bind, nor crowd the cores with four ranks.
TWO_PROCESSES = pytest.mark.xdist_group("two_processes")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Give each test that uses a ``SHARED_FIXTURES`` fixture or simulates an ``xdist_group`` (``--dist loadgroup``
    runs a group on one worker, one test after another); a test needing two of them joins the two groups into one.
    Tests marked with an ``xdist_group`` of their own (the two-process tests) keep it and must need neither."""
    needs = {}
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        defs = fixtures.name2fixturedefs if fixtures else {}
        keys = {name for name in SHARED_FIXTURES & set(defs) if defs[name][-1].scope != "function"}
        if item.get_closest_marker("sim"):
            keys.add(SIMULATOR_GROUP)
        if keys and item.get_closest_marker("xdist_group"):
            raise pytest.UsageError(f"{item.nodeid}: has an xdist_group and needs {sorted(keys)}: one group only")
        if keys:
            needs[item] = keys
    parent = {}  # union-find over the keys: keys one test needs together end in one group

    def root(key):
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    for keys in needs.values():
        first, *rest = map(root, keys)
        for key in rest:
            parent[key] = first
    members = {}
    for key in list(parent):
        members.setdefault(root(key), set()).add(key)
    for item, keys in needs.items():
        item.add_marker(pytest.mark.xdist_group("+".join(sorted(members[root(next(iter(keys)))]))))
    if getattr(config.option, "loadgroup", False):  # a worker of --dist loadgroup
        for item in items:
            names = {str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                     for m in item.iter_markers("xdist_group")}
            if names:
                _tag_group(item, "_".join(sorted(names)))


def _tag_group(item, group: str) -> None:
    """Put the group into the item's nodeid (``...@group``), which is what loadgroup schedules by: pytest-xdist
    3.8 does it by setting ``item._nodeid``, which pytest 9 no longer reads (its nodeid is ``item._id``), so
    without this every group's tests would be scattered over both workers."""
    node_id = getattr(item, "_id", None)
    if node_id is None or str(node_id).endswith(f"@{group}"):
        return
    tagged = dataclasses.replace(node_id)
    object.__setattr__(tagged, "_str_cache", f"{node_id}@{group}")
    item._id = tagged


# ---------------------------------------------------------------- a tiny run on a synthetic plain dataset

#: Bimanual-Chunk's observation and action dims (the task the tiny runs train; open_dataset checks them).
OBS_DIM, ACTION_DIM, HORIZON = 45, 14, 4
#: A tiny but complete run: every phase takes a few steps, checkpoints twice and logs.
TINY = ["data.horizon=4", "data.gamma=0.9", "progress=false", "log_interval=2", "checkpoint_interval=4",
        "flow.arch=mlp", "flow.width=32", "flow.depth=1", "flow.time_embed_dim=8", "flow.batch_size=16", "flow.num_steps=8",
        "critic.hidden_dim=32", "critic.num_layers=1", "critic.num_bins=21", "critic.v_min=0", "critic.v_max=2",
        "critic.batch_size=16", "critic.num_steps=8",
        "planner.hidden_dim=32", "planner.num_blocks=1", "planner.batch_size=16", "planner.num_steps=8"]


def synthetic_dataset(path: Path, num_episodes: int = 24, length: int = 10, obs_dim: int = OBS_DIM) -> Path:
    """Two behaviours: actions near +0.5 succeed (reward 1 on the last step), near -0.5 fail."""
    rng = np.random.default_rng(0)
    good = np.arange(num_episodes) % 2 == 0
    sign = np.where(good, 0.5, -0.5).repeat(length)[:, None]
    n = num_episodes * length
    last = np.zeros(n, dtype=bool)
    last[length - 1::length] = True
    write_plain(path, observations=rng.normal(size=(n, obs_dim)).astype(np.float32),
                actions=np.clip(sign + 0.1 * rng.normal(size=(n, ACTION_DIM)), -1, 1).astype(np.float32),
                rewards=(last & good.repeat(length)).astype(np.float32), terminals=last, timeouts=np.zeros(n, bool),
                success=good.repeat(length))
    return path


def grown_dataset(npz: Path, path: Path, extra_episodes: int = 4, length: int = 10) -> Path:
    """``npz`` with ``extra_episodes`` more episodes appended (copies of its first ones): a grown dataset."""
    with np.load(npz) as arrays:
        write_plain(path, **{k: np.concatenate([arrays[k], arrays[k][: extra_episodes * length]]) for k in arrays.files})
    return path


def plain_hdf5_copy(npz: Path, path: Path) -> Path:
    """The same plain-format arrays as one HDF5 file (the other plain layout)."""
    with np.load(npz) as arrays, h5py.File(path, "w") as file:
        for key in arrays.files:
            file[key] = arrays[key]
    return path


def assert_same_state(got, want, where: str = "state") -> None:
    """torch.equal on every tensor of two nested state dicts / lists, == on everything else."""
    if isinstance(want, torch.Tensor):
        assert torch.equal(got, want), where
    elif isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for key in want:
            assert_same_state(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same_state(g, w, f"{where}[{i}]")
    else:
        assert got == want, where


# ---------------------------------------------------------------- a toy vectorized env and its scripted expert

STEP = 0.25  # how far one full action moves the point


class LineEnv:
    """N points on a line, pure torch. Reaching x >= 1 terminates (success); ``max_episode_length`` steps truncate.

    Like an Isaac Lab DirectRLEnv it auto-resets finished envs inside ``step`` from the global torch RNG
    (seeded by ``reset(seed)``), returns the reset observation for them, and returns the same buffers
    every step, overwritten in place. obs = (x, steps taken so far), padded with zeros to ``obs_dim``.
    """

    def __init__(self, num_envs, max_episode_length=8, step_delay_s=0.0, obs_dim=2):
        self.num_envs, self.max_episode_length, self.step_delay_s = num_envs, max_episode_length, step_delay_s
        self.x = torch.zeros(num_envs)
        self.episode_length = torch.zeros(num_envs, dtype=torch.long)
        self.obs_buf = torch.zeros(num_envs, obs_dim)
        self.reward_buf = torch.zeros(num_envs)
        self.terminated_buf = torch.zeros(num_envs, dtype=torch.bool)
        self.truncated_buf = torch.zeros(num_envs, dtype=torch.bool)

    def _obs(self):
        self.obs_buf[:, :2] = torch.stack([self.x, self.episode_length.float()], dim=1)
        return {"policy": self.obs_buf}

    def reset(self, seed=None):
        if seed is not None:
            torch.manual_seed(seed)
        self.x = torch.rand(self.num_envs) * 0.5
        self.episode_length.zero_()
        return self._obs(), {}

    def step(self, actions):
        time.sleep(self.step_delay_s)
        self.x = self.x + STEP * actions[:, 0]
        self.episode_length += 1
        self.reward_buf[:] = self.x
        self.terminated_buf[:] = self.x >= 1.0
        self.truncated_buf[:] = ~self.terminated_buf & (self.episode_length >= self.max_episode_length)
        done = self.terminated_buf | self.truncated_buf
        self.x[done] = torch.rand(int(done.sum())) * 0.5
        self.episode_length[done] = 0
        extras = {"success": self.terminated_buf}
        return self._obs(), self.reward_buf, self.terminated_buf, self.truncated_buf, extras


class LineExpert:
    """Strategy 0 walks at full speed, strategy 1 at half speed; quality 1 adds noise, quality 2 walks backwards."""

    def __init__(self, env, action_dim=2):
        self.env, self.action_dim = env, action_dim
        self.speed = torch.zeros(env.num_envs)
        self.noise = torch.zeros(env.num_envs)

    def reset(self, env_ids, strategy, quality):
        direction = torch.where(quality == 2, -1.0, 1.0)
        self.speed[env_ids] = direction * torch.where(strategy == 0, 1.0, 0.5)
        self.noise[env_ids] = (quality == 1).float() * 0.3

    def act(self):
        action = self.speed + self.noise * torch.randn(self.env.num_envs)
        return torch.cat([action[:, None], torch.zeros(self.env.num_envs, self.action_dim - 1)], dim=1) * 1.5  # > 1: clipped


META = {"task": "Line", "obs_dim": 2, "action_dim": 2, "control_hz": 50.0}
#: The line env shaped as a Bimanual-Chunk dataset (zero-padded observations and actions), for trainings.
BIMANUAL_LINE_META = {"task": "Bimanual-Chunk", "obs_dim": OBS_DIM, "action_dim": ACTION_DIM, "control_hz": 50.0,
                      "chunk_horizon": HORIZON}


def collect_line(out, num_envs=4, num_episodes=10, seed=0, progress=False, step_delay_s=0.0, meta=META):
    """A dataset of the line env's scripted episodes in ``out`` (a shard directory), resuming what is there;
    observations and actions have the dims ``meta`` names."""
    env = LineEnv(num_envs, step_delay_s=step_delay_s, obs_dim=meta["obs_dim"])
    cfg = CollectConfig(num_episodes=num_episodes, seed=seed, progress=progress)
    return collect(env, LineExpert(env, meta["action_dim"]), out, cfg, meta, num_strategies=2, num_qualities=3)


def read_demos(directory):
    """Every demo of a dataset directory as {name: (arrays..., attrs)} for exact comparison."""
    demos = {}
    for shard in list_shards(directory):
        with h5py.File(shard) as file:
            for name, demo in file["data"].items():
                keys = ("obs/policy", "actions", "rewards", "dones", "truncated", "success")
                arrays = {key: demo[key][()].tolist() for key in keys}
                demos[name] = (arrays, dict(demo.attrs))
    return demos


# ---------------------------------------------------------------- a fake evaluation env and a stamping policy

class CountingEnv:
    """``num_envs`` envs; env e's episodes last ``lengths[e]`` steps and succeed iff e is in ``succeed``.

    obs = (env id, step in episode); every executed action is recorded with (episode, step).
    Finished envs auto-reset inside ``step`` like an Isaac Lab DirectRLEnv.
    """

    def __init__(self, lengths, succeed=(), strategy=None, blow_up=(), drop=()):
        self.num_envs = len(lengths)
        self.blow_up = torch.tensor([e in blow_up for e in range(self.num_envs)])  # envs whose episodes end in a physics failure
        self.drop = torch.tensor([e in drop for e in range(self.num_envs)])  # ... or with an object knocked off the table
        self.lengths = torch.tensor(lengths)
        self.succeed = torch.tensor([e in succeed for e in range(self.num_envs)])
        self.strategy = strategy
        self.t = torch.zeros(self.num_envs, dtype=torch.long)
        self.episode = torch.zeros(self.num_envs, dtype=torch.long)
        self.executed = [[] for _ in range(self.num_envs)]  # per env: (episode, step, action)

    def _obs(self):
        return {"policy": torch.stack([torch.arange(self.num_envs), self.t], 1).float()}

    def reset(self):
        self.t.zero_()
        return self._obs(), {}

    def step(self, actions):
        for e in range(self.num_envs):
            self.executed[e].append((int(self.episode[e]), int(self.t[e]), actions[e].clone()))
        self.t += 1
        done = self.t >= self.lengths
        extras = {"success": done & self.succeed}  # success shows on the last step only
        if self.strategy is not None:
            extras["strategy"] = torch.tensor(self.strategy)
        if self.blow_up.any():
            extras["physics_failure"] = done & self.blow_up
        if self.drop.any():
            extras["object_dropped"] = done & self.drop
        terminated, truncated = done & (self.succeed | self.drop), done & ~(self.succeed | self.drop)
        self.t[done] = 0
        self.episode[done] += 1
        return self._obs(), torch.ones(self.num_envs), terminated, truncated, extras


class StampPolicy(ChunkPolicy):
    """Chunk entry j planned at episode step t is the action (t, j): executed actions reveal their origin."""

    def __init__(self, horizon):
        super().__init__()
        self.horizon, self.action_dim = horizon, 2
        self.calls = 0

    def forward(self, obs):
        self.calls += 1
        t = obs[:, 1:2].expand(-1, self.horizon)
        j = torch.arange(self.horizon, dtype=obs.dtype).expand_as(t)
        return torch.stack([t, j], dim=-1)


# ---------------------------------------------------------------- an exported policy (test_export, test_deploy)

#: obs dim, H, A of the exported toy policy
EXPORT_DIMS = (23, 10, 14)


def fitted_obs_normalizer(obs: torch.Tensor):
    """The observation normalizer ``fit_normalizers`` fits on ``obs`` [N, O], for tests whose data are already in
    the learners' action coordinates."""
    from lawr_ext.modules.normalizer import fit_normalizers

    return fit_normalizers(obs, torch.zeros(len(obs), 1), "none").obs


def small_lawr_policy(decode_steps: int = 1, **flow_settings):
    """The real L-AWR policy at toy size: frozen normalizer -> planner (with its radial squash) -> frozen flow
    (``decode_steps`` mean-flow jumps of it). Its normalizer is fitted on observations far from N(0, 1)
    (per-dimension offsets and scales, as joint angles and positions are): mean linspace(-3, 5), std
    logspace(-2, 1). ``flow_settings`` replace the flow's network settings (e.g. the MLP with FiLM)."""
    from lawr_ext.algorithms.critic import DistributionalCritic
    from lawr_ext.algorithms.flow import build_flow_decoder
    from lawr_ext.algorithms.planner import LatentAWR
    from lawr_ext.configs.critic import CriticConfig
    from lawr_ext.configs.flow import FlowConfig
    from lawr_ext.configs.planner import PlannerConfig

    obs_dim, horizon, action_dim = EXPORT_DIMS
    normalizer = fitted_obs_normalizer(torch.linspace(-3.0, 5.0, obs_dim)
                                       + torch.logspace(-2, 1, obs_dim) * torch.randn(512, obs_dim))
    decoder = build_flow_decoder(FlowConfig(**{"width": 32, "depth": 2, "num_heads": 2, "time_embed_dim": 16,
                                                **flow_settings}), *EXPORT_DIMS)
    critic = DistributionalCritic(CriticConfig(hidden_dim=16, num_layers=1), *EXPORT_DIMS, normalizer)
    planner_cfg = PlannerConfig(hidden_dim=32, num_blocks=1, decode_steps=decode_steps)
    learner = LatentAWR(planner_cfg, *EXPORT_DIMS, decoder.requires_grad_(False),
                        critic.requires_grad_(False).advantage, normalizer)
    return learner.policy().eval()


def randomize_weights_(module: torch.nn.Module, scale: float) -> torch.nn.Module:
    """Every weight drawn from N(0, scale^2), so a check is not about trained weights; the flow's adaLN-Zero init
    would otherwise output zeros, whatever the planner or the number of jumps."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn_like(p))
    return module


#: A joint-level action spec of EXPORT_DIMS' action dim: target = 0.1 i + 0.5 a, within +-0.5, at most 1 unit/s.
EXPORT_ACTION_SPEC = {
    "joint_names": [f"joint_{i}" for i in range(EXPORT_DIMS[2])],
    "action_scale": [0.5] * EXPORT_DIMS[2],
    "action_offset": [0.1 * i for i in range(EXPORT_DIMS[2])],
    "joint_lower": [0.1 * i - 0.5 for i in range(EXPORT_DIMS[2])],
    "joint_upper": [0.1 * i + 0.5 for i in range(EXPORT_DIMS[2])],
    "max_target_speed": [1.0] * EXPORT_DIMS[2],
}
#: The robot EXPORT_ACTION_SPEC was exported for, as the robot side knows it (lawr_ext.deploy.read_robot_limits).
EXPORT_ROBOT_LIMITS = {name: EXPORT_ACTION_SPEC[name] for name in
                       ("joint_names", "joint_lower", "joint_upper", "max_target_speed")} | {"control_rate_hz": 50.0}


@pytest.fixture(scope="session")
def exported_policy(tmp_path_factory):
    """(policy, metadata, {"onnx": path, "pt2": path}): small_lawr_policy with random weights, traced once and
    exported (the AOTInductor package, ~30 s to compile, only where a test asks for it)."""
    from lawr_ext.export import build_metadata, export_onnx, export_pt2, trace

    torch.manual_seed(0)
    policy = randomize_weights_(small_lawr_policy(), 0.1)  # chunks of order 1, like actions in [-1, 1]
    metadata = build_metadata(policy, task="Bimanual-Chunk", obs_dim=EXPORT_DIMS[0], control_rate_hz=50.0,
                              config_hash="0123456789abcdef", **EXPORT_ACTION_SPEC)
    out = tmp_path_factory.mktemp("export")
    program = trace(policy, EXPORT_DIMS[0])
    paths = {"onnx": export_onnx(program, out / "policy.onnx", metadata),
             "pt2": export_pt2(program, out / "policy.pt2", metadata)}
    return policy, metadata, paths


# ---------------------------------------------------------------- processes

#: What a GPU training host lacks: Isaac Lab, the simulator and gymnasium (tests/test_offline.py, test_gpu_check.py).
SIMULATOR_PACKAGES = ("isaaclab", "isaaclab_newton", "warp", "newton", "mujoco_warp", "mujoco", "gymnasium", "pxr")

_BLOCKER = """import atexit, importlib.abc, sys

BLOCKED = {blocked!r}


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not installed on this host)")
        return None


sys.meta_path.insert(0, NotInstalled())
atexit.register(lambda: print("BLOCKED_LOADED", sorted({{m for m in sys.modules if m.split(".")[0] in BLOCKED}})))
"""


def without_simulator(folder: Path) -> dict[str, str]:
    """The environment of a subprocess on a host without ``SIMULATOR_PACKAGES``: a ``sitecustomize`` in ``folder``
    makes importing any of them raise ImportError, as if not installed, and prints ``BLOCKED_LOADED [...]`` (those
    loaded anyway: none) at exit."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_BLOCKER.format(blocked=SIMULATOR_PACKAGES))
    path = os.environ.get("PYTHONPATH")
    return os.environ | {"PYTHONPATH": f"{folder}{os.pathsep}{path}" if path else str(folder)}


def run_script(script: str, *args: str) -> tuple[int, str, str]:
    """``python scripts/<script> args`` in this process (its argv, ``__main__``): (exit status, stdout, stderr).

    A ``sys.exit(message)`` is status 1 with the message on stderr, as Python prints it; an uncaught exception
    propagates to the test (that is the traceback a user would see). Warnings reach stderr as they would there
    (Python's default filters), not pytest's record."""
    import contextlib
    import io
    import runpy
    import sys
    import warnings

    from lawr_ext import REPO_ROOT

    def show(message, category, filename, lineno, file=None, line=None):
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    path = REPO_ROOT / "scripts" / script
    out, err, argv, status = io.StringIO(), io.StringIO(), sys.argv, 0
    sys.argv = [str(path), *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.resetwarnings()  # Python's defaults: DeprecationWarning shown only for __main__
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
            warnings.showwarning = show
            runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exit:
        status = exit.code if isinstance(exit.code, int) else 1
        if exit.code is not None and not isinstance(exit.code, int):
            err.write(f"{exit.code}\n")
    finally:
        sys.argv = argv
    return status, out.getvalue(), err.getvalue()


def assert_refused(result: tuple[int, str, str], *fragments: str) -> str:
    """A script's refusal: a non-zero exit and exactly one line on stderr holding every fragment; returns it."""
    status, _, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert status != 0 and len(lines) == 1, (status, err[-3000:])
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def assert_read_refused(path: Path, reading, *fragments: str) -> str:
    """Reading ``path`` with ``reading`` fails with one line that starts with the file and holds every fragment."""
    from lawr_ext.data.dataset import load_episodes
    from lawr_ext.data.episodes import DatasetError

    with pytest.raises(DatasetError) as error:
        load_episodes(path, reading=reading)
    message = str(error.value)
    assert message.startswith(str(path)) and "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def file_hashes(*paths: Path) -> dict[str, str]:
    """sha256 of every file in ``paths`` (files, or folders walked): equal iff no byte changed, none added or lost."""
    import hashlib

    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """(dataset, run_dir) of a finished tiny run (all phases, checkpoints and finals). Copy it before changing it."""
    from lawr_ext.configs.train import load_train_config
    from lawr_ext.runners import train

    root = tmp_path_factory.mktemp("finished_run")
    dataset = synthetic_dataset(root / "data.npz")
    train(load_train_config("Bimanual-Chunk", TINY), dataset, root / "run")
    return dataset, root / "run"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- a small OGBench dataset, made in seconds

def ogbench_dataset(path: Path, name: str = "cube-single-play-singletask-v0", num_episodes: int = 4,
                    length: int = 50, seed: int = 0) -> Path:
    """``num_episodes`` random-action episodes of OGBench's env ``name`` in OGBench's shipped layout (float32
    arrays: observations, next_observations, actions, rewards, masks = 1 - success, terminals at each episode's
    end, qpos, qvel), with the env's own singletask reward. A stand-in for the official files, which this
    machine cannot download; ../shared/tools/ogbench makes oracle datasets of the same layout (minutes)."""
    from lawr_ext.tasks.ogbench.env import headless_gl

    headless_gl()
    import ogbench

    env = ogbench.make_env_and_datasets(name, env_only=True)
    rng = np.random.default_rng(seed)
    columns = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "masks", "terminals",
                               "qpos", "qvel")}
    for episode in range(num_episodes):
        obs, _ = env.reset(seed=seed + episode)
        for t in range(length):
            action = np.clip(rng.normal(0, 0.5, 5), -1, 1)
            next_obs, reward, _, _, info = env.step(action)
            for key, value in (("observations", obs), ("next_observations", next_obs), ("actions", action),
                               ("rewards", reward), ("masks", 1.0 - info["success"]), ("terminals", t == length - 1),
                               ("qpos", info["prev_qpos"]), ("qvel", info["prev_qvel"])):
                columns[key].append(value)
            obs = next_obs
    env.close()
    np.savez(path, **{k: np.asarray(v, np.float32) for k, v in columns.items()})
    return path
