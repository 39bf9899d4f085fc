"""Diagnostics of trained models, measured on dataset chunks: how good the flow's samples are, and whether the
planner's chunks stay on the data. Read-only: nothing here changes a trained model (success_ranking fits two small
probes of its own and discards them).

    sample_quality / flow_sample_quality   sliced-Wasserstein distance of k-step flow samples to data (the O(1) claim;
                                           defined in algorithms/flow_quality.py, which Phase 1 reports with)
    support_metrics / support_check        nearest-neighbour distance of L-AWR's chunks to the data, typical-set use
    chunk_errors / flow_precision          how close the flow (sampled, best of K, latent-optimized) and a policy
                                           come to the dataset's chunks, in env action units and in metres
    mode_commitment                        whether the flow's draws at an episode's first state pick one of the
                                           demonstrated strategies or land between them (mode averaging)
    weight_shares                          which experts' chunks the planner's advantage weights favour (quality
                                           label x episode success)
    success_ranking                        whether the critic, and probes fitted on half the episodes, tell the
                                           data's chunks that succeed from those that fail (held-out AUC per window)
    GraspRecorder / data_grasps            where the grippers closed on their objects, in a rollout and in a
    grasp_summary                          dataset: centred, loose or off-centre grasps, and what came of them
    CriticScoredLatents                    L-AWR acting by the best, under its frozen critic's Q, of its planner's
                                           latent and a few others: does the critic choose better than the planner?
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from lawr_ext.algorithms.awr import AdvantageFn, awr_weights
from lawr_ext.algorithms.base import ChunkPolicy, learner_batch
# re-exported: the flow's sample quality sits in algorithms/, where Phase 1 reports it after training
from lawr_ext.algorithms.flow_quality import flow_sample_quality, sample_quality, sliced_wasserstein  # noqa: F401
from lawr_ext.algorithms.planner import state_mean_weight
from lawr_ext.algorithms.training import masked_mean
from lawr_ext.data import keys
from lawr_ext.data.dataset import ChunkDataset
from lawr_ext.modules.vision import pack_observation

if TYPE_CHECKING:  # types only: diagnostics read the models they measure, nothing else
    from tensordict import TensorDict

    from lawr_ext.algorithms.base import EnvActionPolicy
    from lawr_ext.algorithms.flow import BehaviorModel, FlowDecoder
    from lawr_ext.algorithms.planner import LAWRPolicy, LatentPlanner
    from lawr_ext.configs.awr import AWRWeightConfig
    from lawr_ext.data.episodes import Episodes
    from lawr_ext.eval.rollout import Episode


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
    policy's own action coordinates. ``num_samples`` distinct dataset
    chunks (distinct: a duplicate would be its twin's zero-distance neighbour).
    """
    generator = torch.Generator().manual_seed(seed)
    batch = dataset.batch(torch.randperm(dataset.num_chunks, generator=generator)[:num_samples])
    device = next(policy.parameters()).device
    lawr: LAWRPolicy = policy.policy
    mapped = learner_batch(batch.to(device), policy.action_normalizer, policy.chunk_basis)  # frames packed, if any
    data_chunks = mapped[keys.ACTIONS]
    obs_norm = lawr.obs_normalizer(mapped[keys.OBS])
    return support_metrics(lawr.decoder, lawr.planner, obs_norm, data_chunks)


