"""Flow BC: the frozen Phase-1 flow sampled from its prior, z ~ N(0, I). The behaviour policy itself.

Nothing to train: what L-AWR improves on, measured with the same normalizer, flow and evaluation.
"""

from __future__ import annotations

from lawr_ext.algorithms.flow import FlowBCPolicy
from lawr_ext.algorithms.stage import Stage

STAGE = Stage(
    "flow_bc", config="baselines.flow_bc", needs=("flow",), method="flow_bc",
    product=lambda cfg, x: FlowBCPolicy(x["flow"].decoder, x["flow"].obs_normalizer, cfg.sample_steps),
)
