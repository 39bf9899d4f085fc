"""lawr_ext: offline RL of action-chunk robot policies with Latent Advantage-Weighted Regression.

Data flows sim -> dataset -> phase 1 (flow) -> phase 2 (critic) -> phase 3 (planner) -> evaluation -> export:

    tasks/       lawr's task registry (env factory, preset, experts, action spec as entry points) and the
                 Isaac Lab task family ``Bimanual-Chunk`` (env, Warp reward/success kernels, scripted experts)
    data/        HDF5 datasets on disk and the loader that cuts them into TensorDict batches of action chunks
    modules/     networks shared by every algorithm (MLPs, the JiT chunk transformer, HL-Gauss heads)
    algorithms/  lawr.py (L-AWR top to bottom) over flow.py, critic.py, planner.py; baselines/; stage.py and
                 registry.py (everything the runner trains); training.py (gradient step, masked mean, EMA)
    configs/     typed dataclass configs, composed by hydra (imports nothing from algorithms/ or runners/)
    runners/     the stage-by-stage training loop: checkpoints, resume, logging; the benchmark
    eval/        vectorized rollouts, success-rate confidence intervals, diagnostics of trained models
    export/      a trained policy as ONNX / .pt2 / AOTInductor files (export_policy)
    utils/       atomic writes and hashes, derived seeds, the torchrun process group
"""

import os
from pathlib import Path

#: Repository root (the package is installed editable from ``source/lawr_ext``).
REPO_ROOT = Path(__file__).resolve().parents[3]

# A cold Warp kernel cache costs 30-60 s per model; keep it in the project's ignored build folder
# unless the user already chose a location. Must happen before warp is imported anywhere.
os.environ.setdefault("WARP_CACHE_PATH", str(REPO_ROOT / "build" / "warp_cache"))

__version__ = "0.1.0"
