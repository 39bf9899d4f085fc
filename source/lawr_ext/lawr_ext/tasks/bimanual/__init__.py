"""Bimanual-Chunk: two ViperX-class arms (ALOHA layout), hand-over and insertion, kit-less Newton MuJoCo-Warp.

Registers both tasks with lawr's task registry; nothing here imports the simulator.
"""

from lawr_ext.tasks.registry import TaskSpec, register_task

# obs dims as env_cfg.py builds them (tests/test_export.py checks that they agree): joint pos + vel (16 + 16),
# the object poses (7 each), the two grasp points (6); the image tasks' "policy" observation is the joints alone
# (32), their cameras' images come beside it
for _task, _preset, _cfg, _obs_dim in (
        ("Bimanual-Chunk", "lawr_bimanual_chunk", "BimanualChunkEnvCfg", 45),
        ("Bimanual-Chunk-Insertion", "lawr_bimanual_chunk_insertion", "BimanualInsertionEnvCfg", 52),
        ("Bimanual-Chunk-Vision", "lawr_bimanual_chunk_vision", "BimanualChunkVisionEnvCfg", 32),
        ("Bimanual-Chunk-Insertion-Vision", "lawr_bimanual_chunk_insertion_vision", "BimanualInsertionVisionEnvCfg",
         32)):
    register_task(TaskSpec(
        id=_task,
        make_env="lawr_ext.tasks.direct_rl:make_env",
        lawr_cfg=f"{__name__}.agents:{_preset}.yaml",
        control_hz=50.0,  # physics 100 Hz, decimation 2 (env_cfg.py; tests/test_export.py checks the two agree)
        obs_dim=_obs_dim,
        action_dim=14,  # per arm 6 joint targets + 1 gripper command
        env=f"{__name__}.env:BimanualChunkEnv",
        env_cfg=f"{__name__}.env_cfg:{_cfg}",
        experts=f"{__name__}.experts:make_expert",
        action_spec=f"{__name__}.action_spec:action_spec",
        end_effectors=f"{__name__}.action_spec:grasp_points",
        # read off the object poses of the state observation: the image tasks' observation has none
        grasp_geometry=None if _obs_dim == 32 else f"{__name__}.grasps:grasp_geometry",
    ))
