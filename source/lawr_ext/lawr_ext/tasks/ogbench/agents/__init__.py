"""The OGBench family's lawr training presets, one per cube family, shared by all its task ids (``task: ???``).

Each task names its preset by the entry point ``lawr_ext.tasks.ogbench.agents:<file>.yaml`` (``TaskSpec.lawr_cfg``,
gymnasium's ``lawr_cfg_entry_point``); ``lawr_ext.configs.train.load_train_config`` composes it with hydra.
"""
