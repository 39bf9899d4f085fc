"""List the registered lawr tasks: env factory, preset, experts, action spec, control rate (and Isaac Lab env cfg).

    python scripts/list_envs.py
"""

import lawr_ext  # noqa: F401  (sets the Warp kernel cache before warp loads)
from lawr_ext.tasks import get_task, load_env_cfg, registered_tasks


def main() -> None:
    width = max(map(len, registered_tasks()))
    for task in registered_tasks():
        spec = get_task(task)
        print(f"{task:{width}s} env={spec.env or spec.make_env} preset={spec.lawr_cfg} control={spec.control_hz:g} Hz "
              f"experts={'yes' if spec.experts else 'no'} action_spec={'yes' if spec.action_spec else 'no'}")
        if spec.env_cfg is not None:
            cfg = load_env_cfg(task)
            print(f"{'':{width}s} cfg={spec.env_cfg} obs={cfg.observation_space} act={cfg.action_space} "
                  f"episode={cfg.episode_length_s} s chunk_horizon={cfg.chunk_horizon}")


if __name__ == "__main__":
    main()