def chunk_errors(chunks: torch.Tensor, data_chunks: torch.Tensor, mask: torch.Tensor,
                 end_effectors: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """Errors of chunks [B, H, A] against data chunks, both in env actions, over the real steps (``mask`` [B, H]).

    ``action_mae``: mean |error| per action element; ``action_mae_per_dim``: the same per action dimension; with
    the task's ``end_effectors`` (env actions -> positions [..., k, 3]), ``end_effector_mm``: the mean distance
    between where the two chunks put the end effectors, in millimetres (a grasp needs about 10 mm).
    """
    valid = mask.to(chunks.dtype)
    steps = valid.sum().clamp_min(1)
    abs_error = (chunks - data_chunks).abs() * valid[..., None]
    result = {"action_mae": (abs_error.sum() / (steps * chunks.shape[-1])).item(),
              "action_mae_per_dim": (abs_error.sum((0, 1)) / steps).tolist()}
    if end_effectors is not None:
        distance = (end_effectors(chunks) - end_effectors(data_chunks)).norm(dim=-1).mean(-1)  # [B, H]
        result["end_effector_mm"] = (1000 * (distance * valid).sum() / steps).item()
    return result


def flow_precision(behavior: BehaviorModel, dataset: ChunkDataset, *, num_chunks: int = 256, best_of: int = 16,
                   optimize_steps: int = 200, end_effectors: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   seed: int = 0) -> dict[str, dict]:
    """How precisely the frozen flow can produce the dataset's own chunks, on ``num_chunks`` random ones.

        sample_1step, sample_4step   one draw z ~ N(0, I): what flow BC executes (1 or 4 mean-flow jumps)
        best_of_<K>                  the closest of K one-step draws: the most a best-of-N selection can reach
        optimized_sphere             T(z; s) with z optimized by Adam on the shell ||z|| = sqrt(d): the most a
                                     latent planner on the sphere can reach (its error floor)
        origin                       T(0; s): where a planner collapsed to z = 0 lands (the decoded "average")

    Each entry is ``chunk_errors`` in env units against the dataset's chunks as recorded (not their projection on
    the chunk basis). Chunks are in-sample (the flow was trained on them).
    """
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randperm(dataset.num_chunks, generator=generator)[:num_chunks]
    device = next(behavior.parameters()).device
    recorded = dataset.batch(ids).to(device)  # env actions
    batch = behavior.learner_batch(recorded)
    obs_norm = behavior.obs_normalizer(batch[keys.OBS])
    target, mask = batch[keys.ACTIONS], batch[keys.MASK]  # the learners' coordinates
    decoder = behavior.decoder

    def errors(chunks: torch.Tensor) -> dict:
        return chunk_errors(behavior.env_chunks(chunks), recorded[keys.ACTIONS], recorded[keys.MASK], end_effectors)

    def noise() -> torch.Tensor:
        return torch.randn(target.shape, generator=generator).to(device)

    result = {}
    with torch.no_grad():
        result["sample_1step"] = errors(decoder.sample(obs_norm, 1, noise=noise()))
        result["sample_4step"] = errors(decoder.sample(obs_norm, 4, noise=noise()))
        draws = torch.stack([decoder.sample(obs_norm, 1, noise=noise()) for _ in range(best_of)])  # [K, B, H, A]
        sq = masked_mean((draws - target).square().sum(-1), mask.expand(best_of, *mask.shape), dim=-1)  # [K, B]
        result[f"best_of_{best_of}"] = errors(draws[sq.argmin(0), torch.arange(target.shape[0])])
        result["origin"] = errors(decoder.decode(torch.zeros_like(target), obs_norm))
    radius = math.sqrt(target[0].numel())
    z = noise().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=0.05)
    on_sphere = lambda: z * (radius / z.flatten(1).norm(dim=-1).clamp_min(1e-6))[:, None, None]  # noqa: E731
    for _ in range(optimize_steps):
        loss = masked_mean((decoder.decode(on_sphere(), obs_norm) - target).square().sum(-1), mask, dim=-1).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        result["optimized_sphere"] = errors(decoder.decode(on_sphere(), obs_norm))
    return result


@torch.no_grad()
def policy_precision(policy: EnvActionPolicy, dataset: ChunkDataset, *, num_chunks: int = 256,
                     end_effectors: Callable[[torch.Tensor], torch.Tensor] | None = None, seed: int = 0) -> dict:
    """``chunk_errors`` of a policy's chunks (env actions) against the dataset's at the same states: for a
    deterministic policy, how far it is from what the data did there (for L-AWR: what its weights chose)."""
    generator = torch.Generator().manual_seed(seed)
    batch = dataset.batch(torch.randperm(dataset.num_chunks, generator=generator)[:num_chunks])
    device = next(policy.parameters()).device
    data_chunks = batch[keys.ACTIONS].to(device)  # env actions
    obs = batch[keys.OBS] if keys.IMAGES not in batch.keys() else pack_observation(batch[keys.OBS], batch[keys.IMAGES])
    return chunk_errors(policy(obs.to(device)), data_chunks, batch[keys.MASK].to(device), end_effectors)


