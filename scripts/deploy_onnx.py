"""Drive the simulated robot through one episode with nothing but an exported ``policy.onnx`` and onnxruntime.

    python scripts/export.py --checkpoint runs/<run>                # writes runs/<run>/export/policy.onnx
    python scripts/deploy_onnx.py --onnx runs/<run>/export/policy.onnx [--exec_horizon 8] [--temporal_ensemble]
    python scripts/deploy_onnx.py --onnx policy.onnx --robot_limits my_robot.json --signing_key lab.key \
        --expect_task Bimanual-Chunk --expect_config_hash 0123456789abcdef

The policy side (``lawr_ext/deploy.py``: ``OnnxChunkPolicy``) imports only numpy, json and onnxruntime, and can be
copied onto a robot with the file. Before the first command it checks the file's sha256 digest over graph and
metadata (and its HMAC signature, with ``--signing_key FILE`` or $LAWR_SIGNING_KEY_FILE), the metadata against the
graph (obs dim, H, action dim, every per-joint list, the format version), the task and config hash where
``--expect_*`` names them, and the exported joint limits, servo speeds and control rate against the robot's own
(``--robot_limits FILE``; default the bimanual robot's, shipped as lawr_ext/tasks/bimanual/robot_limits.json;
never the file's alone), and refuses a file that fails any of it in one line. Every command it sends is finite,
stays within the joint limits and moves at most at the servo speed; a non-finite or out-of-range observation or a
non-finite chunk stops the episode with one line, the last command standing. Only the simulator comes from lawr
(``lawr_ext.tasks.make_env``, imported inside ``main``); on a real robot, replace ``env`` with your observation
reader and joint command writer: call ``policy.reset(current joint positions)`` and send
``policy.command(policy.act(obs))`` at ``control_rate_hz``, holding the last command where they raise.

A policy that sees (an image task's export) also takes its cameras' frames, ``policy.act(obs, frames)`` with
frames uint8 [C, H, W, 3] from the cameras the metadata names, in that order; other shapes are refused in one line.
Here the simulator renders exactly those cameras at that resolution.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

import lawr_ext.deploy
from lawr_ext.deploy import OBS_RANGE_MARGIN, OnnxChunkPolicy, read_robot_limits, read_signing_key

#: The bimanual robot's own limits, shipped beside the task (lawr_ext.tasks.bimanual.action_spec writes them);
#: found by path, so that the policy side imports nothing of lawr but deploy.py.
BIMANUAL_ROBOT_LIMITS = Path(lawr_ext.deploy.__file__).parent / "tasks" / "bimanual" / "robot_limits.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", required=True, help="policy.onnx written by scripts/export.py")
    parser.add_argument("--exec_horizon", type=int, default=None,
                        help="chunk steps executed before replanning (default: the run's evaluation setting)")
    parser.add_argument("--temporal_ensemble", action=argparse.BooleanOptionalAction, default=None,
                        help="average every stored chunk covering the step (default: the run's evaluation setting)")
    parser.add_argument("--ensemble_decay", type=float, default=None,
                        help="m in the ensemble weight exp(-m*i), i = 0 for the oldest chunk (default: the file's)")
    parser.add_argument("--robot_limits", default=str(BIMANUAL_ROBOT_LIMITS),
                        help="JSON of the robot's own joint names, limits, servo speeds and control rate, which the "
                             "export's must lie within (default: the bimanual robot's)")
    parser.add_argument("--signing_key", default=os.environ.get("LAWR_SIGNING_KEY_FILE"),
                        help="file with the lab's key: the export must carry its HMAC signature "
                             "(default: $LAWR_SIGNING_KEY_FILE)")
    parser.add_argument("--expect_task", default=None, help="refuse an export of another task")
    parser.add_argument("--expect_config_hash", default=None, help="refuse an export of another config hash")
    parser.add_argument("--obs_range_margin", type=float, default=OBS_RANGE_MARGIN,
                        help="range widths an observation may lie beyond the training range before it is refused")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episode_length_s", type=float, default=None, help="override the env's episode length")
    parser.add_argument("--verbose", action="store_true", help="show Isaac Lab's [INFO] lines")
    args = parser.parse_args()

    try:
        policy = OnnxChunkPolicy(args.onnx, args.exec_horizon, temporal_ensemble=args.temporal_ensemble,
                                 ensemble_decay=args.ensemble_decay, robot_limits=read_robot_limits(args.robot_limits),
                                 signing_key=read_signing_key(args.signing_key) if args.signing_key else None,
                                 expect_task=args.expect_task, expect_config_hash=args.expect_config_hash,
                                 obs_range_margin=args.obs_range_margin, log=lambda line: print(f"[deploy] {line}"))
    except ValueError as err:  # a file that is not, or no longer, what it says: nothing is commanded
        sys.exit(f"[deploy] {' '.join(str(err).split())}")
    meta = policy.meta
    joints = meta["joint_names"] if policy.joint_level else f"{meta['action_dim']} actions in [-1, 1]"
    sees = f", cameras {meta['cameras']} at {meta['image_shape'][1]}x{meta['image_shape'][2]}" if "cameras" in meta \
        else ""
    print(f"{args.onnx}: task {meta['task']}, H={meta['horizon']}, obs {meta['obs_dim']}{sees}, "
          f"{meta['control_rate_hz']:.0f} Hz, exec_horizon {policy.exec_horizon}"
          f"{', temporal ensembling' if policy.temporal_ensemble else ''}, commands {joints}")
    loaded = [m for m in sys.modules
              if m == "torch" or (m.startswith("lawr_ext") and m not in ("lawr_ext", "lawr_ext.deploy"))]
    if loaded:  # the policy side runs with nothing else of lawr (or torch) loaded: a robot needs numpy + onnxruntime
        raise RuntimeError(f"the policy side imported {loaded[:3]}; it must stay self-contained")

    # --- the simulated robot (the only lawr import; torch lives on the simulator side) ---
    import torch

    from lawr_ext.tasks import make_env
    from lawr_ext.utils.cli import set_verbose

    set_verbose(args.verbose)
    overrides = {} if args.episode_length_s is None else {"episode_length_s": args.episode_length_s}
    if "cameras" in meta:  # render what the policy was trained to see
        overrides |= {"cameras.names": tuple(meta["cameras"]), "cameras.height": meta["image_shape"][1],
                      "cameras.width": meta["image_shape"][2]}
    env = make_env(meta["task"], num_envs=1, device="cpu", seed=args.seed, **overrides)

    def frames_of(obs_dict: dict) -> np.ndarray | None:
        return obs_dict["images"][0].numpy() if "images" in obs_dict else None
    try:
        obs_dict = env.reset()[0]
        obs, frames = obs_dict["policy"][0].numpy(), frames_of(obs_dict)
        policy.reset()  # the simulated drives start from the env's default pose and follow their own servo limit
        total_reward, steps, done, success = 0.0, 0, False, False
        while not done:
            try:
                command = policy.command(policy.act(obs, frames))
            except ValueError as err:  # never a non-finite command: stop with the last command standing
                sys.exit(f"[deploy] step {steps}: {' '.join(str(err).split())}; episode stopped")
            if steps == 0:
                print("first command:", {k: round(v, 3) for k, v in policy.named(command).items()})
            obs_dict, reward, terminated, truncated, extras = env.step(torch.from_numpy(policy.action_of(command))[None])
            obs, frames = obs_dict["policy"][0].numpy(), frames_of(obs_dict)
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
