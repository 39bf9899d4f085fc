"""How good the flow's samples are: the sliced-Wasserstein distance of k-step samples to data (the O(1) claim).

Phase 1 reports it after training (``flow/quality_swd_{k}step`` in a run's summary), so it lives with the
algorithms; ``eval/diagnostics.py`` re-exports it beside the other read-only diagnostics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lawr_ext.data import keys
from lawr_ext.data.dataset import ChunkDataset

if TYPE_CHECKING:  # types only
    from lawr_ext.algorithms.flow import BehaviorModel, FlowDecoder


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, num_projections: int, generator: torch.Generator) -> float:
    """Sliced 2-Wasserstein distance between two equally sized point clouds [N, D]."""
    directions = torch.randn(a.shape[1], num_projections, device=a.device, generator=generator)
    directions = directions / directions.norm(dim=0, keepdim=True)
    proj_a, proj_b = (a @ directions).sort(dim=0).values, (b @ directions).sort(dim=0).values
    return (proj_a - proj_b).square().mean().sqrt().item()


@torch.no_grad()
def sample_quality(decoder: FlowDecoder, obs_norm: torch.Tensor, data_chunks: torch.Tensor,
                   num_steps_list: tuple[int, ...] = (1, 2, 4, 8), num_projections: int = 256,
                   seed: int = 0) -> dict[str, float]:
    """How far k-step samples are from held-out data, for each k: {"swd_{k}step": distance}.

    One sample per held-out (obs, chunk) pair; the distance is the sliced Wasserstein distance between the
    joint point clouds [obs_norm, flat chunk], so a sampler that ignores the observation is penalized too.
    Seeded and independent of the global RNG, so numbers are comparable across models and calls.
    """
    data = torch.cat([obs_norm, data_chunks.flatten(1)], dim=1).float()
    result = {}
    for k in num_steps_list:
        generator = torch.Generator(device=obs_norm.device).manual_seed(seed)
        chunks = decoder.sample(obs_norm, k, generator=generator)
        samples = torch.cat([obs_norm, chunks.flatten(1)], dim=1).float()
        result[f"swd_{k}step"] = sliced_wasserstein(samples, data, num_projections, generator)
    return result


def flow_sample_quality(behavior: BehaviorModel, dataset: ChunkDataset, num_chunks: int = 2048) -> dict[str, float]:
    """Sliced-Wasserstein distance of 1/2/4/8-step flow samples to dataset chunks (evenly spaced, in-sample), in
    the behaviour model's coordinates."""
    ids = torch.linspace(0, dataset.num_chunks - 1, min(num_chunks, dataset.num_chunks)).long()
    device = next(behavior.parameters()).device
    batch = behavior.learner_batch(dataset.batch(ids).to(device))
    with torch.no_grad():
        obs_norm = behavior.obs_normalizer(batch[keys.OBS])
        quality = sample_quality(behavior.decoder, obs_norm, batch[keys.ACTIONS])
    return {f"flow/quality_{name}": value for name, value in quality.items()}