def mode_commitment(behavior: BehaviorModel, dataset: ChunkDataset,
                    end_effectors: Callable[[torch.Tensor], torch.Tensor], *, draws: int = 16,
                    sample_steps: tuple[int, ...] = (1, 4), seed: int = 0) -> dict:
    """Do the flow's draws at the episodes' first states commit to a demonstrated strategy?

    At reset the state does not tell which strategy an expert drew, so the data's first chunks are multimodal.
    Each first chunk is summarised by how far its chunk moves each end effector (last step minus first, in
    metres); the strategies' centroids of that motion are the modes. For the data and for ``draws`` flow draws
    per first state (``sample_steps`` mean-flow jumps each, and T(0)):

        distance_m     mean distance to the nearest strategy centroid (a draw between two modes sits about half
                       their separation away from both)
        committed      fraction within twice the data's own mean distance (at least 1 mm) of some centroid
        distinct       mean number of different nearest centroids among one state's draws (1 = the same choice
                       whatever the noise)

    Needs the dataset's strategy labels (``Episodes.strategy``).
    """
    episodes = dataset.episodes
    ids = torch.nonzero(torch.isin(dataset.chunk_first_row.cpu(), episodes.starts)).squeeze(1)
    strategy = episodes.strategy[dataset.chunk_episode[ids].cpu()]
    ids, strategy = ids[strategy >= 0], strategy[strategy >= 0]
    labels = strategy.unique()
    if labels.numel() < 2:
        raise ValueError(f"mode_commitment: needs episodes of at least two strategies, got labels {labels.tolist()}")
    device = next(behavior.parameters()).device
    recorded = dataset.batch(ids).to(device)

    def motion(chunks: torch.Tensor) -> torch.Tensor:  # env actions [B, H, A] -> end-effector motion [B, k * 3]
        points = end_effectors(chunks)
        return (points[:, -1] - points[:, 0]).flatten(1)

    data = motion(recorded[keys.ACTIONS])
    centroids = torch.stack([data[strategy.to(device) == label].mean(0) for label in labels])
    threshold = 2 * max(torch.cdist(data, centroids).min(-1).values.mean().item(), 1e-3)

    def measure(features: torch.Tensor, per_state: int) -> dict:
        distance, nearest = torch.cdist(features, centroids).min(-1)
        nearest = nearest.view(per_state, -1)
        distinct = torch.tensor([float(nearest[:, i].unique().numel()) for i in range(nearest.shape[1])])
        return {"distance_m": distance.mean().item(), "committed": (distance <= threshold).float().mean().item(),
                "distinct": distinct.mean().item()}

    generator = torch.Generator().manual_seed(seed)
    batch = behavior.learner_batch(recorded)
    obs_norm = behavior.obs_normalizer(batch[keys.OBS])
    result = {"states": len(ids), "strategies": labels.tolist(),
              "centroid_separation_m": torch.pdist(centroids).tolist(), "data": measure(data, 1)}
    with torch.no_grad():
        for steps in sample_steps:
            features = torch.cat([motion(behavior.env_chunks(behavior.decoder.sample(
                obs_norm, steps, noise=torch.randn(batch[keys.ACTIONS].shape, generator=generator).to(device))))
                for _ in range(draws)])
            result[f"sample_{steps}step"] = measure(features, draws)
        origin = behavior.decoder.decode(torch.zeros_like(batch[keys.ACTIONS]), obs_norm)
        result["origin"] = measure(motion(behavior.env_chunks(origin)), 1)
    return result


