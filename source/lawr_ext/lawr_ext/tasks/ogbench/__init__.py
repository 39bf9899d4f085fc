"""OGBench's manipulation tasks (Park et al. 2025, "OGBench: Benchmarking Offline Goal-Conditioned RL") as a
lawr task family, the public yardstick FQL, QC and Latent Policy Steering report on.

A task is named by its OGBench dataset name with the prefix ``ogbench:``, e.g.
``ogbench:cube-single-play-singletask-v0`` (task 2, OGBench's default singletask goal) or
``ogbench:cube-double-play-singletask-task3-v0``. Evaluation runs in OGBench's own env of that name
(``ogbench.make_env_and_datasets(name, env_only=True)``, see ``env.py``); the datasets are OGBench's files
in the plain layout (``docs/data.md``). Nothing here imports ogbench or MuJoCo.

These tasks have no scripted experts in lawr (OGBench's oracles made the data) and no joint-level action
spec: an action is OGBench's 5-D end-effector command (dx, dy, dz, dyaw, gripper) in [-1, 1].
"""

from lawr_ext.tasks.registry import TaskSpec, register_task

PREFIX = "ogbench:"
#: family -> (number of cubes, its preset in agents/, env steps of an evaluation episode, from ogbench's registry)
FAMILIES = {
    "cube-single": (1, "lawr_cube_single", 200),
    "cube-double": (2, "lawr_cube_double", 500),
}
DATASET_TYPES = ("play", "noisy")
CONTROL_HZ = 20.0  # OGBench's manipspace: control_timestep 0.05 s (physics 0.002 s, 25 substeps)


def ogbench_name(task: str) -> str:
    """``"ogbench:cube-single-play-singletask-v0"`` -> ``"cube-single-play-singletask-v0"`` (OGBench's name)."""
    if not task.startswith(PREFIX):
        raise ValueError(f"{task!r} is not an OGBench task id (expected {PREFIX}<name>)")
    return task[len(PREFIX):]


def _ids(family: str) -> list[str]:
    """Per dataset type: the default singletask goal and task1..task5."""
    return [f"{PREFIX}{family}-{kind}-singletask{suffix}-v0"
            for kind in DATASET_TYPES for suffix in ("", *(f"-task{i}" for i in range(1, 6)))]


for _family, (_cubes, _preset, _steps) in FAMILIES.items():
    for _task in _ids(_family):
        register_task(TaskSpec(id=_task, make_env=f"{__name__}.env:make_env", control_hz=CONTROL_HZ,
                               lawr_cfg=f"{__name__}.agents:{_preset}.yaml",
                               published=f"{__name__}.published:published"))
