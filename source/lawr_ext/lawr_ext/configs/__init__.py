"""Typed dataclass configs, one per concern; ``train.TrainConfig`` composes them and is exposed to hydra.

    data.py       DataConfig       dataset path or collection size, chunk horizon H, discount gamma
    network.py    ChunkNetConfig   the chunk network every flow-shaped model is built from
    flow.py       FlowConfig       phase 1: Mean Flow (JiT x-prediction) behavior model (a ChunkNetConfig + training)
    critic.py     CriticConfig     phase 2: HL-Gauss distributional V and Q
    awr.py        AWRWeightConfig  advantage -> regression weight (phase 3 and Gaussian AWR)
    planner.py    PlannerConfig    phase 3: latent advantage-weighted regression
    baselines.py  ...Config        one per baseline
    eval.py       EvalConfig       vectorized rollouts
    export.py     ExportConfig     ONNX / .pt2 / AOTInductor export
    train.py      TrainConfig      the whole run; ``load_train_config(task, overrides)`` composes the task's preset
                                   (tasks/<family>/agents/) with profile/ and recipe/ here

Every lawr config class ends in ``Config``; the tasks' Isaac Lab ``@configclass`` classes keep Isaac Lab's ``Cfg``.
"""