@torch.no_grad()
def weight_shares(behavior: BehaviorModel, advantage_fn: AdvantageFn, dataset: ChunkDataset,
                  weights: AWRWeightConfig, *, num_chunks: int = 8192, batch_size: int = 1024, seed: int = 0,
                  step_windows: tuple[int, ...] = (), state_draws: int = 8) -> dict:
    """Which chunks Phase 3's regression leans on: the AWR weights w(A) of up to ``num_chunks`` random dataset
    chunks (advantages from the frozen critic; with ``weights.standardize`` divided by the std over all of them,
    where the planner divides by each batch's), grouped by the episode's expert quality label and success.

    Per group ("quality <q> success <0|1>"): its fraction of the chunks, its share of the summed weight and its
    mean advantage. A group whose weight share exceeds its chunk fraction pulls the planner toward its chunks.
    ``normalized_share``: its share once each weight is divided by its state's mean weight Z(s) over ``state_draws``
    draws of the flow, as Phase 3 divides with ``planner.state_normalization_samples`` (``state_mean_weight``).
    ``step_windows`` (boundaries of the episode's steps, e.g. (0, 60, 200)) also reports the groups within each window
    of where the chunks start, [0, 60), [60, 200), [200, end): the planner's choice at one phase of the task (which
    grasp, say) is a weighted mean over the chunks of like states, not over the whole episode.
    """
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randperm(dataset.num_chunks, generator=generator)[:num_chunks]
    parts = {"advantage": [], "quality": [], "success": [], "state_weight": []}
    for chunk_ids in ids.split(batch_size):
        batch = behavior.learner_batch(dataset.batch(chunk_ids))
        parts["advantage"].append(advantage_fn(batch).cpu())
        parts["quality"].append(batch[keys.QUALITY].cpu())
        parts["success"].append(batch[keys.SUCCESS].cpu().long())
        with torch.random.fork_rng():  # the flow's draws leave the caller's RNG as it was
            torch.manual_seed(seed + len(parts["state_weight"]))
            parts["state_weight"].append(state_mean_weight(
                behavior.decoder, advantage_fn, weights, batch, behavior.obs_normalizer(batch[keys.OBS]),
                state_draws).cpu())
    advantage, quality, success, state_weight = (torch.cat(parts[k]) for k in ("advantage", "quality", "success",
                                                                                "state_weight"))
    weight = awr_weights(advantage, weights)
    normalized = (weight / state_weight).clamp(max=weights.max_weight)

    def groups(among: torch.Tensor) -> dict:
        shares = {}
        for q in quality[among].unique().tolist():
            for ok in (1, 0):
                member = among & (quality == q) & (success == ok)
                if member.any():
                    shares[f"quality {q} success {ok}"] = {
                        "chunk_fraction": (member.sum() / among.sum()).item(),
                        "weight_share": (weight[member].sum() / weight[among].sum()).item(),
                        "normalized_share": (normalized[member].sum() / normalized[among].sum()).item(),
                        "advantage_mean": advantage[member].mean().item()}
        return shares

    result = {"chunks": len(ids), "groups": groups(torch.ones_like(success, dtype=torch.bool))}
    if step_windows:
        step = dataset.chunk_start_step.cpu()[ids]
        bounds = list(step_windows) + [None]
        result["windows"] = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            among = (step >= lo) & (step < hi if hi is not None else True)
            if among.any():
                result["windows"].append({"steps": [lo, hi], "chunks": int(among.sum()), "groups": groups(among)})
    return result


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (Mann-Whitney U over the positives' ranks, ties
    at their mean rank); None where only one class is present."""
    from scipy.stats import rankdata

    labels = labels.bool()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(scores.double().numpy())
    return float((ranks[labels.numpy()].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def held_out_episodes(num_episodes: int, seed: int = 0) -> torch.Tensor:
    """The seeded half of the episodes that success_ranking scores on (bool [E]); the rest fit its probes and may
    train a critic to compare at equal footing."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_episodes, generator=generator) < num_episodes // 2


