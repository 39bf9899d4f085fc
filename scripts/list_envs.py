"""List the registered lawr tasks with their env config entry points and key settings.

    python scripts/list_envs.py
"""

import lawr_ext  # noqa: F401  (sets the Warp kernel cache before warp loads)
import gymnasium as gym

from lawr_ext.tasks import TASKS, load_env_cfg


def main() -> None:
    for task in TASKS:
        spec = gym.spec(task)
        cfg = load_env_cfg(task)
        control_hz = round(1.0 / (cfg.sim.dt * cfg.decimation))
        print(f"{task:28s} {spec.entry_point}\n{'':28s} cfg={spec.kwargs['env_cfg_entry_point']} "
              f"obs={cfg.observation_space} act={cfg.action_space} control={control_hz} Hz "
              f"episode={cfg.episode_length_s} s chunk_horizon={cfg.chunk_horizon}")


if __name__ == "__main__":
    main()
