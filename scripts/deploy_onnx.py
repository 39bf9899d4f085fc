"""Drive the simulated robot through one episode with nothing but an exported ``policy.onnx`` and onnxruntime.

    python scripts/export.py --checkpoint runs/<run>                # writes runs/<run>/export/policy.onnx
    python scripts/deploy_onnx.py --onnx runs/<run>/export/policy.onnx [--exec_horizon 8]

The policy side (``OnnxChunkPolicy``) imports only numpy, json and onnxruntime: everything it needs (obs dim,
H, control rate, action scaling and joint order) is read from the file's metadata. Only the simulator comes
from lawr (``lawr_ext.tasks.make_env``, imported inside ``main``), because the simulated robot has to be created
somehow; on a real robot, replace ``env`` with your observation reader and joint command writer and send
``policy.joint_targets(action)`` at ``control_rate_hz``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import onnxruntime as ort

SUPPORTED_FORMAT_VERSION = 3  # layout of the metadata this loop understands


class OnnxChunkPolicy:
    """Plays exported chunks: one ONNX call per ``exec_horizon`` control steps."""

    def __init__(self, path: str, exec_horizon: int | None = None):
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.meta = json.loads(self.session.get_modelmeta().custom_metadata_map["lawr_metadata"])
        if self.meta["format_version"] != SUPPORTED_FORMAT_VERSION:
            raise ValueError(f"{path}: metadata format {self.meta['format_version']}, this loop reads "
                             f"{SUPPORTED_FORMAT_VERSION}")
        if exec_horizon is None:  # the protocol the run was evaluated with (files before it was recorded: H)
            exec_horizon = self.meta.get("exec_horizon", self.meta["horizon"])
        if not 1 <= exec_horizon <= self.meta["horizon"]:
            raise ValueError(f"--exec_horizon {exec_horizon} must lie in [1, H={self.meta['horizon']}]")
        self.exec_horizon = exec_horizon
        self.scale = np.asarray(self.meta["action_scale"], np.float32)
        self.offset = np.asarray(self.meta["action_offset"], np.float32)
        self.queue: list[np.ndarray] = []
        self.inference_seconds: list[float] = []

    def reset(self) -> None:
        self.queue.clear()

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Normalized action [A] for observation [O]; replans when the executed part of the chunk is used up."""
        if not self.queue:
            start = time.perf_counter()
            chunk = self.session.run([self.meta["output"]], {self.meta["input"]: obs[None].astype(np.float32)})[0][0]
            self.inference_seconds.append(time.perf_counter() - start)
            self.queue = list(chunk[: self.exec_horizon])
        return self.queue.pop(0)

    def joint_targets(self, action: np.ndarray) -> dict[str, float]:
        """What a real robot would receive: joint (or gripper) name -> position target (tasks without joint
        names, e.g. OGBench's end-effector commands: action entry -> command)."""
        names = self.meta["joint_names"] or [f"action[{i}]" for i in range(self.meta["action_dim"])]
        return dict(zip(names, (self.offset + self.scale * np.clip(action, -1, 1)).tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", required=True, help="policy.onnx written by scripts/export.py")
    parser.add_argument("--exec_horizon", type=int, default=None,
                        help="chunk steps executed before replanning (default: the run's evaluation setting)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episode_length_s", type=float, default=None, help="override the env's episode length")
    args = parser.parse_args()

    policy = OnnxChunkPolicy(args.onnx, args.exec_horizon)
    meta = policy.meta
    print(f"{args.onnx}: task {meta['task']}, H={meta['horizon']}, obs {meta['obs_dim']}, "
          f"{meta['control_rate_hz']:.0f} Hz, exec_horizon {policy.exec_horizon}, joints {meta['joint_names']}")

    policy.session.run(None, {meta["input"]: np.zeros((1, meta["obs_dim"]), np.float32)})  # the file runs ...
    loaded = [m for m in sys.modules if m.split(".")[0] in ("lawr_ext", "torch")]
    if loaded:  # ... with nothing of lawr (or torch) loaded: a robot needs only numpy + onnxruntime
        raise RuntimeError(f"the policy side imported {loaded[:3]}; it must stay self-contained")

    # --- the simulated robot (the only lawr import; torch lives on the simulator side) ---
    import torch

    from lawr_ext.tasks import make_env

    overrides = {} if args.episode_length_s is None else {"episode_length_s": args.episode_length_s}
    env = make_env(meta["task"], num_envs=1, device="cpu", seed=args.seed, **overrides)
    try:
        obs = env.reset()[0]["policy"][0].numpy()
        total_reward, steps, done, success = 0.0, 0, False, False
        while not done:
            action = policy.act(obs)
            if steps == 0:
                print("first joint targets:", {k: round(v, 3) for k, v in policy.joint_targets(action).items()})
            obs_dict, reward, terminated, truncated, extras = env.step(torch.from_numpy(action)[None])
            obs = obs_dict["policy"][0].numpy()
            total_reward += float(reward[0])
            success |= bool(extras["success"][0])
            done = bool(terminated[0] or truncated[0])
            steps += 1
    finally:
        env.close()
    latency_ms = 1e3 * np.median(policy.inference_seconds)
    print(f"episode: {steps} steps, return {total_reward:.3f}, success {success}; "
          f"{len(policy.inference_seconds)} chunks, median inference {latency_ms:.2f} ms")


if __name__ == "__main__":
    main()
