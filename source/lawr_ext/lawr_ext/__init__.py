"""lawr_ext: offline RL of action-chunk robot policies with Latent Advantage-Weighted Regression.

Data flows sim -> dataset -> phase 1 (flow) -> phase 2 (critic) -> phase 3 (planner) -> evaluation -> export:

    tasks/       Isaac Lab task family ``Bimanual-Chunk`` (env, Warp reward/success kernels, scripted experts)
    data/        HDF5 datasets on disk and the loader that cuts them into TensorDict batches of action chunks
    modules/     networks shared by every algorithm (MLPs, the JiT chunk transformer, HL-Gauss heads)
    algorithms/  flow.py (phase 1), critic.py (phase 2), planner.py (phase 3), baselines/
    configs/     typed dataclass configs, registered with hydra
    runners/     the phase-by-phase training loop: checkpoints, resume, logging
    eval/        vectorized rollouts, success-rate confidence intervals
    export/      planner + frozen flow as one TorchScript / ONNX graph
"""

import os
from pathlib import Path

#: Repository root (the package is installed editable from ``source/lawr_ext``).
REPO_ROOT = Path(__file__).resolve().parents[3]

# A cold Warp kernel cache costs 30-60 s per model; keep it in the project's ignored build folder
# unless the user already chose a location. Must happen before warp is imported anywhere.
os.environ.setdefault("WARP_CACHE_PATH", str(REPO_ROOT / "build" / "warp_cache"))

__version__ = "0.1.0"
