"""Vectorized rollouts of chunk policies, success-rate confidence intervals, and diagnostics of trained models."""

from lawr_ext.eval.diagnostics import sample_quality, support_check, support_metrics
from lawr_ext.eval.evaluate import evaluate_policy
from lawr_ext.eval.metrics import summarize, wilson_interval, write_report
from lawr_ext.eval.rollout import ChunkScheduler, Episode, rollout

__all__ = ["ChunkScheduler", "Episode", "evaluate_policy", "rollout", "sample_quality", "summarize", "support_check",
           "support_metrics", "wilson_interval", "write_report"]
