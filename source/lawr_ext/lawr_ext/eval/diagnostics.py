"""Diagnostics of trained models, measured on dataset chunks: how good the flow's samples are, and whether the
planner's chunks stay on the data. Read-only: nothing here trains or changes a model.

    sample_quality / flow_sample_quality   sliced-Wasserstein distance of k-step flow samples to data (the O(1) claim)
    support_metrics / support_check        nearest-neighbour distance of L-AWR's chunks to the data, typical-set use
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from lawr_ext.data import keys
from lawr_ext.data.dataset import ChunkDataset

if TYPE_CHECKING:  # types only: diagnostics read the models they measure, nothing else
    from lawr_ext.algorithms.base import EnvActionPolicy
    from lawr_ext.algorithms.flow import FlowDecoder
    from lawr_ext.algorithms.planner import LAWRPolicy, LatentPlanner


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


def flow_sample_quality(decoder: FlowDecoder, normalizer: nn.Module, dataset: ChunkDataset,
                        num_chunks: int = 2048) -> dict[str, float]:
    """Sliced-Wasserstein distance of 1/2/4/8-step flow samples to dataset chunks (evenly spaced, in-sample)."""
    ids = torch.linspace(0, dataset.num_chunks - 1, min(num_chunks, dataset.num_chunks)).long()
    batch = dataset.batch(ids)
    device = next(decoder.parameters()).device
    with torch.no_grad():
        obs_norm = normalizer(batch[keys.OBS].to(device))
        quality = sample_quality(decoder, obs_norm, batch[keys.ACTIONS].to(device))
    return {f"flow/quality_{name}": value for name, value in quality.items()}


def _nearest_neighbour_distance(query: torch.Tensor, reference: torch.Tensor, exclude_same_index: bool,
                                block_size: int = 1024) -> torch.Tensor:
    """Euclidean distance from each query row to its nearest reference row, [N]; memory O(block_size * M)."""
    distances = []
    for start in range(0, query.shape[0], block_size):
        d = torch.cdist(query[start:start + block_size], reference)
        if exclude_same_index:  # query is reference: a point is not its own neighbour (duplicates still are)
            rows = torch.arange(d.shape[0], device=d.device)
            d[rows, start + rows] = float("inf")
        distances.append(d.min(dim=1).values)
    return torch.cat(distances)


@torch.no_grad()
def support_metrics(decoder: FlowDecoder, planner: LatentPlanner, obs_norm: torch.Tensor,
                    data_chunks: torch.Tensor) -> dict[str, float]:
    """How far the planner's chunks T(pi(s); s) lie from the data, relative to the data's own spread.

    ``obs_norm`` [N, O] are normalised observations and ``data_chunks`` [M, H, A] dataset chunks (M >= 2;
    subsample both: the cost is O(N M)). ``nn_ratio`` = mean nearest-neighbour distance of the planner's chunks
    to the data over the data's mean leave-one-out nearest-neighbour distance: ~1 means the planner's chunks
    are as close to the data as data chunks are to each other, >> 1 means they left the data's support.
    The comparison is unconditional (any state's chunk counts as a neighbour), so it detects off-manifold
    chunks, not chunks that are wrong for their state.
    """
    if data_chunks.shape[0] < 2:
        raise ValueError(f"support_metrics: need at least 2 data chunks, got {data_chunks.shape[0]}")
    z_raw = planner.raw_latent(obs_norm)
    z = planner.squash(z_raw)
    chunks = decoder.decode(z, obs_norm).flatten(1)
    data = data_chunks.flatten(1).to(chunks.dtype)
    planner_nn = _nearest_neighbour_distance(chunks, data, exclude_same_index=False).mean()
    data_nn = _nearest_neighbour_distance(data, data, exclude_same_index=True).mean()
    return {
        "support/nn_distance": planner_nn.item(),
        "support/data_nn_distance": data_nn.item(),
        "support/nn_ratio": (planner_nn / data_nn.clamp_min(1e-12)).item(),
        "support/outside_typical_set": (z_raw.norm(dim=-1) > planner.max_radius).float().mean().item(),
        "support/latent_norm": (z.flatten(1).norm(dim=-1) / math.sqrt(z_raw.shape[-1])).mean().item(),
    }


@torch.no_grad()
def support_check(policy: EnvActionPolicy, dataset: ChunkDataset, num_samples: int, seed: int = 0) -> dict[str, float]:
    """Phase 3's support check on dataset states: do L-AWR's chunks stay on the data manifold?

    ``policy`` is the L-AWR policy as ``load_policy`` returns it; the dataset's chunks are compared in the
    policy's own action coordinates, whatever the dataset was opened with. ``num_samples`` distinct dataset
    chunks (distinct: a duplicate would be its twin's zero-distance neighbour).
    """
    generator = torch.Generator().manual_seed(seed)
    batch = dataset.batch(torch.randperm(dataset.num_chunks, generator=generator)[:num_samples])
    device = next(policy.parameters()).device
    lawr: LAWRPolicy = policy.policy
    env_actions = dataset.action_normalizer.unnormalize(batch[keys.ACTIONS])
    data_chunks = policy.action_normalizer.normalize(env_actions.to(device))
    obs_norm = lawr.obs_normalizer(batch[keys.OBS].to(device))
    return support_metrics(lawr.decoder, lawr.planner, obs_norm, data_chunks)
