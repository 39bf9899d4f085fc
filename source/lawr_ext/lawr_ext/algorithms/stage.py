"""A stage: one thing the runner trains (an L-AWR phase or a baseline), described as data.

A stage is built from the frozen *products* of the stages it ``needs`` and leaves its own product in
``<run_dir>/<name>/final.pt``: phase 1 the normalizers, the chunk basis and the frozen decoder, phase 2 the
critic, every other stage the ChunkPolicy it trained. ``algorithms/registry.py`` lists them in training order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from torch import nn

from lawr_ext.algorithms.base import Learner
from lawr_ext.modules.chunk_basis import ChunkBasis

if TYPE_CHECKING:
    from lawr_ext.configs.train import TrainConfig
    from lawr_ext.data.dataset import ChunkDataset


@dataclass
class StageInputs:
    """What a stage is built from: the dataset's dimensions, the frozen products of earlier stages by stage name
    (``inputs["flow"]``) and, for phase 1, the dataset itself.

    ``horizon`` is the length of a chunk in the learners' coordinates: K coefficients under a ``chunk_basis``
    other than "steps" (``modules/chunk_basis.py``), else the H steps themselves.

    ``load`` fetches a product that is not in ``products`` yet (the runner reads it from the run directory and
    keeps its content hash in ``hashes``); without it a missing product is a ``ValueError`` naming the stage.
    """

    obs_dim: int
    horizon: int
    action_dim: int
    products: dict[str, nn.Module] = field(default_factory=dict)
    dataset: ChunkDataset | None = None
    load: Callable[[str], nn.Module] | None = None
    chunk_basis: ChunkBasis | None = None  # None: "steps"
    hashes: dict[str, str] = field(default_factory=dict)  # content hash of each product read from a file
    action_normalization: str | None = None  # DataConfig.action_normalization, which phase 1 fits with
    # image data: (cameras, H, W) of its frames and the dim of its joint state; ``obs_dim`` is then the dim of the
    # features the networks read (modules/vision.py: state + cameras x flow.encoder.features). None: state only
    image_shape: tuple[int, int, int] | None = None
    state_dim: int | None = None

    @property
    def dims(self) -> tuple[int, int, int]:
        return self.obs_dim, self.horizon, self.action_dim

    def __getitem__(self, stage: str) -> nn.Module:
        if stage not in self.products:
            if self.load is None:
                raise ValueError(f"needs the frozen product of stage {stage!r} (train that stage first)")
            self.products[stage] = self.load(stage)
        return self.products[stage]


@dataclass(frozen=True)
class Stage:
    """Everything the runner needs to train a stage, save it, load it back and act with it."""

    name: str                      # its folder in run_dir, its checkpoints, its seed (derived from the name)
    config: str                    # where its settings live in TrainConfig: "flow", "baselines.fql", ...
    # (settings, inputs) -> its product with untrained weights, to load a saved one into; for a stage with
    # nothing to train, the finished product itself
    product: Callable[[Any, StageInputs], nn.Module]
    needs: tuple[str, ...] = ()    # stages whose frozen products it is built from (they come before it)
    # (settings, inputs) -> the Learner whose ``product()`` it saves; None: nothing to train
    learner: Callable[[Any, StageInputs], Learner] | None = None
    method: str | None = None      # its product is the ChunkPolicy evaluated and exported under this name
    # (run config, one step's metrics) -> why training must stop, or None (non-finite values always stop it)
    check: Callable[[TrainConfig, dict[str, float]], str | None] | None = None
    # (finished product, dataset) -> extra metrics for the run summary
    report: Callable[[nn.Module, ChunkDataset], dict[str, float]] | None = None

    def build(self, settings: Any, inputs: StageInputs) -> Learner | nn.Module:
        """What the runner trains: the learner, or, when there is nothing to train, the finished product."""
        return self.learner(settings, inputs) if self.learner is not None else self.product(settings, inputs)
