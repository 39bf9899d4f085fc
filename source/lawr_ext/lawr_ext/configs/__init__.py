"""Typed dataclass configs, one per concern; ``train.TrainConfig`` composes them and is exposed to hydra.

    data.py      DataConfig      dataset path or collection size, chunk horizon H, discount gamma
    flow.py      FlowConfig      phase 1: Mean Flow (JiT x-prediction) behavior model
    critic.py    CriticConfig    phase 2: HL-Gauss distributional V and Q
    planner.py   PlannerConfig   phase 3: latent advantage-weighted regression
    eval.py      EvalCfg         vectorized rollouts
    train.py     TrainConfig     the whole run; ``load_train_config(task, overrides)`` composes tasks/<task>.yaml
"""