def success_ranking(behavior: BehaviorModel, critics: dict, dataset: ChunkDataset, *,
                    held_out: torch.Tensor | None = None, num_windows: int = 10, probe_steps: int = 4000,
                    batch_size: int = 256, hidden: int = 256, max_chunks: int = 16384, seed: int = 0) -> dict:
    """Does a critic know which of the data's chunks lead to success, and could any learner on this data?

    The episodes are split in two: ``held_out`` (bool [E]; default ``held_out_episodes``, the split a critic
    trained for comparison must leave out) and the rest. Two success probes, the easier learners, are
    fitted on the other half with the episode's outcome as the label (binary cross-entropy; the critic's network
    shape): one sees the state alone, one the state and the chunk (in ``behavior``'s chunk space). On chunks of the
    held-out half, per window of the episode's steps (where the chunk starts), the AUC of success of:

        probe_state        how well the state alone predicts the outcome
        probe_state_chunk  how well state and chunk do: above probe_state, the chunk itself tells the episodes
                           apart (what acting by a ranking of chunks at one state needs)
        <name>_v, <name>_q, <name>_advantage
                           each critic's V(s), min-Q(s, a) and Q - V; ``critics`` maps a name to (its behaviour
                           model, whose chunk space it reads, and the critic). A critic trained on every episode
                           has seen the held-out outcomes; one trained on the probes' half has not.

    for all episodes and within each expert quality label that has both outcomes there (-1: unlabelled). AUC 0.5 is
    chance. Nothing here changes a critic or a flow: the probes are fitted here and discarded.
    """
    from lawr_ext.modules.mlp import mlp

    generator = torch.Generator().manual_seed(seed)
    episodes = dataset.episodes
    held_out_episode = held_out_episodes(episodes.num_episodes, seed) if held_out is None else held_out.cpu()
    chunk_episode = dataset.chunk_episode.cpu()
    chunk_step = dataset.chunk_start_step.cpu()
    held_out = held_out_episode[chunk_episode]
    train_ids = torch.nonzero(~held_out).squeeze(1)
    test_ids = torch.nonzero(held_out).squeeze(1)
    test_ids = test_ids[torch.randperm(len(test_ids), generator=generator)[:max_chunks]]
    if len(train_ids) == 0 or len(test_ids) == 0:
        raise ValueError("success_ranking: needs at least two episodes")
    device = next(behavior.parameters()).device

    @torch.no_grad()
    def features(raw: TensorDict) -> tuple[torch.Tensor, torch.Tensor, TensorDict]:
        batch = behavior.learner_batch(raw)
        return behavior.obs_normalizer(batch[keys.OBS]), batch[keys.ACTIONS].flatten(1), batch

    obs_norm, chunk, _ = features(dataset.batch(train_ids[:1]).to(device))
    probes = {"probe_state": mlp(obs_norm.shape[1], hidden, 1).to(device),
              "probe_state_chunk": mlp(obs_norm.shape[1] + chunk.shape[1], hidden, 1).to(device)}
    optimizer = torch.optim.Adam([p for probe in probes.values() for p in probe.parameters()], lr=3e-4)
    with torch.enable_grad():
        for _ in range(probe_steps):
            ids = train_ids[torch.randint(len(train_ids), (batch_size,), generator=generator)]
            obs_norm, chunk, batch = features(dataset.batch(ids).to(device))
            label = batch[keys.SUCCESS].float()
            loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(probe(x).squeeze(-1), label)
                       for probe, x in ((probes["probe_state"], obs_norm),
                                        (probes["probe_state_chunk"], torch.cat([obs_norm, chunk], -1))))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    scores: dict[str, list[torch.Tensor]] = {name: [] for name in probes}
    success, quality = [], []
    with torch.no_grad():
        for ids in test_ids.split(1024):
            raw = dataset.batch(ids).to(device)
            obs_norm, chunk, batch = features(raw)
            scores["probe_state"].append(probes["probe_state"](obs_norm).squeeze(-1).cpu())
            scores["probe_state_chunk"].append(probes["probe_state_chunk"](torch.cat([obs_norm, chunk], -1))
                                               .squeeze(-1).cpu())
            for name, (critic_behavior, critic) in critics.items():
                critic_batch = batch if critic_behavior is behavior else critic_behavior.learner_batch(raw)
                critic_obs = critic.obs_normalizer(critic_batch[keys.OBS])
                v = critic.value(critic_obs)
                q = critic.q_value(critic_obs, critic_batch[keys.ACTIONS], target=True)
                for kind, value in (("v", v), ("q", q), ("advantage", q - v)):
                    scores.setdefault(f"{name}_{kind}", []).append(value.cpu())
            success.append(batch[keys.SUCCESS].cpu())
            quality.append(batch[keys.QUALITY].cpu())
    scores = {name: torch.cat(parts) for name, parts in scores.items()}
    success, quality = torch.cat(success).bool(), torch.cat(quality)
    step = chunk_step[test_ids]
    edges = torch.linspace(0, int(episodes.lengths.max()), num_windows + 1).round().long()

    def row(member: torch.Tensor) -> dict:
        return {"chunks": int(member.sum()), "success_rate": success[member].float().mean().item(),
                **{name: auc(values[member], success[member]) for name, values in scores.items()}}

    windows = []
    for begin, end in zip(edges[:-1].tolist(), edges[1:].tolist()):
        inside = (step >= begin) & (step < end)
        if not inside.any():
            continue
        groups = {"all": row(inside)}
        for label in quality[inside].unique().tolist():
            member = inside & (quality == label)
            if success[member].any() and not success[member].all():
                groups[f"quality {label}"] = row(member)
        windows.append({"steps": [begin, end], "groups": groups})
    return {"train_episodes": int((~held_out_episode).sum()), "held_out_episodes": int(held_out_episode.sum()),
            "probe_steps": probe_steps, "scores": list(scores), "windows": windows}


