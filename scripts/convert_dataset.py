"""Convert any dataset lawr reads into a LeRobotDataset v3 (written by the lerobot package, finalized).

    python scripts/convert_dataset.py runs/datasets/bc256 --to lerobot --out runs/datasets/bc256-lerobot
    python scripts/convert_dataset.py my_data.npz --to lerobot --out my_data-lerobot --task Bimanual-Chunk
    python scripts/convert_dataset.py demos.hdf5 --to lerobot --out demos-lerobot --task Bimanual-Chunk \
        --obs_keys joint_pos object --reward_from last_frame                     # an Isaac Lab recorder file

The LeRobot dataset holds observation.state, action (named by the task's joints where it has an action spec),
next.reward, next.done, next.success and the strategy and quality labels, at the task's control rate; read back
by lawr (``--dataset OUT``) it gives the same episodes. The task is the one a collected dataset records, else
--task. --obs_keys, --action_key and --reward_from read data recorded elsewhere, as data.* do in training.
"""

import argparse
from pathlib import Path

from lawr_ext.configs.data import DataConfig
from lawr_ext.data.dataset import load_episodes
from lawr_ext.data.lerobot import write_lerobot
from lawr_ext.data.reading import Reading
from lawr_ext.tasks import get_task
from lawr_ext.utils.cli import run_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="a dataset lawr reads (shard directory, .hdf5, .npz, ...)")
    parser.add_argument("--to", required=True, choices=("lerobot",), help="the format to write")
    parser.add_argument("--out", required=True, type=Path, help="the new dataset directory")
    parser.add_argument("--task", default=None, help="the lawr task of the data (default: the one it records)")
    parser.add_argument("--obs_keys", nargs="+", default=(), help="observation keys of data recorded elsewhere")
    parser.add_argument("--action_key", default=None, help="action key of data recorded elsewhere")
    parser.add_argument("--reward_from", default=None, help="success, last_frame or column:<name> (docs/data.md)")
    args = parser.parse_args()

    settings = DataConfig(obs_keys=tuple(args.obs_keys), action_key=args.action_key, reward_from=args.reward_from)
    episodes = load_episodes(args.dataset, reading=Reading(args.task, settings.obs_keys, settings.action_key,
                                                           settings.reward_from))
    task = args.task or episodes.meta.get("task")
    if task is None:
        raise ValueError(f"{args.dataset}: records no task; pass --task (its control rate is the dataset's fps)")
    spec = get_task(task)
    episodes.check_dims(args.dataset, spec.obs_dim, spec.action_dim, f"task {task!r}")
    joint_names = spec.load("action_spec")()["joint_names"] if spec.action_spec is not None else None
    out = write_lerobot(episodes, args.out, fps=spec.control_hz, task=task, joint_names=joint_names)
    print(f"[lawr] wrote {out}: LeRobot v3, {episodes.num_episodes} episodes, {episodes.num_steps} frames at "
          f"{spec.control_hz:g} fps")


if __name__ == "__main__":
    run_main(main)
