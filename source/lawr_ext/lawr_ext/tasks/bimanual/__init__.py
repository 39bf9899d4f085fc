"""Bimanual-Chunk: two ViperX-class arms (ALOHA layout), hand-over and insertion, kit-less Newton MuJoCo-Warp.

Registers both tasks with lawr's task registry; nothing here imports the simulator.
"""

from lawr_ext.tasks.registry import TaskSpec, register_task

for _task, _preset, _cfg in (("Bimanual-Chunk", "bimanual_chunk", "BimanualChunkEnvCfg"),
                             ("Bimanual-Chunk-Insertion", "bimanual_chunk_insertion", "BimanualInsertionEnvCfg")):
    register_task(TaskSpec(
        id=_task,
        make_env="lawr_ext.tasks.direct_rl:make_env",
        preset=_preset,
        control_hz=50.0,  # physics 100 Hz, decimation 2 (env_cfg.py; tests/test_export.py checks the two agree)
        env=f"{__name__}.env:BimanualChunkEnv",
        env_cfg=f"{__name__}.env_cfg:{_cfg}",
        experts=f"{__name__}.experts:make_expert",
        action_spec=f"{__name__}.action_spec:action_spec",
        end_effectors=f"{__name__}.action_spec:grasp_points",
    ))