# |offset across the fingers| bins: centred, loose, offset (the suboptimal expert's is 30 mm), and no closure
GRASP_BINS_MM = (5.0, 15.0)
GRASP_BIN_NAMES = ("centred", "loose", "offset", "none")


class GraspRecorder:
    """A rollout observer (``eval/rollout.py``): where each arm's gripper first closed in every episode the rollout
    records, by the task's ``grasp_geometry`` (obs [N, O], actions [N, A] -> ``closing`` [N, 2], ``offset`` [N, 2, 3]
    in the nearest object's frame), beside those episodes (``episodes``, the rollout's order)."""

    def __init__(self, geometry: Callable[[torch.Tensor, torch.Tensor], dict]):
        self.geometry = geometry
        self.first: torch.Tensor | None = None  # [N, 2, 3]: the current episode's first closure per arm, NaN before
        self.recorded: list[torch.Tensor] = []
        self.episodes: list[Episode] = []

    def __call__(self, obs: torch.Tensor, actions: torch.Tensor, done: torch.Tensor, episodes: list[Episode]) -> None:
        geometry = self.geometry(obs, actions)
        if self.first is None:
            self.first = torch.full_like(geometry["offset"], math.nan)
        new = geometry["closing"] & self.first[..., 0].isnan()
        self.first[new] = geometry["offset"][new]
        if episodes:
            self.recorded.append(self.first[[e.env_id for e in episodes]].clone())
            self.episodes += episodes
        self.first[done] = math.nan

    def offsets(self) -> torch.Tensor:
        """[E, 2, 3] for ``episodes``, in their order (NaN: that arm never closed)."""
        return torch.cat(self.recorded).cpu() if self.recorded else torch.empty(0, 2, 3)


def data_grasps(episodes: Episodes, geometry: Callable[[torch.Tensor, torch.Tensor], dict]) -> torch.Tensor:
    """[E, 2, 3]: where each arm's gripper first closed in each recorded episode (its command crossing into the
    closed half), measured as ``GraspRecorder`` measures a rollout; NaN where an arm never closed."""
    closing_and_offset = geometry(episodes.obs, episodes.actions)
    step_episode = torch.repeat_interleave(torch.arange(episodes.num_episodes), episodes.lengths)
    rows = torch.arange(len(step_episode))
    result = torch.full((episodes.num_episodes, 2, 3), math.nan)
    for arm in range(2):
        closing = closing_and_offset["closing"][:, arm]
        first = torch.full((episodes.num_episodes,), len(rows)).scatter_reduce(
            0, step_episode[closing], rows[closing], "amin")
        closed = first < len(rows)
        result[closed, arm] = closing_and_offset["offset"][first[closed], arm].float()
    return result


