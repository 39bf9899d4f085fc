"""The Bimanual family's lawr training presets, beside its env as Isaac Lab keeps a task's agent configs.

Each task names its preset by the entry point ``lawr_ext.tasks.bimanual.agents:<file>.yaml`` (``TaskSpec.lawr_cfg``,
gymnasium's ``lawr_cfg_entry_point``); ``lawr_ext.configs.train.load_train_config`` composes it with hydra.
"""
