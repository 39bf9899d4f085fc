"""Training a run stage by stage (L-AWR's phases, then baselines): checkpoints, bit-identical resume, logging,
loading the trained policies back, and evaluating them."""

from lawr_ext.runners.checkpoint import CheckpointError, checkpoint_path, final_path, read_checkpoint
from lawr_ext.runners.evaluation import MethodEvaluation, evaluate_run, evaluation_failures
from lawr_ext.runners.pipeline import load_policy, load_product, open_dataset, run_stage, train
from lawr_ext.runners.trainer import TrainingError, train_stage

__all__ = ["CheckpointError", "MethodEvaluation", "TrainingError", "checkpoint_path", "evaluate_run",
           "evaluation_failures", "final_path", "load_policy", "load_product", "open_dataset", "read_checkpoint",
           "run_stage", "train", "train_stage"]