def grasp_summary(offsets: torch.Tensor, success: torch.Tensor, lifted_nothing: torch.Tensor | None = None) -> dict:
    """How far across the fingers from an object's centre the grippers closed (``offsets`` [E, 2, 3], y across):

        closures               per arm and episode, the count in each bin: centred (< 5 mm), loose (< 15 mm),
                               offset (>= 15 mm) or none (never closed)
        episodes_by_worst_arm  per bin of an episode's worse arm (none > offset > loose > centred): [episodes,
                               successes] and, with ``lifted_nothing`` [E], how many of them lifted no object
        median_across_mm, median_along_mm   over the arms that closed
        across_quartiles_mm    25th, 50th and 75th percentile of the offset across, over the arms that closed: a
                               policy between the two grasps (loose or 15-25 mm) from one that picks one of them
    """
    across = offsets[..., 1].abs() * 1000
    bins = torch.where(across.isnan(), 3, (across >= GRASP_BINS_MM[0]).long() + (across >= GRASP_BINS_MM[1]).long())
    worst, success = bins.amax(-1), success.bool()
    by_worst = {}
    for i, name in enumerate(GRASP_BIN_NAMES):
        member = worst == i
        by_worst[name] = [int(member.sum()), int(success[member].sum())]
        if lifted_nothing is not None:
            by_worst[name].append(int(lifted_nothing.bool()[member].sum()))
    closed = ~across.isnan()
    median = lambda values: values[closed].median().item() if closed.any() else None  # noqa: E731
    quartiles = torch.quantile(across[closed], torch.tensor([0.25, 0.5, 0.75])).tolist() if closed.any() else None
    return {"episodes": len(offsets), "successes": int(success.sum()),
            "closures": {name: int((bins == i).sum()) for i, name in enumerate(GRASP_BIN_NAMES)},
            "episodes_by_worst_arm": by_worst, "median_across_mm": median(across),
            "median_along_mm": median(offsets[..., 0].abs() * 1000), "across_quartiles_mm": quartiles}


class CriticScoredLatents(ChunkPolicy):
    """The L-AWR policy acting by the best of ``num_latents`` latents under the frozen Phase-2 critic's min Q: its
    planner's own latent z and ``num_latents - 1`` fixed others, around z (``spread`` > 0: z + spread * eps, rescaled
    to ||z||, so they stay where the planner's latents lie) or drawn from the prior (``spread`` = 0: best-of-N over
    flow draws, with the planner's chunk among them). The others are drawn once (``seed``), so the policy stays
    deterministic. A diagnostic, not a method: it asks whether the critic ranks chunks near the planner's better
    than the planner chose, at ``num_latents`` decodes and critic passes per chunk.
    """

    def __init__(self, policy: LAWRPolicy, critic: torch.nn.Module, num_latents: int, spread: float, seed: int = 0):
        super().__init__()
        if num_latents < 2:
            raise ValueError(f"CriticScoredLatents: num_latents must be >= 2, got {num_latents}")
        if not spread >= 0:
            raise ValueError(f"CriticScoredLatents: spread must be >= 0, got {spread}")
        self.policy, self.critic = policy, critic
        self.num_latents, self.spread = num_latents, spread
        self.horizon, self.action_dim = policy.horizon, policy.action_dim
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("others", torch.randn(num_latents - 1, self.horizon, self.action_dim, generator=generator))

    def candidates(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(chunks [B, N, H, A], their min Q [B, N]) for raw observations [B, O]; index 0 is the planner's."""
        policy, n = self.policy, self.num_latents
        obs_norm = policy.obs_normalizer(obs)
        z = policy.planner(obs_norm)  # [B, H, A]
        if self.spread > 0:
            others = z[:, None] + self.spread * self.others[None]
            radius = z.flatten(1).norm(dim=-1)[:, None, None, None]
            others = others * radius / others.flatten(2).norm(dim=-1).clamp_min(1e-6)[..., None, None]
        else:
            others = self.others[None].expand(z.shape[0], -1, -1, -1)
        latents = torch.cat([z[:, None], others], dim=1).flatten(0, 1)  # [B * N, H, A], N per state in a row
        chunks = policy.decoder.decode(latents, obs_norm.repeat_interleave(n, dim=0), policy.decode_steps)
        q = self.critic.q_value(self.critic.obs_normalizer(obs).repeat_interleave(n, dim=0), chunks)
        return chunks.view(-1, n, *chunks.shape[1:]), q.view(-1, n)

    @torch.no_grad()
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        chunks, q = self.candidates(obs)
        return chunks[torch.arange(chunks.shape[0], device=obs.device), q.argmax(dim=1)]

    @torch.no_grad()
    def planner_kept(self, obs: torch.Tensor) -> float:
        """Fraction of the observations [B, O] at which the planner's own latent scores best (chance: 1 / N)."""
        return (self.candidates(obs)[1].argmax(dim=1) == 0).float().mean().item()
