"""Phase-by-phase training (flow -> critic -> planner, then baselines): checkpoints, bit-identical resume,
logging, policies."""

from lawr_ext.runners.checkpoint import CheckpointError, checkpoint_path, read_checkpoint
from lawr_ext.runners.pipeline import (final_path, load_frozen_critic, load_frozen_flow, load_policy, open_dataset,
                                       run_baseline, run_phase, train)
from lawr_ext.runners.trainer import TrainingError, train_phase

__all__ = ["CheckpointError", "TrainingError", "checkpoint_path", "final_path", "load_frozen_critic",
           "load_frozen_flow", "load_policy", "open_dataset", "read_checkpoint", "run_baseline", "run_phase", "train",
           "train_phase"]
