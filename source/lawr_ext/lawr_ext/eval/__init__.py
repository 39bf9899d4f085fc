"""Vectorized rollouts of chunk policies and success-rate confidence intervals."""

from lawr_ext.eval.evaluate import evaluate_policy, support_check
from lawr_ext.eval.metrics import summarize, wilson_interval, write_report
from lawr_ext.eval.rollout import ChunkScheduler, Episode, rollout

__all__ = ["ChunkScheduler", "Episode", "evaluate_policy", "support_check", "rollout", "summarize", "wilson_interval", "write_report"]
